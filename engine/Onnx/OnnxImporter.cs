using System.Buffers.Binary;
using System.Text;
using System.Text.RegularExpressions;
using Google.Protobuf;
using Perturb.Engine.Nn;
using Perturb.Engine.Onnx.Proto;

namespace Perturb.Engine.Onnx;

/// <summary>
/// Reads an ONNX model (opsets 7 to 21) into an engine <see cref="Model"/>. The graph input has a free batch; tensors
/// inside have any per-sample rank. Conv → Conv2d (a preceding zero Pad folded into its padding; auto_pad resolved);
/// Gemm, MatMul by a constant → Linear (over the last axis; a following constant Add folded into its bias);
/// Add/Sub/Mul/Div by a scalar or per-channel constant → Affine (Sub then Div on the input → Normalize); other
/// Add/Sub/Mul/Div/Pow/Max/Min → Binary with NumPy broadcasting (between computed tensors of equal rank, or with a
/// constant of any broadcasting shape); element-wise functions → activations or Unary; ReduceMean over H, W →
/// GlobalAvgPool, other reductions → Reduce; LayerNormalization, InstanceNormalization, GroupNormalization → composed
/// of Reduce, Binary and Unary; Transpose, Reshape/Flatten/Squeeze/Unsqueeze, Slice/Split/Gather of constant
/// indices, Concat, Expand, Tile → layout layers; pooling, BatchNormalization (eval), Dropout, Softmax. Constants and
/// the shape arithmetic of x.view(x.size(0), -1) are folded. A final Softmax, LogSoftmax or Sigmoid is removed (see
/// <c>StripProbabilityEnding</c>). The operator table (<c>Ops</c>) is checked against the whole graph first, so an
/// unsupported operator fails with one line naming it, its node and every other missing operator.
/// </summary>
public static class OnnxImporter
{
    public static Model Load(string path, IBackend be)
    {
        byte[] bytes = IO.SafeFiles.ReadAllBytes(path, "model file");
        ModelProto mp;
        try { mp = ModelProto.Parser.ParseFrom(bytes); }
        catch (InvalidProtocolBufferException e) { throw new PerturbException($"{path}: not a valid ONNX file (the protobuf does not parse: {e.Message})"); }
        try { return Import(mp, be); }
        catch (PerturbException e) { throw new PerturbException($"{path}: {e.Message}", e.ExitCode, e); }
    }

    /// <summary>Imports a parsed model.</summary>
    public static Model Import(ModelProto mp, IBackend be) => new Importer(mp, be).Run();
}

sealed partial class Importer
{
    sealed class Const
    {
        public int[] Dims = Array.Empty<int>();
        public double[] V = Array.Empty<double>();
        public int Count => V.Length;
    }

    /// <summary>A tensor the network computes: the engine node making it and its per-sample shape. A pending Pad carries its pads.</summary>
    sealed class Dyn
    {
        public int Node;
        public int[] Shape = Array.Empty<int>();
        public int[]? Pads;            // top, left, bottom, right of a folded Pad still to be absorbed
        public int[]? SourceShape;     // the shape before that Pad
        public string PadNode = "";
    }

    sealed class PNode
    {
        public string Name = "";
        public Layer Layer = null!;
        public int[] Inputs = Array.Empty<int>();
        public int[] OutShape = Array.Empty<int>();
        public bool NonNegative;
        public Dictionary<string, float[]> W = new();
    }

    readonly ModelProto _mp;
    readonly IBackend _be;
    readonly Dictionary<string, Const> _consts = new();
    readonly Dictionary<string, Dyn> _dyn = new();
    readonly List<PNode> _nodes = new();
    readonly Dictionary<string, int> _uses = new();
    readonly HashSet<string> _names = new();
    /// <summary>LogSoftmax nodes (imported as Softmax; only allowed as the removed final op): node index → ONNX name.</summary>
    readonly Dictionary<int, string> _logSoftmax = new();
    int _opset;
    int[] _inputShape = Array.Empty<int>();
    NodeProto _cur = null!;

    public Importer(ModelProto mp, IBackend be) { _mp = mp; _be = be; }

    // ------------------------------------------------------------------ driver

    public Model Run()
    {
        var g = _mp.Graph;
        if (g == null || (g.Node.Count == 0 && g.Output.Count == 0)) throw new PerturbException("not an ONNX model (it holds no graph)");
        _opset = OpsetVersion();
        foreach (var t in g.Initializer) _consts[t.Name] = Decode(t, $"initializer '{t.Name}'");
        ReadInput(g);
        foreach (var n in g.Node)
            foreach (var i in n.Input) if (i.Length > 0) _uses[i] = _uses.GetValueOrDefault(i) + 1;
        foreach (var o in g.Output) _uses[o.Name] = _uses.GetValueOrDefault(o.Name) + 1;

        var missing = Unsupported(g);
        if (missing.Count > 0) throw new PerturbException(UnsupportedMessage(missing));
        foreach (var n in g.Node)
        {
            _cur = n;
            // A node missing an input, output or attribute the operator needs (a damaged or hand-made file) is one
            // error naming the node, not an index or key exception from deep inside the conversion.
            try { Convert(n); }
            catch (Exception e) when (e is ArgumentOutOfRangeException or IndexOutOfRangeException or KeyNotFoundException or InvalidOperationException or NullReferenceException or InvalidCastException or OverflowException)
            { throw Err(n, "malformed node: an input, output or attribute it needs is missing or of the wrong kind"); }
        }
        if (g.Output.Count == 0) throw new PerturbException("the graph declares no output");
        var outName = g.Output[0].Name;
        if (_consts.ContainsKey(outName)) throw new PerturbException($"graph output '{outName}' is a constant");
        if (!_dyn.TryGetValue(outName, out var outV)) throw new PerturbException($"graph output '{outName}' is not produced by any node");
        if (outV.Pads != null) throw new PerturbException($"graph output '{outName}' comes from Pad node '{outV.PadNode}', which only a Conv or pooling can absorb");
        if (outV.Node < 0) throw new PerturbException($"graph output '{outName}' is the graph input itself (no layers)");
        var (outNode, ending) = StripProbabilityEnding(outV.Node);
        foreach (var (ln, ls) in _logSoftmax)
            if (ln != ending.Node) throw new PerturbException($"LogSoftmax node '{ls}': a LogSoftmax is supported only as the graph's final operation (optionally followed by Flatten/Reshape/Identity)");
        var model = BuildModel(outNode);
        model.Info["source"] = "onnx";
        if (ending.Op != null)
        {
            model.Info[Model.ProbabilitiesKey] = ending.Op == "Sigmoid" && model.NumOutputs > 1 ? "sigmoid" : model.NumOutputs == 1 ? "sigmoid" : "softmax";
            model.Info[Model.EndingKey] = $"the graph ends in {ending.Op} (node '{ending.Name}'): it was removed, attacks run on the logits before it, and probabilities are the "
                + (model.Info[Model.ProbabilitiesKey] == "softmax" ? "softmax of those logits" : model.NumOutputs == 1 ? "sigmoid of that logit" : "sigmoid of each logit");
            model.Info["onnx.ending_op"] = ending.Op;
        }
        if (_mp.ProducerName.Length > 0) model.Info["onnx.producer"] = (_mp.ProducerName + " " + _mp.ProducerVersion).Trim();
        model.Info["onnx.opset"] = _opset.ToString();
        if (g.Output.Count > 1) model.Info["onnx.output"] = outName;
        return model;
    }

    /// <summary>
    /// A final Softmax, LogSoftmax or Sigmoid (possibly followed by Flatten, flattening Reshapes or Identity) turns the
    /// logits into probabilities; the engine's losses and reports expect logits. Removes that node: the nodes after it
    /// read its input instead. Returns the new output node and what was removed (Op null when nothing was). A softmax
    /// over a single value (always 1) is left alone.
    /// </summary>
    (int Out, (string? Op, string Name, int Node) Ending) StripProbabilityEnding(int outNode)
    {
        var chain = new List<int>();
        int i = outNode;
        while (i >= 0 && _nodes[i].Layer is Flatten && _nodes[i].Inputs.Length == 1) { chain.Add(i); i = _nodes[i].Inputs[0]; }
        if (i < 0) return (outNode, (null, "", -1));
        var p = _nodes[i];
        string? op = p.Layer switch
        {
            SoftmaxLayer when _logSoftmax.ContainsKey(i) => "LogSoftmax",
            SoftmaxLayer => "Softmax",
            ActivationLayer { Function: Activation.Sigmoid } => "Sigmoid",
            _ => null,
        };
        if (op == null) return (outNode, (null, "", -1));
        if (op != "Sigmoid" && Layer.Product(p.OutShape) == 1)
        {
            if (op == "LogSoftmax") throw new PerturbException($"LogSoftmax node '{p.Name}' is over a single value, so the model's output is always 0");
            return (outNode, (null, "", -1));
        }
        int src = p.Inputs[0];
        if (src < 0) throw new PerturbException($"the graph is only a {op} of its input (no layers before it)");
        if (chain.Count == 0) return (src, (op, p.Name, i));
        var after = _nodes[chain[^1]];
        after.Inputs = after.Inputs.Select(j => j == i ? src : j).ToArray();
        return (outNode, (op, p.Name, i));
    }

    int OpsetVersion()
    {
        long v = -1;
        foreach (var o in _mp.OpsetImport)
            if (o.Domain is "" or "ai.onnx") v = o.Version;
        if (v < 0) throw new PerturbException("the model declares no opset for the default ONNX domain");
        if (v < 7 || v > 21) throw new PerturbException($"ONNX opset {v} is not supported (opsets 7 to 21 are)");
        return (int)v;
    }

    void ReadInput(GraphProto g)
    {
        var real = g.Input.Where(i => !_consts.ContainsKey(i.Name)).ToList();
        if (real.Count == 0) throw new PerturbException("the graph has no input (every listed input is an initializer)");
        if (real.Count > 1) throw new PerturbException($"the graph has {real.Count} inputs ({string.Join(", ", real.Select(r => r.Name))}); the engine takes one image tensor");
        var vi = real[0];
        var tt = vi.Type?.TensorType ?? throw new PerturbException($"graph input '{vi.Name}' is not a tensor");
        if (tt.ElemType != (int)TensorProto.Types.DataType.Float)
            throw new PerturbException($"graph input '{vi.Name}' has element type {TypeName(tt.ElemType)}; the engine runs float32 inputs");
        var dims = tt.Shape?.Dim ?? throw new PerturbException($"graph input '{vi.Name}' has no shape");
        if (dims.Count < 2) throw new PerturbException($"graph input '{vi.Name}' has rank {dims.Count}; expected [N, C, H, W] or [N, F]");
        var s = new int[dims.Count - 1];
        for (int i = 1; i < dims.Count; i++)
        {
            var d = dims[i];
            if (d.ValueCase != TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue || d.DimValue <= 0 || d.DimValue > int.MaxValue)
                throw new PerturbException($"graph input '{vi.Name}' dimension {i} is {(d.ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimParam ? "'" + d.DimParam + "'" : "unknown")}; only the batch dimension may be symbolic");
            s[i - 1] = (int)d.DimValue;
        }
        _inputShape = s;
        _dyn[vi.Name] = new Dyn { Node = GraphBuilder.Input, Shape = s };
    }

    Model BuildModel(int outNode)
    {
        var keep = new bool[_nodes.Count];
        keep[outNode] = true;
        for (int i = outNode; i >= 0; i--)
            if (keep[i]) foreach (var j in _nodes[i].Inputs) if (j >= 0) keep[j] = true;
        var map = new int[_nodes.Count];
        var gb = new GraphBuilder(_inputShape);
        var kept = new List<PNode>();
        for (int i = 0; i <= outNode; i++)
        {
            if (!keep[i]) continue;
            var p = _nodes[i];
            map[i] = gb.Add(p.Name, p.Layer, p.Inputs.Select(j => j < 0 ? GraphBuilder.Input : map[j]).ToArray());
            kept.Add(p);
        }
        var model = gb.Build(_be, 0);
        try
        {
            foreach (var p in kept)
                foreach (var (pname, data) in p.W)
                {
                    var prm = p.Layer.Parameters.FirstOrDefault(q => q.Name == pname)
                        ?? throw new PerturbException($"internal: layer '{p.Name}' has no parameter '{pname}'");
                    if (prm.Value.Length != data.Length)
                        throw new PerturbException($"layer '{p.Name}': {pname} has {data.Length} values, the layer needs {Tensor.ShapeString(prm.Value.Shape)}");
                    _be.Upload(prm.Value, data);
                }
        }
        catch { model.Dispose(); throw; }
        model.MarkParametersChanged();
        return model;
    }

