using System.Runtime.InteropServices;
using Google.Protobuf;
using Perturb.Engine.IO;
using Perturb.Engine.Nn;
using Perturb.Engine.Onnx.Proto;

namespace Perturb.Engine.Onnx;

/// <summary>
/// Writes an engine <see cref="Model"/> as ONNX (opset 17, IR version 8), readable by ONNX Runtime. The input is
/// "input" [N, C, H, W] with a symbolic batch "N", the output "output". Weights and buffers are float32 raw_data
/// initializers named with the engine's parameter names (layer.param); nodes carry the layer names.
/// Conv2d → Conv; Linear → Gemm(transB=1); BatchNorm2d → BatchNormalization; activations → Relu, LeakyRelu, Sigmoid,
/// Tanh; Pool2d → MaxPool / AveragePool; GlobalAvgPool → GlobalAveragePool; Flatten → Flatten; Dropout → Dropout with
/// its ratio (identity at inference); Add, Mul, Concat (axis 1), Softmax (axis -1); Normalize → Sub then Div by
/// [1, C, 1, 1] constants; Affine → Mul then Add; Clip → Clip with scalar bounds.
/// </summary>
public static class OnnxExporter
{
    public const int Opset = 17;
    public const long IrVersion = 8;

    public static void Save(Model model, string path)
    {
        var proto = ToProto(model);
        AtomicFile.Write(path, s => proto.WriteTo(s));
    }

