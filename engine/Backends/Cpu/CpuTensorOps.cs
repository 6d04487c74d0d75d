using Perturb.Kernels;

namespace Perturb.Engine.Backends;

/// <summary>
/// General-tensor ops on the CPU: the same element math as the kernels (Perturb.Kernels.Unary and Broadcast, called
/// directly), run row by row: a strided iteration is split into rows of its last dimension, offsets found once per
/// row, rows in parallel.
/// </summary>
public sealed partial class CpuBackend
{
    public void UnaryForward(UnaryOp op, float a, float b, Tensor x, Tensor y)
    {
        Counters.Hit("unary_fwd");
        Check.Same(x, y, "unary_fwd");
        var xb = B(x, x.Length, "unary_fwd", "x"); var yb = B(y, x.Length, "unary_fwd", "y");
        int o = (int)op;
        Ranges(x.Length, (s, e) => { for (long i = s; i < e; i++) yb[i] = Unary.F(o, a, b, xb[i]); });
    }

    public void UnaryBackward(UnaryOp op, float a, float b, Tensor x, Tensor dy, Tensor dx)
    {
        Counters.Hit("unary_bwd");
        Check.Same(x, dy, "unary_bwd"); Check.Same(dy, dx, "unary_bwd");
        var xb = B(x, x.Length, "unary_bwd", "x"); var gb = B(dy, x.Length, "unary_bwd", "dy"); var db = B(dx, x.Length, "unary_bwd", "dx");
        int o = (int)op;
        Ranges(x.Length, (s, e) => { for (long i = s; i < e; i++) db[i] = gb[i] * Unary.D(o, a, b, xb[i]); });
    }

    /// <summary>
    /// Runs body(start, o0, o1, o2, step0, step1, step2, n) for each row of the iteration: n elements from those offsets,
    /// start the iteration index of the row's first element.
    /// </summary>
    void Rows(in StridedArgs s, RowBody body)
    {
        int count = s.Count();
        if (count == 0) return;
        int last = s.Rank - 1, inner = s.Dims.Get(last), rows = count / inner;
        int t0 = s.S0.Get(last), t1 = s.S1.Get(last), t2 = s.S2.Get(last);
        var it = s;
        For(rows, inner, r =>
        {
            it.At(r * inner, out int o0, out int o1, out int o2);
            body(r * inner, o0, o1, o2, t0, t1, t2, inner);
        });
    }

    delegate void RowBody(int start, int o0, int o1, int o2, int t0, int t1, int t2, int n);

    public void BinaryForward(BinaryOp op, Tensor a, Tensor b, Tensor y, in StridedArgs s)
    {
        Counters.Hit("binary_fwd", s.Count());
        var ab = B(a, Strided.Need(s, 0), "binary_fwd", "a"); var bb = B(b, Strided.Need(s, 1), "binary_fwd", "b");
        var yb = B(y, Strided.Need(s, 2), "binary_fwd", "y");
        int o = (int)op;
        Rows(s, (_, o0, o1, o2, t0, t1, t2, n) =>
        {
            for (int j = 0; j < n; j++, o0 += t0, o1 += t1, o2 += t2) yb[o2] = Broadcast.F(o, ab[o0], bb[o1]);
        });
    }

    public void BinaryBackward(BinaryOp op, int which, Tensor a, Tensor b, Tensor dy, Tensor dx, in StridedArgs keep, in StridedArgs red)
    {
        Counters.Hit("binary_bwd", (long)keep.Count() * red.Count());
        var ab = B(a, Strided.Need(keep, 0) + Strided.Need(red, 0) - 1, "binary_bwd", "a");
        var bb = B(b, Strided.Need(keep, 1) + Strided.Need(red, 1) - 1, "binary_bwd", "b");
        var gb = B(dy, Strided.Need(keep, 2) + Strided.Need(red, 2) - 1, "binary_bwd", "dy");
        var db = B(dx, keep.Count(), "binary_bwd", "dx");
        int o = (int)op, nr = red.Count();
        var rd = red;
        Rows(keep, (start, o0, o1, o2, t0, t1, t2, n) =>
        {
            for (int j = 0; j < n; j++, o0 += t0, o1 += t1, o2 += t2)
            {
                float acc = 0f;
                for (int r = 0; r < nr; r++)
                {
                    rd.At(r, out int d0, out int d1, out int d2);
                    acc += gb[o2 + d2] * Broadcast.D(o, which, ab[o0 + d0], bb[o1 + d1]);
                }
                db[start + j] = acc;
            }
        });
    }