    // ------------------------------------------------------------------ node conversion

    /// <summary>The operators the import converts, and how. The graph is scanned against this table before converting.</summary>
    Dictionary<string, Action<NodeProto>> Ops() => _ops ??= new()
    {
        ["Conv"] = n => ConvOp(n),
        ["Gemm"] = n => GemmOp(n),
        ["MatMul"] = n => MatMulOp(n),
        ["Add"] = n => Binary(n),
        ["Sub"] = n => Binary(n),
        ["Mul"] = n => Binary(n),
        ["Div"] = n => Binary(n),
        ["Relu"] = n => Emit(n, new ActivationLayer(Activation.Relu), Plain(n, 0)),
        ["LeakyRelu"] = n => Emit(n, new ActivationLayer(Activation.LeakyRelu, AttrF(n, "alpha", 0.01f)), Plain(n, 0)),
        ["Sigmoid"] = n => Emit(n, new ActivationLayer(Activation.Sigmoid), Plain(n, 0)),
        ["Tanh"] = n => Emit(n, new ActivationLayer(Activation.Tanh), Plain(n, 0)),
        ["Clip"] = n => ClipOp(n),
        ["MaxPool"] = n => PoolOp(n, true),
        ["AveragePool"] = n => PoolOp(n, false),
        ["GlobalAveragePool"] = n => GapOp(n),
        ["BatchNormalization"] = n => BatchNormOp(n),
        ["Flatten"] = n => FlattenOp(n),
        ["Reshape"] = n => ReshapeOp(n),
        ["Constant"] = n => ConstantOp(n),
        ["Identity"] = n => Alias(n, In(n, 0)),
        ["Dropout"] = n => DropoutOp(n),
        ["Softmax"] = n => SoftmaxOp(n),
        ["LogSoftmax"] = n => SoftmaxOp(n, log: true),
        ["Concat"] = n => ConcatOp(n),
        ["Pad"] = n => PadOp(n),
        ["Shape"] = n => ShapeOp(n),
        ["Gather"] = n => GatherOp(n),
        ["Unsqueeze"] = n => UnsqueezeOp(n),
        ["Cast"] = n => CastOp(n),
        ["Pow"] = n => Binary(n),
        ["Max"] = n => VariadicOp(n, BroadcastOp.Max),
        ["Min"] = n => VariadicOp(n, BroadcastOp.Min),
        ["HardSigmoid"] = n => UnaryOpN(n, UnaryOp.HardSigmoid, AttrF(n, "alpha", 0.2f), AttrF(n, "beta", 0.5f)),
        ["HardSwish"] = n => UnaryOpN(n, UnaryOp.HardSwish),
        ["Elu"] = n => UnaryOpN(n, UnaryOp.Elu, AttrF(n, "alpha", 1f)),
        ["Selu"] = n => UnaryOpN(n, UnaryOp.Selu, AttrF(n, "alpha", 1.67326319217681884765625f), AttrF(n, "gamma", 1.05070102214813232421875f)),
        ["Softplus"] = n => UnaryOpN(n, UnaryOp.Softplus),
        ["Gelu"] = n => GeluOp(n),
        ["Erf"] = n => UnaryOpN(n, UnaryOp.Erf),
        ["Sqrt"] = n => UnaryOpN(n, UnaryOp.Sqrt),
        ["Exp"] = n => UnaryOpN(n, UnaryOp.Exp),
        ["Log"] = n => UnaryOpN(n, UnaryOp.Log),
        ["Neg"] = n => UnaryOpN(n, UnaryOp.Neg),
        ["Reciprocal"] = n => UnaryOpN(n, UnaryOp.Reciprocal),
        ["Abs"] = n => UnaryOpN(n, UnaryOp.Abs),
        ["ReduceMean"] = n => ReduceOpN(n, ReduceOp.Mean),
        ["ReduceSum"] = n => ReduceOpN(n, ReduceOp.Sum),
        ["ReduceMax"] = n => ReduceOpN(n, ReduceOp.Max),
        ["ReduceMin"] = n => ReduceOpN(n, ReduceOp.Min),
        ["ReduceL2"] = n => ReduceOpN(n, ReduceOp.L2),
        ["LayerNormalization"] = n => LayerNormOp(n),
        ["InstanceNormalization"] = n => InstanceNormOp(n),
        ["GroupNormalization"] = n => GroupNormOp(n),
        ["Transpose"] = n => TransposeOp(n),
        ["Squeeze"] = n => SqueezeOp(n),
        ["Slice"] = n => SliceOp(n),
        ["Split"] = n => SplitOp(n),
        ["ConstantOfShape"] = n => ConstantOfShapeOp(n),
        ["Expand"] = n => ExpandOp(n),
        ["Tile"] = n => TileOp(n),
        ["PRelu"] = n => PReluOp(n),
        ["ConvTranspose"] = n => ConvTransposeOp(n),
        ["Resize"] = n => ResizeOp(n),
        ["Upsample"] = n => ResizeOp(n),
    };
    Dictionary<string, Action<NodeProto>>? _ops;

    /// <summary>
    /// Every operator of the graph the import does not convert, in graph order: (domain-qualified op, first node, count).
    /// </summary>
    List<(string Op, string Node, int Count)> Unsupported(GraphProto g)
    {
        var r = new List<(string Op, string Node, int Count)>();
        foreach (var n in g.Node)
        {
            bool ok = n.Domain is "" or "ai.onnx" && Ops().ContainsKey(n.OpType);
            if (ok) continue;
            string op = n.Domain is "" or "ai.onnx" ? n.OpType : n.Domain + "." + n.OpType;
            int i = r.FindIndex(e => e.Op == op);
            if (i < 0) r.Add((op, NodeName(n), 1));
            else r[i] = (op, r[i].Node, r[i].Count + 1);
        }
        return r;
    }

    /// <summary>One line naming the first unsupported operator and its node, then every other one the model needs.</summary>
    static string UnsupportedMessage(List<(string Op, string Node, int Count)> u)
    {
        static string Nodes(int c) => c == 1 ? "" : $", {c} nodes";
        var first = u[0];
        var msg = $"unsupported ONNX operator '{first.Op}' (node '{first.Node}'{Nodes(first.Count)})";
        if (u.Count > 1)
            msg += "; the model also needs " + string.Join(", ", u.Skip(1).Select(e => $"'{e.Op}' (node '{e.Node}'{Nodes(e.Count)})"));
        return msg;
    }

    void Convert(NodeProto n)
    {
        if (n.Domain is not ("" or "ai.onnx") || !Ops().TryGetValue(n.OpType, out var f))
            throw new PerturbException(UnsupportedMessage(Unsupported(_mp.Graph)));
        f(n);
    }

    static string NodeName(NodeProto n) => n.Name.Length > 0 ? n.Name : (n.Output.Count > 0 ? n.Output[0] : "?");

    PerturbException Err(NodeProto n, string msg) => new($"{n.OpType} node '{NodeName(n)}': {msg}");

    // ---------------------------------------------------------------- conv, linear

    void ConvOp(NodeProto n)
    {
        var x = PadOrPlain(n, 0);
        var inS = x.SourceShape ?? x.Shape;
        if (inS.Length != 3) throw Err(n, $"only 2-D convolution on [N, C, H, W] is supported, the input is [N, {string.Join(", ", inS)}]");
        var w = ConstIn(n, 1, "weight");
        if (w.Dims.Length != 4) throw Err(n, $"weight has shape {Tensor.ShapeString(w.Dims)}, expected [K, C/group, kH, kW]");
        int group = (int)AttrI(n, "group", 1);
        int k = w.Dims[0], kh = w.Dims[2], kw = w.Dims[3], c = inS[0];
        if (w.Dims[1] * group != c) throw Err(n, $"weight {Tensor.ShapeString(w.Dims)} with group {group} does not fit {c} input channels");
        var ks = AttrInts(n, "kernel_shape");
        if (ks != null && (ks.Length != 2 || ks[0] != kh || ks[1] != kw)) throw Err(n, $"kernel_shape [{string.Join(", ", ks)}] differs from the weight's {kh}x{kw}");
        var st = Pair(n, "strides", 1); var dl = Pair(n, "dilations", 1);
        var (ph, pw) = ResolvePads(n, x, new[] { kh, kw }, st, dl, false);
        float[]? bias = null;
        if (In(n, 2).Length > 0)
        {
            var b = ConstIn(n, 2, "bias");
            if (b.Count != k) throw Err(n, $"bias has {b.Count} values for {k} output channels");
            bias = F(b.V);
        }
        var cs = new ConvShape(1, c, inS[1], inS[2], k, kh, kw, st[0], st[1], ph, pw, dl[0], dl[1], group);
        if (cs.OutH <= 0 || cs.OutW <= 0) throw Err(n, $"input {Tensor.ShapeString(inS)} is too small for the {kh}x{kw} kernel");
        var layer = new Conv2d(c, k, kh, st[0], ph, dl[0], group, bias != null, kw) { StrideW = st[1], PaddingW = pw, DilationW = dl[1] };
        var p = Emit(n, layer, new[] { k, cs.OutH, cs.OutW }, x);
        p.W["weight"] = F(w.V);
        if (bias != null) p.W["bias"] = bias;
    }

    /// <summary>Symmetric (H, W) padding from pads / auto_pad plus a folded Pad; a clear error when it is not symmetric.</summary>
    (int, int) ResolvePads(NodeProto n, Dyn x, int[] k, int[] st, int[] dl, bool ceil)
    {
        var inS = x.SourceShape ?? x.Shape;
        var padded = x.Shape; // the input the node sees
        var begin = new int[2]; var end = new int[2];
        string auto = AttrS(n, "auto_pad", "NOTSET");
        switch (auto)
        {
            case "NOTSET":
                var pads = AttrInts(n, "pads");
                if (pads != null)
                {
                    if (pads.Length != 4) throw Err(n, $"pads has {pads.Length} values, expected 4 (2-D)");
                    begin[0] = (int)pads[0]; begin[1] = (int)pads[1]; end[0] = (int)pads[2]; end[1] = (int)pads[3];
                }
                break;
            case "VALID": break;
            case "SAME_UPPER": case "SAME_LOWER":
                for (int a = 0; a < 2; a++)
                {
                    int size = padded[a + 1], o = (size + st[a] - 1) / st[a];
                    int total = Math.Max(0, (o - 1) * st[a] + (k[a] - 1) * dl[a] + 1 - size);
                    int small = total / 2, big = total - small;
                    (begin[a], end[a]) = auto == "SAME_UPPER" ? (small, big) : (big, small);
                }
                break;
            default: throw Err(n, $"auto_pad '{auto}' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID");
        }
        if (begin.Any(v => v < 0) || end.Any(v => v < 0)) throw Err(n, "negative pads are not supported");
        if (x.Pads != null)
        {
            begin[0] += x.Pads[0]; begin[1] += x.Pads[1]; end[0] += x.Pads[2]; end[1] += x.Pads[3];
        }
        var r = new int[2];
        for (int a = 0; a < 2; a++)
        {
            if (begin[a] == end[a]) { r[a] = begin[a]; continue; }
            // begin < end: the extra end padding may never be reached by a window; then symmetric begin padding is exact.
            int span = (k[a] - 1) * dl[a] + 1, size = inS[a + 1];
            if (!ceil && begin[a] < end[a] && (size + begin[a] + end[a] - span) / st[a] == (size + 2 * begin[a] - span) / st[a]
                && size + 2 * begin[a] - span >= 0)
            { r[a] = begin[a]; continue; }
            string axis = a == 0 ? "top/bottom" : "left/right";
            throw Err(n, $"asymmetric padding ({axis} {begin[a]}/{end[a]}{(x.Pads != null ? ", including Pad node '" + x.PadNode + "'" : "")}) cannot be expressed by the engine's symmetric padding");
        }
        return (r[0], r[1]);
    }

