using Perturb.Engine;
using Perturb.Engine.Backends;
using Perturb.Engine.IO;
using Perturb.Engine.Nn;
using Perturb.Engine.Onnx.Proto;
using Perturb.Tests.Nn;
using static Perturb.Tests.Onnx.Ox;

namespace Perturb.Tests.Onnx;

/// <summary>Clear errors for what the importer cannot take.</summary>
public class OnnxErrorTests : TempDirTest
{
    /// <summary>A small valid graph (Conv, Relu, Flatten) with room for one extra node before the output.</summary>
    static GraphProto Base(Action<GraphProto>? extra = null, int h = 4)
    {
        var g = new GraphProto { Name = "g" };
        g.Input.Add(Value("x", "N", 2, h, h));
        g.Initializer.Add(Floats("w", Rand(2 * 2 * 9, 1), new long[] { 2, 2, 3, 3 }));
        g.Node.Add(Node("Conv", "conv", new[] { "x", "w" }, new[] { "c" }, Ints("pads", 1, 1, 1, 1)));
        if (extra != null) extra(g);
        else g.Node.Add(Node("Relu", "relu", new[] { "c" }, new[] { "r" }));
        g.Node.Add(Node("Flatten", "flat", new[] { "r" }, new[] { "y" }));
        g.Output.Add(Value("y", "N", 2 * h * h));
        return g;
    }

    string Load(ModelProto m, string file)
    {
        var path = Path.Combine(Dir, file);
        Save(m, path);
        using var be = new CpuBackend();
        var e = Assert.Throws<PerturbException>(() => ModelFile.Load(path, be).Dispose());
        Assert.Contains(path, e.Message);
        return e.Message;
    }

    [Fact]
    public void UnsupportedOperatorNamesOperatorAndNode()
    {
        var msg = Load(Model(Base(g => g.Node.Add(Node("LSTM", "lstm_1", new[] { "c" }, new[] { "r" }))), 13), "lstm.onnx");
        Assert.Contains("LSTM", msg);
        Assert.Contains("lstm_1", msg);
    }

    /// <summary>The whole graph is scanned first: one line names the first gap and its node, then every other one.</summary>
    [Fact]
    public void UnsupportedOperatorsAreAllNamedAtOnce()
    {
        var msg = Load(Model(Base(g =>
        {
            g.Node.Add(Node("LSTM", "lstm_1", new[] { "c" }, new[] { "l1" }));
            g.Node.Add(Node("GRU", "gru_a", new[] { "l1" }, new[] { "l2" }));
            g.Node.Add(Node("LSTM", "lstm_2", new[] { "l2" }, new[] { "l3" }));
            g.Node.Add(new NodeProto { OpType = "FusedThing", Domain = "com.example", Name = "fx", Input = { "l3" }, Output = { "r" } });
        }), 13), "gaps.onnx");
        Assert.DoesNotContain("\n", msg);
        Assert.Contains("unsupported ONNX operator 'LSTM' (node 'lstm_1', 2 nodes)", msg);
        Assert.Contains("the model also needs 'GRU' (node 'gru_a'), 'com.example.FusedThing' (node 'fx')", msg);
    }

