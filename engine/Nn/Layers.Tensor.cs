using System.Text.Json.Nodes;

namespace Perturb.Engine.Nn;

/// <summary>
/// Layers over tensors of any rank (1 to 7 per sample): element-wise functions, NumPy-broadcast binary ops, axis
/// reductions, Transpose, Reshape, Slice. Shapes are per sample; the batch is always the first, never broadcast or
/// reduced. Built on the general-tensor backend ops (IBackend.Tensor.cs).
/// </summary>
internal static class TensorJson
{
    public static JsonArray Ints(IEnumerable<int> v) => new(v.Select(x => (JsonNode)x).ToArray());
    public static int[] Ints(this JsonObject o, string k) =>
        (o[k] as JsonArray ?? throw new PerturbException($"layer config lacks '{k}'")).Select(v => v!.GetValue<int>()).ToArray();
    public static T Enum<T>(this JsonObject o, string k) where T : struct, System.Enum =>
        System.Enum.TryParse<T>((string?)o[k] ?? throw new PerturbException($"layer config lacks '{k}'"), out var r) ? r
            : throw new PerturbException($"layer config '{k}' = '{(string?)o[k]}' is not a {typeof(T).Name}");
}

/// <summary>y = f(x) element-wise for any <see cref="UnaryOp"/> (HardSigmoid, HardSwish, SiLU, Elu, Selu, Softplus, Gelu, Erf, Sqrt, ...).</summary>
public sealed class UnaryLayer : Layer
{
    public UnaryOp Op { get; }
    public float A { get; }
    public float B { get; }
    Tensor? _x;

    public UnaryLayer(UnaryOp op, float a = 0f, float b = 0f) { Op = op; A = a; B = b; }
    public override string Type => "Unary";
    protected override int[] BuildCore(IBackend be, int[][] inShapes, ulong seed) => (int[])inShapes[0].Clone();

    public override Tensor Forward(PassContext c, Tensor[] x)
    {
        CheckInput(x[0], 0);
        _x = x[0];
        var y = c.Alloc(_x.Shape);
        c.Be.UnaryForward(Op, A, B, _x, y);
        return y;
    }

    public override Tensor?[] Backward(PassContext c, Tensor dy, bool weights, bool[] needDx)
    {
        if (!needDx[0]) return new Tensor?[] { null };
        var dx = c.Alloc(dy.Shape);
        c.Be.UnaryBackward(Op, A, B, _x!, dy, dx);
        return new[] { dx };
    }

    public override JsonObject Config() => new() { ["op"] = Op.ToString(), ["a"] = A, ["b"] = B };
    internal static UnaryLayer FromConfig(JsonObject o) => new(o.Enum<UnaryOp>("op"), o.F("a", 0f), o.F("b", 0f));
}

/// <summary>
/// y = a op b with NumPy broadcasting, between two computed tensors of the same per-sample rank, or between the
/// input and a constant (a buffer, saved with the model) of any shape that broadcasts onto it without varying along
/// the batch. The gradient of a broadcast operand sums over the axes it was broadcast along.
/// </summary>
public sealed class BinaryLayer : Layer
{
    public BroadcastOp Op { get; }
    /// <summary>The constant operand's ONNX shape (null: two computed inputs).</summary>
    public int[]? ConstShape { get; }
    /// <summary>Whether the constant is the left operand (c op x).</summary>
    public bool ConstLeft { get; }
    readonly float[]? _const0;
    Parameter? _c;
    Tensor? _a, _b;
    int[] _fa = [], _fb = [];

    public BinaryLayer(BroadcastOp op) { Op = op; }

    public BinaryLayer(BroadcastOp op, float[] constant, int[] constShape, bool constLeft)
    {
        if (constant.Length != Product(constShape)) throw new PerturbException($"Binary: {constant.Length} constant values for shape {Tensor.ShapeString(constShape)}");
        Op = op; _const0 = constant; ConstShape = constShape; ConstLeft = constLeft;
    }

