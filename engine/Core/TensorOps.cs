using Perturb.Kernels;

namespace Perturb.Engine;

/// <summary>Element-wise functions of <see cref="IBackend.UnaryForward"/>, numbered as Perturb.Kernels.Unary (math there).</summary>
public enum UnaryOp
{
    /// <summary>max(0, min(1, alpha*x + beta)); ONNX defaults alpha 0.2, beta 0.5 (PyTorch exports 1/6, 0.5).</summary>
    HardSigmoid,
    /// <summary>x * max(0, min(1, x/6 + 1/2)).</summary>
    HardSwish,
    /// <summary>x * sigmoid(x).</summary>
    Silu,
    /// <summary>x &gt; 0 ? x : alpha*(exp(x) - 1).</summary>
    Elu,
    /// <summary>gamma (beta parameter) * (x &gt; 0 ? x : alpha*(exp(x) - 1)).</summary>
    Selu,
    /// <summary>log(1 + exp(x)).</summary>
    Softplus,
    /// <summary>x/2 * (1 + erf(x/sqrt 2)).</summary>
    Gelu,
    /// <summary>x/2 * (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).</summary>
    GeluTanh,
    Erf, Sqrt, Exp, Log, Neg, Reciprocal, Abs,
    /// <summary>x^alpha for a constant exponent alpha.</summary>
    Pow,
    Sigmoid, Tanh, Relu,
}

/// <summary>Binary ops with NumPy broadcasting, numbered as Perturb.Kernels.Broadcast.</summary>
public enum BroadcastOp { Add, Sub, Mul, Div, Pow, Max, Min }

/// <summary>Axis reductions, numbered as Perturb.Kernels.Broadcast (Mean is Sum with scale 1/count).</summary>
public enum ReduceOp { Sum, Max, Min, L2, Mean }

/// <summary>Builds <see cref="StridedArgs"/> from shapes: contiguous strides, broadcasting, merging of dimensions.</summary>
public static class Strided
{
    public const int MaxRank = 8;

    /// <summary>Row-major strides of a contiguous tensor.</summary>
    public static int[] Contiguous(int[] dims)
    {
        var s = new int[dims.Length];
        int acc = 1;
        for (int d = dims.Length - 1; d >= 0; d--) { s[d] = acc; acc *= dims[d]; }
        return s;
    }

    /// <summary>Strides of a contiguous tensor of shape <paramref name="dims"/> broadcast to <paramref name="to"/> (same rank): 0 along size-1 axes.</summary>
    public static int[] BroadcastStrides(int[] dims, int[] to)
    {
        var s = Contiguous(dims);
        for (int d = 0; d < dims.Length; d++) if (dims[d] == 1 && to[d] != 1) s[d] = 0;
        return s;
    }

    /// <summary>The shape padded on the left with 1s to <paramref name="rank"/>.</summary>
    public static int[] PadLeft(int[] dims, int rank) => Enumerable.Repeat(1, rank - dims.Length).Concat(dims).ToArray();

    /// <summary>NumPy's broadcast shape of two shapes, or null when they do not broadcast.</summary>
    public static int[]? BroadcastShape(int[] a, int[] b)
    {
        int r = Math.Max(a.Length, b.Length);
        var pa = PadLeft(a, r); var pb = PadLeft(b, r); var o = new int[r];
        for (int d = 0; d < r; d++)
        {
            if (pa[d] != pb[d] && pa[d] != 1 && pb[d] != 1) return null;
            o[d] = pa[d] == 1 ? pb[d] : pa[d];
        }
        return o;
    }

    /// <summary>
    /// The iteration over <paramref name="dims"/> with up to three operands' strides and offsets: size-1 dimensions
    /// dropped and neighbours merged where every operand steps through them contiguously, so common cases run on one
    /// or two dimensions. Throws when more than <see cref="MaxRank"/> dimensions remain.
    /// </summary>
    public static StridedArgs Make(int[] dims, int[] s0, int[]? s1 = null, int[]? s2 = null, int off0 = 0, int off1 = 0, int off2 = 0)
    {
        s1 ??= new int[dims.Length]; s2 ??= new int[dims.Length];
        var d = new List<int>(); var a = new List<int>(); var b = new List<int>(); var c = new List<int>();
        for (int i = 0; i < dims.Length; i++)
        {
            if (dims[i] == 1) continue;
            if (d.Count > 0 && a[^1] == s0[i] * dims[i] && b[^1] == s1[i] * dims[i] && c[^1] == s2[i] * dims[i])
            { d[^1] *= dims[i]; a[^1] = s0[i]; b[^1] = s1[i]; c[^1] = s2[i]; continue; }
            d.Add(dims[i]); a.Add(s0[i]); b.Add(s1[i]); c.Add(s2[i]);
        }
        if (d.Count == 0) { d.Add(1); a.Add(0); b.Add(0); c.Add(0); }   // a single element
        if (d.Count > MaxRank) throw new PerturbException($"a strided iteration over {Tensor.ShapeString(dims)} needs {d.Count} dimensions after merging; at most {MaxRank} are supported");
        if (dims.Any(x => x == 0)) { d.Clear(); a.Clear(); b.Clear(); c.Clear(); d.Add(0); a.Add(0); b.Add(0); c.Add(0); }
        var r = new StridedArgs { Rank = d.Count, Off0 = off0, Off1 = off1, Off2 = off2 };
        for (int i = 0; i < d.Count; i++) { r.Dims.Set(i, d[i]); r.S0.Set(i, a[i]); r.S1.Set(i, b[i]); r.S2.Set(i, c[i]); }
        return r;
    }

