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
            long floats = m.InferValuesPerSample;
            int rows = SearchAttack.ForwardRows(m);
            Assert.True(rows == 16 || rows * floats * 4 <= SearchAttack.ForwardChunkBytes, $"{rows} rows of {floats} floats");
            Assert.True((rows + 1) * floats * 4 > SearchAttack.ForwardChunkBytes, $"{rows} rows of {floats} floats leave room");
        }
        Assert.True(SearchAttack.ForwardRows(big) < SearchAttack.ForwardRows(small));
        // An inference pass frees what no later node reads: a ResNet-18 holds a few maps at its peak, not all of them.
        Assert.True(big.InferValuesPerSample * 5 < big.ActivationValuesPerSample, $"{big.InferValuesPerSample} of {big.ActivationValuesPerSample}");
        // The same candidates give the same logits whatever the chunk.
        small.Eval();
        var r = new Perturb.Engine.Data.SplitMix64(3);
        var x = Enumerable.Range(0, 300 * 784).Select(_ => (float)r.NextDouble()).ToArray();
        var a = SearchAttack.EvaluateLogits(small, 300, 7, (j, dst) => x.AsSpan(j * 784, 784).CopyTo(dst));
        var b = SearchAttack.EvaluateLogits(small, 300, 4096, (j, dst) => x.AsSpan(j * 784, 784).CopyTo(dst));
        Assert.Equal(a, b);
    }

    /// <summary>
    /// The peak of an inference pass on a chain input 1x4x4 (16) -> conv 2x4x4 (32) -> relu (32) -> conv 3x4x4 (48)
    /// -> flatten (48) -> linear (5): each node holds its input and its output, the worst being conv2's output and the
    /// flatten beside it, 96, plus the model's input, 16.
    /// </summary>
    [Fact]
    public void InferPeakOfAChainIsTheWorstPairOfNeighbours()
    {
        using var be = new CpuBackend(1);
        var g = new GraphBuilder(1, 4, 4);
        g.Add("conv1", new Conv2d(1, 2, 3, padding: 1), GraphBuilder.Input);
        g.Add("relu", new ActivationLayer(Perturb.Engine.Activation.Relu));
        g.Add("conv2", new Conv2d(2, 3, 3, padding: 1));
        g.Add("flatten", new Flatten());
        g.Add("fc", new Linear(48, 5));
        using var m = g.Build(be, 1);
        Assert.Equal(112, m.InferValuesPerSample);
        Assert.Equal(16 + 32 + 32 + 48 + 48 + 5, m.ActivationValuesPerSample);
    }
}
