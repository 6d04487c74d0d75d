using System.Text.Json;
using System.Text.Json.Nodes;

namespace Perturb.Engine.Nn;

/// <summary>A node of the graph: a layer and the nodes it reads (-1: the model's input).</summary>
public sealed record Node(Layer Layer, int[] Inputs);

/// <summary>
/// A network as a DAG of layers in topological order, with one input and one output (the last node).
/// <see cref="Forward"/> keeps what <see cref="Backward"/> needs; tensors it returns belong to the model and stay
/// valid until the next Forward. Batch size is free at run time.
/// </summary>
public sealed class Model : IDisposable
{
    public IBackend Backend { get; }
    public int[] InputShape { get; }
    public IReadOnlyList<Node> Nodes => _nodes;
    public ulong Seed { get; }
    /// <summary>Optional class names (saved with the model).</summary>
    public string[]? ClassNames { get; set; }
    /// <summary>Free-form facts kept with the model file (preset, data set, training summary).</summary>
    public Dictionary<string, string> Info { get; } = new();
    public bool Training => _ctx.Training;

    readonly List<Node> _nodes;
    readonly PassContext _ctx;
    Tensor[]? _outs;
    Tensor? _input;

    internal Model(IBackend be, int[] inputShape, List<Node> nodes, ulong seed)
    {
        Backend = be; InputShape = inputShape; _nodes = nodes; Seed = seed;
        _ctx = new PassContext(be) { DropoutSeed = seed ^ 0x5DEECE66DUL };
    }

    public int[] OutputShape => _nodes[^1].Layer.OutShape;
    /// <summary>Number of logits per sample (1 for a single-output binary model).</summary>
    public int NumOutputs => Layer.Product(OutputShape);
    /// <summary>Number of classes: the logits, or 2 for a single-output (sigmoid) model.</summary>
    public int NumClasses => NumOutputs == 1 ? 2 : NumOutputs;

    /// <summary>Info key: how logits become probabilities, "softmax" (default) or "sigmoid" (set by ONNX import).</summary>
    public const string ProbabilitiesKey = "probabilities";
    /// <summary>Info key: the sentence saying which final Softmax/LogSoftmax/Sigmoid the ONNX import removed.</summary>
    public const string EndingKey = "onnx.ending";
    /// <summary>True for a multi-output model whose outputs are independent sigmoids (an imported graph ending in Sigmoid).</summary>
    public bool IndependentSigmoids => NumOutputs > 1 && Info.TryGetValue(ProbabilitiesKey, out var p) && p == "sigmoid";

    /// <summary>
    /// Eval-mode folding (default on): in eval mode each BatchNorm2d that alone reads a Conv2d's output is folded
    /// into that convolution's weights and bias, and a ReLU that alone reads the result runs in the convolution's
    /// epilogue, its mask (the output's sign) reused by backward. Logits and input gradients are those of the unfolded
    /// graph up to float rounding. Training mode, or false here, runs every node as built.
    /// </summary>
    public bool FoldEval { get; set; } = true;
    bool _folded;

    /// <summary>Training mode: BatchNorm uses batch statistics and Dropout drops. Eval mode otherwise.</summary>
    public void Train(bool on = true) { _ctx.Training = on; }
    public void Eval() => Train(false);

    /// <summary>Every parameter and buffer with its full name (layer.param), in graph order.</summary>
    public IEnumerable<(string Name, Parameter P)> NamedParameters() =>
        _nodes.SelectMany(n => n.Layer.Parameters.Select(p => (n.Layer.Name + "." + p.Name, p)));

    public IEnumerable<Parameter> TrainableParameters() => NamedParameters().Select(x => x.P).Where(p => p.Trainable);

    public long ParameterCount => TrainableParameters().Sum(p => (long)p.Value.Length);

    /// <summary>Values one sample holds in a forward pass: its input plus every layer's output (what the pass keeps for backward).</summary>
    public long ActivationValuesPerSample => Layer.Product(InputShape) + _nodes.Sum(n => (long)Layer.Product(n.Layer.OutShape));

