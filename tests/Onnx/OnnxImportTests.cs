using Perturb.Engine;
using Perturb.Engine.Backends;
using Perturb.Engine.IO;
using Perturb.Engine.Nn;
using Perturb.Engine.Onnx;
using Perturb.Engine.Onnx.Proto;
using Xunit.Abstractions;
using static Perturb.Tests.Onnx.Ox;

namespace Perturb.Tests.Onnx;

/// <summary>
/// Hand-built ONNX graphs in the styles of PyTorch and of older converters, each loaded by the engine and run by
/// ONNX Runtime on the same file and inputs: outputs within 1e-4 relative (absolute floor 1e-5 of the largest |output|).
/// </summary>
public class OnnxImportTests : TempDirTest
{
    const double Rtol = 1e-4, AtolFrac = 1e-5;
    readonly ITestOutputHelper _out;
    public OnnxImportTests(ITestOutputHelper output) { _out = output; }

    /// <summary>Writes the model, loads it in the engine, compares with ONNX Runtime; returns the engine model.</summary>
    Model Compare(ModelProto mp, string file, int[] shape, IBackend be)
    {
        var path = Path.Combine(Dir, file);
        Save(mp, path);
        var x = Rand(shape.Aggregate(1, (a, b) => a * b), 17, 0f, 1f);
        var m = ModelFile.Load(path, be);
        var eng = m.Info.ContainsKey("onnx.ending_op") ? RunProbabilities(m, x, shape) : RunEngine(m, x, shape);
        var ort = RunOrt(path, x, shape);
        var (abs, rel) = AssertClose(ort, eng, Rtol, AtolFrac, file);
        _out.WriteLine($"{file}: engine vs ONNX Runtime max |diff| {abs:G3}, max rel {rel:G3}");
        return m;
    }

    /// <summary>Opset 8, IR 3: initializers also listed as graph inputs, Reshape with a Constant shape, MatMul + Add.</summary>
    [Fact]
    public void Opset8MlpWithMatMulReshapeAndInitializersAsInputs()
    {
        using var be = new CpuBackend();
        var g = new GraphProto { Name = "mlp" };
        g.Input.Add(Value("x", "batch", 1, 4, 4));
        var w1 = Floats("W1", Rand(16 * 10, 1), new long[] { 16, 10 });
        var b1 = Floats("b1", Rand(10, 2), new long[] { 10 }, Storage.FloatData);
        var w2 = Floats("W2", Rand(10 * 3, 3), new long[] { 10, 3 });
        var b2 = Floats("b2", Rand(3, 4), new long[] { 1, 3 });
        foreach (var t in new[] { w1, b1, w2, b2 }) { g.Initializer.Add(t); g.Input.Add(ValueOf(t)); }
        g.Node.Add(Node("Constant", "", new string[0], new[] { "shape" }, TensorAttr("value", Int64s("", -1, 16))));
        g.Node.Add(Node("Reshape", "", new[] { "x", "shape" }, new[] { "flat" }));
        g.Node.Add(Node("MatMul", "", new[] { "flat", "W1" }, new[] { "mm1" }));
        g.Node.Add(Node("Add", "", new[] { "mm1", "b1" }, new[] { "h1" }));
        g.Node.Add(Node("Relu", "", new[] { "h1" }, new[] { "r1" }));
        g.Node.Add(Node("MatMul", "", new[] { "r1", "W2" }, new[] { "mm2" }));
        g.Node.Add(Node("Add", "", new[] { "mm2", "b2" }, new[] { "y" }));
        g.Output.Add(Value("y", "batch", 3));
        using var m = Compare(Model(g, 8, ir: 3), "mlp8.onnx", new[] { 5, 1, 4, 4 }, be);
        Assert.Equal(new[] { "Flatten", "Linear", "ReLU", "Linear" }, m.Nodes.Select(n => n.Layer.Type));
        Assert.All(m.Nodes.Where(n => n.Layer is Linear), n => Assert.True(((Linear)n.Layer).HasBias));
    }