    int[] Pair(NodeProto n, string name, int def)
    {
        var v = AttrInts(n, name);
        if (v == null) return new[] { def, def };
        if (v.Length != 2) throw Err(n, $"{name} has {v.Length} values, expected 2 (2-D)");
        if (v.Any(e => e <= 0 || e > int.MaxValue)) throw Err(n, $"{name} must be positive");
        return new[] { (int)v[0], (int)v[1] };
    }

    void GemmOp(NodeProto n)
    {
        var a = Plain(n, 0);
        if (a.Shape.Length != 1) throw Err(n, $"input must be [N, K], got [N, {string.Join(", ", a.Shape)}] (add a Flatten)");
        if (AttrI(n, "transA", 0) != 0) throw Err(n, "transA=1 on the batch input is not supported");
        var b = ConstIn(n, 1, "B");
        if (b.Dims.Length != 2) throw Err(n, $"B has shape {Tensor.ShapeString(b.Dims)}, expected a matrix");
        bool tb = AttrI(n, "transB", 0) != 0;
        double alpha = AttrF(n, "alpha", 1f), beta = AttrF(n, "beta", 1f);
        int kIn = a.Shape[0];
        int bk = tb ? b.Dims[1] : b.Dims[0], outF = tb ? b.Dims[0] : b.Dims[1];
        if (bk != kIn) throw Err(n, $"B {Tensor.ShapeString(b.Dims)}{(tb ? " (transposed)" : "")} does not fit {kIn} input features");
        var wt = new float[outF * kIn];
        for (int o = 0; o < outF; o++)
            for (int i = 0; i < kIn; i++)
                wt[o * kIn + i] = (float)(alpha * (tb ? b.V[o * kIn + i] : b.V[i * outF + o]));
        float[]? bias = null;
        if (In(n, 2).Length > 0)
        {
            if (!_consts.ContainsKey(In(n, 2))) throw Err(n, "a computed C operand is not supported (only a constant bias)");
            var cv = PerChannel(n, _consts[In(n, 2)], new[] { outF }) ?? throw Err(n, $"C of shape {Tensor.ShapeString(_consts[In(n, 2)].Dims)} is not a bias broadcast over the batch");
            bias = cv.Select(v => (float)(beta * v)).ToArray();
        }
        var p = Emit(n, new Linear(kIn, outF, bias != null), new[] { outF }, a);
        p.W["weight"] = wt;
        if (bias != null) p.W["bias"] = bias;
    }

    /// <summary>
    /// MatMul with NumPy semantics. Computed times a constant matrix [K, M] is a Linear over the last axis; a constant
    /// matrix [M, K] times computed [.., K, P] is that Linear between two transposes of the last two axes; a constant
    /// vector on either side is the same with M = 1 and the unit axis dropped; a constant of rank 3 or more (batch axes
    /// that broadcast, never along the batch) and two computed tensors are a broadcast product summed over K.
    /// </summary>
    void MatMulOp(NodeProto n)
    {
        bool ca = _consts.ContainsKey(In(n, 0)), cb = _consts.ContainsKey(In(n, 1));
        if (!ca && !cb) { MatMulComputed(n); return; }
        var x = Plain(n, ca ? 1 : 0);
        var k = _consts[In(n, ca ? 0 : 1)];
        int r = x.Shape.Length;
        if (k.Dims.Length == 0) throw Err(n, "a scalar operand is not a matrix (MatMul needs rank 1 or more)");
        if (ca && r < 2) throw Err(n, $"a constant times [N, {string.Join(", ", x.Shape)}] would multiply along the batch axis");
        int kx = ca ? x.Shape[r - 2] : x.Shape[r - 1];              // x's contracted axis
        int kk = ca ? k.Dims[^1] : (k.Dims.Length == 1 ? k.Dims[0] : k.Dims[^2]);
        string sx = $"[N, {string.Join(", ", x.Shape)}]", sk = Tensor.ShapeString(k.Dims);
        if (kx != kk) throw Err(n, ca ? $"{sk} times {sx}: inner sizes {kk} and {kx} differ" : $"{sx} times {sk}: inner sizes {kx} and {kk} differ");
        if (k.Dims.Length > 2) { MatMulConstBatched(n, x, k, ca); return; }
        int outF = k.Dims.Length == 1 ? 1 : (ca ? k.Dims[0] : k.Dims[1]);
        // the Linear's weight [outF, K]: k itself when it is on the left, its transpose when on the right
        var wt = new float[outF * kx];
        for (int o = 0; o < outF; o++)
            for (int i = 0; i < kx; i++) wt[o * kx + i] = (float)(ca || k.Dims.Length == 1 ? k.V[o * kx + i] : k.V[i * outF + o]);
        Dyn Lin(Dyn v, bool bind)
        {
            var os = (int[])v.Shape.Clone(); os[^1] = outF;
            var p = Emit(n, new Linear(kx, outF, false), os, bind ? NodeName(n) : NodeName(n) + "_linear", bind, v);
            p.W["weight"] = wt;
            return DynOf(p);
        }
        var swap = Enumerable.Range(0, r).Select(i => i == r - 2 ? r - 1 : i == r - 1 ? r - 2 : i).ToArray();
        Dyn Swap(Dyn v, string suffix, bool bind)
        {
            var os = swap.Select(i => v.Shape[i]).ToArray();
            return DynOf(Emit(n, new TransposeLayer(swap), os, bind ? NodeName(n) : NodeName(n) + "_" + suffix, bind, v));
        }
        // a vector operand gets a unit axis that the result drops again: [K] times [.., K, P] is [.., P], [.., K] times [K] is [..]
        bool vec = k.Dims.Length == 1;
        if (vec && r == 1) throw Err(n, "[N, K] times a vector [K] gives one number per sample, which the engine does not represent (add an Unsqueeze)");
        if (!ca)
        {
            if (!vec) { Lin(x, true); return; }
            var y = Lin(x, false);
            Emit(n, new ReshapeLayer(x.Shape[..^1]), x.Shape[..^1], y);
            return;
        }
        var t = Swap(x, "t", false);                               // [.., P, K]
        var l = Lin(t, false);                                     // [.., P, M]
        if (!vec) { Swap(l, "back", true); return; }
        var drop = x.Shape[..^2].Append(x.Shape[^1]).ToArray();   // [.., P]
        Emit(n, new ReshapeLayer(drop), drop, l);
    }

    /// <summary>A constant of rank 3 or more on either side: [.., M, K, 1] * [.., 1, K, P] (broadcast), summed over K.</summary>
    void MatMulConstBatched(NodeProto n, Dyn x, Const k, bool constLeft)
    {
        // the constant's axes align with x's full shape [N, ..]: its axis over the batch (when it has one) must be 1
        int r = x.Shape.Length;
        var pk = Strided.PadLeft(k.Dims, Math.Max(r + 1, k.Dims.Length));
        if (r < 2 || pk.Length > r + 1 || pk[0] != 1)
            throw Err(n, $"{Tensor.ShapeString(k.Dims)} and [N, {string.Join(", ", x.Shape)}] would multiply along the batch axis");
        var sx = x.Shape; var sk = pk[1..];
        var (sa, sb) = constLeft ? (sk, sx) : (sx, sk);
        int m = sa[r - 2], kk = sa[r - 1], p = sb[r - 1];
        var ea = sa.Take(r - 2).Concat(new[] { m, kk, 1 }).ToArray();
        var eb = sb.Take(r - 2).Concat(new[] { 1, kk, p }).ToArray();
        var ex = constLeft ? eb : ea;
        var xr = Part(n, "x", new ReshapeLayer(ex), ex, x);
        var kc = new Const { Dims = constLeft ? ea : eb, V = k.V };
        var prod = BindConstBinary(n, BroadcastOp.Mul, xr, kc, constLeft, NodeName(n) + "_mul", false);
        var outS = prod.Shape.Take(r - 2).Concat(new[] { m, p }).ToArray();
        Emit(n, new ReduceLayer(ReduceOp.Sum, new[] { r - 1 }, false), outS, prod);
    }

    // ---------------------------------------------------------------- element-wise

    void Binary(NodeProto n)
    {
        string op = n.OpType, an = In(n, 0), bn = In(n, 1);
        bool ac = _consts.ContainsKey(an), bc = _consts.ContainsKey(bn);
        if (ac && bc)
        {
            Func<double, double, double> f = op switch
            {
                "Add" => (u, v) => u + v, "Sub" => (u, v) => u - v, "Mul" => (u, v) => u * v, "Pow" => Math.Pow,
                "Max" => Math.Max, "Min" => Math.Min, _ => (u, v) => u / v,
            };
            SetConst(n, 0, Broadcast(n, _consts[an], _consts[bn], f));
            return;
        }
        if (!ac && !bc)
        {
            var a = Plain(n, 0); var b = Plain(n, 1);
            if (a.Shape.SequenceEqual(b.Shape) && op is "Add" or "Mul")
            {
                Emit(n, op == "Add" ? new AddLayer() : new MulLayer(), a.Shape, a, b);
                return;
            }
            if (a.Shape.Length != b.Shape.Length)
                throw Err(n, $"broadcasting between computed tensors of different ranks ([N, {string.Join(", ", a.Shape)}] and [N, {string.Join(", ", b.Shape)}]) would mix the batch with other axes");
            var o = Strided.BroadcastShape(a.Shape, b.Shape) ?? throw Err(n, $"shapes [N, {string.Join(", ", a.Shape)}] and [N, {string.Join(", ", b.Shape)}] do not broadcast");
            Emit(n, new BinaryLayer(BinOp(op)), o, a, b);
            return;
        }
        if (op == "Pow" && bc && _consts[bn].Count == 1)
        {
            double e = _consts[bn].V[0];
            var xp = Plain(n, 0);
            if (e == 1) { Alias(n, an); return; }
            Emit(n, new UnaryLayer(UnaryOp.Pow, (float)e), xp);
            return;
        }
        if (op is "Pow" or "Max" or "Min") { ConstBinary(n, BinOp(op), ac); return; }
        bool constLeft = ac;
        var x = Plain(n, constLeft ? 1 : 0);
        var k = _consts[constLeft ? an : bn];
        // A bias over the last axis after a bias-less MatMul of [N, ..., K] → the Linear's bias.
        if (!constLeft && op is "Add" or "Sub" && x.Node >= 0 && _nodes[x.Node].Layer is Linear ml && !ml.HasBias && x.Shape.Length > 1
            && _uses.GetValueOrDefault(In(n, 0)) == 1 && k.Count == ml.Out && k.Dims.Count(d => d != 1) <= 1 && (k.Dims.Length == 0 || k.Dims[^1] == ml.Out))
        {
            _nodes[x.Node].Layer = new Linear(ml.In, ml.Out, true);
            _nodes[x.Node].W["bias"] = k.V.Select(e => (float)(op == "Sub" ? -e : e)).ToArray();
            _dyn[n.Output[0]] = x;
            return;
        }
        var v = PerChannel(n, k, x.Shape);
        // Anything but a scalar or per-channel constant on [N, C, H, W] or [N, F]: a broadcast binary op with the constant.
        if (v == null || (x.Shape.Length != 1 && x.Shape.Length != 3) || (constLeft && op == "Div"))
        { ConstBinary(n, BinOp(op), constLeft); return; }
        int ch = v.Length;
        var xn = x.Node >= 0 ? _nodes[x.Node] : null;
        bool single = x.Node >= 0 && _uses.GetValueOrDefault(In(n, constLeft ? 1 : 0)) == 1;

        // Input normalisation: Sub(input, mean) then Div(., std) → Normalize.
        if (!constLeft && op == "Sub" && x.Node < 0 && x.Shape.Length == 3)
        { Emit(n, new Normalize(F(v), Enumerable.Repeat(1f, ch).ToArray()), x.Shape, x); return; }
        if (!constLeft && op == "Div" && v.All(e => e > 0) && x.Shape.Length == 3)
        {
            if (x.Node < 0) { Emit(n, new Normalize(new float[ch], F(v)), x.Shape, x); return; }
            if (single && xn!.Layer is Normalize nz && nz.Std.All(s => s == 1f) && nz.Mean.Length == ch)
            { xn.Layer = new Normalize(nz.Mean, F(v)); _dyn[n.Output[0]] = x; return; }
        }
        // A bias after MatMul (or a bias-less Gemm) → the Linear's bias.
        if (!constLeft && op is "Add" or "Sub" && single && xn!.Layer is Linear lin && !lin.HasBias)
        {
            var nl = new Linear(lin.In, lin.Out, true);
            xn.Layer = nl;
            xn.W["bias"] = v.Select(e => (float)(op == "Sub" ? -e : e)).ToArray();
            _dyn[n.Output[0]] = x;
            return;
        }
        float[] scale, shift;
        switch (op)
        {
            case "Add": scale = Ones(ch); shift = F(v); break;
            case "Sub": scale = constLeft ? Ones(ch, -1f) : Ones(ch); shift = constLeft ? F(v) : v.Select(e => (float)-e).ToArray(); break;
            case "Mul": scale = F(v); shift = new float[ch]; break;
            default:
                scale = v.Select(e => (float)(1.0 / e)).ToArray(); shift = new float[ch]; break;
        }
        // Mul (or Div) then Add (or Sub) of constants → one affine.
        if (op is "Add" or "Sub" && !constLeft && single && xn!.Layer is ChannelAffineLayer && xn.W.TryGetValue("shift", out var oldShift) && oldShift.All(e => e == 0))
        {
            xn.W["shift"] = shift;
            _dyn[n.Output[0]] = x;
            return;
        }
        var p = Emit(n, new ChannelAffineLayer(scale, shift), x.Shape, x);
        p.W["scale"] = scale; p.W["shift"] = shift;
    }

