using Perturb.Engine;
using Perturb.Engine.Backends;
using Perturb.Engine.Nn;

namespace Perturb.Tests.Nn;

/// <summary>
/// Gradient checks: the engine's float32 backward (input and weights) against central finite differences, in double
/// precision, of the plain double reference forward (<see cref="RefModel"/>), for every layer on small random shapes
/// (stride 2, padding, dilation 2, groups, depthwise, odd sizes) and for whole presets.
/// Loss L = sum(r * output) for a fixed random r, so dL/doutput = r.
/// Tolerance: |analytic - numeric| &lt;= 1e-4 + 2e-3 * max(|analytic|, |numeric|).
/// </summary>
public class GradCheckTests
{
    const double H = 1e-5, Rtol = 2e-3, Atol = 1e-4;

    internal static Model Single(IBackend be, int[] inShape, Layer layer, ulong seed = 7, bool flattenToLinear = false)
    {
        var g = new GraphBuilder(inShape);
        g.Add("layer", layer, GraphBuilder.Input);
        return g.Build(be, seed);
    }

    /// <summary>Runs the check; maxPerTensor limits how many elements of each tensor are probed (evenly spread).</summary>
    internal static void Check(Model m, int n, bool training, int maxPerTensor = 40, int seed = 1, Action<Model>? prepare = null, Func<string, bool>? paramFilter = null)
    {
        var be = m.Backend;
        m.Train(training);
        prepare?.Invoke(m);
        var rng = new Random(seed);
        int inLen = n * Layer.Product(m.InputShape);
        var xf = Enumerable.Range(0, inLen).Select(_ => (float)(0.05 + 0.9 * rng.NextDouble())).ToArray();
        var xd = Ref.D(xf);
        var refm = new RefModel(m) { Training = training, DropoutSeed = 99 };
        m.SetDropoutStream(99, 0);

        using var x = be.FromArray(xf, Batch(n, m.InputShape));
        var outT = m.Forward(x);
        int outLen = outT.Length;
        var rf = Enumerable.Range(0, outLen).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var rd = Ref.D(rf);
        var refOut = refm.Forward(xd, n);
        Ref.AssertClose(refOut, outT.ToArray(), 1e-4, 1e-4, "forward output vs reference");
        using var r = be.FromArray(rf, outT.Shape);
        var dx = m.Backward(r, BackwardMode.InputAndWeights)!.ToArray();

        double Loss() { var o = refm.Forward(xd, n); double s = 0; for (int i = 0; i < o.Length; i++) s += o[i] * rd[i]; return s; }

        // Input gradient.
        foreach (int i in Probe(inLen, maxPerTensor))
        {
            double keep = xd[i];
            xd[i] = keep + H; double lp = Loss();
            xd[i] = keep - H; double lm = Loss();
            xd[i] = keep;
            AssertGrad((lp - lm) / (2 * H), dx[i], $"dL/dx[{i}]");
        }
        // Weight gradients.
        foreach (var (name, p) in m.NamedParameters())
        {
            if (!p.Trainable || (paramFilter != null && !paramFilter(name))) continue;
            Assert.True(p.Grad != null, $"{name} has no gradient after a weight backward");
            var g = p.Grad!.ToArray();
            var w = refm.P[name];
            foreach (int i in Probe(w.Length, maxPerTensor))
            {
                double keep = w[i];
                w[i] = keep + H; double lp = Loss();
                w[i] = keep - H; double lm = Loss();
                w[i] = keep;
                AssertGrad((lp - lm) / (2 * H), g[i], $"dL/d{name}[{i}]");
            }
        }
    }

    static IEnumerable<int> Probe(int len, int max)
    {
        if (len <= max) return Enumerable.Range(0, len);
        return Enumerable.Range(0, max).Select(i => (int)((long)i * (len - 1) / (max - 1))).Distinct();
    }

    static void AssertGrad(double numeric, float analytic, string what)
    {
        double err = Math.Abs(numeric - analytic), tol = Atol + Rtol * Math.Max(Math.Abs(numeric), Math.Abs(analytic));
        Assert.True(err <= tol, $"{what}: analytic {analytic:G6}, numeric {numeric:G6}, error {err:G3} > {tol:G3}");
    }

    internal static int[] Batch(int n, int[] s) { var b = new int[s.Length + 1]; b[0] = n; s.CopyTo(b, 1); return b; }

