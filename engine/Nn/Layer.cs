using System.Text.Json.Nodes;
using Philox = Perturb.Kernels.Philox;

namespace Perturb.Engine.Nn;

/// <summary>What a backward pass computes.</summary>
public enum BackwardMode
{
    /// <summary>dLoss/dx only. No weight-gradient op runs at all (attacks need nothing else).</summary>
    InputOnly,
    /// <summary>dLoss/dx and every trainable parameter's gradient (training).</summary>
    InputAndWeights,
}

/// <summary>A named tensor a layer owns: a trainable weight, or a buffer (BatchNorm running statistics, Normalize constants).</summary>
public sealed class Parameter
{
    public string Name { get; }
    public Tensor Value { get; internal set; }
    /// <summary>The gradient, allocated by the first weight backward.</summary>
    public Tensor? Grad { get; internal set; }
    public bool Trainable { get; }
    /// <summary>Whether weight decay applies (false for biases and norm parameters).</summary>
    public bool Decay { get; }
    public Parameter(string name, Tensor value, bool trainable, bool decay)
    { Name = name; Value = value; Trainable = trainable; Decay = decay; }

    internal Tensor EnsureGrad()
    {
        Grad ??= Value.Backend.Allocate(Value.Shape);
        return Grad;
    }
}

/// <summary>
/// Per-pass state shared by the layers: the backend, the mode, and the tensors the pass owns.
///
/// The memory plan: a pass's tensors are not freed when the pass ends but kept as spares, keyed by exact shape, and the
/// next pass of the same input shape takes them back in the same order (zero-filled on the device, as a fresh
/// allocation is), so an attack step after the first allocates no storage at all. Spares no pass took or freed during
/// the pass that just ended are freed at its end, and a pass with another input shape (a new chunk size) frees every
/// spare first: what the context holds is bounded by one pass's tensors, whatever the batch shapes do.
/// </summary>
public sealed class PassContext
{
    public IBackend Be { get; }
    public bool Training { get; internal set; }
    /// <summary>Bumped whenever parameters change, so layers can cache values derived from them.</summary>
    public long ParamVersion { get; internal set; }
    public ulong DropoutSeed { get; internal set; }
    /// <summary>Philox counter offset for the next dropout mask; advanced by each mask's length.</summary>
    public ulong DropoutOffset { get; internal set; }
    readonly List<Tensor> _owned = new();
    readonly Dictionary<string, Stack<Tensor>> _spare = new();
    // The pass each spare last served (taken or freed in); a pass's number is set by Release.
    readonly Dictionary<Tensor, long> _lastUse = new(ReferenceEqualityComparer.Instance);
    long _pass;
    int[]? _passShape;

    public PassContext(IBackend be) { Be = be; }

    static string Key(int[] shape) => string.Join(",", shape);

    /// <summary>A zeroed tensor that lives until the pass is released (a spare of the same shape when there is one).</summary>
    public Tensor Alloc(params int[] shape) => Take(shape, zero: true);

    /// <summary>
    /// A tensor for an op's whole output, which the op overwrites element by element (the backend contract: the op
    /// tests run every op on NaN-filled outputs): a spare comes back as the last pass left it, not zero-filled, which
    /// saves a write of the whole tensor per node per pass. Use <see cref="Alloc"/> where anything accumulates into it.
    /// </summary>
    public Tensor AllocOutput(params int[] shape) => Take(shape, zero: false);

    Tensor Take(int[] shape, bool zero)
    {
        Tensor t;
        if (_spare.TryGetValue(Key(shape), out var st) && st.Count > 0)
        {
            t = st.Pop();
            if (zero) Be.Fill(t, 0f);
        }
        else t = Be.Allocate(shape);
        _lastUse[t] = _pass;
        _owned.Add(t);
        return t;
    }

    /// <summary>Tensors the pass holds now.</summary>
    internal int Count => _owned.Count;
    /// <summary>Spare tensors kept for the next pass.</summary>
    internal int SpareCount => _spare.Values.Sum(s => s.Count);

    /// <summary>Frees one tensor of the pass before the pass ends (inference passes free activations no later node reads): it becomes a spare a later node of the same pass may take.</summary>
    internal void Free(object storage)
    {
        int i = _owned.FindLastIndex(t => !t.IsView && ReferenceEquals(t.Storage, storage));
        if (i < 0) return; // not the pass's own (a layer returned a parameter, or a view of one)
        var t = _owned[i];
        _owned.RemoveAt(i);
        Spare(t);
    }

    /// <summary>Whether the pass allocated this storage (and has not freed it).</summary>
    internal bool Owns(object storage) => _owned.Exists(t => ReferenceEquals(t.Storage, storage));

    void Spare(Tensor t)
    {
        var k = Key(t.Shape);
        if (!_spare.TryGetValue(k, out var st)) _spare[k] = st = new Stack<Tensor>();
        st.Push(t);
    }