    static float[] Ones(int c, float v = 1f) => Enumerable.Repeat(v, c).ToArray();

    static BroadcastOp BinOp(string op) => op switch
    {
        "Add" => BroadcastOp.Add, "Sub" => BroadcastOp.Sub, "Mul" => BroadcastOp.Mul, "Div" => BroadcastOp.Div, "Pow" => BroadcastOp.Pow,
        "Max" => BroadcastOp.Max, _ => BroadcastOp.Min,
    };

    /// <summary>x op constant (or constant op x) with the constant broadcast: a Binary layer holding the constant.</summary>
    void ConstBinary(NodeProto n, BroadcastOp op, bool constLeft)
    {
        var x = Plain(n, constLeft ? 1 : 0);
        var k = _consts[In(n, constLeft ? 0 : 1)];
        BindConstBinary(n, op, x, k, constLeft, NodeName(n), true);
    }

    /// <summary>Emits x op k (k a constant of any broadcasting shape); returns the new tensor.</summary>
    Dyn BindConstBinary(NodeProto n, BroadcastOp op, Dyn x, Const k, bool constLeft, string name, bool bind)
    {
        int r = Math.Max(x.Shape.Length + 1, k.Dims.Length);
        var pk = Strided.PadLeft(k.Dims, r);
        if (r > x.Shape.Length + 1 || pk[0] != 1)
            throw Err(n, $"constant of shape {Tensor.ShapeString(k.Dims)} would broadcast along the batch of [N, {string.Join(", ", x.Shape)}]");
        var o = Strided.BroadcastShape(x.Shape, pk[1..])
            ?? throw Err(n, $"constant of shape {Tensor.ShapeString(k.Dims)} does not broadcast onto [N, {string.Join(", ", x.Shape)}]");
        var p = Emit(n, new BinaryLayer(op, F(k.V), k.Dims, constLeft), o, name, bind, x);
        return DynOf(p);
    }

    /// <summary>An internal node of a composed operator (LayerNorm's parts): named after the ONNX node plus a suffix.</summary>
    Dyn Part(NodeProto n, string suffix, Layer layer, int[] outShape, params Dyn[] ins) =>
        DynOf(Emit(n, layer, outShape, NodeName(n) + "_" + suffix, false, ins));

    /// <summary>Binds the ONNX node's first output to an already emitted tensor.</summary>
    void Bind(NodeProto n, Dyn d) => _dyn[n.Output[0]] = d;

    static Const Scalar1(double v) => new() { Dims = new[] { 1 }, V = new[] { v } };

    // ---------------------------------------------------------------- element-wise functions

    void UnaryOpN(NodeProto n, UnaryOp op, float a = 0f, float b = 0f)
    {
        if (_consts.TryGetValue(In(n, 0), out var c))
        {
            SetConst(n, 0, new Const { Dims = c.Dims, V = c.V.Select(v => (double)Perturb.Kernels.Unary.F((int)op, a, b, (float)v)).ToArray() });
            return;
        }
        Emit(n, new UnaryLayer(op, a, b), Plain(n, 0));
    }

    void GeluOp(NodeProto n)
    {
        string approx = AttrS(n, "approximate", "none");
        if (approx is not ("none" or "tanh")) throw Err(n, $"approximate '{approx}' is not one of none, tanh");
        UnaryOpN(n, approx == "tanh" ? UnaryOp.GeluTanh : UnaryOp.Gelu);
    }

    /// <summary>Max / Min of any number of inputs: pairwise broadcast binary ops.</summary>
    void VariadicOp(NodeProto n, BroadcastOp op)
    {
        var names = n.Input.Where(i => i.Length > 0).ToList();
        if (names.Count == 0) throw Err(n, "no inputs");
        if (names.All(_consts.ContainsKey))
        {
            var acc = _consts[names[0]];
            foreach (var nm in names.Skip(1)) acc = Broadcast(n, acc, _consts[nm], op == BroadcastOp.Max ? Math.Max : Math.Min);
            SetConst(n, 0, acc);
            return;
        }
        if (names.Count == 1) { Alias(n, names[0]); return; }
        // computed inputs first (max and min commute), then constants
        var dyn = names.Where(nm => !_consts.ContainsKey(nm)).Select(nm => _dyn.TryGetValue(nm, out var d) ? d : throw Err(n, $"input '{nm}' is not produced by any earlier node")).ToList();
        var cur = dyn[0];
        int step = 0, total = names.Count - 1;
        foreach (var d in dyn.Skip(1))
        {
            if (d.Shape.Length != cur.Shape.Length) throw Err(n, "inputs of different ranks would mix the batch with other axes");
            var o = Strided.BroadcastShape(cur.Shape, d.Shape) ?? throw Err(n, "input shapes do not broadcast");
            bool last = ++step == total;
            var p = Emit(n, new BinaryLayer(op), o, last ? NodeName(n) : NodeName(n) + "_" + step, last, cur, d);
            cur = DynOf(p);
        }
        foreach (var nm in names.Where(_consts.ContainsKey))
        {
            bool last = ++step == total;
            cur = BindConstBinary(n, op, cur, _consts[nm], false, last ? NodeName(n) : NodeName(n) + "_" + step, last);
        }
    }

    // ---------------------------------------------------------------- reductions and normalisations

    /// <summary>Normalised per-sample axes (ONNX axes minus the batch); an error for the batch axis.</summary>
    int[] SampleAxes(NodeProto n, IEnumerable<long> axes, int sampleRank)
    {
        int r = sampleRank + 1;
        return axes.Select(a =>
        {
            long v = a < 0 ? a + r : a;
            if (v < 0 || v >= r) throw Err(n, $"axis {a} is outside rank {r}");
            if (v == 0) throw Err(n, "an operation across the batch axis 0 is not supported");
            return (int)v - 1;
        }).Distinct().OrderBy(v => v).ToArray();
    }

    void ReduceOpN(NodeProto n, ReduceOp op)
    {
        var x = Plain(n, 0);
        bool axesInput = _opset >= 18 || (n.OpType == "ReduceSum" && _opset >= 13);
        long[]? axes = axesInput
            ? (In(n, 1).Length > 0 ? (_consts.TryGetValue(In(n, 1), out var ac) ? ac.V.Select(v => (long)v).ToArray() : throw Err(n, "axes must be a constant")) : null)
            : AttrInts(n, "axes");
        bool keep = AttrI(n, "keepdims", 1) != 0;
        if (axes == null || axes.Length == 0)
        {
            if (AttrI(n, "noop_with_empty_axes", 0) != 0) { Alias(n, In(n, 0)); return; }
            throw Err(n, "a reduction over every axis, the batch included, is not supported");
        }
        var ax = SampleAxes(n, axes, x.Shape.Length);
        // The global average pool of [N, C, H, W] has its own fast kernel.
        if (op == ReduceOp.Mean && x.Shape.Length == 3 && ax.SequenceEqual(new[] { 1, 2 }))
        {
            if (keep) { Emit(n, new GlobalAvgPool(), new[] { x.Shape[0], 1, 1 }, x); return; }
            var g = Part(n, "gap", new GlobalAvgPool(), new[] { x.Shape[0], 1, 1 }, x);
            Emit(n, new Flatten(), new[] { x.Shape[0] }, g);
            return;
        }
        var layer = new ReduceLayer(op, ax, keep);
        var o = Enumerable.Range(0, x.Shape.Length).Where(d => keep || !ax.Contains(d)).Select(d => ax.Contains(d) ? 1 : x.Shape[d]).ToArray();
        Emit(n, layer, o.Length == 0 ? new[] { 1 } : o, x);
    }

    /// <summary>
    /// (x - mean) / sqrt(var + eps) over the given per-sample axes (biased variance), composed from Reduce, Binary
    /// and Unary layers; then times scale and plus bias when given (constants broadcast onto the result).
    /// </summary>
    void Normalization(NodeProto n, Dyn x, int[] axes, double eps, Const? scale, Const? bias)
    {
        var ks = x.Shape.Select((d, i) => axes.Contains(i) ? 1 : d).ToArray();
        var mean = Part(n, "mean", new ReduceLayer(ReduceOp.Mean, axes, true), ks, x);
        var d = Part(n, "centre", new BinaryLayer(BroadcastOp.Sub), x.Shape, x, mean);
        var sq = Part(n, "square", new UnaryLayer(UnaryOp.Pow, 2f), x.Shape, d);
        var v = Part(n, "var", new ReduceLayer(ReduceOp.Mean, axes, true), ks, sq);
        var ve = BindConstBinary(n, BroadcastOp.Add, v, Scalar1(eps), false, NodeName(n) + "_eps", false);
        var sd = Part(n, "std", new UnaryLayer(UnaryOp.Sqrt), ks, ve);
        bool more = scale != null || bias != null;
        var y = DynOf(Emit(n, new BinaryLayer(BroadcastOp.Div), x.Shape, more ? NodeName(n) + "_norm" : NodeName(n), !more, d, sd));
        if (scale != null) y = BindConstBinary(n, BroadcastOp.Mul, y, scale, false, bias != null ? NodeName(n) + "_scale" : NodeName(n), bias == null);
        if (bias != null) BindConstBinary(n, BroadcastOp.Add, y, bias, false, NodeName(n), true);
    }

    void OnlyFirstOutput(NodeProto n)
    {
        for (int o = 1; o < n.Output.Count; o++)
            if (n.Output[o].Length > 0 && _uses.ContainsKey(n.Output[o])) throw Err(n, $"output {o} ('{n.Output[o]}') is not supported");
    }

    void LayerNormOp(NodeProto n)
    {
        OnlyFirstOutput(n);
        var x = Plain(n, 0);
        long axis = AttrI(n, "axis", -1);
        int r = x.Shape.Length + 1;
        if (axis < 0) axis += r;
        if (axis <= 0 || axis >= r) throw Err(n, $"axis {AttrI(n, "axis", -1)} must be a non-batch axis of rank {r}");
        var axes = Enumerable.Range((int)axis - 1, r - (int)axis).ToArray();
        var scale = ConstIn(n, 1, "Scale");
        Const? bias = In(n, 2).Length > 0 ? ConstIn(n, 2, "B") : null;
        Normalization(n, x, axes, AttrF(n, "epsilon", 1e-5f), scale, bias);
    }

    void InstanceNormOp(NodeProto n)
    {
        var x = Plain(n, 0);
        if (x.Shape.Length < 2) throw Err(n, $"expects [N, C, D1, ...], got [N, {string.Join(", ", x.Shape)}]");
        int c = x.Shape[0];
        var scale = ConstIn(n, 1, "scale"); var bias = ConstIn(n, 2, "B");
        if (scale.Count != c || bias.Count != c) throw Err(n, $"scale and B need {c} values (one per channel)");
        var per = Enumerable.Repeat(1, x.Shape.Length - 1).Prepend(c).ToArray();
        Normalization(n, x, Enumerable.Range(1, x.Shape.Length - 1).ToArray(), AttrF(n, "epsilon", 1e-5f),
            new Const { Dims = per, V = scale.V }, new Const { Dims = per, V = bias.V });
    }

