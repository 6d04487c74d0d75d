using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace Perturb.Engine.Backends;

/// <summary>Element-wise ops over parallel chunks (TensorPrimitives where it has the op), and channel copy. The kernel twin is IlgpuElementwise.cs.</summary>
public sealed partial class CpuBackend
{
    /// <summary>Runs a span-wise kernel over two inputs and one output of equal length, in parallel chunks.</summary>
    void Binary(Tensor a, Tensor b, Tensor y, SpanBinary kernel)
    {
        var ab = B(a); var bb = B(b); var yb = B(y);
        Ranges(a.Length, (s, e) => kernel(ab.Span(s, e - s), bb.Span(s, e - s), yb.Span(s, e - s)));
    }

    delegate void SpanBinary(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> y);

    protected override void BinaryCore(BinaryOp kind, Tensor a, Tensor b, Tensor y) =>
        Binary(a, b, y, kind switch
        {
            BinaryOp.Add => TensorPrimitives.Add,
            BinaryOp.Mul => TensorPrimitives.Multiply,
            BinaryOp.Div => TensorPrimitives.Divide,
            BinaryOp.Greater => GreaterSpan,
            BinaryOp.AddRelu => AddReluSpan,
            _ => throw new InvalidOperationException($"binary op {kind} has no CPU implementation"),
        });

    static void GreaterSpan(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> y)
    {
        for (int i = 0; i < y.Length; i++) y[i] = a[i] > b[i] ? 1f : 0f;
    }

    /// <summary>y = s &gt; 0 ? s : 0 for s = a + b, branch-free: the sum ANDed with its compare mask (0 for NaN and -0).</summary>
    static void AddReluSpan(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> y)
    {
        int i = 0, n = y.Length;
        if (Vector512.IsHardwareAccelerated)
            for (; i + 16 <= n; i += 16)
            {
                var s = Vector512.Create(a.Slice(i, 16)) + Vector512.Create(b.Slice(i, 16));
                (s & Vector512.GreaterThan(s, Vector512<float>.Zero)).CopyTo(y.Slice(i, 16));
            }
        else if (Vector256.IsHardwareAccelerated)
            for (; i + 8 <= n; i += 8)
            {
                var s = Vector256.Create(a.Slice(i, 8)) + Vector256.Create(b.Slice(i, 8));
                (s & Vector256.GreaterThan(s, Vector256<float>.Zero)).CopyTo(y.Slice(i, 8));
            }
        for (; i < n; i++) { float s = a[i] + b[i]; y[i] = s > 0f ? s : 0f; }
    }

    protected override void AbsCore(Tensor x, Tensor y) => Binary(x, x, y, (xs, _, o) => TensorPrimitives.Abs(xs, o));

    protected override void WhereCore(Tensor m, Tensor a, Tensor b, Tensor y, int rows, int cols)
    {
        var mb = B(m); var ab = B(a); var bb = B(b); var yb = B(y);
        // A span copy moves the chosen row's bits unchanged (and is safe when y is a or b).
        if (cols == 1)
            Ranges(rows, (s, e) =>
            {
                for (long r = s; r < e; r++) yb[r] = mb[r] != 0f ? ab[r] : bb[r];
            });
        else
            For(rows, cols, r => (mb[r] != 0f ? ab : bb).Span((long)r * cols, cols).CopyTo(yb.Span((long)r * cols, cols)));
    }

    protected override void RowBroadcastCore(BinaryOp kind, Tensor x, Tensor v, Tensor y, int rows, int cols)
    {
        var xb = B(x); var vb = B(v); var yb = B(y);
        bool mul = kind == BinaryOp.Mul;
        if (!mul && kind != BinaryOp.Add) throw new InvalidOperationException($"row broadcast {kind} has no CPU implementation");
        For(rows, cols, r =>
        {
            var xs = xb.Span((long)r * cols, cols); var ys = yb.Span((long)r * cols, cols);
            if (mul) TensorPrimitives.Multiply(xs, vb[r], ys); else TensorPrimitives.Add(xs, vb[r], ys);
        });
    }

    protected override void AxpyCore(float alpha, Tensor x, Tensor y) =>
        Binary(x, y, y, (xs, ys, o) => TensorPrimitives.FusedMultiplyAdd(xs, alpha, ys, o));

    protected override void ScaleCore(float alpha, Tensor x, Tensor y) =>
        Binary(x, x, y, (xs, _, o) => TensorPrimitives.Multiply(xs, alpha, o));

    protected override void ClampCore(Tensor x, float lo, float hi, Tensor y) =>
        Binary(x, x, y, (xs, _, o) =>
        {
            for (int i = 0; i < xs.Length; i++) o[i] = MathF.Min(MathF.Max(xs[i], lo), hi);
        });

    protected override void SignCore(Tensor x, Tensor y) =>
        Binary(x, x, y, (xs, _, o) =>
        {
            for (int i = 0; i < xs.Length; i++) { float v = xs[i]; o[i] = v > 0 ? 1f : v < 0 ? -1f : 0f; }
        });

    protected override void LerpCore(Tensor a, Tensor b, float t, Tensor y) =>
        Binary(a, b, y, (as_, bs, o) =>
        {
            for (int i = 0; i < as_.Length; i++) o[i] = as_[i] + t * (bs[i] - as_[i]);
        });

    protected override void ChannelCopyCore(Tensor src, int srcC, int srcOff, Tensor dst, int dstC, int dstOff, int count, int outer, int inner, bool accumulate)
    {
        var s = B(src);
        var d = B(dst);
        For(outer * count, inner, j =>
        {
            int n = j / count, i = j % count;
            var from = s.Span(((long)n * srcC + srcOff + i) * inner, inner);
            var to = d.Span(((long)n * dstC + dstOff + i) * inner, inner);
            if (accumulate) TensorPrimitives.Add(to, from, to); else from.CopyTo(to);
        });
    }
}