    public static IEnumerable<object[]> ConvCases() => new[]
    {
        new object[] { 3, 7, 9, 4, 3, 1, 1, 1, 1, true },   // odd sizes, padding
        new object[] { 2, 8, 8, 3, 3, 2, 1, 1, 1, false },  // stride 2, no bias
        new object[] { 2, 9, 7, 2, 3, 1, 2, 2, 1, true },   // dilation 2
        new object[] { 4, 6, 6, 6, 3, 1, 1, 1, 2, true },   // groups 2
        new object[] { 4, 7, 7, 4, 3, 2, 1, 1, 4, false },  // depthwise, stride 2
        new object[] { 3, 5, 5, 2, 1, 1, 0, 1, 1, true },   // 1x1
        new object[] { 1, 6, 5, 2, 2, 2, 0, 1, 1, true },   // even kernel, stride 2
    };

    [Theory]
    [MemberData(nameof(ConvCases))]
    public void Conv2d(int c, int h, int w, int k, int kernel, int stride, int pad, int dil, int groups, bool bias)
    {
        using var be = new CpuBackend();
        var m = Single(be, new[] { c, h, w }, new Conv2d(c, k, kernel, stride, pad, dil, groups, bias));
        Check(m, 2, false);
    }

    /// <summary>A rectangular kernel whose stride, padding and dilation differ between H and W (as ONNX imports give).</summary>
    [Fact]
    public void Conv2dUnequalAxes()
    {
        using var be = new CpuBackend();
        var conv = new Conv2d(2, 3, 3, stride: 2, padding: 1, dilation: 1, groups: 1, bias: true, kernelW: 2) { StrideW = 1, PaddingW = 0, DilationW = 2 };
        var m = Single(be, new[] { 2, 7, 6 }, conv);
        Assert.Equal(new[] { 3, 4, 4 }, m.OutputShape);
        Check(m, 2, false);
    }

