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
                case Concat: Node("Concat", _ins).Int("axis", 1); break;
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