    public void StridedCopy(Tensor src, Tensor dst, in StridedArgs s)
    {
        Counters.Hit("strided_copy");
        var sb = B(src, Strided.Need(s, 0), "strided_copy", "src"); var db = B(dst, Strided.Need(s, 1), "strided_copy", "dst");
        Rows(s, (_, o0, o1, o2, t0, t1, t2, n) =>
        {
            if (t0 == 1 && t1 == 1) { sb.Span(o0, n).CopyTo(db.Span(o1, n)); return; }
            for (int j = 0; j < n; j++, o0 += t0, o1 += t1) db[o1] = sb[o0];
        });
    }

    public void ReduceAxes(ReduceOp op, Tensor x, Tensor y, in StridedArgs keep, in StridedArgs red)
    {
        Counters.Hit("reduce_axes", (long)keep.Count() * red.Count());
        var xb = B(x, Strided.Need(keep, 0) + Strided.Need(red, 0) - 1, "reduce_axes", "x");
        var yb = B(y, keep.Count(), "reduce_axes", "y");
        var (k, scale) = KernelReduce(op, red);
        var kp = keep; var rd = red;
        For(keep.Count(), red.Count(), i =>
        {
            kp.At(i, out int b0, out _, out _);
            yb[i] = ReduceOne(k, scale, xb, b0, rd);
        });
    }

    static (int Op, float Scale) KernelReduce(ReduceOp op, in StridedArgs red) => op switch
    {
        ReduceOp.Mean => (Broadcast.RSum, 1f / Math.Max(1, red.Count())),
        ReduceOp.Sum => (Broadcast.RSum, 1f),
        ReduceOp.Max => (Broadcast.RMax, 1f),
        ReduceOp.Min => (Broadcast.RMin, 1f),
        _ => (Broadcast.RL2, 1f),
    };

    static float ReduceOne(int k, float scale, Buf x, int b0, in StridedArgs red)
    {
        // rows of the reduction's last dimension; sums in double for a stable order-independent result
        int n = red.Count(), last = red.Rank - 1, inner = red.Dims.Get(last), st = red.S0.Get(last);
        double acc = k == Broadcast.RMax ? double.NegativeInfinity : k == Broadcast.RMin ? double.PositiveInfinity : 0;
        for (int r = 0; r < n; r += inner)
        {
            red.At(r, out int d, out _, out _);
            int o = b0 + d;
            for (int j = 0; j < inner; j++, o += st)
            {
                float v = x[o];
                if (k == Broadcast.RMax) { if (v > acc) acc = v; }
                else if (k == Broadcast.RMin) { if (v < acc) acc = v; }
                else if (k == Broadcast.RL2) acc += (double)v * v;
                else acc += v;
            }
        }
        return k == Broadcast.RL2 ? (float)Math.Sqrt(acc) : k == Broadcast.RSum ? (float)(acc * scale) : (float)acc;
    }

    public void ReduceAxesBackward(ReduceOp op, Tensor x, Tensor y, Tensor dy, Tensor dx, in StridedArgs keep, in StridedArgs red)
    {
        Counters.Hit("reduce_axes_bwd", (long)keep.Count() * red.Count());
        long need = Strided.Need(keep, 0) + Strided.Need(red, 0) - 1;
        var xb = B(x, need, "reduce_axes_bwd", "x"); var dxb = B(dx, need, "reduce_axes_bwd", "dx");
        var yb = B(y, keep.Count(), "reduce_axes_bwd", "y"); var gb = B(dy, keep.Count(), "reduce_axes_bwd", "dy");
        var (k, scale) = KernelReduce(op, red);
        var kp = keep; var rd = red;
        int n = red.Count();
        For(keep.Count(), n, i =>
        {
            kp.At(i, out int b0, out _, out _);
            float g = gb[i], yi = yb[i];
            int pick = -1;
            for (int r = 0; r < n; r++)
            {
                rd.At(r, out int d, out _, out _);
                float v;
                if (k == Broadcast.RSum) v = g * scale;
                else if (k == Broadcast.RL2) v = yi > 0f ? g * xb[b0 + d] / yi : 0f;
                else if (pick < 0 && xb[b0 + d] == yi) { pick = r; v = g; }
                else v = 0f;
                dxb[b0 + d] = v;
            }
        });
    }
}