    [Fact]
    public void ExternalDataIsAClearError()
    {
        var g = Base();
        var t = g.Initializer[0];
        t.RawData = Google.Protobuf.ByteString.Empty;
        t.ClearRawData();
        t.DataLocation = TensorProto.Types.DataLocation.External;
        t.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = "weights.bin" });
        var msg = Load(Model(g, 13), "external.onnx");
        Assert.Contains("external", msg);
        Assert.Contains("weights.bin", msg);
    }

    [Fact]
    public void GarbageAndTruncatedFilesNameTheFile()
    {
        using var be = new CpuBackend();
        var garbage = Path.Combine(Dir, "garbage.onnx");
        File.WriteAllBytes(garbage, Enumerable.Range(0, 300).Select(i => (byte)(i * 37 + 11)).ToArray());
        var e1 = Assert.Throws<PerturbException>(() => ModelFile.Load(garbage, be));
        Assert.Contains(garbage, e1.Message);

        var text = Path.Combine(Dir, "text.onnx");
        File.WriteAllText(text, "this is not an onnx model\n");
        var e2 = Assert.Throws<PerturbException>(() => ModelFile.Load(text, be));
        Assert.Contains(text, e2.Message);

        var good = Path.Combine(Dir, "good.onnx");
        Save(Model(Base(), 13), good);
        var bytes = File.ReadAllBytes(good);
        foreach (var cut in new[] { bytes.Length / 3, bytes.Length / 2, bytes.Length - 7 })
        {
            var trunc = Path.Combine(Dir, $"trunc{cut}.onnx");
            File.WriteAllBytes(trunc, bytes[..cut]);
            var e = Assert.Throws<PerturbException>(() => ModelFile.Load(trunc, be));
            Assert.Contains(trunc, e.Message);
        }
        var empty = Path.Combine(Dir, "empty.onnx");
        File.WriteAllBytes(empty, Array.Empty<byte>());
        Assert.Contains(empty, Assert.Throws<PerturbException>(() => ModelFile.Load(empty, be)).Message);
    }

    [Fact]
    public void BroadcastAcrossRanksOfComputedTensors()
    {
        // [N, 2, 4, 4] / [N, 32]: NumPy would align the batch of one with an axis of the other
        var msg = Load(Model(Base(g =>
        {
            g.Node.Add(Node("Flatten", "f", new[] { "c" }, new[] { "cf" }));
            g.Node.Add(Node("Div", "ratio", new[] { "c", "cf" }, new[] { "r" }));
        }), 13), "div.onnx");
        Assert.Contains("Div node 'ratio'", msg);
        Assert.Contains("different ranks", msg);
    }

    [Fact]
    public void AsymmetricPaddingThatMatters()
    {
        // SAME_UPPER with stride 2 on an even size pads 0 before and 1 after: the last window reads the extra row.
        var msg = Load(Model(Base(g =>
        {
            g.Initializer.Add(Floats("w2", Rand(2 * 2 * 9, 2), new long[] { 2, 2, 3, 3 }));
            g.Node.Add(Node("Conv", "down", new[] { "c", "w2" }, new[] { "r" }, Str("auto_pad", "SAME_UPPER"), Ints("strides", 2, 2)));
        }, h: 8), 13), "asym.onnx");
        Assert.Contains("asymmetric padding", msg);
        Assert.Contains("'down'", msg);
    }

    [Fact]
    public void UnsupportedReshapeAndOpset()
    {
        var msg = Load(Model(Base(g =>
        {
            g.Initializer.Add(Int64s("s", 0, 5, -1));
            g.Node.Add(Node("Reshape", "unflatten", new[] { "c", "s" }, new[] { "r" }));
        }), 13), "reshape.onnx");
        Assert.Contains("Reshape node 'unflatten'", msg);
        Assert.Contains("does not fit", msg);
        Assert.Contains("opset 5", Load(Model(Base(), 5), "opset5.onnx"));
    }
}

/// <summary>Gradient checks for the layer types ONNX import adds (Affine, Mul, Clip).</summary>
public class OnnxLayerGradTests
{
    [Fact]
    public void AffineOnImages()
    {
        using var be = new CpuBackend();
        var m = GradCheckTests.Single(be, new[] { 3, 4, 5 }, new ChannelAffineLayer(new[] { 0.5f, -2f, 1.5f }, new[] { 0.1f, 0.2f, -0.3f }));
        GradCheckTests.Check(m, 2, false);
    }

    [Fact]
    public void AffineOnFeatures()
    {
        using var be = new CpuBackend();
        var g = new GraphBuilder(6);
        g.Add("fc", new Linear(6, 4), GraphBuilder.Input);
        g.Add("affine", new ChannelAffineLayer(new[] { 0.5f, -2f, 1.5f, 3f }, new[] { 0.1f, 0.2f, -0.3f, 0f }));
        GradCheckTests.Check(g.Build(be, 3), 3, false);
    }

    [Fact]
    public void MulOfTwoBranches()
    {
        using var be = new CpuBackend();
        var g = new GraphBuilder(2, 5, 5);
        int a = g.Add("a", new Conv2d(2, 3, 3, padding: 1), GraphBuilder.Input);
        int b = g.Add("b", new Conv2d(2, 3, 1), GraphBuilder.Input);
        g.Add("mul", new MulLayer(), a, b);
        GradCheckTests.Check(g.Build(be, 5), 2, false);
    }

    [Fact]
    public void MulWithItself()
    {
        using var be = new CpuBackend();
        var g = new GraphBuilder(2, 3, 3);
        int a = g.Add("a", new Conv2d(2, 2, 3, padding: 1), GraphBuilder.Input);
        g.Add("sq", new MulLayer(), a, a);
        GradCheckTests.Check(g.Build(be, 6), 2, false);
    }

    [Theory]
    [InlineData(-0.3f, 0.4f)]
    [InlineData(0f, 6f)]
    [InlineData(float.NegativeInfinity, 0.2f)]
    [InlineData(-0.1f, float.PositiveInfinity)]
    public void Clip(float lo, float hi)
    {
        using var be = new CpuBackend();
        var g = new GraphBuilder(2, 5, 5);
        g.Add("conv", new Conv2d(2, 3, 3, padding: 1), GraphBuilder.Input);
        g.Add("clip", new ClipLayer(lo, hi));
        GradCheckTests.Check(g.Build(be, 11), 2, false);
    }
}