    /// <summary>
    /// Values one sample holds at the peak of an <see cref="Infer"/> pass, which frees each output after its last
    /// reader: the input plus, at the worst node, every output made so far that a later node still reads and the
    /// node's own output (counted as if every node allocated, so a pass-through is counted twice: an upper bound).
    /// A ResNet-18 holds a few stage-1 maps at once, not all of them, so search attacks may query far larger chunks
    /// than <see cref="ActivationValuesPerSample"/> suggests for the same memory.
    /// </summary>
    public long InferValuesPerSample
    {
        get
        {
            int n = _nodes.Count;
            var last = new int[n];
            for (int i = 0; i < n; i++) last[i] = i;
            for (int i = 0; i < n; i++) foreach (var j in _nodes[i].Inputs) if (j >= 0) last[j] = Math.Max(last[j], i);
            long peak = 0;
            for (int i = 0; i < n; i++)
            {
                long live = 0;
                for (int j = 0; j <= i; j++) if (last[j] >= i || j == n - 1) live += Layer.Product(_nodes[j].Layer.OutShape);
                peak = Math.Max(peak, live);
            }
            return Layer.Product(InputShape) + peak;
        }
    }

    /// <summary>Tells cached values derived from parameters (BatchNorm's eval affine) that they are stale.</summary>
    public void MarkParametersChanged() => _ctx.ParamVersion++;

    /// <summary>Sets the dropout stream (seeded per run so runs reproduce).</summary>
    public void SetDropoutStream(ulong seed, ulong offset = 0) { _ctx.DropoutSeed = seed; _ctx.DropoutOffset = offset; }

    /// <summary>Runs the network on x [N, C, H, W]; returns logits [N, outputs...] owned by the model.</summary>
    public Tensor Forward(Tensor x) => Run(x, inferenceOnly: false);

    /// <summary>
    /// A forward pass that no backward follows (evaluation, prediction, search attacks): each activation is freed as
    /// soon as no later node reads it, so a long chain holds a few activations instead of all of them. The logits are
    /// returned as by <see cref="Forward"/>; <see cref="Backward"/> and <see cref="NodeOutput"/> need a Forward.
    /// </summary>
    public Tensor Infer(Tensor x) => Run(x, inferenceOnly: true);

    Tensor Run(Tensor x, bool inferenceOnly, bool allowFold = true)
    {
        if (!ReferenceEquals(x.Backend, Backend))
            throw new PerturbException($"input is on backend {x.Backend.Name}, the model on {Backend.Name}");
        bool ok = x.Rank == InputShape.Length + 1;
        for (int d = 0; ok && d < InputShape.Length; d++) ok = x.Shape[d + 1] == InputShape[d];
        if (!ok)
        {
            var first = _nodes[0].Layer;
            throw new PerturbException($"input shape {Tensor.ShapeString(x.Shape[1..])} does not fit the model: layer '{first.Name}' ({first.Type}) expects {Tensor.ShapeString(InputShape)}");
        }
        _ctx.Release(x.Shape);
        EvalFold.Apply(_nodes, allowFold && FoldEval && !_ctx.Training);
        _folded = allowFold && FoldEval && !_ctx.Training;
        _input = x;
        _inferred = inferenceOnly;
        _outs = new Tensor[_nodes.Count];
        var free = inferenceOnly ? new ActivationFreeing(this) : null;
        for (int i = 0; i < _nodes.Count; i++)
        {
            var node = _nodes[i];
            var ins = node.Inputs.Select(j => j < 0 ? x : _outs[j]).ToArray();
            _outs[i] = node.Layer.Forward(_ctx, ins);
            free?.After(i);
        }
        if (_ctx.Training) _ctx.ParamVersion++; // running statistics moved
        return _outs[^1];
    }