    void GroupNormOp(NodeProto n)
    {
        var x = Plain(n, 0);
        if (x.Shape.Length < 2) throw Err(n, $"expects [N, C, D1, ...], got [N, {string.Join(", ", x.Shape)}]");
        int c = x.Shape[0], g = (int)AttrI(n, "num_groups", 0);
        if (g <= 0 || c % g != 0) throw Err(n, $"num_groups {g} does not divide {c} channels");
        var scale = ConstIn(n, 1, "scale"); var bias = ConstIn(n, 2, "bias");
        // opset 18 has per-group scale and bias, opset 21 per-channel ones
        if (scale.Count != c && scale.Count != g) throw Err(n, $"scale has {scale.Count} values for {c} channels in {g} groups");
        int rest = Layer.Product(x.Shape) / c;
        var grouped = Part(n, "groups", new ReshapeLayer(new[] { g, c / g * rest }), new[] { g, c / g * rest }, x);
        var ks = new[] { g, 1 };
        var mean = Part(n, "mean", new ReduceLayer(ReduceOp.Mean, new[] { 1 }, true), ks, grouped);
        var d = Part(n, "centre", new BinaryLayer(BroadcastOp.Sub), grouped.Shape, grouped, mean);
        var sq = Part(n, "square", new UnaryLayer(UnaryOp.Pow, 2f), grouped.Shape, d);
        var v = Part(n, "var", new ReduceLayer(ReduceOp.Mean, new[] { 1 }, true), ks, sq);
        var ve = BindConstBinary(n, BroadcastOp.Add, v, Scalar1(AttrF(n, "epsilon", 1e-5f)), false, NodeName(n) + "_eps", false);
        var sd = Part(n, "std", new UnaryLayer(UnaryOp.Sqrt), ks, ve);
        var y = Part(n, "norm", new BinaryLayer(BroadcastOp.Div), grouped.Shape, d, sd);
        var back = Part(n, "ungroup", new ReshapeLayer(x.Shape), x.Shape, y);
        var per = Enumerable.Repeat(1, x.Shape.Length - 1).Prepend(c).ToArray();
        double[] PerChannelOf(Const k) => k.Count == c ? k.V : Enumerable.Range(0, c).Select(i => k.V[i / (c / g)]).ToArray();
        var ys = BindConstBinary(n, BroadcastOp.Mul, back, new Const { Dims = per, V = PerChannelOf(scale) }, false, NodeName(n) + "_scale", false);
        BindConstBinary(n, BroadcastOp.Add, ys, new Const { Dims = per, V = PerChannelOf(bias) }, false, NodeName(n), true);
    }

    // ---------------------------------------------------------------- layout: transpose, squeeze, slice, split, gather

    void TransposeOp(NodeProto n)
    {
        var perm = AttrInts(n, "perm");
        if (_consts.TryGetValue(In(n, 0), out var kc))
        {
            int kr = kc.Dims.Length;
            var kp = perm?.Select(v => (int)v).ToArray() ?? Enumerable.Range(0, kr).Reverse().ToArray();
            SetConst(n, 0, TransposeConst(kc, kp));
            return;
        }
        var x = Plain(n, 0);
        int r = x.Shape.Length + 1;
        var p = perm?.Select(v => (int)(v < 0 ? v + r : v)).ToArray() ?? Enumerable.Range(0, r).Reverse().ToArray();
        if (p.Length != r || !p.OrderBy(v => v).SequenceEqual(Enumerable.Range(0, r))) throw Err(n, $"perm [{string.Join(", ", p)}] is not a permutation of {r} axes");
        if (p[0] != 0) throw Err(n, $"perm [{string.Join(", ", p)}] moves the batch axis");
        var ps = p.Skip(1).Select(v => v - 1).ToArray();
        if (ps.SequenceEqual(Enumerable.Range(0, ps.Length))) { Alias(n, In(n, 0)); return; }
        Emit(n, new TransposeLayer(ps), ps.Select(v => x.Shape[v]).ToArray(), x);
    }

    static Const TransposeConst(Const c, int[] perm)
    {
        var dims = perm.Select(p => c.Dims[p]).ToArray();
        var sIn = Strided.Contiguous(c.Dims);
        var v = new double[c.Count];
        var idx = new int[dims.Length];
        for (int e = 0; e < v.Length; e++)
        {
            int rem = e, src = 0;
            for (int d = dims.Length - 1; d >= 0; d--) { idx[d] = rem % dims[d]; rem /= dims[d]; }
            for (int d = 0; d < dims.Length; d++) src += idx[d] * sIn[perm[d]];
            v[e] = c.V[src];
        }
        return new Const { Dims = dims, V = v };
    }

    /// <summary>Reshape of a computed tensor to another per-sample shape: a view (an alias when nothing changes).</summary>
    void ReshapeTo(NodeProto n, Dyn x, int[] shape)
    {
        if (shape.SequenceEqual(x.Shape)) { Alias(n, In(n, 0)); return; }
        if (shape.Length == 1) { Emit(n, new Flatten(), shape, x); return; }
        Emit(n, new ReshapeLayer(shape), shape, x);
    }

    long[] AxesOf(NodeProto n, int inputIndex)
    {
        if (_opset < 13) return AttrInts(n, "axes") ?? Array.Empty<long>();
        if (In(n, inputIndex).Length == 0) return Array.Empty<long>();
        return _consts.TryGetValue(In(n, inputIndex), out var a) ? a.V.Select(v => (long)v).ToArray() : throw Err(n, "axes must be a constant");
    }

    void SqueezeOp(NodeProto n)
    {
        var axes = AxesOf(n, 1);
        if (_consts.TryGetValue(In(n, 0), out var c))
        {
            var norm = axes.Select(a => a < 0 ? a + c.Dims.Length : a).ToHashSet();
            var dims = c.Dims.Where((d, i) => norm.Count == 0 ? d != 1 : !norm.Contains(i)).ToArray();
            SetConst(n, 0, new Const { Dims = dims, V = c.V });
            return;
        }
        var x = Plain(n, 0);
        var ax = axes.Length == 0 ? Enumerable.Range(0, x.Shape.Length).Where(d => x.Shape[d] == 1).ToArray() : SampleAxes(n, axes, x.Shape.Length);
        foreach (var a in ax) if (x.Shape[a] != 1) throw Err(n, $"axis {a + 1} has size {x.Shape[a]}, not 1");
        var s = x.Shape.Where((d, i) => !ax.Contains(i)).ToArray();
        if (s.Length == 0) throw Err(n, "squeezing every axis but the batch is not supported");
        ReshapeTo(n, x, s);
    }

    void UnsqueezeComputed(NodeProto n, long[] axes)
    {
        var x = Plain(n, 0);
        int r = x.Shape.Length + 1 + axes.Length;
        var norm = axes.Select(a => a < 0 ? a + r : a).ToHashSet();
        if (norm.Contains(0)) throw Err(n, "an axis before the batch is not supported");
        var dims = new List<int>();
        for (int i = 1, j = 0; i < r; i++) dims.Add(norm.Contains(i) ? 1 : x.Shape[j++]);
        ReshapeTo(n, x, dims.ToArray());
    }

    /// <summary>ONNX Slice: starts, ends, axes, steps (inputs from opset 10, attributes before).</summary>
    void SliceOp(NodeProto n)
    {
        long[] Get(int i, string attr) => _opset < 10 ? AttrInts(n, attr) ?? Array.Empty<long>()
            : In(n, i).Length == 0 ? Array.Empty<long>()
            : _consts.TryGetValue(In(n, i), out var c) ? c.V.Select(v => double.IsNaN(v) ? long.MaxValue : (long)Math.Clamp(v, long.MinValue / 2, long.MaxValue / 2)).ToArray()
            : throw Err(n, $"{attr} must be a constant");
        var starts = Get(1, "starts"); var ends = Get(2, "ends"); var axes = Get(3, "axes"); var steps = Get(4, "steps");
        if (starts.Length != ends.Length) throw Err(n, "starts and ends differ in length");
        bool isConst = _consts.TryGetValue(In(n, 0), out var kc);
        int[] full = isConst ? kc!.Dims : new[] { -1 }.Concat(Plain(n, 0).Shape).ToArray();
        int r = full.Length;
        if (axes.Length == 0) axes = Enumerable.Range(0, starts.Length).Select(i => (long)i).ToArray();
        if (steps.Length == 0) steps = Enumerable.Repeat(1L, starts.Length).ToArray();
        var st = new int[r]; var sp = Enumerable.Repeat(1, r).ToArray(); var sz = (int[])full.Clone();
        for (int i = 0; i < axes.Length; i++)
        {
            int a = (int)(axes[i] < 0 ? axes[i] + r : axes[i]);
            if (a < 0 || a >= r) throw Err(n, $"axis {axes[i]} is outside rank {r}");
            if (steps[i] == 0) throw Err(n, $"step 0 on axis {a}");
            if (a == 0 && !isConst)
            {
                if (starts[i] != 0 || ends[i] < int.MaxValue) throw Err(n, "slicing the batch axis is not supported");
                continue;
            }
            long dim = full[a], s0 = starts[i] < 0 ? starts[i] + dim : starts[i], e0 = ends[i] < 0 ? ends[i] + dim : ends[i];
            long count;
            if (steps[i] > 0)
            {
                s0 = Math.Clamp(s0, 0, dim); e0 = Math.Clamp(e0, 0, dim);
                count = e0 > s0 ? (e0 - s0 + steps[i] - 1) / steps[i] : 0;
            }
            else
            {
                // a negative step walks back from start (at most dim - 1) to just after end (at least -1)
                s0 = Math.Clamp(s0, 0, dim - 1); e0 = Math.Clamp(e0, -1, dim - 1);
                count = s0 > e0 ? (s0 - e0 - steps[i] - 1) / -steps[i] : 0;
            }
            if (count == 0) throw Err(n, $"the slice of axis {a} is empty");
            st[a] = (int)s0; sp[a] = (int)steps[i]; sz[a] = (int)count;
        }
        if (isConst)
        {
            var src = Strided.Contiguous(full);
            var v = new double[sz.Aggregate(1, (p, q) => p * q)];
            var idx = new int[r];
            for (int e = 0; e < v.Length; e++)
            {
                int rem = e, off = 0;
                for (int d = r - 1; d >= 0; d--) { idx[d] = rem % sz[d]; rem /= sz[d]; }
                for (int d = 0; d < r; d++) off += (st[d] + idx[d] * sp[d]) * src[d];
                v[e] = kc!.V[off];
            }
            SetConst(n, 0, new Const { Dims = sz, V = v });
            return;
        }
        var x = Plain(n, 0);
        if (sz.Skip(1).SequenceEqual(x.Shape) && sp.All(v => v == 1)) { Alias(n, In(n, 0)); return; }   // a flip keeps the shape too
        Emit(n, new SliceLayer(st[1..], sp[1..], sz[1..]), sz[1..], x);
    }

    void SplitOp(NodeProto n)
    {
        var x = Plain(n, 0);
        int r = x.Shape.Length + 1;
        long axis = AttrI(n, "axis", 0);
        if (axis < 0) axis += r;
        if (axis <= 0 || axis >= r) throw Err(n, "splitting the batch axis is not supported");
        int a = (int)axis - 1, dim = x.Shape[a], k = n.Output.Count;
        long[] sizes = _opset < 13 ? AttrInts(n, "split") ?? Array.Empty<long>()
            : In(n, 1).Length > 0 ? (_consts.TryGetValue(In(n, 1), out var sc) ? sc.V.Select(v => (long)v).ToArray() : throw Err(n, "split must be a constant")) : Array.Empty<long>();
        if (sizes.Length == 0)
        {
            int parts = _opset >= 18 && Attr(n, "num_outputs") != null ? (int)AttrI(n, "num_outputs", k) : k;
            int each = (dim + parts - 1) / parts;
            sizes = Enumerable.Range(0, parts).Select(i => (long)Math.Min(each, dim - i * each)).ToArray();
        }
        if (sizes.Length != k || sizes.Sum() != dim || sizes.Any(v => v <= 0)) throw Err(n, $"split sizes [{string.Join(", ", sizes)}] do not cut {dim} into {k} outputs");
        int off = 0;
        for (int i = 0; i < k; i++)
        {
            var start = new int[x.Shape.Length]; start[a] = off;
            var shape = (int[])x.Shape.Clone(); shape[a] = (int)sizes[i];
            off += (int)sizes[i];
            if (n.Output[i].Length == 0 || !_uses.ContainsKey(n.Output[i])) continue;
            var p = Emit(n, new SliceLayer(start, Enumerable.Repeat(1, shape.Length).ToArray(), shape), shape, NodeName(n) + "_" + i, false, x);
            _dyn[n.Output[i]] = DynOf(p);
        }
    }

