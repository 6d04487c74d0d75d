using System.Runtime.InteropServices;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Perturb.Engine;
using Perturb.Engine.Nn;
using Perturb.Engine.Onnx.Proto;

namespace Perturb.Tests.Onnx;

/// <summary>How a hand-built initializer stores its values.</summary>
public enum Storage { Raw, FloatData, Double, Half }

/// <summary>Builds ONNX graphs with the generated protobuf classes, and runs models in ONNX Runtime and in the engine.</summary>
static class Ox
{
    public static ModelProto Model(GraphProto g, int opset, long ir = 8)
    {
        var m = new ModelProto { IrVersion = ir, ProducerName = "perturb-tests", Graph = g };
        m.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = opset });
        return m;
    }

    /// <summary>A float tensor value: string dims are symbolic, int dims fixed.</summary>
    public static ValueInfoProto Value(string name, params object[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims)
            shape.Dim.Add(d is string s ? new TensorShapeProto.Types.Dimension { DimParam = s } : new TensorShapeProto.Types.Dimension { DimValue = Convert.ToInt64(d) });
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = 1, Shape = shape } } };
    }

    public static ValueInfoProto ValueOf(TensorProto t)
    {
        var shape = new TensorShapeProto();
        foreach (var d in t.Dims) shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
        return new ValueInfoProto { Name = t.Name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = t.DataType, Shape = shape } } };
    }

    public static NodeProto Node(string op, string name, string[] ins, string[] outs, params AttributeProto[] attrs)
    {
        var n = new NodeProto { OpType = op, Name = name };
        n.Input.AddRange(ins); n.Output.AddRange(outs); n.Attribute.AddRange(attrs);
        return n;
    }

    public static AttributeProto Int(string name, long v) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = v };
    public static AttributeProto Float(string name, float v) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = v };
    public static AttributeProto Str(string name, string v) => new() { Name = name, Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(v) };
    public static AttributeProto TensorAttr(string name, TensorProto t) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Tensor, T = t };
    public static AttributeProto Ints(string name, params long[] v)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(v);
        return a;
    }

    public static TensorProto Floats(string name, float[] data, long[] dims, Storage how = Storage.Raw)
    {
        var t = new TensorProto { Name = name };
        t.Dims.AddRange(dims);
        switch (how)
        {
            case Storage.Raw:
                t.DataType = 1; t.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(data.AsSpan())); break;
            case Storage.FloatData:
                t.DataType = 1; t.FloatData.AddRange(data); break;
            case Storage.Double:
                t.DataType = 11; t.DoubleData.AddRange(data.Select(v => (double)v)); break;
            case Storage.Half:
                t.DataType = 10; t.Int32Data.AddRange(data.Select(v => (int)BitConverter.HalfToUInt16Bits((Half)v))); break;
        }
        return t;
    }

    public static TensorProto Int64s(string name, params long[] v)
    {
        var t = new TensorProto { Name = name, DataType = 7 };
        t.Dims.Add(v.Length);
        t.Int64Data.AddRange(v);
        return t;
    }

    public static float[] Rand(int n, int seed, float lo = -1f, float hi = 1f)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => lo + (hi - lo) * (float)r.NextDouble()).ToArray();
    }

    /// <summary>Values exactly representable in float16 (for the half-precision initializer test).</summary>
    public static float[] HalfExact(float[] v) => v.Select(x => (float)(Half)x).ToArray();

    public static void Save(ModelProto m, string path) { using var f = File.Create(path); m.WriteTo(f); }

    public static float[] RunOrt(string path, float[] x, int[] shape)
    {
        using var opts = new SessionOptions { IntraOpNumThreads = 1, GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL };
        using var s = new InferenceSession(path, opts);
        var t = new DenseTensor<float>(x, shape);
        using var res = s.Run(new[] { NamedOnnxValue.CreateFromTensor(s.InputMetadata.Keys.First(), t) });
        return res.First().AsTensor<float>().ToArray();
    }

    public static float[] RunEngine(Model m, float[] x, int[] shape)
    {
        m.Eval();
        using var t = m.Backend.FromArray(x, shape);
        return m.Forward(t).ToArray();
    }

    /// <summary>The engine's probabilities (flattened) of a model, as the graph with its ending would give them.</summary>
    public static float[] RunProbabilities(Model m, float[] x, int[] shape)
    {
        m.Eval();
        using var t = m.Backend.FromArray(x, shape);
        var p = Losses.Probabilities(m, m.Forward(t));
        bool one = m.NumOutputs == 1, log = m.Info.GetValueOrDefault("onnx.ending_op") == "LogSoftmax";
        return p.SelectMany(row => one ? new[] { row[1] } : row).Select(v => log ? MathF.Log(v) : v).ToArray();
    }

    /// <summary>
    /// Asserts |a - b| &lt;= rtol * |b| + atol elementwise (atol is a floor for values near zero, scaled by the
    /// largest |b|); returns the largest absolute and relative differences.
    /// </summary>
    public static (double Abs, double Rel) AssertClose(float[] expected, float[] actual, double rtol, double atolFrac, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double scale = expected.Max(v => Math.Abs((double)v)), atol = atolFrac * Math.Max(scale, 1e-3);
        double maxAbs = 0, maxRel = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i], a = actual[i], d = Math.Abs(e - a);
            Assert.False(double.IsNaN(a), $"{what}: NaN at {i}");
            maxAbs = Math.Max(maxAbs, d);
            maxRel = Math.Max(maxRel, d / Math.Max(Math.Abs(e), 1e-12));
            Assert.True(d <= rtol * Math.Abs(e) + atol, $"{what}[{i}]: expected {e:G9}, got {a:G9} (|diff| {d:G3})");
        }
        return (maxAbs, maxRel);
    }
}