    /// <summary>
    /// Back-propagates dLoss/dLogits through the last forward pass. Returns dLoss/dx [N, C, H, W] (owned by the model;
    /// null when <paramref name="needInputGrad"/> is false). InputOnly runs no weight-gradient op at all.
    /// </summary>
    public Tensor? Backward(Tensor dLogits, BackwardMode mode, bool needInputGrad = true)
    {
        if (_outs == null || _input == null || _inferred) throw new InvalidOperationException("Backward needs a Forward first (Infer keeps no activations)");
        if (dLogits.Length != _outs[^1].Length)
            throw new PerturbException($"gradient of shape {Tensor.ShapeString(dLogits.Shape)} does not match the output {Tensor.ShapeString(_outs[^1].Shape)}");
        bool weights = mode == BackwardMode.InputAndWeights;
        if (weights && _folded && EvalFold.Any(_nodes))
        {
            // Weight gradients are those of the unfolded layers: run this forward again without folding.
            var dl = dLogits.ToArray();
            var shape = dLogits.Shape;
            Run(_input, inferenceOnly: false, allowFold: false);
            dLogits = _ctx.Alloc(shape);
            Backend.Upload(dLogits, dl);
        }
        // Which nodes lead to the input at all: only those need input gradients (when weights are not wanted).
        var grads = new Tensor?[_nodes.Count];
        grads[^1] = dLogits.Reshape(_outs[^1].Shape);
        Tensor? dx = null;
        for (int i = _nodes.Count - 1; i >= 0; i--)
        {
            var g = grads[i];
            if (g == null) continue;
            var node = _nodes[i];
            var need = node.Inputs.Select(j => j < 0 ? needInputGrad : NeedsGrad(j, weights, needInputGrad)).ToArray();
            var dxs = node.Layer.Backward(_ctx, g, weights, need);
            for (int k = 0; k < node.Inputs.Length; k++)
            {
                var d = dxs[k];
                if (d == null || !need[k]) continue;
                int j = node.Inputs[k];
                var later = dxs[(k + 1)..];
                if (j < 0) { var old = dx; dx = Accumulate(old, d); Consumed(old, d, grads, dx, later); }
                else { var old = grads[j]; grads[j] = Accumulate(old, d); Consumed(old, d, grads, dx, later); }
            }
            grads[i] = null;
            // The memory plan: a gradient consumed is a spare the next node's backward may take (unless a later
            // gradient is a view of it, as a Flatten's), so repeated backward passes (DeepFool's classes) reuse storage.
            FreeIfUnused(g, grads, dx, []);
        }
        return dx;
    }

    Tensor Accumulate(Tensor? acc, Tensor d)
    {
        if (acc == null) return d;
        var sum = _ctx.AllocOutput(acc.Shape);
        Backend.Add(acc, d, sum);
        return sum;
    }

    /// <summary>After acc + d became sum: acc and d are spares unless still in use.</summary>
    void Consumed(Tensor? acc, Tensor d, Tensor?[] grads, Tensor? dx, Tensor?[] later)
    {
        if (acc == null) return;
        FreeIfUnused(acc, grads, dx, later);
        FreeIfUnused(d, grads, dx, later);
    }

    /// <summary>Makes t's storage a spare when the pass owns it and no pending gradient, dx, activation or entry of <paramref name="live"/> shares it.</summary>
    void FreeIfUnused(Tensor t, Tensor?[] grads, Tensor? dx, Tensor?[] live)
    {
        var st = t.Storage;
        if (!_ctx.Owns(st)) return;
        if (dx != null && ReferenceEquals(dx.Storage, st)) return;
        foreach (var o in live) if (o != null && ReferenceEquals(o.Storage, st)) return;
        foreach (var o in grads) if (o != null && ReferenceEquals(o.Storage, st)) return;
        if (_outs != null) foreach (var o in _outs) if (o != null && ReferenceEquals(o.Storage, st)) return;
        _ctx.Free(st);
    }

    /// <summary>Whether node j's output needs a gradient: it has trainable parameters upstream, or leads from the input.</summary>
    bool NeedsGrad(int j, bool weights, bool needInputGrad)
    {
        _needCache ??= ComputeUpstream();
        var (hasParams, fromInput) = _needCache[j];
        return (weights && hasParams) || (needInputGrad && fromInput);
    }
    (bool, bool)[]? _needCache;

