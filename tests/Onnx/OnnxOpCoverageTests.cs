using Perturb.Engine;
using Perturb.Engine.Backends;
using Perturb.Engine.IO;
using Perturb.Engine.Nn;
using Perturb.Engine.Onnx.Proto;
using Perturb.Tests.Nn;
using Xunit.Abstractions;
using static Perturb.Tests.Onnx.Ox;

namespace Perturb.Tests.Onnx;

/// <summary>
/// The ops of the list that PyTorch 1.13 does not emit into the fixtures (MatMul with a constant on the left,
/// a constant vector or a batched constant; Reduce* with axes as an input (opset 18) and keepdims both ways, ReduceL2
/// and ReduceMin; Gelu (opset 20); GroupNormalization (opsets 18 and 21); LayerNormalization over several axes;
/// Upsample (opsets 7 and 9)), each as a hand-built graph that must
/// (1) match ONNX Runtime on the same file within 1e-4 relative,
/// (2) pass the double-precision finite-difference check of its input (and weight) gradients, and
/// (3) export back to ONNX that ONNX Runtime runs to the engine's outputs.
/// </summary>
public class OnnxOpCoverageTests : TempDirTest
{
    const double Rtol = 1e-4, AtolFrac = 1e-5;
    readonly ITestOutputHelper _out;
    public OnnxOpCoverageTests(ITestOutputHelper output) { _out = output; }

    void Check(GraphProto g, int opset, string file, int[] shape, Func<Model, bool>? expect = null)
    {
        using var be = new CpuBackend();
        var path = Path.Combine(Dir, file);
        Save(Model(g, opset), path);
        var x = Rand(shape.Aggregate(1, (a, b) => a * b), 19, 0.05f, 0.95f);
        using var m = ModelFile.Load(path, be);
        var eng = RunEngine(m, x, shape);
        var (abs, rel) = AssertClose(RunOrt(path, x, shape), eng, Rtol, AtolFrac, file);
        _out.WriteLine($"{file}: engine vs ONNX Runtime max |diff| {abs:G3}, max rel {rel:G3}");
        if (expect != null) Assert.True(expect(m), $"{file}: the imported graph is not the expected one");
        GradCheckTests.Check(m, shape[0], false, maxPerTensor: 24);
        var back = Path.Combine(Dir, "export_" + file);
        ModelFile.Save(m, back);
        AssertClose(RunOrt(back, x, shape), RunEngine(m, x, shape), Rtol, AtolFrac, "export of " + file);
    }

    static GraphProto Graph(string name, params object[] inDims)
    {
        var g = new GraphProto { Name = name };
        g.Input.Add(Value("x", new object[] { "N" }.Concat(inDims).ToArray()));
        return g;
    }

    /// <summary>Flattens each named tensor of the graph (from axis 1) and concatenates them into the output y [N, total].</summary>
    static void Outputs(GraphProto g, int total, params string[] names)
    {
        foreach (var nm in names) g.Node.Add(Node("Flatten", nm + "_flat", new[] { nm }, new[] { nm + "_f" }));
        g.Node.Add(Node("Concat", "cat", names.Select(nm => nm + "_f").ToArray(), new[] { "y" }, Int("axis", 1)));
        g.Output.Add(Value("y", "N", total));
    }