    [Theory]
    [InlineData(0, 0.5f, 2f)]
    [InlineData(1, 1f, 1f)]
    [InlineData(0, 1.5f, 0f)]
    public void GemmTransposesAlphaBeta(int transB, float alpha, float beta)
    {
        using var be = new CpuBackend();
        var g = new GraphProto { Name = "gemm" };
        g.Input.Add(Value("x", "N", 6));
        g.Initializer.Add(Floats("B", Rand(6 * 4, 5), transB == 1 ? new long[] { 4, 6 } : new long[] { 6, 4 }));
        g.Initializer.Add(Floats("C", Rand(4, 6), new long[] { 4 }));
        g.Node.Add(Node("Gemm", "fc", new[] { "x", "B", "C" }, new[] { "y" }, Int("transB", transB), Float("alpha", alpha), Float("beta", beta)));
        g.Output.Add(Value("y", "N", 4));
        using var m = Compare(Model(g, 11), $"gemm{transB}.onnx", new[] { 3, 6 }, be);
        Assert.Equal("fc", m.Nodes[0].Layer.Name);
    }

    /// <summary>PyTorch style: Sub/Div normalisation by per-channel constants, Conv, BN, Relu, MaxPool, Flatten, Gemm transB=1, Dropout, Identity.</summary>
    [Fact]
    public void PyTorchStyleWithSubDivNormalisation()
    {
        using var be = new CpuBackend();
        var g = new GraphProto { Name = "torch_jit" };
        g.Input.Add(Value("input.1", "batch_size", 3, 6, 6));
        g.Initializer.Add(Floats("mean", new[] { 0.485f, 0.456f, 0.406f }, new long[] { 1, 3, 1, 1 }));
        g.Initializer.Add(Floats("std", new[] { 0.229f, 0.224f, 0.225f }, new long[] { 3, 1, 1 }));
        g.Initializer.Add(Floats("conv1.weight", Rand(4 * 3 * 9, 7, -0.3f, 0.3f), new long[] { 4, 3, 3, 3 }));
        g.Initializer.Add(Floats("conv1.bias", Rand(4, 8), new long[] { 4 }));
        g.Initializer.Add(Floats("bn1.weight", Rand(4, 9, 0.5f, 1.5f), new long[] { 4 }));
        g.Initializer.Add(Floats("bn1.bias", Rand(4, 10), new long[] { 4 }));
        g.Initializer.Add(Floats("bn1.running_mean", Rand(4, 11, -0.2f, 0.2f), new long[] { 4 }));
        g.Initializer.Add(Floats("bn1.running_var", Rand(4, 12, 0.5f, 1.5f), new long[] { 4 }));
        g.Initializer.Add(Floats("fc.weight", Rand(2 * 36, 13), new long[] { 2, 36 }));
        g.Initializer.Add(Floats("fc.bias", Rand(2, 14), new long[] { 2 }));
        g.Initializer.Add(Floats("ratio", new[] { 0.25f }, Array.Empty<long>()));
        g.Node.Add(Node("Sub", "/Sub", new[] { "input.1", "mean" }, new[] { "/Sub_output_0" }));
        g.Node.Add(Node("Div", "/Div", new[] { "/Sub_output_0", "std" }, new[] { "/Div_output_0" }));
        g.Node.Add(Node("Conv", "/conv1/Conv", new[] { "/Div_output_0", "conv1.weight", "conv1.bias" }, new[] { "c1" },
            Ints("kernel_shape", 3, 3), Ints("pads", 1, 1, 1, 1), Ints("strides", 1, 1), Ints("dilations", 1, 1), Int("group", 1)));
        g.Node.Add(Node("BatchNormalization", "/bn1/BatchNormalization", new[] { "c1", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var" }, new[] { "b1" },
            Float("epsilon", 1e-3f), Float("momentum", 0.9f)));
        g.Node.Add(Node("Relu", "/relu/Relu", new[] { "b1" }, new[] { "r1" }));
        g.Node.Add(Node("MaxPool", "/pool/MaxPool", new[] { "r1" }, new[] { "p1" }, Ints("kernel_shape", 2, 2), Ints("strides", 2, 2), Ints("pads", 0, 0, 0, 0), Int("ceil_mode", 0)));
        g.Node.Add(Node("Flatten", "/Flatten", new[] { "p1" }, new[] { "f1" }, Int("axis", 1)));
        g.Node.Add(Node("Dropout", "/drop/Dropout", new[] { "f1", "ratio" }, new[] { "d1" }));
        g.Node.Add(Node("Identity", "/Identity", new[] { "d1" }, new[] { "i1" }));
        g.Node.Add(Node("Gemm", "/fc/Gemm", new[] { "i1", "fc.weight", "fc.bias" }, new[] { "logits" }, Float("alpha", 1f), Float("beta", 1f), Int("transB", 1)));
        g.Output.Add(Value("logits", "batch_size", 2));
        using var m = Compare(Model(g, 17), "torch.onnx", new[] { 2, 3, 6, 6 }, be);
        var first = Assert.IsType<Normalize>(m.Nodes[0].Layer);
        Assert.Equal(new[] { 0.485f, 0.456f, 0.406f }, first.Mean);
        Assert.Equal(new[] { 0.229f, 0.224f, 0.225f }, first.Std);
        Assert.Equal("Sub", first.Name);
        Assert.Contains(m.Nodes, n => n.Layer.Name == "conv1_Conv");
        var bn = m.Nodes.Select(n => n.Layer).OfType<BatchNorm2d>().Single();
        Assert.Equal(1e-3f, bn.Eps);
        Assert.Equal(0.25f, m.Nodes.Select(n => n.Layer).OfType<Dropout>().Single().P);
    }

    /// <summary>Clip with min/max attributes (opset 9) and as inputs (opset 13); Clip(0, inf) becomes a ReLU.</summary>
    [Theory]
    [InlineData(9, -0.2f, 0.3f, "Clip")]
    [InlineData(13, -0.2f, 0.3f, "Clip")]
    [InlineData(13, 0f, float.PositiveInfinity, "ReLU")]
    [InlineData(11, float.NegativeInfinity, 0.1f, "Clip")]
    public void Clip(int opset, float lo, float hi, string expect)
    {
        using var be = new CpuBackend();
        var g = new GraphProto { Name = "clip" };
        g.Input.Add(Value("x", "N", 2, 3, 3));
        g.Initializer.Add(Floats("w", Rand(2 * 2 * 9, 21, -0.5f, 0.5f), new long[] { 2, 2, 3, 3 }));
        g.Node.Add(Node("Conv", "conv", new[] { "x", "w" }, new[] { "c" }, Ints("pads", 1, 1, 1, 1)));
        if (opset < 11)
            g.Node.Add(Node("Clip", "clip", new[] { "c" }, new[] { "y0" }, Float("min", lo), Float("max", hi)));
        else
        {
            var ins = new List<string> { "c" };
            if (float.IsFinite(lo)) { g.Initializer.Add(Floats("lo", new[] { lo }, Array.Empty<long>())); ins.Add("lo"); } else ins.Add("");
            if (float.IsFinite(hi)) { g.Initializer.Add(Floats("hi", new[] { hi }, Array.Empty<long>())); ins.Add("hi"); }
            g.Node.Add(Node("Clip", "clip", ins.ToArray(), new[] { "y0" }));
        }
        g.Node.Add(Node("Flatten", "flat", new[] { "y0" }, new[] { "y" }));
        g.Output.Add(Value("y", "N", 18));
        using var m = Compare(Model(g, opset), $"clip{opset}_{expect}.onnx", new[] { 3, 2, 3, 3 }, be);
        Assert.Equal(expect, m.Nodes[1].Layer.Type);
    }

    /// <summary>A zero Pad folded into the following Conv (alone, and added to the Conv's own pads) and into an average pool.</summary>
    [Fact]
    public void PadFoldedIntoConvAndPool()
    {
        using var be = new CpuBackend();
        var g = new GraphProto { Name = "pad" };
        g.Input.Add(Value("x", "N", 2, 5, 6));
        g.Initializer.Add(Floats("w", Rand(3 * 2 * 9, 31, -0.5f, 0.5f), new long[] { 3, 2, 3, 3 }));
        g.Initializer.Add(Int64s("pads", 0, 0, 1, 2, 0, 0, 1, 2));
        g.Initializer.Add(Int64s("pads2", 0, 0, 0, 1, 0, 0, 0, 1));
        g.Node.Add(Node("Pad", "pad1", new[] { "x", "pads" }, new[] { "px" }, Str("mode", "constant")));
        g.Node.Add(Node("Conv", "conv", new[] { "px", "w" }, new[] { "c" }));
        g.Node.Add(Node("Pad", "pad2", new[] { "c", "pads2" }, new[] { "pc" }));
        g.Node.Add(Node("Conv", "conv2", new[] { "pc", "w2" }, new[] { "c2" }, Ints("pads", 1, 0, 1, 0)));
        g.Initializer.Add(Floats("w2", Rand(2 * 3 * 9, 32, -0.5f, 0.5f), new long[] { 2, 3, 3, 3 }));
        g.Node.Add(Node("Pad", "pad3", new[] { "c2", "pads2" }, new[] { "pc2" }));
        g.Node.Add(Node("AveragePool", "avg", new[] { "pc2" }, new[] { "a" }, Ints("kernel_shape", 3, 3), Ints("strides", 2, 2)));
        g.Node.Add(Node("Flatten", "flat", new[] { "a" }, new[] { "y" }));
        g.Output.Add(Value("y", "N", 2 * 2 * 4));
        using var m = Compare(Model(g, 13), "pad.onnx", new[] { 2, 2, 5, 6 }, be);
        var convs = m.Nodes.Select(n => n.Layer).OfType<Conv2d>().ToArray();
        Assert.Equal((1, 2), (convs[0].Padding, convs[0].PaddingW));
        Assert.Equal((1, 1), (convs[1].Padding, convs[1].PaddingW));
        var pool = m.Nodes.Select(n => n.Layer).OfType<Pool2d>().Single();
        Assert.True(pool.CountIncludePad);
        Assert.Equal((0, 1), (pool.PadH, pool.PadW));
    }

    /// <summary>auto_pad SAME_UPPER (stride 1, and stride 2 where the padding is symmetric), SAME_LOWER, VALID.</summary>
    [Fact]
    public void AutoPad()
    {
        using var be = new CpuBackend();
        var g = new GraphProto { Name = "autopad" };
        g.Input.Add(Value("x", "N", 2, 7, 7));
        g.Initializer.Add(Floats("w", Rand(3 * 2 * 9, 41, -0.5f, 0.5f), new long[] { 3, 2, 3, 3 }));
        g.Initializer.Add(Floats("w2", Rand(3 * 3 * 9, 42, -0.5f, 0.5f), new long[] { 3, 3, 3, 3 }));
        g.Initializer.Add(Floats("w3", Rand(3 * 3 * 4, 43, -0.5f, 0.5f), new long[] { 3, 3, 2, 2 }));
        g.Node.Add(Node("Conv", "same", new[] { "x", "w" }, new[] { "a" }, Str("auto_pad", "SAME_UPPER")));                          // 7 -> 7
        g.Node.Add(Node("Conv", "same_s2", new[] { "a", "w2" }, new[] { "b" }, Str("auto_pad", "SAME_UPPER"), Ints("strides", 2, 2))); // 7 -> 4 (pads 1/1)
        g.Node.Add(Node("Conv", "lower", new[] { "b", "w2" }, new[] { "c" }, Str("auto_pad", "SAME_LOWER")));                          // 4 -> 4
        g.Node.Add(Node("MaxPool", "pool", new[] { "c" }, new[] { "d" }, Str("auto_pad", "SAME_UPPER"), Ints("kernel_shape", 2, 2), Ints("strides", 2, 2))); // 4 -> 2 (pads 0)
        g.Node.Add(Node("Conv", "valid", new[] { "d", "w3" }, new[] { "e" }, Str("auto_pad", "VALID")));                               // 2 -> 1
        g.Node.Add(Node("Flatten", "flat", new[] { "e" }, new[] { "y" }));
        g.Output.Add(Value("y", "N", 3));
        using var m = Compare(Model(g, 11), "autopad.onnx", new[] { 2, 2, 7, 7 }, be);
        Assert.Equal(new[] { 3, 1, 1 }, m.Nodes.Single(n => n.Layer.Name == "valid").Layer.OutShape);
    }

    /// <summary>The same network with weights in raw_data, float_data, double and float16: the same outputs, equal to ONNX Runtime on the float file.</summary>
    [Fact]
    public void InitializerEncodings()
    {
        using var be = new CpuBackend();
        var w = HalfExact(Rand(3 * 2 * 9, 51, -0.5f, 0.5f)); var b = HalfExact(Rand(3, 52));
        var fw = HalfExact(Rand(3 * 4, 53)); var shapeV = new long[] { 0, -1 };
        ModelProto Build(Storage s)
        {
            var g = new GraphProto { Name = "enc" };
            g.Input.Add(Value("x", "N", 2, 4, 4));
            g.Initializer.Add(Floats("w", w, new long[] { 3, 2, 3, 3 }, s));
            g.Initializer.Add(Floats("b", b, new long[] { 3 }, s));
            g.Initializer.Add(Floats("fw", fw, new long[] { 12, 1 }, s));
            g.Initializer.Add(Int64s("shape", shapeV));
            g.Node.Add(Node("Conv", "conv", new[] { "x", "w", "b" }, new[] { "c" }, Ints("strides", 2, 2), Ints("pads", 1, 1, 1, 1)));
            g.Node.Add(Node("Reshape", "reshape", new[] { "c", "shape" }, new[] { "f" }));
            g.Node.Add(Node("MatMul", "mm", new[] { "f", "fw" }, new[] { "y" }));
            g.Output.Add(Value("y", "N", 1));
            return Model(g, 13);
        }
        var shape = new[] { 3, 2, 4, 4 };
        using var reference = Compare(Build(Storage.Raw), "enc_raw.onnx", shape, be);
        var x = Rand(3 * 32, 17, 0f, 1f);
        var want = RunEngine(reference, x, shape);
        foreach (var s in new[] { Storage.FloatData, Storage.Double, Storage.Half })
        {
            var path = Path.Combine(Dir, $"enc_{s}.onnx");
            Save(Build(s), path);
            using var m = ModelFile.Load(path, be);
            Ref.AssertBitEqual(want, RunEngine(m, x, shape), $"initializers as {s}");
        }
        // ONNX Runtime agrees on the float_data file too.
        var fd = Path.Combine(Dir, "enc_FloatData.onnx");
        AssertClose(RunOrt(fd, x, shape), want, Rtol, AtolFrac, "float_data file in ONNX Runtime");
    }

    /// <summary>Element-wise ops between two computed tensors (Add, Sub, Mul) and with constants on either side.</summary>
    [Fact]
    public void ElementwiseBranches()
    {
        using var be = new CpuBackend();
        var g = new GraphProto { Name = "elt" };
        g.Input.Add(Value("x", "N", 2, 4, 4));
        g.Initializer.Add(Floats("wa", Rand(3 * 2 * 9, 61, -0.5f, 0.5f), new long[] { 3, 2, 3, 3 }));
        g.Initializer.Add(Floats("wb", Rand(3 * 2, 62, -0.5f, 0.5f), new long[] { 3, 2, 1, 1 }));
        g.Initializer.Add(Floats("k", new[] { 0.5f, -1.5f, 2f }, new long[] { 3, 1, 1 }));
        g.Initializer.Add(Floats("two", new[] { 2f }, Array.Empty<long>()));
        g.Node.Add(Node("Conv", "ca", new[] { "x", "wa" }, new[] { "a" }, Ints("pads", 1, 1, 1, 1)));
        g.Node.Add(Node("Conv", "cb", new[] { "x", "wb" }, new[] { "b" }));
        g.Node.Add(Node("Sub", "sub", new[] { "a", "b" }, new[] { "s" }));
        g.Node.Add(Node("Mul", "mul", new[] { "s", "b" }, new[] { "m" }));
        g.Node.Add(Node("Add", "add", new[] { "m", "a" }, new[] { "p" }));
        g.Node.Add(Node("Mul", "scale", new[] { "k", "p" }, new[] { "q" }));
        g.Node.Add(Node("Sub", "rsub", new[] { "two", "q" }, new[] { "r" }));
        g.Node.Add(Node("Div", "div", new[] { "r", "k" }, new[] { "t" }));
        g.Node.Add(Node("GlobalAveragePool", "gap", new[] { "t" }, new[] { "u" }));
        g.Node.Add(Node("Flatten", "flat", new[] { "u" }, new[] { "y" }));
        g.Output.Add(Value("y", "N", 3));
        using var m = Compare(Model(g, 14), "elementwise.onnx", new[] { 2, 2, 4, 4 }, be);
        Assert.Contains(m.Nodes, n => n.Layer is MulLayer);
        Assert.Contains(m.Nodes, n => n.Layer is ChannelAffineLayer);
    }

    /// <summary>
    /// Resize in every mode the importer takes, by sizes or by scales, up and down, against ONNX Runtime (the PyTorch
    /// fixtures cover what PyTorch 1.13 exports; these add pytorch_half_pixel, half_pixel nearest and every nearest_mode).
    /// </summary>
    [Theory]
    [InlineData("nearest", "half_pixel", "round_prefer_floor", 8, 7, 0, 0)]
    [InlineData("nearest", "pytorch_half_pixel", "round_prefer_ceil", 3, 7, 0, 0)]
    [InlineData("nearest", "align_corners", "ceil", 7, 3, 0, 0)]
    [InlineData("nearest", "asymmetric", "floor", 0, 0, 2.0, 1.5)]
    [InlineData("linear", "pytorch_half_pixel", "floor", 1, 7, 0, 0)]
    [InlineData("linear", "half_pixel", "floor", 0, 0, 0.6, 2.0)]
    [InlineData("linear", "asymmetric", "floor", 9, 6, 0, 0)]
    [InlineData("linear", "align_corners", "floor", 3, 8, 0, 0)]
    public void ResizeModes(string mode, string coord, string nearest, int oh, int ow, double sh, double sw)
    {
        using var be = new CpuBackend();
        var g = new GraphProto { Name = "resize" };
        g.Input.Add(Value("x", "N", 2, 5, 4));
        g.Initializer.Add(Floats("roi", Array.Empty<float>(), new long[] { 0 }));
        var ins = new List<string> { "x", "roi" };
        if (oh > 0)
        {
            g.Initializer.Add(Floats("scales", Array.Empty<float>(), new long[] { 0 }));
            g.Initializer.Add(Int64s("sizes", 2, 2, oh, ow));
            ins.Add("scales"); ins.Add("sizes");
        }
        else
        {
            g.Initializer.Add(Floats("scales", new[] { 1f, 1f, (float)sh, (float)sw }, new long[] { 4 }));
            ins.Add("scales");
            oh = (int)Math.Floor(5 * sh); ow = (int)Math.Floor(4 * sw);
        }
        g.Node.Add(Node("Resize", "rs", ins.ToArray(), new[] { "r" }, Str("mode", mode), Str("coordinate_transformation_mode", coord), Str("nearest_mode", nearest)));
        g.Node.Add(Node("Flatten", "flat", new[] { "r" }, new[] { "y" }));
        g.Output.Add(Value("y", "N", 2 * oh * ow));
        using var m = Compare(Model(g, 13), $"resize_{mode}_{coord}_{nearest}.onnx", new[] { 2, 2, 5, 4 }, be);
        Assert.Contains(m.Nodes, n => n.Layer is GatherLayer);
    }

    /// <summary>ConvTranspose with stride, pads, output_padding, groups and dilation against ONNX Runtime.</summary>
    [Theory, InlineData(2, 1, 1, 2, 1), InlineData(1, 0, 0, 1, 2), InlineData(3, 1, 2, 1, 1)]
    public void ConvTranspose(int stride, int pad, int outPad, int group, int dil)
    {
        using var be = new CpuBackend();
        var gp = new GraphProto { Name = "ct" };
        gp.Input.Add(Value("x", "N", 4, 5, 4));
        gp.Initializer.Add(Floats("w", Rand(4 * 3 * 9, 71, -0.5f, 0.5f), new long[] { 4, 3, 3, 3 }));
        gp.Initializer.Add(Floats("b", Rand(3 * group, 72, -0.5f, 0.5f), new long[] { 3 * group }));
        gp.Node.Add(Node("ConvTranspose", "ct", new[] { "x", "w", "b" }, new[] { "c" }, Ints("strides", stride, stride), Ints("pads", pad, pad, pad, pad),
            Ints("output_padding", outPad, outPad), Ints("dilations", dil, dil), Ints("kernel_shape", 3, 3), new AttributeProto { Name = "group", Type = AttributeProto.Types.AttributeType.Int, I = group }));
        gp.Node.Add(Node("Flatten", "flat", new[] { "c" }, new[] { "y" }));
        int oh = (5 - 1) * stride - 2 * pad + dil * 2 + outPad + 1, ow = (4 - 1) * stride - 2 * pad + dil * 2 + outPad + 1;
        gp.Output.Add(Value("y", "N", 3 * group * oh * ow));
        using var m = Compare(Model(gp, 13), $"ct_{stride}_{pad}_{outPad}_{group}_{dil}.onnx", new[] { 2, 4, 5, 4 }, be);
        Assert.Contains(m.Nodes, nd => nd.Layer is ConvTranspose2d);
    }

    /// <summary>
    /// ConvTranspose whose strides, pads, output_padding and dilations differ between H and W, and asymmetric pads
    /// (begin &gt; end: padding begin with a larger output_padding) against ONNX Runtime; exported back, ONNX Runtime
    /// reads the engine's file with the same logits.
    /// </summary>
    [Theory]
    [InlineData(new[] { 2, 1 }, new[] { 1, 0, 1, 0 }, new[] { 1, 0 }, new[] { 1, 2 })]
    [InlineData(new[] { 1, 3 }, new[] { 0, 1, 0, 1 }, new[] { 0, 2 }, new[] { 2, 1 })]
    [InlineData(new[] { 2, 2 }, new[] { 1, 2, 0, 1 }, new[] { 0, 0 }, new[] { 1, 1 })]   // asymmetric pads
    public void ConvTransposeUnequalAxes(int[] strides, int[] pads, int[] outPad, int[] dil)
    {
        using var be = new CpuBackend();
        var gp = new GraphProto { Name = "ct" };
        gp.Input.Add(Value("x", "N", 4, 5, 4));
        gp.Initializer.Add(Floats("w", Rand(4 * 3 * 6, 73, -0.5f, 0.5f), new long[] { 4, 3, 3, 2 }));
        gp.Initializer.Add(Floats("b", Rand(3, 74, -0.5f, 0.5f), new long[] { 3 }));
        gp.Node.Add(Node("ConvTranspose", "ct", new[] { "x", "w", "b" }, new[] { "c" }, Ints("strides", L(strides)), Ints("pads", L(pads)),
            Ints("output_padding", L(outPad)), Ints("dilations", L(dil)), Ints("kernel_shape", 3, 2)));
        gp.Node.Add(Node("Flatten", "flat", new[] { "c" }, new[] { "y" }));
        int oh = (5 - 1) * strides[0] - pads[0] - pads[2] + dil[0] * 2 + outPad[0] + 1, ow = (4 - 1) * strides[1] - pads[1] - pads[3] + dil[1] + outPad[1] + 1;
        gp.Output.Add(Value("y", "N", 3 * oh * ow));
        string tag = string.Join("_", strides.Concat(pads).Concat(outPad).Concat(dil));
        using var m = Compare(Model(gp, 13), $"ctu_{tag}.onnx", new[] { 2, 4, 5, 4 }, be);
        var ct = Assert.IsType<ConvTranspose2d>(m.Nodes.Single(nd => nd.Layer is ConvTranspose2d).Layer);
        Assert.Equal((strides[0], strides[1], dil[0], dil[1]), (ct.Stride, ct.StrideW, ct.Dilation, ct.DilationW));
        // exported back: ONNX Runtime reads the engine's own file with the engine's logits
        var x = Rand(2 * 4 * 5 * 4, 75, 0, 1);
        using var xt = be.FromArray(x, 2, 4, 5, 4);
        var eng = m.Forward(xt).ToArray();
        var path = Path.Combine(Dir, $"ctu_{tag}_exported.onnx");
        OnnxExporter.Save(m, path);
        AssertClose(RunOrt(path, x, new[] { 2, 4, 5, 4 }), eng, Rtol, AtolFrac, "exported ConvTranspose: ONNX Runtime vs engine");
    }

    static long[] L(int[] v) => v.Select(e => (long)e).ToArray();

    /// <summary>ConvTranspose pads that no output_padding below the stride can express fail with one line naming the node.</summary>
    [Fact]
    public void ConvTransposeInexpressiblePadsFailClearly()
    {
        using var be = new CpuBackend();
        var gp = new GraphProto { Name = "ct" };
        gp.Input.Add(Value("x", "N", 2, 3, 3));
        gp.Initializer.Add(Floats("w", Rand(2 * 2 * 9, 76, -0.5f, 0.5f), new long[] { 2, 2, 3, 3 }));
        gp.Node.Add(Node("ConvTranspose", "up_odd", new[] { "x", "w" }, new[] { "c" }, Ints("strides", 2, 2), Ints("pads", 0, 0, 2, 0)));
        gp.Node.Add(Node("Flatten", "flat", new[] { "c" }, new[] { "y" }));
        gp.Output.Add(Value("y", "N", 2 * 5 * 7));
        var path = Path.Combine(Dir, "ct_bad_pads.onnx");
        Save(Model(gp, 13), path);
        var e = Assert.Throws<PerturbException>(() => OnnxImporter.Load(path, be));
        Assert.Contains("up_odd", e.Message);
        Assert.Contains("pads 0/2", e.Message);
    }

    /// <summary>A Softmax head, a Concat, and a Reshape that restates the shape; unused branches are dropped.</summary>
    [Fact]
    public void ConcatSoftmaxAndDeadBranch()
    {
        using var be = new CpuBackend();
        var g = new GraphProto { Name = "cat" };
        g.Input.Add(Value("x", 1, 3, 4, 4));
        g.Initializer.Add(Floats("w", Rand(2 * 3 * 9, 71, -0.5f, 0.5f), new long[] { 2, 3, 3, 3 }));
        g.Initializer.Add(Int64s("same", 1, 5, 4, 4));
        g.Initializer.Add(Floats("fc", Rand(5 * 4, 72), new long[] { 5, 4 }));
        g.Node.Add(Node("Conv", "conv", new[] { "x", "w" }, new[] { "c" }, Ints("pads", 1, 1, 1, 1)));
        g.Node.Add(Node("Concat", "cat", new[] { "c", "x" }, new[] { "k" }, Int("axis", -3)));
        g.Node.Add(Node("Reshape", "restate", new[] { "k", "same" }, new[] { "k2" }));
        g.Node.Add(Node("Sigmoid", "dead", new[] { "k2" }, new[] { "unused" }));
        g.Node.Add(Node("GlobalAveragePool", "gap", new[] { "k2" }, new[] { "g" }));
        g.Node.Add(Node("Flatten", "flat", new[] { "g" }, new[] { "f" }));
        g.Node.Add(Node("Gemm", "fc", new[] { "f", "fc" }, new[] { "z" }));
        g.Node.Add(Node("Softmax", "softmax", new[] { "z" }, new[] { "y" }, Int("axis", 1)));
        g.Output.Add(Value("y", 1, 4));
        using var m = Compare(Model(g, 12), "concat.onnx", new[] { 1, 3, 4, 4 }, be);
        Assert.DoesNotContain(m.Nodes, n => n.Layer.Name == "dead");
        Assert.Equal("Linear", m.Nodes[^1].Layer.Type);
        Assert.Equal("Softmax", m.Info["onnx.ending_op"]);
    }

    /// <summary>PyTorch's x.view(x.size(0), -1) with a dynamic batch: Shape → Gather → Unsqueeze → Concat → Reshape.</summary>
    [Theory]
    [InlineData(11)]
    [InlineData(13)]
    public void ViewBySizeOfBatch(int opset)
    {
        using var be = new CpuBackend();
        var g = new GraphProto { Name = "view" };
        g.Input.Add(Value("x", "batch", 2, 3, 3));
        g.Initializer.Add(Floats("w", Rand(4 * 2 * 9, 81, -0.5f, 0.5f), new long[] { 4, 2, 3, 3 }));
        g.Initializer.Add(Floats("fc", Rand(3 * 36, 82), new long[] { 3, 36 }));
        g.Node.Add(Node("Conv", "/conv/Conv", new[] { "x", "w" }, new[] { "c" }, Ints("pads", 1, 1, 1, 1)));
        g.Node.Add(Node("Shape", "/Shape", new[] { "c" }, new[] { "s" }));
        g.Node.Add(Node("Constant", "/Constant", new string[0], new[] { "zero" }, TensorAttr("value", new TensorProto { DataType = 7, Int64Data = { 0 } })));
        g.Node.Add(Node("Gather", "/Gather", new[] { "s", "zero" }, new[] { "b" }, Int("axis", 0)));
        if (opset < 13) g.Node.Add(Node("Unsqueeze", "/Unsqueeze", new[] { "b" }, new[] { "b1" }, Ints("axes", 0)));
        else
        {
            g.Initializer.Add(Int64s("axes0", 0));
            g.Node.Add(Node("Unsqueeze", "/Unsqueeze", new[] { "b", "axes0" }, new[] { "b1" }));
        }
        g.Initializer.Add(Int64s("minus1", -1));
        g.Node.Add(Node("Concat", "/Concat", new[] { "b1", "minus1" }, new[] { "shape" }, Int("axis", 0)));
        g.Node.Add(Node("Reshape", "/Reshape", new[] { "c", "shape" }, new[] { "f" }));
        g.Node.Add(Node("Gemm", "/fc/Gemm", new[] { "f", "fc" }, new[] { "y" }, Int("transB", 1)));
        g.Output.Add(Value("y", "batch", 3));
        using var m = Compare(Model(g, opset), $"view{opset}.onnx", new[] { 4, 2, 3, 3 }, be);
        Assert.Equal(new[] { "Conv2d", "Flatten", "Linear" }, m.Nodes.Select(n => n.Layer.Type));
    }
}