    (bool HasParams, bool FromInput)[] ComputeUpstream()
    {
        var r = new (bool, bool)[_nodes.Count];
        for (int i = 0; i < _nodes.Count; i++)
        {
            bool hp = _nodes[i].Layer.Parameters.Any(p => p.Trainable), fi = false;
            foreach (var j in _nodes[i].Inputs)
            {
                if (j < 0) fi = true;
                else { hp |= r[j].Item1; fi |= r[j].Item2; }
            }
            r[i] = (hp, fi);
        }
        return r;
    }

    /// <summary>The output of the node called <paramref name="layerName"/> in the last forward pass (owned by the model, valid until the next Forward).</summary>
    public Tensor NodeOutput(string layerName)
    {
        if (_outs == null || _inferred) throw new InvalidOperationException("NodeOutput needs a Forward first (Infer keeps no activations)");
        int i = _nodes.FindIndex(n => n.Layer.Name == layerName);
        if (i < 0) throw new PerturbException($"the model has no layer '{layerName}'");
        if (_folded && _nodes[i].Layer is Conv2d { IsFused: true } or AddLayer { FusedRelu: true })
            throw new PerturbException($"layer '{layerName}' ran folded with the BatchNorm/ReLU after it (eval mode): its own output was not kept; set FoldEval = false to read it");
        return _outs[i];
    }

    bool _inferred;
    int[]? _lastUse;

    /// <summary>Tensors the last pass still holds (tests check that <see cref="Infer"/> frees them).</summary>
    internal int LiveActivations => _ctx.Count;
    /// <summary>Tensors the memory plan keeps for the next pass of the same batch shape.</summary>
    internal int SpareActivations => _ctx.SpareCount;

    /// <summary>
    /// The bookkeeping of <see cref="Infer"/>: node outputs that share storage (a Flatten's view, an identity) form one
    /// group, owned by the node that allocated it; a group is freed after the last node that reads any of its members.
    /// The model's input and the final output are never freed.
    /// </summary>
    sealed class ActivationFreeing
    {
        readonly Model _m;
        readonly int[] _owner, _groupLast;
        readonly Dictionary<object, int> _groupOf = new(ReferenceEqualityComparer.Instance);
        readonly Dictionary<int, List<int>> _members = new();

        public ActivationFreeing(Model m)
        {
            _m = m;
            int n = m._nodes.Count;
            if (m._lastUse == null)
            {
                var last = new int[n];
                for (int i = 0; i < n; i++) last[i] = i;
                for (int i = 0; i < n; i++) foreach (var j in m._nodes[i].Inputs) if (j >= 0) last[j] = Math.Max(last[j], i);
                last[n - 1] = int.MaxValue;
                m._lastUse = last;
            }
            _owner = new int[n];
            _groupLast = new int[n];
        }

        public void After(int i)
        {
            var outs = _m._outs!;
            var storage = outs[i].Storage;
            int g;
            if (ReferenceEquals(storage, _m._input!.Storage)) g = -1;
            else if (!_groupOf.TryGetValue(storage, out g)) { g = i; _groupOf[storage] = i; _members[i] = new List<int>(); _groupLast[i] = -1; }
            _owner[i] = g;
            if (g >= 0) { _groupLast[g] = Math.Max(_groupLast[g], _m._lastUse![i]); _members[g].Add(i); }
            foreach (var j in _m._nodes[i].Inputs)
            {
                if (j < 0 || outs[j] == null) continue;
                int o = _owner[j];
                if (o < 0 || _groupLast[o] > i) continue;
                var st = outs[j].Storage;
                foreach (var k in _members[o]) outs[k] = null!;
                _members.Remove(o);
                _groupOf.Remove(st);
                _m._ctx.Free(st);
            }
        }
    }

    /// <summary>Frees the tensors of the last pass.</summary>
    public void ReleaseActivations() { _ctx.Release(); _outs = null; _input = null; }

    // ------------------------------------------------------------------ architecture