    public static ModelProto ToProto(Model model)
    {
        var g = new GraphProto { Name = model.Info.TryGetValue("arch", out var arch) ? arch : "perturb" };
        g.Input.Add(ValueInfo("input", model.InputShape));
        var names = new string[model.Nodes.Count];
        // A Softmax/LogSoftmax/Sigmoid ending removed at import is written back, so the file computes what it did.
        string? ending = model.Info.TryGetValue("onnx.ending_op", out var e) && e is "Softmax" or "LogSoftmax" or "Sigmoid" ? e : null;
        for (int i = 0; i < model.Nodes.Count; i++)
        {
            var node = model.Nodes[i];
            var l = node.Layer;
            var ins = node.Inputs.Select(j => j < 0 ? "input" : names[j]).ToArray();
            names[i] = i == model.Nodes.Count - 1 ? (ending == null ? "output" : "logits") : l.Name;
            new Writer(g, l, ins, names[i]).Emit();
        }
        if (ending != null)
        {
            var en = new NodeProto { OpType = ending, Name = "ending_" + ending.ToLowerInvariant() };
            en.Input.Add("logits"); en.Output.Add("output");
            if (ending != "Sigmoid") en.Attribute.Add(new AttributeProto { Name = "axis", Type = AttributeProto.Types.AttributeType.Int, I = -1 });
            g.Node.Add(en);
        }
        g.Output.Add(ValueInfo("output", model.OutputShape));
        var mp = new ModelProto
        {
            IrVersion = IrVersion, ProducerName = "perturb", ProducerVersion = typeof(OnnxExporter).Assembly.GetName().Version?.ToString() ?? "",
            Graph = g,
        };
        mp.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = Opset });
        foreach (var kv in model.Info) mp.MetadataProps.Add(new StringStringEntryProto { Key = "perturb." + kv.Key, Value = kv.Value });
        return mp;
    }

    static ValueInfoProto ValueInfo(string name, int[] perSample)
    {
        var shape = new TensorShapeProto();
        shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimParam = "N" });
        foreach (var d in perSample) shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = shape } },
        };
    }

    /// <summary>A float32 initializer with its data in raw_data (little-endian).</summary>
    internal static TensorProto FloatTensor(string name, float[] data, params long[] dims)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
        t.Dims.AddRange(dims);
        if (!BitConverter.IsLittleEndian) throw new PerturbException("ONNX export needs a little-endian machine");
        t.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(data.AsSpan()));
        return t;
    }

    sealed class Writer
    {
        readonly GraphProto _g;
        readonly Layer _l;
        readonly string[] _ins;
        readonly string _out;

        public Writer(GraphProto g, Layer l, string[] ins, string output) { _g = g; _l = l; _ins = ins; _out = output; }

        NodeProto NodeAs(string op, string name, string output, params string[] inputs)
        {
            var n = new NodeProto { OpType = op, Name = name };
            n.Input.AddRange(inputs);
            n.Output.Add(output);
            _g.Node.Add(n);
            return n;
        }

        NodeProto Node(string op, params string[] inputs) => NodeAs(op, _l.Name, _out, inputs);

        string Param(string p) => Param(p, _l.Parameters.First(q => q.Name == p).Value.Shape.Select(d => (long)d).ToArray());

        string Param(string p, long[] dims)
        {
            var prm = _l.Parameters.First(q => q.Name == p);
            string name = _l.Name + "." + p;
            _g.Initializer.Add(FloatTensor(name, prm.Value.ToArray(), dims));
            return name;
        }

        string Const(string suffix, float[] v, params long[] dims)
        {
            string name = _l.Name + "." + suffix;
            _g.Initializer.Add(FloatTensor(name, v, dims));
            return name;
        }

        string Ints64(string suffix, long[] v)
        {
            string name = _l.Name + "." + suffix;
            var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Int64 };
            t.Dims.Add(v.Length);
            t.Int64Data.AddRange(v);
            _g.Initializer.Add(t);
            return name;
        }

        /// <summary>Element-wise functions: one ONNX op where opset 17 has it, else a short composition.</summary>
        void EmitUnary(UnaryLayer u)
        {
            string x = _ins[0], nm = _l.Name;
            switch (u.Op)
            {
                case UnaryOp.HardSigmoid: Node("HardSigmoid", x).Float("alpha", u.A).Float("beta", u.B); break;
                case UnaryOp.Elu: Node("Elu", x).Float("alpha", u.A); break;
                case UnaryOp.Selu: Node("Selu", x).Float("alpha", u.A).Float("gamma", u.B); break;
                case UnaryOp.Pow: Node("Pow", x, Const("exponent", new[] { u.A })); break;
                case UnaryOp.Silu:
                    NodeAs("Sigmoid", nm + ".sigmoid", nm + ".s", x);
                    NodeAs("Mul", nm, _out, x, nm + ".s");
                    break;
                case UnaryOp.Gelu:
                    // x/2 * (1 + erf(x / sqrt 2))
                    NodeAs("Mul", nm + ".scale", nm + ".u", x, Const("inv_sqrt2", new[] { 0.70710678118654752f }));
                    NodeAs("Erf", nm + ".erf", nm + ".e", nm + ".u");
                    NodeAs("Add", nm + ".one", nm + ".p", nm + ".e", Const("one", new[] { 1f }));
                    NodeAs("Mul", nm + ".half", nm + ".h", x, Const("half", new[] { 0.5f }));
                    NodeAs("Mul", nm, _out, nm + ".h", nm + ".p");
                    break;
                case UnaryOp.GeluTanh:
                    // x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
                    NodeAs("Pow", nm + ".cube", nm + ".c", x, Const("three", new[] { 3f }));
                    NodeAs("Mul", nm + ".k", nm + ".ck", nm + ".c", Const("k", new[] { 0.044715f }));
                    NodeAs("Add", nm + ".inner", nm + ".i", x, nm + ".ck");
                    NodeAs("Mul", nm + ".scale", nm + ".u", nm + ".i", Const("sqrt_2_over_pi", new[] { 0.79788456080286536f }));
                    NodeAs("Tanh", nm + ".tanh", nm + ".t", nm + ".u");
                    NodeAs("Add", nm + ".one", nm + ".p", nm + ".t", Const("one", new[] { 1f }));
                    NodeAs("Mul", nm + ".half", nm + ".h", x, Const("half", new[] { 0.5f }));
                    NodeAs("Mul", nm, _out, nm + ".h", nm + ".p");
                    break;
                default:
                    Node(u.Op.ToString(), x);   // HardSwish, Softplus, Erf, Sqrt, Exp, Log, Neg, Reciprocal, Abs, Sigmoid, Tanh, Relu
                    break;
            }
        }

        /// <summary>Broadcast shape of a per-channel constant of length c against this layer's input.</summary>
        long[] ChannelDims(int c) => _l.InShapes[0].Length == 3 ? new long[] { 1, c, 1, 1 } : new long[] { 1, c };

        public void Emit()
        {
            switch (_l)
            {
                case Conv2d c:
                {
                    var ins = new List<string> { _ins[0], Param("weight") };
                    if (c.HasBias) ins.Add(Param("bias"));
                    Node("Conv", ins.ToArray())
                        .Ints("kernel_shape", c.KernelH, c.KernelW).Ints("strides", c.Stride, c.StrideW)
                        .Ints("pads", c.Padding, c.PaddingW, c.Padding, c.PaddingW).Ints("dilations", c.Dilation, c.DilationW)
                        .Int("group", c.Groups);
                    break;
                }
                case ConvTranspose2d ct:
                {
                    var ins = new List<string> { _ins[0], Param("weight") };
                    if (ct.HasBias) ins.Add(Param("bias"));
                    Node("ConvTranspose", ins.ToArray())
                        .Ints("kernel_shape", ct.KernelH, ct.KernelW).Ints("strides", ct.Stride, ct.StrideW)
                        .Ints("pads", ct.Padding, ct.PaddingW, ct.Padding, ct.PaddingW).Ints("dilations", ct.Dilation, ct.DilationW)
                        .Ints("output_padding", ct.OutputPadding, ct.OutputPaddingW).Int("group", ct.Groups);
                    break;
                }
                case Linear lin when lin.InShapes[0].Length > 1:
                {
                    // over the last axis of [N, ..., In]: MatMul by the transposed weight, then the bias
                    var w = lin.Weight.Value.ToArray();
                    var wt = new float[w.Length];
                    for (int o = 0; o < lin.Out; o++) for (int i = 0; i < lin.In; i++) wt[i * lin.Out + o] = w[o * lin.In + i];
                    var wname = Const("weight_t", wt, lin.In, lin.Out);
                    if (!lin.HasBias) { Node("MatMul", _ins[0], wname); break; }
                    var mid = _l.Name + ".matmul";
                    NodeAs("MatMul", _l.Name, mid, _ins[0], wname);
                    NodeAs("Add", _l.Name + ".bias", _out, mid, Param("bias"));
                    break;
                }
                case Linear lin:
                {
                    var ins = new List<string> { _ins[0], Param("weight") };
                    if (lin.HasBias) ins.Add(Param("bias"));
                    Node("Gemm", ins.ToArray()).Int("transB", 1);
                    break;
                }
                case BatchNorm2d bn:
                    Node("BatchNormalization", _ins[0], Param("weight"), Param("bias"), Param("running_mean"), Param("running_var"))
                        .Float("epsilon", bn.Eps).Float("momentum", 1f - bn.Momentum);
                    break;
                case Normalize nz:
                {
                    var mid = _l.Name + ".centered";
                    NodeAs("Sub", _l.Name, mid, _ins[0], Const("mean", nz.Mean, ChannelDims(nz.Mean.Length)));
                    NodeAs("Div", _l.Name + ".div", _out, mid, Const("std", nz.Std, ChannelDims(nz.Std.Length)));
                    break;
                }
                case ChannelAffineLayer af:
                {
                    var mid = _l.Name + ".scaled";
                    NodeAs("Mul", _l.Name, mid, _ins[0], Param("scale", ChannelDims(af.Channels)));
                    NodeAs("Add", _l.Name + ".add", _out, mid, Param("shift", ChannelDims(af.Channels)));
                    break;
                }
                case ActivationLayer a:
                    var an = Node(a.Function switch { Activation.Relu => "Relu", Activation.LeakyRelu => "LeakyRelu", Activation.Sigmoid => "Sigmoid", _ => "Tanh" }, _ins[0]);
                    if (a.Function == Activation.LeakyRelu) an.Float("alpha", a.Alpha);
                    break;
                case ClipLayer cl:
                    Node("Clip", _ins[0], float.IsFinite(cl.Min) ? Const("min", new[] { cl.Min }) : "", float.IsFinite(cl.Max) ? Const("max", new[] { cl.Max }) : "");
                    break;
                case Pool2d p:
                {
                    var n = Node(p.IsMax ? "MaxPool" : "AveragePool", _ins[0])
                        .Ints("kernel_shape", p.KernelH, p.KernelW).Ints("strides", p.StrideH, p.StrideW)
                        .Ints("pads", p.PadH, p.PadW, p.PadH, p.PadW).Int("ceil_mode", p.CeilMode ? 1 : 0);
                    if (!p.IsMax) n.Int("count_include_pad", p.CountIncludePad ? 1 : 0);
                    break;
                }
                case GlobalAvgPool: Node("GlobalAveragePool", _ins[0]); break;
                case Flatten: Node("Flatten", _ins[0]).Int("axis", 1); break;
                case Dropout d: Node("Dropout", _ins[0], Const("ratio", new[] { d.P })); break;
                case AddLayer: Node("Add", _ins[0], _ins[1]); break;
                case MulLayer: Node("Mul", _ins[0], _ins[1]); break;
                case Concat cat: Node("Concat", _ins).Int("axis", cat.Axis + 1); break;
                case UnaryLayer u: EmitUnary(u); break;
                case BinaryLayer b:
                {
                    var op = b.Op.ToString();
                    if (b.ConstShape == null) { Node(op, _ins[0], _ins[1]); break; }
                    var k = Param("constant", b.ConstShape.Select(d => (long)d).ToArray());
                    Node(op, b.ConstLeft ? k : _ins[0], b.ConstLeft ? _ins[0] : k);
                    break;
                }
                case ReduceLayer r:
                {
                    var axes = r.Axes.Select(a => (long)a + 1).ToArray();
                    string op = r.Op switch { ReduceOp.Mean => "ReduceMean", ReduceOp.Sum => "ReduceSum", ReduceOp.Max => "ReduceMax", ReduceOp.Min => "ReduceMin", _ => "ReduceL2" };
                    // opset 17: ReduceSum takes its axes as an input, the others as an attribute
                    var node = r.Op == ReduceOp.Sum ? Node(op, _ins[0], Ints64("axes", axes)) : Node(op, _ins[0]).Ints("axes", axes);
                    node.Int("keepdims", r.KeepDims ? 1 : 0);
                    break;
                }
                case TransposeLayer t: Node("Transpose", _ins[0]).Ints("perm", t.Perm.Select(v => (long)v + 1).Prepend(0L).ToArray()); break;
                case ReshapeLayer rs: Node("Reshape", _ins[0], Ints64("shape", rs.Shape.Select(d => (long)d).Prepend(0L).ToArray())); break;
                case ExpandLayer ex: Node("Expand", _ins[0], Ints64("shape", ex.Shape.Select(d => (long)d).Prepend(1L).ToArray())); break;
                case TileLayer tl: Node("Tile", _ins[0], Ints64("repeats", tl.Repeats.Select(d => (long)d).Prepend(1L).ToArray())); break;
                case SliceLayer sl:
                {
                    int r = sl.Shape.Length;
                    var axes = Enumerable.Range(1, r).Select(a => (long)a).ToArray();
                    // one past the last element in the step's direction; before the first element: INT64_MIN (ONNX's "to the start")
                    var ends = Enumerable.Range(0, r).Select(d => (long)sl.Starts[d] + (long)(sl.Shape[d] - 1) * sl.Steps[d] + Math.Sign(sl.Steps[d]))
                        .Select(e => e < 0 ? long.MinValue : e).ToArray();
                    Node("Slice", _ins[0], Ints64("starts", sl.Starts.Select(v => (long)v).ToArray()), Ints64("ends", ends), Ints64("axes", axes),
                        Ints64("steps", sl.Steps.Select(v => (long)v).ToArray()));
                    break;
                }
                case GatherLayer ga: Node("Gather", _ins[0], Ints64("indices", ga.Indices.Select(v => (long)v).ToArray())).Int("axis", ga.Axis + 1); break;
                case SoftmaxLayer sm: Node("Softmax", _ins[0]).Int("axis", sm.Axis < 0 ? -1 : sm.Axis + 1); break;
                default: throw new PerturbException($"layer '{_l.Name}' of type {_l.Type} has no ONNX export");
            }
        }
    }
}

static class NodeExt
{
    static AttributeProto Add(NodeProto n, string name, AttributeProto.Types.AttributeType t)
    {
        var a = new AttributeProto { Name = name, Type = t };
        n.Attribute.Add(a);
        return a;
    }
    public static NodeProto Int(this NodeProto n, string name, long v) { Add(n, name, AttributeProto.Types.AttributeType.Int).I = v; return n; }
    public static NodeProto Float(this NodeProto n, string name, float v) { Add(n, name, AttributeProto.Types.AttributeType.Float).F = v; return n; }
    public static NodeProto Ints(this NodeProto n, string name, params long[] v) { Add(n, name, AttributeProto.Types.AttributeType.Ints).Ints.AddRange(v); return n; }
}
