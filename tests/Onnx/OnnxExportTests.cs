using Perturb.Engine;
using Perturb.Engine.Backends;
using Perturb.Engine.IO;
using Perturb.Engine.Nn;
using Perturb.Engine.Onnx;
using Perturb.Tests.Nn;
using Xunit.Abstractions;

namespace Perturb.Tests.Onnx;

/// <summary>
/// Models built in the engine, exported to ONNX, run in ONNX Runtime and in the engine on the same inputs: logits
/// within 1e-4 relative, with an absolute floor of 1e-5 times the largest |logit|. Importing the exported file gives
/// the same logits again (within 1e-6 relative; in practice bit-identical).
/// </summary>
public class OnnxExportTests : TempDirTest
{
    const double Rtol = 1e-4, AtolFrac = 1e-5;
    readonly ITestOutputHelper _out;
    public OnnxExportTests(ITestOutputHelper output) { _out = output; }

    void RoundTrip(Model m, int n, string file)
    {
        var shape = GradCheckTests.Batch(n, m.InputShape);
        var x = Ox.Rand(shape.Aggregate(1, (a, b) => a * b), 42, 0f, 1f);
        var eng = Ox.RunEngine(m, x, shape);
        var path = Path.Combine(Dir, file);
        ModelFile.Save(m, path);
        var ort = Ox.RunOrt(path, x, shape);
        var (abs, rel) = Ox.AssertClose(ort, eng, Rtol, AtolFrac, $"{file}: engine vs ONNX Runtime");
        _out.WriteLine($"{file}: engine vs ONNX Runtime max |diff| {abs:G3}, max rel {rel:G3}, |logits| up to {ort.Max(Math.Abs):G3}");

        using var back = ModelFile.Load(path, m.Backend);
        // A final Softmax comes back removed (the import runs on logits) and its probabilities equal the output.
        bool ending = m.Nodes[^1].Layer is SoftmaxLayer;
        Assert.Equal(m.Nodes.Select(nd => nd.Layer.Name).SkipLast(ending ? 1 : 0), back.Nodes.Select(nd => nd.Layer.Name));
        Assert.Equal(m.NamedParameters().Select(p => p.Name), back.NamedParameters().Select(p => p.Name));
        var again = ending ? Ox.RunProbabilities(back, x, shape) : Ox.RunEngine(back, x, shape);
        var (abs2, _) = Ox.AssertClose(eng, again, 1e-6, 1e-7, $"{file}: re-imported vs original");
        _out.WriteLine($"{file}: re-imported vs original max |diff| {abs2:G3}");
    }

    /// <summary>
    /// The composed imports (Resize as Gathers and weighted sums, PRelu, MatMul of computed tensors, flips as Slices
    /// with negative steps, Gathers of index lists), ConvTranspose and Conv with unequal H/W settings, and the ops
    /// fixture (GroupNorm and InstanceNorm composed, Elu, Selu, Softplus, Gelu, Split, Tile, Expand, reductions) export
    /// to ONNX that ONNX Runtime runs to the same logits, and re-import to the same logits again.
    /// </summary>
    [Theory, InlineData("resize_op13"), InlineData("misc_op17"), InlineData("convtranspose_hw_op13"), InlineData("ops_op17")]
    public void ComposedImportsExport(string name)
    {
        using var be = new CpuBackend();
        var fx = Fixture.Load(name);
        using var m = OnnxImporter.Load(fx.OnnxPath, be);
        var eng = Ox.RunEngine(m, fx.X, fx.XShape);
        Ox.AssertClose(fx.Logits, eng, 1e-4, 1e-4, $"{name}: engine vs PyTorch");
        var path = Path.Combine(Dir, name + "_export.onnx");
        ModelFile.Save(m, path);
        var ort = Ox.RunOrt(path, fx.X, fx.XShape);
        Ox.AssertClose(ort, eng, Rtol, AtolFrac, $"{name}: engine vs ONNX Runtime on the export");
        using var back = ModelFile.Load(path, be);
        Ox.AssertClose(eng, Ox.RunEngine(back, fx.X, fx.XShape), 1e-6, 1e-7, $"{name}: re-imported vs original");
    }