    [Fact]
    public void MatMulWithConstantsOnEitherSideOfAnyRank()
    {
        var g = Graph("matmul", 2, 4, 5);
        g.Initializer.Add(Floats("c1", Rand(3 * 4, 1), new long[] { 3, 4 }));          // [3, 4] x [N, 2, 4, 5] -> [N, 2, 3, 5]
        g.Initializer.Add(Floats("c2", Rand(2 * 5 * 3, 2), new long[] { 2, 5, 3 }));   // [N, 2, 4, 5] x [2, 5, 3] -> [N, 2, 4, 3]
        g.Initializer.Add(Floats("v", Rand(5, 3), new long[] { 5 }));                 // [N, 2, 4, 5] x [5] -> [N, 2, 4]
        g.Initializer.Add(Floats("u", Rand(4, 4), new long[] { 4 }));                 // [4] x [N, 2, 4, 5] -> [N, 2, 5]
        g.Initializer.Add(Floats("c5", Rand(2 * 3 * 4, 5), new long[] { 1, 2, 3, 4 })); // [1, 2, 3, 4] x [N, 2, 4, 5] -> [N, 2, 3, 5]
        g.Node.Add(Node("MatMul", "m1", new[] { "c1", "x" }, new[] { "m1" }));
        g.Node.Add(Node("MatMul", "m2", new[] { "x", "c2" }, new[] { "m2" }));
        g.Node.Add(Node("MatMul", "m3", new[] { "x", "v" }, new[] { "m3" }));
        g.Node.Add(Node("MatMul", "m4", new[] { "u", "x" }, new[] { "m4" }));
        g.Node.Add(Node("MatMul", "m5", new[] { "c5", "x" }, new[] { "m5" }));
        Outputs(g, 30 + 24 + 8 + 10 + 30, "m1", "m2", "m3", "m4", "m5");
        Check(g, 13, "matmul_consts.onnx", new[] { 2, 2, 4, 5 });
    }

    [Fact]
    public void MatMulAlongTheBatchFailsClearly()
    {
        using var be = new CpuBackend();
        var g = Graph("matmul_bad", 4);
        g.Initializer.Add(Floats("c", Rand(2 * 4 * 3, 1), new long[] { 2, 4, 3 }));   // [N, 4] is a matrix over the batch
        g.Node.Add(Node("MatMul", "mm_batch", new[] { "x", "c" }, new[] { "y" }));
        g.Output.Add(Value("y", 2, "N", 3));
        var path = Path.Combine(Dir, "matmul_bad.onnx");
        Save(Model(g, 13), path);
        var e = Assert.Throws<PerturbException>(() => ModelFile.Load(path, be));
        Assert.Contains("mm_batch", e.Message);
        Assert.Contains("batch", e.Message);
    }

    /// <summary>Every reduction at opset 18 (axes as an input) with keepdims 1 and 0, and at opset 13 (axes as an attribute, ReduceSum's as an input).</summary>
    [Theory, InlineData(18), InlineData(13)]
    public void ReductionsOverAnyAxes(int opset)
    {
        var g = Graph("reduce", 3, 4, 5);
        var ops = new[] { "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceL2" };
        var names = new List<string>();
        int total = 0;
        foreach (var op in ops)
        {
            // axes 1 and 3 of [N, 3, 4, 5] kept as 1s: [N, 1, 4, 1]; the last axis dropped: [N, 3, 4]
            foreach (var (axes, keep) in new[] { (new long[] { 1, 3 }, 1L), (new long[] { -1 }, 0L) })
            {
                string nm = $"{op}_{names.Count}";
                bool asInput = opset >= 18 || op == "ReduceSum";
                var ins = new List<string> { "x" };
                var attrs = new List<AttributeProto> { Int("keepdims", keep) };
                if (asInput) { g.Initializer.Add(Int64s(nm + "_axes", axes)); ins.Add(nm + "_axes"); }
                else attrs.Add(Ints("axes", axes));
                g.Node.Add(Node(op, nm, ins.ToArray(), new[] { nm }, attrs.ToArray()));
                names.Add(nm);
                total += axes.Length == 2 ? 4 : 12;
            }
        }
        Outputs(g, total, names.ToArray());
        Check(g, opset, $"reduce_op{opset}.onnx", new[] { 2, 3, 4, 5 });
    }

    [Theory, InlineData("none"), InlineData("tanh")]
    public void GeluAtOpset20(string approximate)
    {
        var g = Graph("gelu", 3, 4);
        g.Initializer.Add(Floats("shift", new[] { 0.5f }, new long[] { 1 }));
        g.Initializer.Add(Floats("scale", new[] { 6f }, new long[] { 1 }));
        g.Node.Add(Node("Sub", "centre", new[] { "x", "shift" }, new[] { "c" }));
        g.Node.Add(Node("Mul", "wide", new[] { "c", "scale" }, new[] { "w" }));   // (-2.7, 2.7): both tails and the kink
        g.Node.Add(Node("Gelu", "gelu", new[] { "w" }, new[] { "gl" }, Str("approximate", approximate)));
        Outputs(g, 12, "gl");
        Check(g, 20, $"gelu_{approximate}.onnx", new[] { 2, 3, 4 });
    }