    /// <summary>The architecture as JSON: input shape, nodes with their types, inputs, and settings.</summary>
    public JsonObject ArchitectureJson()
    {
        var nodes = new JsonArray();
        foreach (var n in _nodes)
        {
            nodes.Add(new JsonObject
            {
                ["name"] = n.Layer.Name,
                ["type"] = n.Layer.Type,
                ["inputs"] = new JsonArray(n.Inputs.Select(j => (JsonNode)(j < 0 ? "input" : _nodes[j].Layer.Name)).ToArray()),
                ["config"] = n.Layer.Config(),
            });
        }
        var o = new JsonObject
        {
            ["format"] = "perturb-model",
            ["version"] = 1,
            ["input"] = new JsonArray(InputShape.Select(d => (JsonNode)d).ToArray()),
            ["nodes"] = nodes,
        };
        if (ClassNames != null) o["classes"] = new JsonArray(ClassNames.Select(c => (JsonNode)c).ToArray());
        return o;
    }

    /// <summary>Builds a model from <see cref="ArchitectureJson"/> output, with freshly initialised weights.</summary>
    /// <param name="fileShapes">The parameter shapes a model file holds: each layer checks its own against them before it allocates.</param>
    public static Model FromArchitecture(IBackend be, JsonObject arch, ulong seed = 0, IReadOnlyDictionary<string, int[]>? fileShapes = null)
    {
        var old = Layer.FileShapes;
        Layer.FileShapes = fileShapes;
        try { return FromArchitectureCore(be, arch, seed); }
        finally { Layer.FileShapes = old; }
    }

    static Model FromArchitectureCore(IBackend be, JsonObject arch, ulong seed)
    {
        try
        {
            if ((string?)arch["format"] != "perturb-model") throw new PerturbException("architecture is not a perturb-model description");
            var input = (arch["input"] as JsonArray ?? throw new PerturbException("architecture lacks 'input'")).Select(v => v!.GetValue<int>()).ToArray();
            var g = new GraphBuilder(input);
            var ids = new Dictionary<string, int> { ["input"] = GraphBuilder.Input };
            foreach (var nodeJ in arch["nodes"] as JsonArray ?? throw new PerturbException("architecture lacks 'nodes'"))
            {
                var no = nodeJ as JsonObject ?? throw new PerturbException("architecture node is not an object");
                string name = (string?)no["name"] ?? throw new PerturbException("architecture node lacks 'name'");
                string type = (string?)no["type"] ?? throw new PerturbException($"node '{name}' lacks 'type'");
                var cfg = no["config"] as JsonObject ?? new JsonObject();
                var ins = (no["inputs"] as JsonArray ?? throw new PerturbException($"node '{name}' lacks 'inputs'"))
                    .Select(v => ids.TryGetValue((string)v!, out var id) ? id : throw new PerturbException($"node '{name}' reads unknown node '{(string?)v}'")).ToArray();
                ids[name] = g.Add(name, LayerFactory.Create(type, cfg), ins);
            }
            var m = g.Build(be, seed);
            if (arch["classes"] is JsonArray cl) m.ClassNames = cl.Select(v => (string)v!).ToArray();
            return m;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException or ArgumentException or InvalidCastException or NullReferenceException or KeyNotFoundException)
        {
            // The messages of System.Text.Json name .NET types ("cannot be converted to a 'System.Int32'"): say it plainly.
            string what = e switch
            {
                NullReferenceException or ArgumentNullException => "a value is null or missing where a number, string or list is needed",
                InvalidOperationException or InvalidCastException or FormatException => "a value has the wrong JSON type (for example a string where a whole number is needed)",
                _ => e.Message,
            };
            throw new PerturbException($"bad architecture description: {what}");
        }
        catch (OverflowException)
        {
            throw new PerturbException("bad architecture description: a layer's sizes overflow 32-bit counts");
        }
    }

    public void Dispose()
    {
        _ctx.Release();
        EvalFold.Apply(_nodes, false);
        foreach (var (_, p) in NamedParameters()) { p.Value.Dispose(); p.Grad?.Dispose(); }
    }
}

/// <summary>Builds a <see cref="Model"/> node by node.</summary>
public sealed class GraphBuilder
{
    public const int Input = -1;
    readonly int[] _inputShape;
    readonly List<(string Name, Layer Layer, int[] Inputs)> _nodes = new();
    readonly HashSet<string> _names = new();

