using Perturb.Engine.Attacks.Search;
using Perturb.Engine.Backends;
using Perturb.Engine.Nn;

namespace Perturb.Tests.Attacks.Search;

public class ForwardRowsTests
{
    [Fact]
    public void ChunkKeepsActivationsUnderTheCapAndLogitsDoNotDependOnIt()
    {
        using var be = new CpuBackend();
        using var small = Presets.Create("cnn-small", be, 1, 28, 28, 2, 1);
        using var big = Presets.Create("resnet18", be, 3, 64, 64, 2, 1);
        foreach (var m in new[] { small, big })
        {
            long floats = Perturb.Engine.Nn.Layer.Product(m.InputShape) + m.Nodes.Sum(n => (long)Perturb.Engine.Nn.Layer.Product(n.Layer.OutShape));
            int rows = SearchAttack.ForwardRows(m);
            Assert.True(rows == 16 || rows * floats * 4 <= SearchAttack.ForwardChunkBytes, $"{rows} rows of {floats} floats");
            Assert.True((rows + 1) * floats * 4 > SearchAttack.ForwardChunkBytes, $"{rows} rows of {floats} floats leave room");
        }
        Assert.True(SearchAttack.ForwardRows(big) < SearchAttack.ForwardRows(small));
        // The same candidates give the same logits whatever the chunk.
        small.Eval();
        var r = new Perturb.Engine.Data.SplitMix64(3);
        var x = Enumerable.Range(0, 300 * 784).Select(_ => (float)r.NextDouble()).ToArray();
        var a = SearchAttack.EvaluateLogits(small, 300, 7, (j, dst) => x.AsSpan(j * 784, 784).CopyTo(dst));
        var b = SearchAttack.EvaluateLogits(small, 300, 4096, (j, dst) => x.AsSpan(j * 784, 784).CopyTo(dst));
        Assert.Equal(a, b);
    }
}