    public override string Type => "Binary";
    public override int Arity => ConstShape == null ? 2 : 1;
    public Parameter? Constant => _c;

    protected override int[] BuildCore(IBackend be, int[][] inShapes, ulong seed)
    {
        int[] sa, sb;
        if (ConstShape == null)
        {
            sa = inShapes[0]; sb = inShapes[1];
            if (sa.Length != sb.Length)
                throw new PerturbException($"layer '{Name}' (Binary {Op}) needs inputs of equal rank, got {Tensor.ShapeString(sa)} and {Tensor.ShapeString(sb)}");
        }
        else
        {
            var s = inShapes[0];
            int r = Math.Max(s.Length + 1, ConstShape.Length);
            var pc = Strided.PadLeft(ConstShape, r);
            if (pc[0] != 1 || r > s.Length + 1)
                throw new PerturbException($"layer '{Name}' (Binary {Op}): constant of shape {Tensor.ShapeString(ConstShape)} would broadcast along the batch of input {Tensor.ShapeString(s)}");
            var ps = pc[1..];
            _c = AddParam("constant", be.FromArray(_const0 ?? new float[Product(ConstShape)], ps), trainable: false);
            (sa, sb) = ConstLeft ? (ps, s) : (s, ps);
        }
        var o = Strided.BroadcastShape(sa, sb)
            ?? throw new PerturbException($"layer '{Name}' (Binary {Op}): shapes {Tensor.ShapeString(sa)} and {Tensor.ShapeString(sb)} do not broadcast");
        _fa = sa; _fb = sb;
        return o;
    }

    static int[] Full(int n, int[] s) => Batch(n, s);
    int[] FullA(int n) => ConstShape != null && ConstLeft ? Batch(1, _fa) : Full(n, _fa);
    int[] FullB(int n) => ConstShape != null && !ConstLeft ? Batch(1, _fb) : Full(n, _fb);

    public override Tensor Forward(PassContext c, Tensor[] x)
    {
        CheckInput(x[0], 0);
        if (ConstShape == null)
        {
            CheckInput(x[1], 1);
            if (x[0].N != x[1].N) throw new PerturbException($"layer '{Name}' (Binary {Op}) got batch sizes {x[0].N} and {x[1].N}");
            _a = x[0]; _b = x[1];
        }
        else (_a, _b) = ConstLeft ? (_c!.Value, x[0]) : (x[0], _c!.Value);
        int n = x[0].N;
        var y = c.Alloc(Batch(n, OutShape));
        c.Be.BroadcastForward(Op, _a, _b, y, Strided.Binary(FullA(n), FullB(n), y.Shape));
        return y;
    }

    public override Tensor?[] Backward(PassContext c, Tensor dy, bool weights, bool[] needDx)
    {
        int n = dy.N;
        Tensor? Grad(int which)
        {
            var fa = FullA(n); var fb = FullB(n);
            var (keep, red) = Strided.BinaryGrad(fa, fb, dy.Shape, which);
            var dx = c.Alloc(which == 0 ? fa : fb);
            c.Be.BroadcastBackward(Op, which, _a!, _b!, dy, dx, keep, red);
            return dx;
        }
        if (ConstShape == null) return new[] { needDx[0] ? Grad(0) : null, needDx[1] ? Grad(1) : null };
        return new[] { needDx[0] ? Grad(ConstLeft ? 1 : 0) : null };
    }

    public override JsonObject Config()
    {
        var o = new JsonObject { ["op"] = Op.ToString() };
        if (ConstShape != null) { o["const_shape"] = TensorJson.Ints(ConstShape); o["const_left"] = ConstLeft; }
        return o;
    }

    internal static BinaryLayer FromConfig(JsonObject o)
    {
        var op = o.Enum<BroadcastOp>("op");
        if (o["const_shape"] == null) return new BinaryLayer(op);
        var s = o.Ints("const_shape");
        return new BinaryLayer(op, new float[Product(s)], s, o.B("const_left", false));
    }
}

