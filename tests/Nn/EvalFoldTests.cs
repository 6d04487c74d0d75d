using Perturb.Engine;
using Perturb.Engine.Backends;
using Perturb.Engine.Nn;
using Perturb.Engine.Onnx;
using Perturb.Tests.Onnx;

namespace Perturb.Tests.Nn;

/// <summary>
/// Eval-mode folding (<see cref="Model.FoldEval"/>): BatchNorm folded into the convolution before it and ReLU run in
/// its epilogue give the logits and input gradients of the unfolded graph. Tolerance: 1e-4 relative to the largest
/// magnitude of each compared array (folding moves one rounding per product: w*a instead of (w.x)*a; measured
/// differences are about 1e-6 relative here). Every BatchNorm gets non-trivial statistics first, so a fold that
/// ignored them (or applied them twice) fails.
/// </summary>
public class EvalFoldTests
{
    const double Tol = 1e-4;

    /// <summary>gamma in [0.5, 1.5], beta in [-0.3, 0.3], running mean in [-0.5, 0.5], running var in [0.2, 2].</summary>
    static void RandomizeNorms(Model m, int seed)
    {
        var rng = new Random(seed);
        float[] R(int n, double lo, double hi) => Enumerable.Range(0, n).Select(_ => (float)(lo + (hi - lo) * rng.NextDouble())).ToArray();
        foreach (var node in m.Nodes)
            if (node.Layer is BatchNorm2d bn)
            {
                m.Backend.Upload(bn.Gamma.Value, R(bn.Channels, 0.5, 1.5));
                m.Backend.Upload(bn.Beta.Value, R(bn.Channels, -0.3, 0.3));
                m.Backend.Upload(bn.RunningMean.Value, R(bn.Channels, -0.5, 0.5));
                m.Backend.Upload(bn.RunningVar.Value, R(bn.Channels, 0.2, 2.0));
            }
        m.MarkParametersChanged();
    }

    static void AssertNear(float[] want, float[] got, string what)
    {
        Assert.Equal(want.Length, got.Length);
        double scale = want.Max(v => Math.Abs((double)v));
        Assert.True(scale > 0, what + ": all zero");
        double worst = 0;
        for (int i = 0; i < want.Length; i++) worst = Math.Max(worst, Math.Abs(want[i] - (double)got[i]));
        Assert.True(worst <= Tol * scale, $"{what}: max difference {worst:g3} > {Tol} x {scale:g3}");
    }

    /// <summary>Logits and d sum(r * logits)/dx, with the model in eval mode and folding as given.</summary>
    static (float[] Logits, float[] Dx) Run(Model m, float[] x, int[] shape, float[] r, bool fold)
    {
        m.Eval();
        m.FoldEval = fold;
        var be = m.Backend;
        using var xt = be.FromArray(x, shape);
        var o = m.Forward(xt);
        var z = o.ToArray();
        using var rt = be.FromArray(r, o.Shape);
        var dx = m.Backward(rt, BackwardMode.InputOnly)!.ToArray();
        return (z, dx);
    }