    /// <summary>GroupNormalization: opset 18's per-group scale and bias, opset 21's per-channel ones.</summary>
    [Theory, InlineData(18), InlineData(21)]
    public void GroupNormalization(int opset)
    {
        var g = Graph("groupnorm", 6, 3, 4);
        int per = opset >= 21 ? 6 : 3;
        g.Initializer.Add(Floats("scale", Rand(per, 7, 0.5f, 1.5f), new long[] { per }));
        g.Initializer.Add(Floats("bias", Rand(per, 8, -0.5f, 0.5f), new long[] { per }));
        g.Node.Add(Node("GroupNormalization", "gn", new[] { "x", "scale", "bias" }, new[] { "gn" }, Int("num_groups", 3), Float("epsilon", 1e-3f)));
        g.Initializer.Add(Floats("w", Rand(4 * 2, 9), new long[] { 4, 2 }));
        g.Node.Add(Node("MatMul", "head", new[] { "gn", "w" }, new[] { "h" }));   // a non-uniform weighting, so the check sees every output
        Outputs(g, 6 * 3 * 2, "h");
        Check(g, opset, $"groupnorm_op{opset}.onnx", new[] { 2, 6, 3, 4 });
    }

    /// <summary>LayerNormalization over the last two axes (axis -2) and over C, H, W (axis 1).</summary>
    [Fact]
    public void LayerNormalizationOverSeveralAxes()
    {
        var g = Graph("layernorm", 2, 3, 4);
        g.Initializer.Add(Floats("s1", Rand(12, 10, 0.5f, 1.5f), new long[] { 3, 4 }));
        g.Initializer.Add(Floats("b1", Rand(12, 11, -0.5f, 0.5f), new long[] { 3, 4 }));
        g.Initializer.Add(Floats("s2", Rand(24, 12, 0.5f, 1.5f), new long[] { 2, 3, 4 }));
        g.Node.Add(Node("LayerNormalization", "ln_hw", new[] { "x", "s1", "b1" }, new[] { "l1" }, Int("axis", -2)));
        g.Node.Add(Node("LayerNormalization", "ln_chw", new[] { "x", "s2" }, new[] { "l2" }, Int("axis", 1), Float("epsilon", 1e-3f)));
        g.Node.Add(Node("Mul", "prod", new[] { "l1", "l2" }, new[] { "p" }));   // the sum of a normalised tensor is constant: weight it
        Outputs(g, 24, "p");
        Check(g, 17, "layernorm_axes.onnx", new[] { 2, 2, 3, 4 });
    }

    /// <summary>Upsample (nearest, then linear) with scales as an attribute (opset 7) and as an input (opset 9).</summary>
    [Theory, InlineData(7), InlineData(9)]
    public void Upsample(int opset)
    {
        var g = Graph("upsample", 2, 3, 4);
        foreach (var (nm, src, mode, scales) in new[] { ("up1", "x", "nearest", new[] { 1f, 1f, 2f, 3f }), ("up2", "up1", "linear", new[] { 1f, 1f, 2f, 1.5f }) })
        {
            if (opset >= 9)
            {
                g.Initializer.Add(Floats(nm + "_scales", scales, new long[] { 4 }));
                g.Node.Add(Node("Upsample", nm, new[] { src, nm + "_scales" }, new[] { nm }, Str("mode", mode)));
            }
            else
            {
                var a = new AttributeProto { Name = "scales", Type = AttributeProto.Types.AttributeType.Floats };
                a.Floats.AddRange(scales);
                g.Node.Add(Node("Upsample", nm, new[] { src }, new[] { nm }, Str("mode", mode), a));
            }
        }
        Outputs(g, 2 * 12 * 18, "up2");
        Check(g, opset, $"upsample_op{opset}.onnx", new[] { 2, 2, 3, 4 });
    }
}