    [Fact]
    public void LeNet()
    {
        using var be = new CpuBackend();
        using var m = Presets.Create("lenet", be, 1, 12, 12, 5, 3);
        RoundTrip(m, 3, "lenet.onnx");
    }

    [Fact]
    public void CnnSmallWithBatchNormStatistics()
    {
        using var be = new CpuBackend();
        using var m = Presets.Create("cnn-small", be, 3, 16, 16, 4, 5, mean: 0.45f, std: 0.22f);
        GradCheckTests.RandomiseBn(m);
        RoundTrip(m, 3, "cnn-small.onnx");
    }

    [Fact]
    public void ResNet18()
    {
        using var be = new CpuBackend();
        using var m = Presets.Create("resnet18", be, 1, 16, 16, 3, 9);
        GradCheckTests.RandomiseBn(m);
        RoundTrip(m, 2, "resnet18.onnx");
    }

    /// <summary>A DAG with Concat, Add, LeakyReLU, ceil-mode pooling (average with padding counted), and the layers ONNX import adds.</summary>
    internal static Model Dag(IBackend be)
    {
        var g = new GraphBuilder(3, 8, 8);
        g.Add("norm", new Normalize(new[] { 0.4f, 0.5f, 0.6f }, new[] { 0.2f, 0.25f, 0.3f }), GraphBuilder.Input);
        int a = g.Add("a", new Conv2d(3, 4, 3, padding: 1), 0);
        int b = g.Add("b", new Conv2d(3, 4, 1, bias: false), 0);
        int lr = g.Add("leaky", new ActivationLayer(Activation.LeakyRelu, 0.1f), a);
        int sum = g.Add("sum", new AddLayer(), lr, b);
        int cat = g.Add("cat", new Concat(), sum, a);
        int ap = g.Add("avg", new Pool2d(false, 3, 2, 1, ceilMode: true, countIncludePad: true), cat);   // 8 -> 5, last window past the padding
        int clip = g.Add("clip", new ClipLayer(-0.5f, 0.8f), ap);
        int mul = g.Add("mul", new MulLayer(), clip, ap);
        g.Add("affine", new ChannelAffineLayer(Ox.Rand(8, 3, 0.5f, 1.5f), Ox.Rand(8, 4, -0.2f, 0.2f)), mul);
        g.Add("tanh", new ActivationLayer(Activation.Tanh));
        g.Add("max", new Pool2d(true, 2, 2, 0, ceilMode: true));                                             // 5 -> 3
        int avg2 = g.Add("avg2", new Pool2d(false, 2, 1, 1, countIncludePad: false));                        // 3 -> 4
        g.Add("sig", new ActivationLayer(Activation.Sigmoid), avg2);
        g.Add("gap", new GlobalAvgPool());
        g.Add("flat", new Flatten());
        g.Add("drop", new Dropout(0.3f));
        g.Add("fc", new Linear(8, 5));
        g.Add("bn", new BatchNorm2d(5));
        g.Add("softmax", new SoftmaxLayer());
        var m = g.Build(be, 21);
        GradCheckTests.RandomiseBn(m);
        return m;
    }

    [Fact]
    public void HandBuiltDag()
    {
        using var be = new CpuBackend();
        using var m = Dag(be);
        RoundTrip(m, 4, "dag.onnx");
    }

    [Fact]
    public void ImportedLayersSurviveSafetensors()
    {
        using var be = new CpuBackend();
        using var m = Dag(be);
        var path = Path.Combine(Dir, "dag.safetensors");
        ModelFile.Save(m, path);
        using var back = ModelFile.Load(path, be);
        var shape = new[] { 2, 3, 8, 8 };
        var x = Ox.Rand(2 * 3 * 64, 8, 0f, 1f);
        Ref.AssertBitEqual(Ox.RunEngine(m, x, shape), Ox.RunEngine(back, x, shape), "safetensors round trip");
    }
}