/// <summary>Sum, Mean, Max, Min or L2 norm over any per-sample axes, keeping them as size 1 or dropping them.</summary>
public sealed class ReduceLayer : Layer
{
    public ReduceOp Op { get; }
    /// <summary>Per-sample axes, ascending.</summary>
    public int[] Axes { get; }
    public bool KeepDims { get; }
    Tensor? _x, _y;

    public ReduceLayer(ReduceOp op, int[] axes, bool keepDims)
    {
        if (axes.Length == 0) throw new PerturbException("Reduce: no axes");
        Op = op; Axes = axes.Distinct().OrderBy(a => a).ToArray(); KeepDims = keepDims;
    }

    public override string Type => "Reduce";

    protected override int[] BuildCore(IBackend be, int[][] inShapes, ulong seed)
    {
        var s = inShapes[0];
        if (Axes.Any(a => a < 0 || a >= s.Length)) throw new PerturbException($"layer '{Name}' (Reduce): axes [{string.Join(", ", Axes)}] outside input {Tensor.ShapeString(s)}");
        var o = Enumerable.Range(0, s.Length).Where(d => KeepDims || !Axes.Contains(d)).Select(d => Axes.Contains(d) ? 1 : s[d]).ToArray();
        return o.Length == 0 ? new[] { 1 } : o;
    }

    (Kernels.StridedArgs, Kernels.StridedArgs) Args(int n) => Strided.Reduce(Batch(n, InShapes[0]), Axes.Select(a => a + 1).ToArray());

    public override Tensor Forward(PassContext c, Tensor[] x)
    {
        CheckInput(x[0], 0);
        _x = x[0];
        _y = c.Alloc(Batch(_x.N, OutShape));
        var (keep, red) = Args(_x.N);
        c.Be.ReduceAxes(Op, _x, _y, keep, red);
        return _y;
    }

    public override Tensor?[] Backward(PassContext c, Tensor dy, bool weights, bool[] needDx)
    {
        if (!needDx[0]) return new Tensor?[] { null };
        var dx = c.Alloc(_x!.Shape);
        var (keep, red) = Args(dy.N);
        c.Be.ReduceAxesBackward(Op, _x, _y!, dy, dx, keep, red);
        return new[] { dx };
    }

    public override JsonObject Config() => new() { ["op"] = Op.ToString(), ["axes"] = TensorJson.Ints(Axes), ["keepdims"] = KeepDims };
    internal static ReduceLayer FromConfig(JsonObject o) => new(o.Enum<ReduceOp>("op"), o.Ints("axes"), o.B("keepdims", true));
}

/// <summary>Permutes the per-sample axes (the batch stays first). Backward is the inverse permutation.</summary>
public sealed class TransposeLayer : Layer
{
    /// <summary>Output axis d is input axis Perm[d] (per sample).</summary>
    public int[] Perm { get; }

    public TransposeLayer(int[] perm)
    {
        if (!perm.OrderBy(p => p).SequenceEqual(Enumerable.Range(0, perm.Length))) throw new PerturbException($"Transpose: [{string.Join(", ", perm)}] is not a permutation");
        Perm = perm;
    }

    public override string Type => "Transpose";

    protected override int[] BuildCore(IBackend be, int[][] inShapes, ulong seed)
    {
        var s = inShapes[0];
        if (s.Length != Perm.Length) throw new PerturbException($"layer '{Name}' (Transpose): permutation of {Perm.Length} axes for input {Tensor.ShapeString(s)}");
        return Perm.Select(p => s[p]).ToArray();
    }

    /// <summary>Copies x (shape in, per sample) permuted by perm into y.</summary>
    static void Permute(PassContext c, Tensor x, int[] inS, int[] perm, Tensor y)
    {
        int n = x.N;
        var full = Batch(n, inS); var sx = Strided.Contiguous(full);
        var dims = new int[full.Length]; var s0 = new int[full.Length];
        dims[0] = n; s0[0] = sx[0];
        for (int d = 0; d < perm.Length; d++) { dims[d + 1] = inS[perm[d]]; s0[d + 1] = sx[perm[d] + 1]; }
        c.Be.StridedCopy(x, y, Strided.Make(dims, s0, Strided.Contiguous(dims)));
    }