    /// <summary>Gather of constant indices from a computed tensor along a non-batch axis: a slice for a run of consecutive indices, else a GatherLayer (the index tensor's axes replace the gathered one).</summary>
    void GatherComputed(NodeProto n, Const idx)
    {
        var x = Plain(n, 0);
        int r = x.Shape.Length + 1;
        long axis = AttrI(n, "axis", 0);
        if (axis < 0) axis += r;
        if (axis <= 0 || axis >= r) throw Err(n, "gathering along the batch axis is not supported");
        int a = (int)axis - 1, dim = x.Shape[a];
        var ix = idx.V.Select(v => (int)(v < 0 ? v + dim : v)).ToArray();
        if (ix.Any(v => v < 0 || v >= dim)) throw Err(n, $"an index is outside the {dim} positions of axis {axis}");
        if (ix.Length == 0) throw Err(n, "the index list is empty");
        var shape = (int[])x.Shape.Clone(); shape[a] = ix.Length;
        Layer take;
        if (ix.Zip(ix.Skip(1), (p, q) => q - p).All(dlt => dlt == 1))
        {
            var start = new int[x.Shape.Length]; start[a] = ix[0];
            take = new SliceLayer(start, Enumerable.Repeat(1, shape.Length).ToArray(), shape);
        }
        else take = new GatherLayer(a, ix);
        if (idx.Dims.Length == 1) { Emit(n, take, shape, x); return; }
        // a scalar index drops the axis, an index tensor of rank k puts its k axes in place of it
        var outS = x.Shape.Take(a).Concat(idx.Dims).Concat(x.Shape.Skip(a + 1)).ToArray();
        if (outS.Length == 0) throw Err(n, "the gather leaves no axis but the batch");
        var g = Part(n, "take", take, shape, x);
        Emit(n, outS.Length == 1 ? new Flatten() : new ReshapeLayer(outS), outS, g);
    }

    void ExpandOp(NodeProto n)
    {
        var shape = ConstIn(n, 1, "shape");
        if (shape.V.Skip(1).Any(double.IsNaN)) throw Err(n, "a shape that depends on the batch size beyond its first axis is not supported");
        var t = shape.V.Select(v => double.IsNaN(v) ? 1 : (int)v).ToArray();
        if (_consts.TryGetValue(In(n, 0), out var kc))
        {
            var o = Strided.BroadcastShape(kc.Dims, t) ?? throw Err(n, "shapes do not broadcast");
            SetConst(n, 0, Broadcast(n, kc, new Const { Dims = o, V = new double[o.Aggregate(1, (p, q) => p * q)] }, (u, _) => u));
            return;
        }
        var x = Plain(n, 0);
        var full = new[] { 1 }.Concat(x.Shape).ToArray();
        var outFull = Strided.BroadcastShape(full, t) ?? throw Err(n, $"[N, {string.Join(", ", x.Shape)}] does not broadcast to [{string.Join(", ", t)}]");
        if (outFull.Length != full.Length || outFull[0] != 1) throw Err(n, "an Expand that adds axes or grows the batch is not supported");
        var os = outFull[1..];
        if (os.SequenceEqual(x.Shape)) { Alias(n, In(n, 0)); return; }
        Emit(n, new ExpandLayer(os), os, x);
    }

    void TileOp(NodeProto n)
    {
        var reps = ConstIn(n, 1, "repeats").V.Select(v => (int)v).ToArray();
        var x = Plain(n, 0);
        if (reps.Length != x.Shape.Length + 1 || reps.Any(r => r <= 0)) throw Err(n, $"repeats [{string.Join(", ", reps)}] do not fit rank {x.Shape.Length + 1}");
        if (reps[0] != 1) throw Err(n, "tiling the batch axis is not supported");
        if (reps.All(r => r == 1)) { Alias(n, In(n, 0)); return; }
        Emit(n, new TileLayer(reps[1..]), x.Shape.Select((d, i) => d * reps[i + 1]).ToArray(), x);
    }

    void ConstantOfShapeOp(NodeProto n)
    {
        var shape = ConstIn(n, 0, "shape");
        if (shape.V.Any(double.IsNaN)) throw Err(n, "a shape that depends on the batch size is not supported");
        double value = 0;
        foreach (var a in n.Attribute) if (a.Name == "value") { var c = Decode(a.T, $"ConstantOfShape node '{NodeName(n)}'"); value = c.Count > 0 ? c.V[0] : 0; }
        var dims = shape.V.Select(v => (int)v).ToArray();
        SetConst(n, 0, new Const { Dims = dims, V = Enumerable.Repeat(value, dims.Aggregate(1, (p, q) => p * q)).ToArray() });
    }

    /// <summary>
    /// The constant as one value per channel (per feature for [N, F]) when it broadcasts that way onto [N, shape...]
    /// without changing the shape; null otherwise.
    /// </summary>
    double[]? PerChannel(NodeProto n, Const k, int[] shape)
    {
        int full = shape.Length + 1, c = shape[0];
        if (k.Dims.Length > full) return null;
        for (int j = 0; j < k.Dims.Length; j++)
        {
            int axis = full - k.Dims.Length + j, d = k.Dims[j];
            int want = axis == 0 ? 1 : shape[axis - 1];
            if (d != 1 && d != want) return null;
        }
        if (k.Count == 0) return null;
        if (k.V.All(e => e == k.V[0])) return Enumerable.Repeat(k.V[0], c).ToArray();
        for (int j = 0; j < k.Dims.Length; j++)
        {
            int axis = full - k.Dims.Length + j;
            if (axis != 1 && k.Dims[j] != 1) return null;
        }
        return k.Count == c ? (double[])k.V.Clone() : null;
    }

    Const Broadcast(NodeProto n, Const a, Const b, Func<double, double, double> f)
    {
        int r = Math.Max(a.Dims.Length, b.Dims.Length);
        int[] Pad(int[] d) => Enumerable.Repeat(1, r - d.Length).Concat(d).ToArray();
        var da = Pad(a.Dims); var db = Pad(b.Dims); var dout = new int[r];
        for (int i = 0; i < r; i++)
        {
            if (da[i] != db[i] && da[i] != 1 && db[i] != 1) throw Err(n, $"constant shapes {Tensor.ShapeString(a.Dims)} and {Tensor.ShapeString(b.Dims)} do not broadcast");
            dout[i] = Math.Max(da[i], db[i]);
        }
        // A broadcast of [40000, 1] and [1, 40000] would fold into 1.6 billion values: check before allocating.
        long count64 = Limits.Product(dout);
        Limits.Check($"{n.OpType} node '{NodeName(n)}': folding constants of shapes {Tensor.ShapeString(a.Dims)} and {Tensor.ShapeString(b.Dims)} makes {Tensor.ShapeString(dout)}; values", count64, Limits.MaxTensorElements, "PERTURB_MAX_TENSOR_ELEMENTS");
        int count = (int)count64;
        var v = new double[count];
        var idx = new int[r];
        for (int e = 0; e < count; e++)
        {
            int rem = e;
            for (int i = r - 1; i >= 0; i--) { idx[i] = rem % dout[i]; rem /= dout[i]; }
            int ia = 0, ib = 0;
            for (int i = 0; i < r; i++) { ia = ia * da[i] + (da[i] == 1 ? 0 : idx[i]); ib = ib * db[i] + (db[i] == 1 ? 0 : idx[i]); }
            v[e] = f(a.V[ia], b.V[ib]);
        }
        return new Const { Dims = dout, V = v };
    }

    // ---------------------------------------------------------------- activations, pooling, norm

    void ClipOp(NodeProto n)
    {
        var x = Plain(n, 0);
        double lo = double.NegativeInfinity, hi = double.PositiveInfinity;
        if (_opset < 11)
        {
            lo = AttrF(n, "min", float.NegativeInfinity); hi = AttrF(n, "max", float.PositiveInfinity);
        }
        else
        {
            if (In(n, 1).Length > 0) lo = Scalar(n, 1, "min");
            if (In(n, 2).Length > 0) hi = Scalar(n, 2, "max");
        }
        if (lo <= -float.MaxValue) lo = double.NegativeInfinity;
        if (hi >= float.MaxValue) hi = double.PositiveInfinity;
        if (lo > hi) throw Err(n, $"min {lo} exceeds max {hi}");
        if (double.IsNegativeInfinity(lo) && double.IsPositiveInfinity(hi)) { Alias(n, In(n, 0)); return; }
        if (lo == 0 && double.IsPositiveInfinity(hi)) { Emit(n, new ActivationLayer(Activation.Relu), x); return; }
        Emit(n, new ClipLayer((float)lo, (float)hi), x);
    }

    void PoolOp(NodeProto n, bool max)
    {
        if (n.Output.Count > 1 && n.Output[1].Length > 0 && _uses.ContainsKey(n.Output[1])) throw Err(n, "the Indices output is not supported");
        var x = PadOrPlain(n, 0);
        var inS = x.SourceShape ?? x.Shape;
        if (inS.Length != 3) throw Err(n, $"only 2-D pooling on [N, C, H, W] is supported, the input is [N, {string.Join(", ", inS)}]");
        var ks = AttrInts(n, "kernel_shape");
        if (ks == null || ks.Length != 2 || ks.Any(v => v <= 0)) throw Err(n, "kernel_shape must hold two positive values");
        var k = new[] { (int)ks[0], (int)ks[1] };
        var st = Pair(n, "strides", 1);
        var dl = Pair(n, "dilations", 1);
        if (dl[0] != 1 || dl[1] != 1) throw Err(n, "dilated pooling is not supported");
        bool ceil = AttrI(n, "ceil_mode", 0) != 0;
        bool cip = !max && AttrI(n, "count_include_pad", 0) != 0;
        if (x.Pads != null)
        {
            if (max && !(x.Node >= 0 && _nodes[x.Node].NonNegative))
                throw Err(n, $"Pad node '{x.PadNode}' pads with zeros before a max pool on values that may be negative; the engine's max pool ignores padding, so it cannot absorb it");
            if (!max)
            {
                var own = AttrInts(n, "pads");
                if (!cip && own != null && own.Any(v => v != 0) || (!cip && AttrS(n, "auto_pad", "NOTSET") is "SAME_UPPER" or "SAME_LOWER"))
                    throw Err(n, $"Pad node '{x.PadNode}' (counted in the average) combined with padding that is not counted cannot be expressed");
                cip = true;
            }
        }
        var (ph, pw) = ResolvePads(n, x, k, st, dl, ceil);
        var ps = new PoolShape(1, inS[0], inS[1], inS[2], k[0], k[1], st[0], st[1], ph, pw, ceil, cip);
        if (ps.OutH <= 0 || ps.OutW <= 0) throw Err(n, $"input {Tensor.ShapeString(inS)} is smaller than the {k[0]}x{k[1]} window");
        Pool2d layer;
        try { layer = new Pool2d(max, k[0], st[0], ph, ceil, cip, k[1], st[1], pw); }
        catch (PerturbException e) { throw Err(n, e.Message); }
        Emit(n, layer, new[] { inS[0], ps.OutH, ps.OutW }, x);
    }

    void GapOp(NodeProto n)
    {
        var x = Plain(n, 0);
        if (x.Shape.Length != 3) throw Err(n, $"expects [N, C, H, W], got [N, {string.Join(", ", x.Shape)}]");
        Emit(n, new GlobalAvgPool(), new[] { x.Shape[0], 1, 1 }, x);
    }

