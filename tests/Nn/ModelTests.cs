using Perturb.Engine;
using Perturb.Engine.Backends;
using Perturb.Engine.IO;
using Perturb.Engine.Nn;

namespace Perturb.Tests.Nn;

public class ModelTests
{
    static (float[] dx, Dictionary<string, long> calls) RunBackward(Model m, float[] x, float[] r, BackwardMode mode)
    {
        var be = m.Backend;
        using var xt = be.FromArray(x, GradCheckTests.Batch(x.Length / Layer.Product(m.InputShape), m.InputShape));
        var o = m.Forward(xt);
        using var rt = be.FromArray(r, o.Shape);
        be.Counters.Reset();
        var dx = m.Backward(rt, mode)!.ToArray();
        return (dx, new Dictionary<string, long>(be.Counters.AllCalls));
    }

    [Theory]
    [InlineData("lenet")]
    [InlineData("cnn-small")]
    [InlineData("resnet18")]
    public void InputOnlyBackwardEqualsFullAndSkipsWeightWork(string arch)
    {
        using var be = new CpuBackend();
        int n = 2, size = arch == "resnet18" ? 8 : 12;
        var m = Presets.Create(arch, be, 1, size, size, 3, 1);
        m.Eval();
        // Unfolded: with folding, the weight backward re-runs the forward unfolded and dx differs in rounding
        // (folded against unfolded is EvalFoldTests' subject).
        m.FoldEval = false;
        var rng = new Random(3);
        var x = Enumerable.Range(0, n * size * size).Select(_ => (float)rng.NextDouble()).ToArray();
        var r = Enumerable.Range(0, n * 3).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
        var (dxFull, full) = RunBackward(m, x, r, BackwardMode.InputAndWeights);
        var (dxIn, inOnly) = RunBackward(m, x, r, BackwardMode.InputOnly);
        Assert.Equal(dxFull, dxIn); // bit-identical: the same ops compute dx either way

        long Get(Dictionary<string, long> d, string k) => d.TryGetValue(k, out var v) ? v : 0;
        int linears = m.Nodes.Count(nd => nd.Layer is Linear);
        int convs = m.Nodes.Count(nd => nd.Layer is Conv2d);
        // The full backward runs one weight-gradient op per conv and two GEMMs per linear layer (dx and dW).
        Assert.Equal(convs, Get(full, "conv_bwd_weights"));
        Assert.Equal(2 * linears, Get(full, "gemm"));
        // Input-only: no weight-gradient op at all; one GEMM per linear layer (dx only); same data-gradient work.
        Assert.Equal(0, Get(inOnly, "conv_bwd_weights"));
        Assert.Equal(0, Get(inOnly, "bias_grad"));
        Assert.Equal(linears, Get(inOnly, "gemm"));
        Assert.Equal(Get(full, "conv_bwd_data"), Get(inOnly, "conv_bwd_data"));
        Assert.True(be.Counters.Flops("conv_bwd_weights") == 0);
        // No parameter received a gradient in input-only mode on a fresh model.
        var fresh = Presets.Create(arch, be, 1, size, size, 3, 1);
        fresh.Eval();
        RunBackward(fresh, x, r, BackwardMode.InputOnly);
        Assert.All(fresh.NamedParameters(), p => Assert.Null(p.P.Grad));
    }

    [Fact]
    public void BatchSizeIsFreeAtRunTime()
    {
        using var be = new CpuBackend();
        var m = Presets.Create("cnn-small", be, 1, 12, 12, 4, 2);
        m.Eval();
        var rng = new Random(1);
        var x = Enumerable.Range(0, 5 * 144).Select(_ => (float)rng.NextDouble()).ToArray();
        using var x5 = be.FromArray(x, 5, 1, 12, 12);
        var all = m.Forward(x5).ToArray();
        for (int i = 0; i < 5; i++)
        {
            using var xi = be.FromArray(x.AsSpan(i * 144, 144), 1, 1, 12, 12);
            var one = m.Forward(xi).ToArray();
            for (int j = 0; j < 4; j++) Assert.Equal(all[i * 4 + j], one[j], 4);
        }
    }

    [Fact]
    public void ShapeErrorNamesLayerAndBothShapes()
    {
        using var be = new CpuBackend();
        var m = Presets.Create("cnn-small", be, 1, 28, 28, 4, 2);
        using var bad = be.Allocate(2, 3, 28, 28);
        var e = Assert.Throws<PerturbException>(() => m.Forward(bad));
        Assert.Contains("'norm'", e.Message);
        Assert.Contains("3x28x28", e.Message);
        Assert.Contains("1x28x28", e.Message);

        using var wrongSize = be.Allocate(2, 1, 20, 20);
        e = Assert.Throws<PerturbException>(() => m.Forward(wrongSize));
        Assert.Contains("1x20x20", e.Message);

        // A layer built against the wrong shape names itself and both shapes.
        var g = new GraphBuilder(3, 8, 8);
        g.Add("stem", new Conv2d(1, 4, 3), GraphBuilder.Input);
        e = Assert.Throws<PerturbException>(() => g.Build(be, 0));
        Assert.Contains("'stem'", e.Message); Assert.Contains("1xHxW", e.Message); Assert.Contains("3x8x8", e.Message);

        var g2 = new GraphBuilder(2, 4, 4);
        int a = g2.Add("a", new Conv2d(2, 3, 1), GraphBuilder.Input);
        int b = g2.Add("b", new Conv2d(2, 5, 1), GraphBuilder.Input);
        g2.Add("sum", new AddLayer(), a, b);
        e = Assert.Throws<PerturbException>(() => g2.Build(be, 0));
        Assert.Contains("'sum'", e.Message); Assert.Contains("3x4x4", e.Message); Assert.Contains("5x4x4", e.Message);
    }

    [Fact]
    public void PresetsFitAnyInputAndClassCount()
    {
        using var be = new CpuBackend();
        foreach (var (arch, c, h, w, k) in new[] { ("lenet", 3, 32, 32, 10), ("lenet", 1, 28, 28, 2), ("cnn-small", 3, 64, 48, 7), ("resnet18", 3, 16, 16, 5), ("resnet18", 1, 28, 28, 2) })
        {
            var m = Presets.Create(arch, be, c, h, w, k, 0);
            m.Eval();
            using var x = be.Allocate(2, c, h, w);
            var o = m.Forward(x);
            Assert.Equal(new[] { 2, k }, o.Shape);
        }
        var single = Presets.Create("cnn-small", be, 1, 12, 12, 2, 0, singleOutput: true);
        Assert.Equal(1, single.NumOutputs);
        Assert.Equal(2, single.NumClasses);
        // ResNet-18 body matches torchvision (11,689,512 - 7x7x3x64 stem - 1000-class fc = 11,167,104), plus a 3x3x1x64 stem and a 2-class fc: 11,168,706.
        Assert.Equal(11_168_706, Presets.Create("resnet18", be, 1, 28, 28, 2, 0).ParameterCount);
    }
}