    public override Tensor Forward(PassContext c, Tensor[] x)
    {
        CheckInput(x[0], 0);
        var y = c.Alloc(Batch(x[0].N, OutShape));
        Permute(c, x[0], InShapes[0], Perm, y);
        return y;
    }

    public override Tensor?[] Backward(PassContext c, Tensor dy, bool weights, bool[] needDx)
    {
        if (!needDx[0]) return new Tensor?[] { null };
        var inv = new int[Perm.Length];
        for (int d = 0; d < Perm.Length; d++) inv[Perm[d]] = d;
        var dx = c.Alloc(Batch(dy.N, InShapes[0]));
        Permute(c, dy, OutShape, inv, dx);
        return new[] { dx };
    }

    public override JsonObject Config() => new() { ["perm"] = TensorJson.Ints(Perm) };
    internal static TransposeLayer FromConfig(JsonObject o) => new(o.Ints("perm"));
}

/// <summary>[N, ...] to [N, Shape...] with the same number of values per sample: a view, no copy (Reshape, Squeeze, Unsqueeze, Flatten on any axis).</summary>
public sealed class ReshapeLayer : Layer
{
    public int[] Shape { get; }
    public ReshapeLayer(int[] shape)
    {
        if (shape.Length == 0 || shape.Any(d => d <= 0)) throw new PerturbException($"Reshape: invalid shape {Tensor.ShapeString(shape)}");
        Shape = shape;
    }
    public override string Type => "Reshape";
    protected override int[] BuildCore(IBackend be, int[][] inShapes, ulong seed)
    {
        if (Product(inShapes[0]) != Product(Shape))
            throw new PerturbException($"layer '{Name}' (Reshape): {Tensor.ShapeString(inShapes[0])} does not reshape to {Tensor.ShapeString(Shape)}");
        return (int[])Shape.Clone();
    }
    public override Tensor Forward(PassContext c, Tensor[] x) { CheckInput(x[0], 0); return x[0].Reshape(Batch(x[0].N, Shape)); }
    public override Tensor?[] Backward(PassContext c, Tensor dy, bool weights, bool[] needDx) =>
        new Tensor?[] { needDx[0] ? dy.Reshape(Batch(dy.N, InShapes[0])) : null };
    public override JsonObject Config() => new() { ["shape"] = TensorJson.Ints(Shape) };
    internal static ReshapeLayer FromConfig(JsonObject o) => new(o.Ints("shape"));
}

/// <summary>
/// y = x[:, starts[0] :: steps[0], starts[1] :: steps[1], ...] with Shape[d] elements along per-sample axis d
/// (steps of either sign, never 0: a negative step walks backwards from Starts[d]). Backward writes dy into a zeroed dx
/// at the same positions. ONNX Slice, Split, Gather of a run of consecutive indices.
/// </summary>
public sealed class SliceLayer : Layer
{
    public int[] Starts { get; }
    public int[] Steps { get; }
    public int[] Shape { get; }

    public SliceLayer(int[] starts, int[] steps, int[] shape)
    {
        if (starts.Length != steps.Length || starts.Length != shape.Length || steps.Any(s => s == 0) || starts.Any(s => s < 0) || shape.Any(d => d <= 0))
            throw new PerturbException($"Slice: invalid starts [{string.Join(", ", starts)}], steps [{string.Join(", ", steps)}], shape {Tensor.ShapeString(shape)}");
        Starts = starts; Steps = steps; Shape = shape;
    }

    public override string Type => "Slice";