    void BatchNormOp(NodeProto n)
    {
        for (int o = 1; o < n.Output.Count; o++)
            if (n.Output[o].Length > 0 && _uses.ContainsKey(n.Output[o])) throw Err(n, "training outputs (running statistics) are not supported");
        if (AttrI(n, "training_mode", 0) != 0) throw Err(n, "training_mode=1 is not supported (import an inference graph)");
        if (_opset < 9 && AttrI(n, "spatial", 1) != 1) throw Err(n, "spatial=0 is not supported");
        var x = Plain(n, 0);
        if (x.Shape.Length != 3 && x.Shape.Length != 1) throw Err(n, $"expects [N, C, H, W] or [N, C], got [N, {string.Join(", ", x.Shape)}]");
        int c = x.Shape[0];
        string[] what = { "scale", "B", "mean", "var" };
        var vals = new float[4][];
        for (int i = 0; i < 4; i++)
        {
            var t = ConstIn(n, i + 1, what[i]);
            if (t.Count != c) throw Err(n, $"{what[i]} has {t.Count} values for {c} channels");
            vals[i] = F(t.V);
        }
        float eps = AttrF(n, "epsilon", 1e-5f), mom = AttrF(n, "momentum", 0.9f);
        var p = Emit(n, new BatchNorm2d(c, eps, 1f - mom), x);
        p.W["weight"] = vals[0]; p.W["bias"] = vals[1]; p.W["running_mean"] = vals[2]; p.W["running_var"] = vals[3];
    }

    // ---------------------------------------------------------------- shapes

    void FlattenOp(NodeProto n)
    {
        long axis = AttrI(n, "axis", 1);
        if (_consts.TryGetValue(In(n, 0), out var kc))
        {
            int r = kc.Dims.Length; if (axis < 0) axis += r;
            int a = kc.Dims.Take((int)axis).Aggregate(1, (p, q) => p * q);
            SetConst(n, 0, new Const { Dims = new[] { a, kc.Count / Math.Max(a, 1) }, V = kc.V });
            return;
        }
        var x = Plain(n, 0);
        if (axis < 0) axis += x.Shape.Length + 1;
        if (axis == 1) { Flat(n, x); return; }
        if (axis <= 0 || axis > x.Shape.Length) throw Err(n, $"axis {AttrI(n, "axis", 1)} would merge the batch with other axes");
        int lead = x.Shape.Take((int)axis - 1).Aggregate(1, (p, q) => p * q);
        ReshapeTo(n, x, new[] { lead, Layer.Product(x.Shape) / lead });
    }

    void Flat(NodeProto n, Dyn x)
    {
        if (x.Shape.Length == 1) { Alias(n, In(n, 0)); return; }
        Emit(n, new Flatten(), new[] { Layer.Product(x.Shape) }, x);
    }

    void ReshapeOp(NodeProto n)
    {
        if (In(n, 1).Length == 0 || !_consts.ContainsKey(In(n, 1))) throw Err(n, "the target shape must be a constant (an initializer or a Constant node)");
        var tv = _consts[In(n, 1)].V;
        if (tv.Skip(1).Any(double.IsNaN)) throw Err(n, "the target shape depends on the batch size beyond its first dimension");
        var t = tv.Select((v, i) => i == 0 && double.IsNaN(v) ? -2 : (long)v).ToArray(); // -2: the batch size, from Shape
        bool allowZero = AttrI(n, "allowzero", 0) != 0;
        if (_consts.TryGetValue(In(n, 0), out var kc))
        {
            if (t.Contains(-2)) throw Err(n, "a constant reshaped by the batch size");
            var dims = Resolve(n, t, kc.Dims, kc.Count, allowZero);
            SetConst(n, 0, new Const { Dims = dims, V = kc.V });
            return;
        }
        var x = Plain(n, 0);
        if (t.Length == 0) throw Err(n, "a reshape to a scalar is not supported");
        if (allowZero && t.Contains(0)) throw Err(n, "a zero-sized dimension is not supported");
        int per = Layer.Product(x.Shape);
        var rest = new int[t.Length - 1];
        int known = 1, infer = -1;
        for (int i = 1; i < t.Length; i++)
        {
            long d = t[i];
            if (d == 0) { if (i - 1 >= x.Shape.Length) throw Err(n, $"0 at position {i} copies a dimension the input lacks"); d = x.Shape[i - 1]; }
            if (d == -1) { if (infer >= 0) throw Err(n, "more than one -1 in the shape"); infer = i - 1; continue; }
            if (d <= 0 || d > int.MaxValue) throw Err(n, $"invalid dimension {d}");
            rest[i - 1] = (int)d; known *= (int)d;
        }
        if (t[0] == -1 && infer >= 0) throw Err(n, $"shape [{string.Join(", ", t)}] leaves the batch dimension ambiguous");
        if (t[0] < -2) throw Err(n, $"invalid dimension {t[0]}");
        if (infer >= 0)
        {
            if (known == 0 || per % known != 0) throw Err(n, $"shape [{string.Join(", ", t)}] does not fit [N, {string.Join(", ", x.Shape)}]");
            rest[infer] = per / known; known = per;
        }
        if (known != per)
            throw Err(n, $"shape [{string.Join(", ", t)}] changes the batch size of [N, {string.Join(", ", x.Shape)}] (the batch must stay the first axis)");
        if (rest.Length == 0) throw Err(n, "a reshape to [N] (dropping every axis but the batch) is not supported");
        ReshapeTo(n, x, rest);
    }

    int[] Resolve(NodeProto n, long[] t, int[] src, int count, bool allowZero)
    {
        var d = new int[t.Length];
        int known = 1, infer = -1;
        for (int i = 0; i < t.Length; i++)
        {
            long v = t[i];
            if (v == 0 && !allowZero) { if (i >= src.Length) throw Err(n, "0 copies a missing dimension"); v = src[i]; }
            if (v == -1) { if (infer >= 0) throw Err(n, "more than one -1"); infer = i; continue; }
            if (v < 0) throw Err(n, $"invalid dimension {v}");
            d[i] = (int)v; known *= (int)v;
        }
        if (infer >= 0) { if (known == 0 || count % known != 0) throw Err(n, "shape does not fit"); d[infer] = count / known; }
        else if (known != count) throw Err(n, $"shape [{string.Join(", ", t)}] does not fit {count} values");
        return d;
    }

    void ConcatOp(NodeProto n)
    {
        var names = n.Input.Where(s => s.Length > 0).ToList();
        if (names.Count == 0) throw Err(n, "no inputs");
        if (names.All(_consts.ContainsKey))
        {
            var parts = names.Select(s => _consts[s]).ToList();
            if (parts.Any(p => p.Dims.Length != 1)) throw Err(n, "only 1-D constants can be concatenated");
            var v = parts.SelectMany(p => p.V).ToArray();
            SetConst(n, 0, new Const { Dims = new[] { v.Length }, V = v });
            return;
        }
        var xs = Enumerable.Range(0, n.Input.Count).Where(i => n.Input[i].Length > 0).Select(i => Plain(n, i)).ToArray();
        int rank = xs[0].Shape.Length + 1;
        long axis = AttrI(n, "axis", 1);
        if (axis < 0) axis += rank;
        if (axis <= 0 || axis >= rank) throw Err(n, $"axis {AttrI(n, "axis", 1)} is not supported (the batch axis, or outside rank {rank})");
        int a = (int)axis - 1;
        foreach (var x in xs)
            if (x.Shape.Length != xs[0].Shape.Length || x.Shape.Where((d, i) => i != a).Zip(xs[0].Shape.Where((d, i) => i != a), (p, q) => p != q).Any(b => b))
                throw Err(n, $"inputs differ beyond axis {axis}: [N, {string.Join(", ", xs[0].Shape)}] and [N, {string.Join(", ", x.Shape)}]");
        var o = (int[])xs[0].Shape.Clone();
        o[a] = xs.Sum(x => x.Shape[a]);
        Emit(n, new Concat(a), o, xs);
    }

    void SoftmaxOp(NodeProto n, bool log = false)
    {
        var x = Plain(n, 0);
        long axis = AttrI(n, "axis", _opset < 13 ? 1 : -1);
        if (axis < 0) axis += x.Shape.Length + 1;
        // Before opset 13 the softmax runs over the flattened axes from axis on; from 13 over that one axis. Either way
        // the engine's layer needs only size-1 dimensions after the axis.
        if (axis < 1 || x.Shape.Skip((int)axis).Any(d => d != 1))
            throw Err(n, $"only a softmax over an axis followed by size-1 dimensions is supported (input [N, {string.Join(", ", x.Shape)}], axis {AttrI(n, "axis", _opset < 13 ? 1 : -1)})");
        Emit(n, new SoftmaxLayer((int)axis - 1 == x.Shape.Length - 1 ? -1 : (int)axis - 1), x);
        if (log) _logSoftmax[_nodes.Count - 1] = NodeName(n);
    }

    void DropoutOp(NodeProto n)
    {
        if (n.Output.Count > 1 && n.Output[1].Length > 0 && _uses.ContainsKey(n.Output[1])) throw Err(n, "the mask output is not supported");
        var x = Plain(n, 0);
        double p = _opset < 12 ? AttrF(n, "ratio", 0.5f) : (In(n, 1).Length > 0 ? Scalar(n, 1, "ratio") : 0.5);
        if (!(p >= 0 && p < 1)) throw Err(n, $"ratio {p} is outside [0, 1)");
        Emit(n, new Dropout((float)p), x);
    }

    void PadOp(NodeProto n)
    {
        var x = Plain(n, 0);
        string mode = AttrS(n, "mode", "constant");
        if (mode != "constant") throw Err(n, $"mode '{mode}' is not supported (only constant zero padding folded into a Conv or pooling)");
        long[] pads; double value = 0;
        int rank = x.Shape.Length + 1;
        if (_opset < 11)
        {
            pads = AttrInts(n, "pads") ?? throw Err(n, "pads attribute missing");
            value = AttrF(n, "value", 0f);
        }
        else
        {
            if (!_consts.ContainsKey(In(n, 1))) throw Err(n, "pads must be a constant");
            pads = _consts[In(n, 1)].V.Select(v => (long)v).ToArray();
            if (In(n, 2).Length > 0) value = Scalar(n, 2, "constant_value");
            if (In(n, 3).Length > 0)
            {
                var axes = _consts.TryGetValue(In(n, 3), out var ax) ? ax.V.Select(v => (int)(v < 0 ? v + rank : v)).ToArray() : throw Err(n, "axes must be a constant");
                if (pads.Length != 2 * axes.Length) throw Err(n, "pads does not match axes");
                var full = new long[2 * rank];
                for (int i = 0; i < axes.Length; i++) { full[axes[i]] = pads[i]; full[rank + axes[i]] = pads[axes.Length + i]; }
                pads = full;
            }
        }
        if (value != 0) throw Err(n, $"padding value {value} is not supported (only zero)");
        if (rank != 4 || pads.Length != 8) throw Err(n, $"only padding of [N, C, H, W] tensors is supported");
        if (pads.Any(v => v < 0)) throw Err(n, "negative pads (cropping) are not supported");
        if (pads[0] != 0 || pads[1] != 0 || pads[4] != 0 || pads[5] != 0) throw Err(n, "only spatial (H, W) padding is supported");
        var p = new[] { (int)pads[2], (int)pads[3], (int)pads[6], (int)pads[7] };
        _dyn[n.Output[0]] = new Dyn
        {
            Node = x.Node, SourceShape = x.Shape, Pads = p, PadNode = NodeName(n),
            Shape = new[] { x.Shape[0], x.Shape[1] + p[0] + p[2], x.Shape[2] + p[1] + p[3] },
        };
    }

    // Shape arithmetic as PyTorch exports x.view(x.size(0), -1): Shape → Gather → Unsqueeze → Concat → Reshape.
    // The batch size is unknown at import; it travels through these constant folds as NaN, which Reshape reads as
    // "the batch dimension" in its first position and rejects anywhere else.

    void ShapeOp(NodeProto n)
    {
        var x = Plain(n, 0);
        var full = new[] { double.NaN }.Concat(x.Shape.Select(d => (double)d)).ToArray();
        int r = full.Length;
        long start = AttrI(n, "start", 0), end = AttrI(n, "end", r);
        if (start < 0) start += r;
        if (end < 0) end += r;
        start = Math.Clamp(start, 0, r); end = Math.Clamp(end, start, r);
        var v = full[(int)start..(int)end];
        SetConst(n, 0, new Const { Dims = new[] { v.Length }, V = v });
    }

