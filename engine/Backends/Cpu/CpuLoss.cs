using System.Numerics.Tensors;

namespace Perturb.Engine.Backends;

/// <summary>
/// Softmax family and per-sample losses over logits viewed as [rows, cols], one row per work item. Rows are
/// max-subtracted before exponentiation; sums of exponentials are accumulated in double.
/// </summary>
public sealed partial class CpuBackend
{
    /// <summary>Row max and log(sum(exp(z - max))) of one row.</summary>
    static (float max, float logSum) LogSumExp(ReadOnlySpan<float> z)
    {
        float mx = z.Length == 0 ? 0f : TensorPrimitives.Max(z);
        double s = 0;
        foreach (var v in z) s += Math.Exp(v - mx);
        return (mx, (float)Math.Log(s));
    }

    /// <summary>Runs body(row of x, row of y) for every row.</summary>
    void ForRows(Tensor x, Tensor y, int rows, int cols, Action<Span<float>, Span<float>> body)
    {
        var xb = B(x); var yb = B(y);
        For(rows, cols, r => body(xb.Span((long)r * cols, cols), yb.Span((long)r * cols, cols)));
    }

    protected override void SoftmaxCore(Tensor x, Tensor y, int rows, int cols, bool log) =>
        ForRows(x, y, rows, cols, (xs, ys) =>
        {
            var (mx, ls) = LogSumExp(xs);
            if (log) for (int j = 0; j < xs.Length; j++) ys[j] = xs[j] - mx - ls;
            else for (int j = 0; j < xs.Length; j++) ys[j] = MathF.Exp(xs[j] - mx - ls);
        });

    protected override void SoftmaxBackwardCore(Tensor y, Tensor dy, Tensor dx, int rows, int cols)
    {
        var yb = B(y); var db = B(dy); var ob = B(dx);
        For(rows, cols, r =>
        {
            var ys = yb.Span((long)r * cols, cols); var g = db.Span((long)r * cols, cols); var o = ob.Span((long)r * cols, cols);
            float dot = (float)DotD(g, ys);
            for (int j = 0; j < cols; j++) o[j] = ys[j] * (g[j] - dot);
        });
    }

    /// <summary>Per-row loss: returns loss of logits z with class t; writes scale * d loss/d z into grad when hasGrad.</summary>
    delegate float RowLoss(ReadOnlySpan<float> z, int t, Span<float> grad, float scale, bool hasGrad);

    /// <summary>Shared driver of the class-label losses (labels already checked): one row per work item.</summary>
    void ClassLoss(Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, int rows, int cols, RowLoss body)
    {
        var zb = B(logits); var lb = B(labels); var ob = B(loss);
        Buf? gb = dlogits == null ? null : B(dlogits);
        var sb = B(gradScale);
        For(rows, cols, r =>
        {
            bool hasGrad = gb != null;
            var d = gb is { } g ? g.Span((long)r * cols, cols) : Span<float>.Empty;
            ob[r] = body(zb.Span((long)r * cols, cols), (int)lb[r], d, hasGrad ? sb[r] : 0f, hasGrad);
        });
    }

    protected override void CrossEntropyCore(Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, int rows, int cols) =>
        ClassLoss(logits, labels, loss, dlogits, gradScale, rows, cols, (z, t, d, sc, hasGrad) =>
        {
            var (mx, ls) = LogSumExp(z);
            if (hasGrad)
                for (int j = 0; j < z.Length; j++) d[j] = sc * (MathF.Exp(z[j] - mx - ls) - (j == t ? 1f : 0f));
            return mx + ls - z[t];
        });

    protected override void CwMarginLossCore(Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, bool targeted, float kappa, int rows, int cols)
    {
        ClassLoss(logits, labels, loss, dlogits, gradScale, rows, cols, (z, t, d, sc, hasGrad) =>
        {
            int o = FirstArgmax(z, t);
            // margin = z_t - max_{j != t} z_j (untargeted), or its negation (targeted).
            float margin = targeted ? z[o] - z[t] : z[t] - z[o];
            bool clamped = margin < -kappa;
            if (hasGrad)
            {
                d.Clear();
                float sgn = targeted ? -1f : 1f;
                if (!clamped) { d[t] = sc * sgn; d[o] = -sc * sgn; }
            }
            return clamped ? -kappa : margin;
        });
    }

    protected override void BceWithLogitsCore(Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, int rows)
    {
        var zb = B(logits); var lb = B(labels); var ob = B(loss);
        Buf? gb = dlogits == null ? null : B(dlogits);
        var sb = B(gradScale);
        For(rows, 8, r =>
        {
            float z = zb[r], y = lb[r];
            ob[r] = MathF.Max(z, 0f) - z * y + MathF.Log(1f + MathF.Exp(-MathF.Abs(z)));
            if (gb is { } g) g[r] = sb[r] * (1f / (1f + MathF.Exp(-z)) - y);
        });
    }
}