    protected override int[] BuildCore(IBackend be, int[][] inShapes, ulong seed)
    {
        var s = inShapes[0];
        bool ok = s.Length == Shape.Length;
        for (int d = 0; ok && d < s.Length; d++)
        {
            long last = Starts[d] + (long)(Shape[d] - 1) * Steps[d];
            ok = Starts[d] < s[d] && last >= 0 && last < s[d];
        }
        if (!ok) throw new PerturbException($"layer '{Name}' (Slice): {Tensor.ShapeString(Shape)} from [{string.Join(", ", Starts)}] step [{string.Join(", ", Steps)}] leaves input {Tensor.ShapeString(s)}");
        return (int[])Shape.Clone();
    }

    /// <summary>The iteration over the slice: S0 contiguous in the slice, S1 (with Off1) the positions in the input.</summary>
    Kernels.StridedArgs Args(int n)
    {
        var full = Batch(n, InShapes[0]); var sx = Strided.Contiguous(full);
        var dims = Batch(n, Shape);
        var s1 = new int[dims.Length]; s1[0] = sx[0];
        int off = 0;
        for (int d = 0; d < Shape.Length; d++) { s1[d + 1] = sx[d + 1] * Steps[d]; off += Starts[d] * sx[d + 1]; }
        return Strided.Make(dims, Strided.Contiguous(dims), s1, null, 0, off);
    }

    public override Tensor Forward(PassContext c, Tensor[] x)
    {
        CheckInput(x[0], 0);
        var y = c.Alloc(Batch(x[0].N, OutShape));
        var a = Args(x[0].N);
        // copy from the input positions (operand 1) to the contiguous slice (operand 0): swap the roles
        (a.S0, a.S1) = (a.S1, a.S0); (a.Off0, a.Off1) = (a.Off1, a.Off0);
        c.Be.StridedCopy(x[0], y, a);
        return y;
    }

    public override Tensor?[] Backward(PassContext c, Tensor dy, bool weights, bool[] needDx)
    {
        if (!needDx[0]) return new Tensor?[] { null };
        var dx = c.Alloc(Batch(dy.N, InShapes[0]));   // zeroed
        c.Be.StridedCopy(dy, dx, Args(dy.N));
        return new[] { dx };
    }

    public override JsonObject Config() => new() { ["starts"] = TensorJson.Ints(Starts), ["steps"] = TensorJson.Ints(Steps), ["shape"] = TensorJson.Ints(Shape) };
    internal static SliceLayer FromConfig(JsonObject o) => new(o.Ints("starts"), o.Ints("steps"), o.Ints("shape"));
}

/// <summary>
/// Broadcasts x to a larger per-sample shape of the same rank (ONNX Expand): a strided copy with zero strides along
/// the expanded axes; the gradient sums dy over them.
/// </summary>
public sealed class ExpandLayer : Layer
{
    public int[] Shape { get; }
    Tensor? _x;
    public ExpandLayer(int[] shape) { Shape = shape; }
    public override string Type => "Expand";

    protected override int[] BuildCore(IBackend be, int[][] inShapes, ulong seed)
    {
        var s = inShapes[0];
        if (s.Length != Shape.Length || s.Where((d, i) => d != Shape[i] && d != 1).Any())
            throw new PerturbException($"layer '{Name}' (Expand): {Tensor.ShapeString(s)} does not broadcast to {Tensor.ShapeString(Shape)}");
        return (int[])Shape.Clone();
    }

    public override Tensor Forward(PassContext c, Tensor[] x)
    {
        CheckInput(x[0], 0);
        _x = x[0];
        var y = c.Alloc(Batch(_x.N, OutShape));
        c.Be.StridedCopy(_x, y, Strided.Make(y.Shape, Strided.BroadcastStrides(_x.Shape, y.Shape), Strided.Contiguous(y.Shape)));
        return y;
    }

    public override Tensor?[] Backward(PassContext c, Tensor dy, bool weights, bool[] needDx)
    {
        if (!needDx[0]) return new Tensor?[] { null };
        var dx = c.Alloc(_x!.Shape);
        // dx = sum of dy over the expanded axes: the gradient of x in x + 0-broadcast (Add's derivative is 1)
        var (keep, red) = Strided.BinaryGrad(_x.Shape, dy.Shape, dy.Shape, 0);
        c.Be.BroadcastBackward(BroadcastOp.Add, 0, _x, dy, dy, dx, keep, red);
        return new[] { dx };
    }