    /// <summary>
    /// Ends the pass: its tensors become spares for a next pass of input shape <paramref name="nextShape"/>; spares
    /// the ending pass did not use are freed, and all of them when the shape differs from the last pass's (or is null:
    /// free everything).
    /// </summary>
    internal void Release(int[]? nextShape = null)
    {
        bool keep = nextShape != null && _passShape != null && nextShape.AsSpan().SequenceEqual(_passShape);
        foreach (var st in _spare.Values)
        {
            var kept = st.Where(t => keep && _lastUse[t] == _pass).Reverse().ToArray();
            foreach (var t in st) if (!(keep && _lastUse[t] == _pass)) { _lastUse.Remove(t); t.Dispose(); }
            st.Clear();
            foreach (var t in kept) st.Push(t);
        }
        // Return the pass's tensors in reverse order of allocation, so the next pass pops them in the same order.
        for (int i = _owned.Count - 1; i >= 0; i--)
        {
            var t = _owned[i];
            if (keep) Spare(t);
            else { _lastUse.Remove(t); t.Dispose(); }
        }
        _owned.Clear();
        foreach (var k in _spare.Where(kv => kv.Value.Count == 0).Select(kv => kv.Key).ToList()) _spare.Remove(k);
        _passShape = nextShape is null ? null : (int[])nextShape.Clone();
        _pass++;
    }
}

/// <summary>
/// One node type of the network graph. Shapes are per sample (no batch dimension): [C, H, W] or [F].
/// A layer keeps, between its Forward and Backward, what its backward needs (the model runs one pass at a time).
/// Layers never write into their inputs or into dy.
/// </summary>
public abstract class Layer
{
    public string Name { get; internal set; } = "";
    public abstract string Type { get; }
    /// <summary>Per-sample input shapes, set by <see cref="Build"/>.</summary>
    public int[][] InShapes { get; private set; } = Array.Empty<int[]>();
    public int[] OutShape { get; private set; } = Array.Empty<int>();
    readonly List<Parameter> _params = new();
    public IReadOnlyList<Parameter> Parameters => _params;
    /// <summary>How many inputs the layer takes (-1: any number ≥ 1).</summary>
    public virtual int Arity => 1;

    /// <summary>Validates the input shapes, creates parameters on the backend, and returns the output shape.</summary>
    internal int[] Build(IBackend be, int[][] inShapes, ulong seed)
    {
        if (Arity >= 0 && inShapes.Length != Arity)
            throw new PerturbException($"layer '{Name}' ({Type}) takes {Arity} input(s), got {inShapes.Length}");
        InShapes = inShapes;
        OutShape = BuildCore(be, inShapes, seed);
        return OutShape;
    }

    protected abstract int[] BuildCore(IBackend be, int[][] inShapes, ulong seed);
    public abstract Tensor Forward(PassContext c, Tensor[] x);
    /// <summary>
    /// Gradients for the inputs (an entry may be null where <paramref name="needDx"/> is false), and, when
    /// <paramref name="weights"/>, the parameters' gradients written into Parameter.Grad.
    /// </summary>
    public abstract Tensor?[] Backward(PassContext c, Tensor dy, bool weights, bool[] needDx);
    /// <summary>The layer's settings as JSON (the architecture saved in model files).</summary>
    public abstract JsonObject Config();

    protected Parameter AddParam(string name, Tensor value, bool trainable = true, bool decay = true)
    {
        var p = new Parameter(name, value, trainable, decay);
        _params.Add(p);
        return p;
    }

    /// <summary>
    /// The shapes a model file holds for each parameter (full name), set while a model is built from a file's
    /// architecture: a layer whose parameter size depends on a free setting (out channels, out features) checks its
    /// shapes against the file through <see cref="ExpectParam"/> before it allocates, so an architecture claiming
    /// 12 million channels in a 248 KB file fails before it allocates 2.4 GB.
    /// </summary>
    [ThreadStatic] internal static IReadOnlyDictionary<string, int[]>? FileShapes;

    /// <summary>Checks a parameter's shape against <see cref="FileShapes"/> (when set), before it is allocated.</summary>
    protected void ExpectParam(string param, params int[] shape)
    {
        if (FileShapes is not { } file) return;
        string full = Name + "." + param;
        if (!file.TryGetValue(full, out var got)) throw new PerturbException($"tensor '{full}' is missing (the architecture's layer '{Name}' ({Type}) needs {Tensor.ShapeString(shape)})");
        if (!got.SequenceEqual(shape)) throw new PerturbException($"tensor '{full}' has shape {Tensor.ShapeString(got)}, the architecture needs {Tensor.ShapeString(shape)}");
    }

    protected PerturbException ShapeError(string expected, int[] got) =>
        new($"layer '{Name}' ({Type}) expects input {expected}, got {Tensor.ShapeString(got)}");

    protected static int[] Batch(int n, int[] perSample)
    {
        var s = new int[perSample.Length + 1];
        s[0] = n; perSample.CopyTo(s, 1);
        return s;
    }

    /// <summary>Checks a forward input against the built shape (batch size is free).</summary>
    protected void CheckInput(Tensor x, int i)
    {
        var want = InShapes[i];
        bool ok = x.Rank == want.Length + 1;
        for (int d = 0; ok && d < want.Length; d++) ok = x.Shape[d + 1] == want[d];
        if (!ok)
            throw new PerturbException($"layer '{Name}' ({Type}) expects input {Tensor.ShapeString(want)} per sample, got {Tensor.ShapeString(x.Shape[1..])}");
    }

    /// <summary>Fills a new host array with U(-bound, bound) from Philox (deterministic for a seed and stream).</summary>
    protected static float[] UniformInit(int count, float bound, ulong seed, ulong stream)
    {
        var a = new float[count];
        for (int i = 0; i < count; i++) a[i] = (2f * Philox.Uniform(seed, stream << 32, i) - 1f) * bound;
        return a;
    }

    internal static int Product(int[] s) { int p = 1; foreach (var d in s) p *= d; return p; }
}