    /// <summary>Binary op of a and b (full shapes, batch included) into contiguous y of their broadcast shape.</summary>
    public static StridedArgs Binary(int[] a, int[] b, int[] y)
    {
        var pa = PadLeft(a, y.Length); var pb = PadLeft(b, y.Length);
        return Make(y, BroadcastStrides(pa, y), BroadcastStrides(pb, y), Contiguous(y));
    }

    /// <summary>
    /// Gradient of operand <paramref name="which"/> of a binary op: (keep, red) for <see cref="IBackend.BroadcastBackward"/>.
    /// keep runs over the operand's own elements, red over the axes it is broadcast along; strides S0 a, S1 b, S2 dy.
    /// </summary>
    public static (StridedArgs Keep, StridedArgs Red) BinaryGrad(int[] a, int[] b, int[] y, int which)
    {
        var pa = PadLeft(a, y.Length); var pb = PadLeft(b, y.Length);
        var own = which == 0 ? pa : pb;
        var sa = BroadcastStrides(pa, y); var sb = BroadcastStrides(pb, y); var sy = Contiguous(y);
        var keep = Enumerable.Range(0, y.Length).Where(d => own[d] == y[d]).ToArray();
        var red = Enumerable.Range(0, y.Length).Where(d => own[d] != y[d]).ToArray();
        int[] Pick(int[] v, int[] idx) => idx.Select(i => v[i]).ToArray();
        // keep must not merge differently from the operand's contiguous layout: dx[i] is element i of the operand.
        return (MakeExact(Pick(y, keep), Pick(sa, keep), Pick(sb, keep), Pick(sy, keep)), MakeExact(Pick(y, red), Pick(sa, red), Pick(sb, red), Pick(sy, red)));
    }

    /// <summary>Reduction of x (full shape) over the given axes: keep over the kept axes (y contiguous over them), red over the reduced ones; S0 strides of x.</summary>
    public static (StridedArgs Keep, StridedArgs Red) Reduce(int[] x, int[] axes)
    {
        var sx = Contiguous(x);
        var keep = Enumerable.Range(0, x.Length).Where(d => !axes.Contains(d)).ToArray();
        return (MakeExact(keep.Select(d => x[d]).ToArray(), keep.Select(d => sx[d]).ToArray()),
                MakeExact(axes.Select(d => x[d]).ToArray(), axes.Select(d => sx[d]).ToArray()));
    }

    /// <summary>One past the largest offset the iteration reaches in operand k (0, 1, 2; strides may be negative: Slice with negative steps); 0 for an empty iteration.</summary>
    public static long Need(in StridedArgs s, int k)
    {
        if (s.Count() == 0) return 0;
        long m = k == 0 ? s.Off0 : k == 1 ? s.Off1 : s.Off2;
        for (int d = 0; d < s.Rank; d++)
        {
            int st = k == 0 ? s.S0.Get(d) : k == 1 ? s.S1.Get(d) : s.S2.Get(d);
            if (st > 0) m += (long)(s.Dims.Get(d) - 1) * st;
        }
        return m + 1;
    }

    /// <summary>The smallest offset the iteration reaches in operand k (its offset plus the steps back along negative strides); 0 for an empty iteration.</summary>
    public static long Low(in StridedArgs s, int k)
    {
        if (s.Count() == 0) return 0;
        long m = k == 0 ? s.Off0 : k == 1 ? s.Off1 : s.Off2;
        for (int d = 0; d < s.Rank; d++)
        {
            int st = k == 0 ? s.S0.Get(d) : k == 1 ? s.S1.Get(d) : s.S2.Get(d);
            if (st < 0) m += (long)(s.Dims.Get(d) - 1) * st;
        }
        return m;
    }

    /// <summary>As <see cref="Make"/> (merging is always exact: element order is preserved).</summary>
    static StridedArgs MakeExact(int[] dims, int[] s0, int[]? s1 = null, int[]? s2 = null) =>
        dims.Length == 0 ? Make(new[] { 1 }, new[] { 0 }, new[] { 0 }, new[] { 0 }) : Make(dims, s0, s1, s2);
}