    void GatherOp(NodeProto n)
    {
        if (!_consts.TryGetValue(In(n, 1), out var idx)) throw Err(n, "the indices must be a constant");
        if (!_consts.TryGetValue(In(n, 0), out var data)) { GatherComputed(n, idx); return; }
        if (data.Dims.Length != 1 || AttrI(n, "axis", 0) != 0) throw Err(n, "only a Gather from a 1-D constant is supported");
        var v = idx.V.Select(i =>
        {
            long k = (long)i < 0 ? (long)i + data.Count : (long)i;
            if (k < 0 || k >= data.Count) throw Err(n, $"index {i} is out of range for {data.Count} values");
            return data.V[k];
        }).ToArray();
        SetConst(n, 0, new Const { Dims = (int[])idx.Dims.Clone(), V = v });
    }

    void UnsqueezeOp(NodeProto n)
    {
        long[] axes = _opset < 13 ? AttrInts(n, "axes") ?? throw Err(n, "axes missing")
            : _consts.TryGetValue(In(n, 1), out var a) ? a.V.Select(v => (long)v).ToArray() : throw Err(n, "axes must be a constant");
        if (!_consts.TryGetValue(In(n, 0), out var c)) { UnsqueezeComputed(n, axes); return; }
        int r = c.Dims.Length + axes.Length;
        var norm = axes.Select(x => x < 0 ? x + r : x).ToHashSet();
        var dims = new List<int>();
        for (int i = 0, j = 0; i < r; i++) dims.Add(norm.Contains(i) ? 1 : c.Dims[j++]);
        SetConst(n, 0, new Const { Dims = dims.ToArray(), V = c.V });
    }

    void CastOp(NodeProto n)
    {
        long to = AttrI(n, "to", 0);
        if (_consts.TryGetValue(In(n, 0), out var c))
        {
            bool integral = to is 2 or 3 or 4 or 5 or 6 or 7 or 12 or 13;
            SetConst(n, 0, new Const { Dims = c.Dims, V = integral ? c.V.Select(v => double.IsNaN(v) ? v : Math.Truncate(v)).ToArray() : c.V });
            return;
        }
        if (to != (long)TensorProto.Types.DataType.Float) throw Err(n, $"a cast of a computed tensor to {TypeName((int)to)} is not supported");
        Plain(n, 0);
        Alias(n, In(n, 0));
    }

    void ConstantOp(NodeProto n)
    {
        Const? c = null;
        foreach (var a in n.Attribute)
        {
            switch (a.Name)
            {
                case "value": c = Decode(a.T, $"Constant node '{NodeName(n)}'"); break;
                case "value_float": c = new Const { V = new double[] { a.F } }; break;
                case "value_floats": c = new Const { Dims = new[] { a.Floats.Count }, V = a.Floats.Select(v => (double)v).ToArray() }; break;
                case "value_int": c = new Const { V = new double[] { a.I } }; break;
                case "value_ints": c = new Const { Dims = new[] { a.Ints.Count }, V = a.Ints.Select(v => (double)v).ToArray() }; break;
                default: throw Err(n, $"attribute '{a.Name}' is not supported");
            }
        }
        SetConst(n, 0, c ?? throw Err(n, "no value"));
    }

    // ---------------------------------------------------------------- plumbing

    string In(NodeProto n, int i) => i < n.Input.Count ? n.Input[i] : "";

    Dyn PadOrPlain(NodeProto n, int i)
    {
        var name = In(n, i);
        if (name.Length == 0) throw Err(n, $"input {i} is missing");
        if (_consts.ContainsKey(name)) throw Err(n, $"input '{name}' is a constant, not a computed tensor");
        return _dyn.TryGetValue(name, out var d) ? d : throw Err(n, $"input '{name}' is not produced by any earlier node");
    }

    Dyn Plain(NodeProto n, int i)
    {
        var d = PadOrPlain(n, i);
        if (d.Pads != null) throw Err(n, $"reads Pad node '{d.PadNode}', which only a Conv or pooling can absorb");
        return d;
    }

    Const ConstIn(NodeProto n, int i, string what)
    {
        var name = In(n, i);
        if (name.Length == 0) throw Err(n, $"{what} is missing");
        return _consts.TryGetValue(name, out var c) ? c : throw Err(n, $"{what} ('{name}') must be a constant (initializer or Constant node)");
    }

    double Scalar(NodeProto n, int i, string what)
    {
        var c = ConstIn(n, i, what);
        if (c.Count != 1) throw Err(n, $"{what} must be a scalar, has {c.Count} values");
        return c.V[0];
    }

    void SetConst(NodeProto n, int o, Const c) { if (o < n.Output.Count) _consts[n.Output[o]] = c; }

    void Alias(NodeProto n, string src)
    {
        if (_consts.TryGetValue(src, out var c)) { SetConst(n, 0, c); return; }
        _dyn[n.Output[0]] = _dyn.TryGetValue(src, out var d) ? d : throw Err(n, $"input '{src}' is not produced by any earlier node");
    }

    Dyn DynOf(PNode p) => new() { Node = _nodes.IndexOf(p), Shape = p.OutShape };

    PNode Emit(NodeProto n, Layer layer, params Dyn[] ins) => Emit(n, layer, (int[])ins[0].Shape.Clone(), ins);

    PNode Emit(NodeProto n, Layer layer, int[] outShape, params Dyn[] ins) => Emit(n, layer, outShape, NodeName(n), true, ins);

    PNode Emit(NodeProto n, Layer layer, int[] outShape, string baseName, bool bindOutput, params Dyn[] ins)
    {
        bool inNonNeg = ins.All(d => d.Node >= 0 && _nodes[d.Node].NonNegative);
        var p = new PNode
        {
            Name = UniqueName(baseName, n.OpType), Layer = layer, Inputs = ins.Select(d => d.Node).ToArray(), OutShape = outShape,
            NonNegative = layer switch
            {
                ActivationLayer a => a.Function is Activation.Relu or Activation.Sigmoid,
                ClipLayer c => c.Min >= 0,
                Pool2d or GlobalAvgPool or Flatten or Dropout or Concat or AddLayer or MulLayer => inNonNeg,
                _ => false,
            },
        };
        _nodes.Add(p);
        if (bindOutput) _dyn[n.Output[0]] = new Dyn { Node = _nodes.Count - 1, Shape = outShape };
        return p;
    }

    static readonly Regex Bad = new("[^A-Za-z0-9_.\\-]+", RegexOptions.Compiled);

    string UniqueName(string raw, string op)
    {
        var s = Bad.Replace(raw, "_").Trim('_', '.', '-');
        if (s.Length == 0) s = op.ToLowerInvariant();
        var name = s;
        for (int i = 2; !_names.Add(name); i++) name = $"{s}_{i}";
        return name;
    }

    static float[] F(double[] v) { var f = new float[v.Length]; for (int i = 0; i < v.Length; i++) f[i] = (float)v[i]; return f; }

    // ---------------------------------------------------------------- attributes

    static AttributeProto? Attr(NodeProto n, string name) => n.Attribute.FirstOrDefault(a => a.Name == name);
    static long AttrI(NodeProto n, string name, long def) => Attr(n, name) is { } a ? a.I : def;
    static float AttrF(NodeProto n, string name, float def) => Attr(n, name) is { } a ? a.F : def;
    static string AttrS(NodeProto n, string name, string def) => Attr(n, name) is { } a ? a.S.ToStringUtf8() : def;
    static long[]? AttrInts(NodeProto n, string name) => Attr(n, name) is { } a ? a.Ints.ToArray() : null;

    // ---------------------------------------------------------------- tensors

    static string TypeName(int t) => Enum.IsDefined(typeof(TensorProto.Types.DataType), t) ? ((TensorProto.Types.DataType)t).ToString() : t.ToString();

    static Const Decode(TensorProto t, string what)
    {
        if (t.DataLocation == TensorProto.Types.DataLocation.External || t.ExternalData.Count > 0)
        {
            var loc = t.ExternalData.FirstOrDefault(e => e.Key == "location")?.Value;
            throw new PerturbException($"{what} keeps its data in an external file{(loc != null ? " '" + loc + "'" : "")} (data_location EXTERNAL), which is not supported; save the model with its weights inside the .onnx file");
        }
        var dims = new int[t.Dims.Count];
        long count = 1;
        for (int i = 0; i < dims.Length; i++)
        {
            if (t.Dims[i] < 0 || t.Dims[i] > int.MaxValue) throw new PerturbException($"{what} has an invalid dimension {t.Dims[i]}");
            dims[i] = (int)t.Dims[i]; count *= t.Dims[i];
        }
        if (count > int.MaxValue) throw new PerturbException($"{what} is too large");
        int cnt = (int)count;
        var raw = t.HasRawData ? t.RawData.Span : ReadOnlySpan<byte>.Empty;
        bool useRaw = t.HasRawData;
        double[] v;
        var dt = (TensorProto.Types.DataType)t.DataType;
        int size = dt switch
        {
            TensorProto.Types.DataType.Float or TensorProto.Types.DataType.Int32 or TensorProto.Types.DataType.Uint32 => 4,
            TensorProto.Types.DataType.Double or TensorProto.Types.DataType.Int64 or TensorProto.Types.DataType.Uint64 => 8,
            TensorProto.Types.DataType.Float16 or TensorProto.Types.DataType.Bfloat16 or TensorProto.Types.DataType.Int16 or TensorProto.Types.DataType.Uint16 => 2,
            TensorProto.Types.DataType.Int8 or TensorProto.Types.DataType.Uint8 or TensorProto.Types.DataType.Bool => 1,
            _ => throw new PerturbException($"{what} has data type {TypeName(t.DataType)}, which is not supported"),
        };
        if (useRaw)
        {
            if (raw.Length != (long)cnt * size)
                throw new PerturbException($"{what} holds {raw.Length} bytes of raw data; its shape {Tensor.ShapeString(dims)} of {dt} needs {(long)cnt * size}");
            v = new double[cnt];
            for (int i = 0; i < cnt; i++)
            {
                var b = raw.Slice(i * size, size);
                v[i] = dt switch
                {
                    TensorProto.Types.DataType.Float => BinaryPrimitives.ReadSingleLittleEndian(b),
                    TensorProto.Types.DataType.Double => BinaryPrimitives.ReadDoubleLittleEndian(b),
                    TensorProto.Types.DataType.Int32 => BinaryPrimitives.ReadInt32LittleEndian(b),
                    TensorProto.Types.DataType.Uint32 => BinaryPrimitives.ReadUInt32LittleEndian(b),
                    TensorProto.Types.DataType.Int64 => BinaryPrimitives.ReadInt64LittleEndian(b),
                    TensorProto.Types.DataType.Uint64 => BinaryPrimitives.ReadUInt64LittleEndian(b),
                    TensorProto.Types.DataType.Float16 => (double)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(b)),
                    TensorProto.Types.DataType.Bfloat16 => BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(b) << 16),
                    TensorProto.Types.DataType.Int16 => BinaryPrimitives.ReadInt16LittleEndian(b),
                    TensorProto.Types.DataType.Uint16 => BinaryPrimitives.ReadUInt16LittleEndian(b),
                    TensorProto.Types.DataType.Int8 => (sbyte)b[0],
                    _ => b[0],
                };
            }
        }
        else
        {
            v = dt switch
            {
                TensorProto.Types.DataType.Float => t.FloatData.Select(x => (double)x).ToArray(),
                TensorProto.Types.DataType.Double => t.DoubleData.ToArray(),
                TensorProto.Types.DataType.Int64 => t.Int64Data.Select(x => (double)x).ToArray(),
                TensorProto.Types.DataType.Uint32 or TensorProto.Types.DataType.Uint64 => t.Uint64Data.Select(x => (double)x).ToArray(),
                TensorProto.Types.DataType.Float16 => t.Int32Data.Select(x => (double)BitConverter.UInt16BitsToHalf((ushort)x)).ToArray(),
                TensorProto.Types.DataType.Bfloat16 => t.Int32Data.Select(x => (double)BitConverter.Int32BitsToSingle((x & 0xFFFF) << 16)).ToArray(),
                _ => t.Int32Data.Select(x => (double)x).ToArray(),
            };
            if (v.Length != cnt)
                throw new PerturbException($"{what} holds {v.Length} values; its shape {Tensor.ShapeString(dims)} needs {cnt}");
        }
        return new Const { Dims = dims, V = v };
    }
}