    public override JsonObject Config() => new() { ["shape"] = TensorJson.Ints(Shape) };
    internal static ExpandLayer FromConfig(JsonObject o) => new(o.Ints("shape"));
}

/// <summary>
/// Repeats x Repeats[d] times along each per-sample axis d (ONNX Tile): the output viewed as [r0, s0, r1, s1, ...]
/// reads x with zero strides along the r axes; the gradient sums dy over them.
/// </summary>
public sealed class TileLayer : Layer
{
    public int[] Repeats { get; }
    public TileLayer(int[] repeats)
    {
        if (repeats.Length == 0 || repeats.Any(r => r <= 0)) throw new PerturbException($"Tile: invalid repeats [{string.Join(", ", repeats)}]");
        Repeats = repeats;
    }
    public override string Type => "Tile";

    protected override int[] BuildCore(IBackend be, int[][] inShapes, ulong seed)
    {
        var s = inShapes[0];
        if (s.Length != Repeats.Length) throw new PerturbException($"layer '{Name}' (Tile): {Repeats.Length} repeats for input {Tensor.ShapeString(s)}");
        return s.Select((d, i) => d * Repeats[i]).ToArray();
    }

    /// <summary>The interleaved shape [N, r0, s0, r1, s1, ...] and x's strides over it (0 along the r axes).</summary>
    (int[] Dims, int[] XStrides) View(int n)
    {
        var s = InShapes[0]; var sx = Strided.Contiguous(Batch(n, s));
        var dims = new List<int> { n }; var st = new List<int> { sx[0] };
        for (int d = 0; d < s.Length; d++) { dims.Add(Repeats[d]); st.Add(0); dims.Add(s[d]); st.Add(sx[d + 1]); }
        return (dims.ToArray(), st.ToArray());
    }

    public override Tensor Forward(PassContext c, Tensor[] x)
    {
        CheckInput(x[0], 0);
        var y = c.Alloc(Batch(x[0].N, OutShape));
        var (dims, sx) = View(x[0].N);
        c.Be.StridedCopy(x[0], y, Strided.Make(dims, sx, Strided.Contiguous(dims)));
        return y;
    }

    public override Tensor?[] Backward(PassContext c, Tensor dy, bool weights, bool[] needDx)
    {
        if (!needDx[0]) return new Tensor?[] { null };
        var (dims, _) = View(dy.N);
        var (keep, red) = Strided.Reduce(dims, Enumerable.Range(0, Repeats.Length).Select(d => 1 + 2 * d).ToArray());
        var dx = c.Alloc(Batch(dy.N, InShapes[0]));
        c.Be.ReduceAxes(ReduceOp.Sum, dy, dx, keep, red);
        return new[] { dx };
    }

    public override JsonObject Config() => new() { ["repeats"] = TensorJson.Ints(Repeats) };
    internal static TileLayer FromConfig(JsonObject o) => new(o.Ints("repeats"));
}

/// <summary>
/// y = x gathered along per-sample axis <see cref="Axis"/> at constant <see cref="Indices"/> (any order, repeats
/// allowed): ONNX Gather with a constant index list, and Resize's nearest and linear taps. The list is cut at build
/// into a few arithmetic runs (output positions J0 + JS*t read input positions I0 + IS*t, IS != 0 unless the run has
/// one element); each run is one strided copy forward and one strided add into the zeroed dx backward (the adds of
/// runs that read the same input position accumulate).
/// </summary>
public sealed class GatherLayer : Layer
{
    public int Axis { get; }
    public int[] Indices { get; }
    /// <summary>The runs the index list is cut into.</summary>
    public IReadOnlyList<(int J0, int JS, int I0, int IS, int L)> Runs { get; }