    public GraphBuilder(params int[] inputShape)
    {
        if (inputShape.Length == 0 || inputShape.Any(d => d <= 0)) throw new PerturbException($"invalid input shape {Tensor.ShapeString(inputShape)}");
        _inputShape = inputShape;
    }

    /// <summary>Adds a layer reading the given nodes (default: the previous node, or the input); returns its id.</summary>
    public int Add(string name, Layer layer, params int[] inputs)
    {
        if (!_names.Add(name)) throw new PerturbException($"duplicate layer name '{name}'");
        if (inputs.Length == 0) inputs = new[] { _nodes.Count - 1 };
        foreach (var j in inputs)
            if (j < Input || j >= _nodes.Count) throw new PerturbException($"layer '{name}' reads node {j}, which does not exist yet");
        layer.Name = name;
        _nodes.Add((name, layer, inputs));
        return _nodes.Count - 1;
    }

    public int Count => _nodes.Count;

    public Model Build(IBackend be, ulong seed)
    {
        if (_nodes.Count == 0) throw new PerturbException("a model needs at least one layer");
        var shapes = new List<int[]>();
        var nodes = new List<Node>();
        Limits.Check($"input shape {Tensor.ShapeString(_inputShape)}: values per sample", Limits.Product(_inputShape), Limits.MaxTensorElements, "PERTURB_MAX_TENSOR_ELEMENTS");
        foreach (var (name, layer, inputs) in _nodes)
        {
            var ins = inputs.Select(j => j < 0 ? _inputShape : shapes[j]).ToArray();
            var outShape = layer.Build(be, ins, seed);
            Limits.Check($"layer '{name}' ({layer.Type}) output {Tensor.ShapeString(outShape)}: values per sample", Limits.Product(outShape), Limits.MaxTensorElements, "PERTURB_MAX_TENSOR_ELEMENTS");
            shapes.Add(outShape);
            nodes.Add(new Node(layer, inputs));
        }
        return new Model(be, _inputShape, nodes, seed);
    }
}

/// <summary>Makes layers from their type name and JSON settings (model files, ONNX import).</summary>
public static class LayerFactory
{
    public static Layer Create(string type, JsonObject cfg) => type switch
    {
        "Conv2d" => Conv2d.FromConfig(cfg),
        "ConvTranspose2d" => ConvTranspose2d.FromConfig(cfg),
        "Linear" => Linear.FromConfig(cfg),
        "BatchNorm2d" => BatchNorm2d.FromConfig(cfg),
        "Normalize" => Normalize.FromConfig(cfg),
        "ReLU" => new ActivationLayer(Activation.Relu),
        "LeakyReLU" => new ActivationLayer(Activation.LeakyRelu, cfg.F("alpha", 0.01f)),
        "Sigmoid" => new ActivationLayer(Activation.Sigmoid),
        "Tanh" => new ActivationLayer(Activation.Tanh),
        "MaxPool2d" => Pool2d.FromConfig(true, cfg),
        "AvgPool2d" => Pool2d.FromConfig(false, cfg),
        "GlobalAvgPool" => new GlobalAvgPool(),
        "Flatten" => new Flatten(),
        "Dropout" => new Dropout(cfg.F("p", 0.5f)),
        "Add" => new AddLayer(),
        "Concat" => new Concat(cfg.I("axis", 0)),
        "Unary" => UnaryLayer.FromConfig(cfg),
        "Binary" => BinaryLayer.FromConfig(cfg),
        "Reduce" => ReduceLayer.FromConfig(cfg),
        "Transpose" => TransposeLayer.FromConfig(cfg),
        "Reshape" => ReshapeLayer.FromConfig(cfg),
        "Slice" => SliceLayer.FromConfig(cfg),
        "Gather" => GatherLayer.FromConfig(cfg),
        "Expand" => ExpandLayer.FromConfig(cfg),
        "Tile" => TileLayer.FromConfig(cfg),
        "Softmax" => new SoftmaxLayer(cfg.I("axis", -1)),
        "Affine" => ChannelAffineLayer.FromConfig(cfg),
        "Mul" => new MulLayer(),
        "Clip" => ClipLayer.FromConfig(cfg),
        _ => throw new PerturbException($"unknown layer type '{type}'"),
    };
}
