using Perturb.Kernels;

namespace Perturb.Engine.Backends;

/// <summary>
/// General-tensor ops on the CPU: the same element math as the kernels (Perturb.Kernels.Unary and Broadcast, called
/// directly), run row by row: a strided iteration is split into rows of its last dimension, offsets found once per
/// row, rows in parallel.
/// </summary>
public sealed partial class CpuBackend
{
    protected override void UnaryForwardCore(UnaryOp op, float a, float b, Tensor x, Tensor y)
    {
        var xb = B(x); var yb = B(y);
        int o = (int)op;
        Ranges(x.Length, (s, e) => { for (long i = s; i < e; i++) yb[i] = Unary.F(o, a, b, xb[i]); });
    }

    protected override void UnaryBackwardCore(UnaryOp op, float a, float b, Tensor x, Tensor dy, Tensor dx)
    {
        var xb = B(x); var gb = B(dy); var db = B(dx);
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

    protected override void BroadcastForwardCore(BroadcastOp op, Tensor a, Tensor b, Tensor y, in StridedArgs s)
    {
        var ab = B(a); var bb = B(b); var yb = B(y);
        int o = (int)op;
        Rows(s, (_, o0, o1, o2, t0, t1, t2, n) =>
        {
            for (int j = 0; j < n; j++, o0 += t0, o1 += t1, o2 += t2) yb[o2] = Broadcast.F(o, ab[o0], bb[o1]);
        });
    }

    protected override void BroadcastBackwardCore(BroadcastOp op, int which, Tensor a, Tensor b, Tensor dy, Tensor dx, in StridedArgs keep, in StridedArgs red)
    {
        var ab = B(a); var bb = B(b); var gb = B(dy); var db = B(dx);
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

    protected override void StridedCopyCore(Tensor src, Tensor dst, in StridedArgs s)
    {
        var sb = B(src); var db = B(dst);
        Rows(s, (_, o0, o1, o2, t0, t1, t2, n) =>
        {
            if (t0 == 1 && t1 == 1) { sb.Span(o0, n).CopyTo(db.Span(o1, n)); return; }
            for (int j = 0; j < n; j++, o0 += t0, o1 += t1) db[o1] = sb[o0];
        });
    }

    protected override void ReduceAxesCore(ReduceOp op, Tensor x, Tensor y, in StridedArgs keep, in StridedArgs red)
    {
        var xb = B(x); var yb = B(y);
        var (k, scale) = KernelReduce(op, red);
        var kp = keep; var rd = red;
        For(keep.Count(), red.Count(), i =>
        {
            kp.At(i, out int b0, out _, out _);
            yb[i] = ReduceOne(k, scale, xb, b0, rd);
        });
    }

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

    protected override void ReduceAxesBackwardCore(ReduceOp op, Tensor x, Tensor y, Tensor dy, Tensor dx, in StridedArgs keep, in StridedArgs red)
    {
        var xb = B(x); var dxb = B(dx); var yb = B(y); var gb = B(dy);
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