    [Fact]
    public void Linear()
    {
        using var be = new CpuBackend();
        var g = new GraphBuilder(2, 3, 3);
        g.Add("flat", new Flatten(), GraphBuilder.Input);
        g.Add("fc", new Linear(18, 5));
        g.Add("fc2", new Linear(5, 3, bias: false));
        Check(g.Build(be, 3), 3, false);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void BatchNorm2d(bool training)
    {
        using var be = new CpuBackend();
        var m = Single(be, new[] { 3, 4, 5 }, new BatchNorm2d(3));
        Check(m, 3, training, prepare: RandomiseBn);
    }

    [Fact]
    public void BatchNormOnFeatures()
    {
        using var be = new CpuBackend();
        var g = new GraphBuilder(6);
        g.Add("bn", new BatchNorm2d(6), GraphBuilder.Input);
        Check(g.Build(be, 1), 4, true, prepare: RandomiseBn);
    }

    /// <summary>Random gamma, beta and running statistics, so eval mode is not the identity.</summary>
    internal static void RandomiseBn(Model m)
    {
        var rng = new Random(5);
        foreach (var (name, p) in m.NamedParameters())
        {
            if (!name.Contains("running") && !(p.Value.Shape.Length == 1 && m.Nodes.Any(nd => nd.Layer is BatchNorm2d && name.StartsWith(nd.Layer.Name + ".")))) continue;
            var v = Enumerable.Range(0, p.Value.Length).Select(_ => name.EndsWith("running_var") ? (float)(0.5 + rng.NextDouble()) : (float)(rng.NextDouble() - 0.5 + (name.EndsWith(".weight") ? 1 : 0))).ToArray();
            m.Backend.Upload(p.Value, v);
        }
        m.MarkParametersChanged();
    }

    [Fact]
    public void Normalize()
    {
        using var be = new CpuBackend();
        Check(Single(be, new[] { 3, 3, 4 }, new Normalize(new[] { 0.4f, 0.5f, 0.6f }, new[] { 0.2f, 0.25f, 0.3f })), 2, false);
    }

    [Theory]
    [InlineData(Activation.Relu)]
    [InlineData(Activation.LeakyRelu)]
    [InlineData(Activation.Sigmoid)]
    [InlineData(Activation.Tanh)]
    public void Activations(Activation f)
    {
        using var be = new CpuBackend();
        // A convolution first, so inputs of the activation straddle zero.
        var g = new GraphBuilder(2, 5, 5);
        g.Add("conv", new Conv2d(2, 3, 3, padding: 1), GraphBuilder.Input);
        g.Add("act", new ActivationLayer(f, 0.1f));
        Check(g.Build(be, 11), 2, false);
    }

    [Theory]
    [InlineData(true, 2, 2, 0, false, false)]
    [InlineData(true, 3, 2, 1, false, false)]
    [InlineData(true, 3, 2, 0, true, false)]
    [InlineData(false, 2, 2, 0, false, false)]
    [InlineData(false, 3, 2, 1, false, true)]
    [InlineData(false, 3, 2, 1, false, false)]
    [InlineData(false, 3, 2, 0, true, false)]
    public void Pooling(bool max, int k, int s, int p, bool ceil, bool includePad)
    {
        using var be = new CpuBackend();
        Check(Single(be, new[] { 2, 7, 6 }, new Pool2d(max, k, s, p, ceil, includePad)), 2, false);
    }

    [Fact]
    public void GlobalAvgPoolAndFlatten()
    {
        using var be = new CpuBackend();
        var g = new GraphBuilder(3, 5, 4);
        g.Add("gap", new GlobalAvgPool(), GraphBuilder.Input);
        g.Add("flat", new Flatten());
        Check(g.Build(be, 1), 3, false);
    }

    [Fact]
    public void DropoutInTraining()
    {
        using var be = new CpuBackend();
        var g = new GraphBuilder(40);
        g.Add("fc", new Linear(40, 30), GraphBuilder.Input);
        g.Add("drop", new Dropout(0.3f));
        var m = g.Build(be, 2);
        Check(m, 3, true);
        // The mask really drops some units and keeps others.
        m.Train(); m.SetDropoutStream(99, 0);
        using var x = be.FromArray(Enumerable.Repeat(0.5f, 120).ToArray(), 3, 40);
        var y = m.Forward(x).ToArray();
        Assert.Contains(y, v => v == 0f);
        Assert.Contains(y, v => v != 0f);
    }

    [Fact]
    public void AddAndConcatBranches()
    {
        using var be = new CpuBackend();
        var g = new GraphBuilder(2, 5, 5);
        int a = g.Add("a", new Conv2d(2, 3, 3, padding: 1), GraphBuilder.Input);
        int b = g.Add("b", new Conv2d(2, 3, 1), GraphBuilder.Input);
        int s = g.Add("sum", new AddLayer(), a, b);
        int c = g.Add("cat", new Concat(), s, a, GraphBuilder.Input); // the input feeds three nodes
        g.Add("relu", new ActivationLayer(Activation.Tanh), c);
        Check(g.Build(be, 4), 2, false);
    }

    [Fact]
    public void SoftmaxLayer()
    {
        using var be = new CpuBackend();
        var g = new GraphBuilder(6);
        g.Add("fc", new Linear(6, 4), GraphBuilder.Input);
        g.Add("sm", new SoftmaxLayer());
        Check(g.Build(be, 4), 3, false);
    }

    [Theory]
    [InlineData("lenet", 1, 12, true)]
    [InlineData("cnn-small", 3, 8, true)]
    [InlineData("cnn-small", 1, 9, false)]
    public void Presets_(string arch, int c, int size, bool training)
    {
        using var be = new CpuBackend();
        var m = Presets.Create(arch, be, c, size, size, 3, 5);
        Check(m, 3, training, maxPerTensor: 8, prepare: training ? null : RandomiseBn);
    }

    [Fact]
    public void ResNet18SampledParameters()
    {
        using var be = new CpuBackend();
        // Eval mode with random BatchNorm statistics, and training mode at 12x12 (the last stage is 2x2, so each
        // BatchNorm normalises over 8 values: smaller batches make batch statistics too ill-conditioned for float32).
        var probe = new[] { "conv1.weight", "bn1.weight", "layer1.0.conv2.weight", "layer2.0.downsample.0.weight", "layer3.1.bn2.bias", "layer4.1.conv2.weight", "fc.weight", "fc.bias" };
        var m = Presets.Create("resnet18", be, 1, 6, 6, 2, 5);
        Check(m, 2, false, maxPerTensor: 3, paramFilter: probe.Contains, prepare: RandomiseBn);
        var mt = Presets.Create("resnet18", be, 1, 12, 12, 2, 5);
        Check(mt, 2, true, maxPerTensor: 2, paramFilter: probe.Contains);
    }
}