    public GatherLayer(int axis, int[] indices)
    {
        if (axis < 0 || indices.Length == 0 || indices.Any(i => i < 0))
            throw new PerturbException($"Gather: invalid axis {axis} or indices [{string.Join(", ", indices.Take(8))}{(indices.Length > 8 ? ", ..." : "")}]");
        Axis = axis; Indices = indices; Runs = Cut(indices);
    }

    public override string Type => "Gather";

    /// <summary>
    /// The fewest runs over output steps JS = 1..8: the positions of each residue class mod JS split greedily where the
    /// index step changes (nearest upsampling by 2 is two runs, a reversal one, a half-pixel linear tap three).
    /// </summary>
    public static (int J0, int JS, int I0, int IS, int L)[] Cut(int[] ix)
    {
        (int, int, int, int, int)[]? best = null;
        for (int js = 1; js <= Math.Min(8, ix.Length); js++)
        {
            var runs = new List<(int, int, int, int, int)>();
            for (int c = 0; c < js; c++)
            {
                int j = c;
                while (j < ix.Length)
                {
                    int len = 1, step = j + js < ix.Length ? ix[j + js] - ix[j] : 0;
                    if (step != 0)
                        while (j + len * js < ix.Length && ix[j + len * js] - ix[j + (len - 1) * js] == step) len++;
                    runs.Add((j, js, ix[j], len == 1 ? 1 : step, len));
                    j += len * js;
                }
            }
            if (best == null || runs.Count < best.Length) best = runs.ToArray();
        }
        return best!;
    }

    protected override int[] BuildCore(IBackend be, int[][] inShapes, ulong seed)
    {
        var s = inShapes[0];
        if (Axis >= s.Length) throw new PerturbException($"layer '{Name}' (Gather): axis {Axis} outside input {Tensor.ShapeString(s)}");
        if (Indices.Any(i => i >= s[Axis])) throw new PerturbException($"layer '{Name}' (Gather): an index is outside the {s[Axis]} positions of axis {Axis}");
        var o = (int[])s.Clone(); o[Axis] = Indices.Length;
        return o;
    }

    /// <summary>One run's iteration: S0 (Off0) the input positions, S1 (Off1) the output positions.</summary>
    Kernels.StridedArgs Args(int n, (int J0, int JS, int I0, int IS, int L) run)
    {
        var sx = Strided.Contiguous(Batch(n, InShapes[0])); var yDims = Batch(n, OutShape); var sy = Strided.Contiguous(yDims);
        var dims = (int[])yDims.Clone(); dims[Axis + 1] = run.L;
        var s0 = (int[])sx.Clone(); s0[Axis + 1] *= run.IS;
        var s1 = (int[])sy.Clone(); s1[Axis + 1] *= run.JS;
        return Strided.Make(dims, s0, s1, null, run.I0 * sx[Axis + 1], run.J0 * sy[Axis + 1]);
    }

    public override Tensor Forward(PassContext c, Tensor[] x)
    {
        CheckInput(x[0], 0);
        var y = c.Alloc(Batch(x[0].N, OutShape));
        foreach (var r in Runs) c.Be.StridedCopy(x[0], y, Args(x[0].N, r));
        return y;
    }

    public override Tensor?[] Backward(PassContext c, Tensor dy, bool weights, bool[] needDx)
    {
        if (!needDx[0]) return new Tensor?[] { null };
        var dx = c.Alloc(Batch(dy.N, InShapes[0]));   // zeroed
        foreach (var r in Runs)
        {
            var a = Args(dy.N, r);
            // dx[input positions] += dy[output positions]: a = dx (S0), b = dy (S1), y = dx (S2 = S0)
            a.S2 = a.S0; a.Off2 = a.Off0;
            c.Be.BroadcastForward(BroadcastOp.Add, dx, dy, dx, a);
        }
        return new[] { dx };
    }

    public override JsonObject Config() => new() { ["axis"] = Axis, ["indices"] = TensorJson.Ints(Indices) };
    internal static GatherLayer FromConfig(JsonObject o) => new(o.I("axis", 0), o.Ints("indices"));
}