    static float[] Rand(int n, int seed, double lo, double hi)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(lo + (hi - lo) * rng.NextDouble())).ToArray();
    }

    [Fact]
    public void Resnet18FoldedEqualsUnfoldedAndSkipsTheNormAndReluPasses()
    {
        using var be = new CpuBackend(2);
        var m = Presets.Create("resnet18", be, 1, 12, 12, 3, 5);
        RandomizeNorms(m, 1);
        int n = 3;
        var x = Rand(n * 144, 2, 0, 1);
        var r = Rand(n * 3, 3, -1, 1);
        var (z0, dx0) = Run(m, x, new[] { n, 1, 12, 12 }, r, fold: false);
        be.Counters.Reset();
        var (z1, dx1) = Run(m, x, new[] { n, 1, 12, 12 }, r, fold: true);
        AssertNear(z0, z1, "resnet18 logits");
        AssertNear(dx0, dx1, "resnet18 input gradient");
        Assert.NotEqual(z0, z1);   // the folded path really ran (its rounding differs)
        // Folded: no BatchNorm affine in forward or backward (the input Normalize's only); no ReLU runs alone: those
        // after a convolution run in its epilogue, those after a residual Add in one add-and-ReLU pass.
        int adds = m.Nodes.Count(nd => nd.Layer is AddLayer);
        int normalizes = m.Nodes.Count(nd => nd.Layer is Normalize);
        Assert.Equal(normalizes, be.Counters.Calls("channel_affine"));
        Assert.Equal(normalizes, be.Counters.Calls("channel_affine_bwd"));
        Assert.Equal(0, be.Counters.Calls("act_fwd"));
        Assert.Equal(adds, be.Counters.Calls("add_relu"));
    }

    [Fact]
    public void FoldFollowsParameterChangesAndTrainingIsUnaffected()
    {
        using var be = new CpuBackend(2);
        var m = Presets.Create("resnet18", be, 1, 8, 8, 2, 7);
        var twin = Presets.Create("resnet18", be, 1, 8, 8, 2, 7);
        twin.FoldEval = false;
        RandomizeNorms(m, 4); RandomizeNorms(twin, 4);
        int n = 2;
        var shape = new[] { n, 1, 8, 8 };
        var x = Rand(n * 64, 5, 0, 1);
        var r = Rand(n * 2, 6, -1, 1);
        AssertNear(Run(twin, x, shape, r, false).Logits, Run(m, x, shape, r, true).Logits, "before any change");

        // A training step on both (batch statistics, running averages, SGD on every weight): identical, since
        // training never folds, even right after a folded eval pass.
        foreach (var model in new[] { m, twin })
        {
            model.Train();
            using var xt = be.FromArray(x, shape);
            var o = model.Forward(xt);
            using var rt = be.FromArray(r, o.Shape);
            model.Backward(rt, BackwardMode.InputAndWeights, needInputGrad: false);
            foreach (var p in model.TrainableParameters()) be.Axpy(-0.05f, p.Grad!, p.Value);
            model.MarkParametersChanged();
        }
        foreach (var ((name, p), (_, q)) in m.NamedParameters().Zip(twin.NamedParameters()))
            Assert.True(p.Value.ToArray().SequenceEqual(q.Value.ToArray()), $"{name} differs after the same training step");

        // Eval again: the fold is rebuilt from the new weights and statistics.
        var (zt, dxt) = Run(twin, x, shape, r, false);
        var (zm, dxm) = Run(m, x, shape, r, true);
        AssertNear(zt, zm, "logits after a training step");
        AssertNear(dxt, dxm, "input gradient after a training step");

        // An upload to one BatchNorm's gamma alone (no MarkParametersChanged) is seen through its version.
        var bn = m.Nodes.Select(nd => nd.Layer).OfType<BatchNorm2d>().First();
        var bt = twin.Nodes.Select(nd => nd.Layer).OfType<BatchNorm2d>().First();
        var g = Rand(bn.Channels, 8, 2, 3);
        be.Upload(bn.Gamma.Value, g); be.Upload(bt.Gamma.Value, g);
        AssertNear(Run(twin, x, shape, r, false).Logits, Run(m, x, shape, r, true).Logits, "after a gamma upload");

        // Eval-mode weight gradients run unfolded: equal to the unfolded model's.
        foreach (var model in new[] { m, twin })
        {
            model.Eval();
            using var xt = be.FromArray(x, shape);
            var o = model.Forward(xt);
            using var rt = be.FromArray(r, o.Shape);
            model.Backward(rt, BackwardMode.InputAndWeights);
        }
        foreach (var ((name, p), (_, q)) in m.TrainableParameters().Select((p, i) => (i.ToString(), p)).Zip(twin.TrainableParameters().Select((p, i) => (i.ToString(), p))))
            Assert.True(p.Grad!.ToArray().SequenceEqual(q.Grad!.ToArray()), $"parameter {name}: eval-mode weight gradient differs");
        m.Dispose(); twin.Dispose();
    }

    /// <summary>
    /// PyTorch-exported graphs (PyTorch folds BatchNorm itself on export: Conv then Relu, depthwise and grouped
    /// convolutions among them): ReLU fused into the conv epilogue equals the unfolded graph and matches PyTorch.
    /// </summary>
    [Theory]
    [InlineData("mnasnet_op13_static_nofold")]
    [InlineData("shufflenet_v2_op13_static_nofold")]
    public void OnnxImportedModelFoldedEqualsUnfolded(string name)
    {
        using var be = new CpuBackend(2);
        var f = Fixture.Load(name);
        using var m = OnnxImporter.Load(f.OnnxPath, be);
        var (z0, dx0) = Run(m, f.X, f.XShape, f.R, fold: false);
        var (z1, dx1) = Run(m, f.X, f.XShape, f.R, fold: true);
        Assert.Contains(m.Nodes, nd => nd.Layer is Conv2d { FusedRelu: true });
        AssertNear(z0, z1, name + " logits");
        AssertNear(dx0, dx1, name + " input gradient");
        Ox.AssertClose(f.Logits, z1, 1e-4, 1e-4, name + " folded logits against PyTorch");
    }

    /// <summary>A graph with BatchNormalization nodes through ONNX: Perturb's resnet18 exported and imported again.</summary>
    [Fact]
    public void OnnxRoundTripWithBatchNormFolds()
    {
        using var be = new CpuBackend(2);
        using var src = Presets.Create("resnet18", be, 1, 8, 8, 2, 3);
        RandomizeNorms(src, 9);
        using var m = OnnxImporter.Import(OnnxExporter.ToProto(src), be);
        Assert.Contains(m.Nodes, nd => nd.Layer is BatchNorm2d);
        int n = 2;
        var x = Rand(n * 64, 10, 0, 1); var r = Rand(n * 2, 11, -1, 1);
        var (z0, dx0) = Run(m, x, new[] { n, 1, 8, 8 }, r, fold: false);
        var (z1, dx1) = Run(m, x, new[] { n, 1, 8, 8 }, r, fold: true);
        Assert.Contains(m.Nodes, nd => nd.Layer is Conv2d { FoldedNorm: not null, FusedRelu: true });
        AssertNear(z0, z1, "imported resnet18 logits");
        AssertNear(dx0, dx1, "imported resnet18 input gradient");
    }

    [Fact]
    public void NodeOutputOfAFoldedConvolutionIsAClearError()
    {
        using var be = new CpuBackend(1);
        using var m = Presets.Create("resnet18", be, 1, 8, 8, 2, 1);
        m.Eval();
        using var xt = be.FromArray(Rand(64, 1, 0, 1), 1, 1, 8, 8);
        m.Forward(xt);
        var conv = m.Nodes.First(nd => nd.Layer is Conv2d).Layer.Name;
        var e = Assert.Throws<PerturbException>(() => m.NodeOutput(conv));
        Assert.Contains(conv, e.Message);
        Assert.Contains("FoldEval", e.Message);
        m.FoldEval = false;
        m.Forward(xt);
        Assert.Equal(m.NodeOutput(conv).Length, 64 * 64);
    }

    // ------------------------------------------------------------------ Add + ReLU fused (the residual block's end)

    /// <summary>
    /// A residual block small enough for ilgpu-cpu: conv-bn-relu-conv-bn plus a 1x1 projection, Add, ReLU, GAP, linear,
    /// on 2x6x6 inputs, 3 classes, non-trivial BatchNorm statistics.
    /// </summary>
    static Model ResidualBlock(IBackend be)
    {
        var g = new GraphBuilder(2, 6, 6);
        g.Add("conv1", new Conv2d(2, 4, 3, padding: 1, bias: false), GraphBuilder.Input);
        g.Add("bn1", new BatchNorm2d(4));
        g.Add("relu1", new ActivationLayer(Activation.Relu));
        g.Add("conv2", new Conv2d(4, 4, 3, padding: 1, bias: false));
        int main = g.Add("bn2", new BatchNorm2d(4));
        int skip = g.Add("proj", new Conv2d(2, 4, 1), GraphBuilder.Input);
        g.Add("add", new AddLayer(), main, skip);
        g.Add("relu", new ActivationLayer(Activation.Relu));
        g.Add("gap", new GlobalAvgPool());
        g.Add("flatten", new Flatten());
        g.Add("fc", new Linear(4, 3));
        var m = g.Build(be, 11);
        RandomizeNorms(m, 12);
        return m;
    }

    /// <summary>Runs <paramref name="work"/> with the Add + ReLU fusion on or off (folding otherwise as usual).</summary>
    static T WithAddRelu<T>(bool fuse, Func<T> work)
    {
        bool was = EvalFold.FuseAddRelu;
        EvalFold.FuseAddRelu = fuse;
        try { return work(); }
        finally { EvalFold.FuseAddRelu = was; }
    }

    /// <summary>
    /// The fused Add + ReLU gives bit for bit the logits and input gradient of Add then ReLU (tolerance 0: the same
    /// sum, the same max(s, 0), and backward's mask read from the output's sign, which is the sum's), on both backends,
    /// and really runs fused: one add_relu, no act_fwd, forward; backward reads the fused output's sign.
    /// </summary>
    [Theory, InlineData("cpu"), InlineData("ilgpu-cpu")]
    public void AddReluFusedEqualsAddThenRelu(string backend)
    {
        using var be = Devices.Create(backend);
        var m = ResidualBlock(be);
        int n = 2;
        var shape = new[] { n, 2, 6, 6 };
        var x = Rand(n * 72, 13, 0, 1);
        var r = Rand(n * 3, 14, -1, 1);
        var (z0, dx0) = WithAddRelu(false, () => Run(m, x, shape, r, fold: true));
        be.Counters.Reset();
        var (z1, dx1) = WithAddRelu(true, () => Run(m, x, shape, r, fold: true));
        Assert.Equal(1, be.Counters.Calls("add_relu"));
        Assert.Equal(0, be.Counters.Calls("act_fwd"));
        Assert.Equal(z0, z1);
        Assert.Equal(dx0, dx1);
        Assert.Contains(dx1, v => v != 0);
        // And both are the unfolded graph's, within the folding tolerance.
        var (zu, dxu) = Run(m, x, shape, r, fold: false);
        AssertNear(zu, z1, "logits against the unfolded graph");
        AssertNear(dxu, dx1, "input gradient against the unfolded graph");
        m.Dispose();
    }

    /// <summary>
    /// PGD (L-inf, random start, 3 steps, same seed) gives the same adversarial images with the Add + ReLU fusion as
    /// without it: tolerance 0 (the fused pair is bitwise the unfused one, so every sign step is the same), on both
    /// backends (the residual block; and resnet18 on cpu).
    /// </summary>
    [Theory, InlineData("cpu", false), InlineData("ilgpu-cpu", false), InlineData("cpu", true)]
    public void PgdIsUnchangedByTheAddReluFusion(string backend, bool resnet)
    {
        using var be = Devices.Create(backend);
        var m = resnet ? Presets.Create("resnet18", be, 1, 12, 12, 3, 5) : ResidualBlock(be);
        if (resnet) RandomizeNorms(m, 1);
        int n = 3, d = Layer.Product(m.InputShape);
        var x = Rand(n * d, 15, 0, 1);
        var y = new[] { 0, 1, 2 };
        var pgd = new Perturb.Engine.Attacks.Gradient.Pgd { Steps = 3, EarlyStop = false, Seed = 9 };
        float[] Adv(bool fuse) => WithAddRelu(fuse, () => pgd.Run(m, x, y, Perturb.Engine.Attacks.AttackGoal.Untargeted, new[] { 8 / 255f }).Results[0].Adversarial);
        var a0 = Adv(false);
        var a1 = Adv(true);
        Assert.Equal(a0, a1);
        Assert.Contains(Enumerable.Range(0, a1.Length), i => a1[i] != x[i]);
        m.Dispose();
    }

    /// <summary>
    /// The memory plan hands spares back without zero-filling the ones an op overwrites whole: a folded resnet18
    /// input-gradient pass after the first fills nothing, and passes on other inputs in between (spares left dirty)
    /// do not change a pass's result (bitwise).
    /// </summary>
    [Fact]
    public void SparesAreNotZeroFilledAndDirtySparesChangeNothing()
    {
        using var be = new CpuBackend(2);
        var m = Presets.Create("resnet18", be, 1, 12, 12, 3, 5);
        RandomizeNorms(m, 2);
        int n = 3;
        var shape = new[] { n, 1, 12, 12 };
        var x1 = Rand(n * 144, 16, 0, 1);
        var x2 = Rand(n * 144, 17, 0, 1);
        var r = Rand(n * 3, 18, -1, 1);
        var first = Run(m, x1, shape, r, fold: true);
        Run(m, x2, shape, r, fold: true);
        be.Counters.Reset();
        var again = Run(m, x1, shape, r, fold: true);
        Assert.Equal(0, be.Counters.Calls("fill"));
        Assert.Equal(first.Logits, again.Logits);
        Assert.Equal(first.Dx, again.Dx);
        m.Dispose();
    }
}
