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
    delegate float RowLoss(int row, ReadOnlySpan<float> z, int t, Span<float> grad, float scale, bool hasGrad);

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
            ob[r] = body(r, zb.Span((long)r * cols, cols), (int)lb[r], d, hasGrad ? sb[r] : 0f, hasGrad);
        });
    }

    /// <summary>
    /// Cross-entropy from the log-sum-exp at the target, in double: with S = sum_{j != t} exp(z_j - z_t),
    /// loss = log(1 + S) and d loss/d z_t = -S / (1 + S) = -sum_{j != t} p_j, never 1 - p_t: p_t rounds to 1 in float32
    /// on a confident model and p_t - 1 would then be 0, where the sum of the other probabilities is not.
    /// </summary>
    protected override void CrossEntropyCore(Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, int rows, int cols) =>
        ClassLoss(logits, labels, loss, dlogits, gradScale, rows, cols, (_, z, t, d, sc, hasGrad) =>
        {
            // Shift by the row max (no overflow), sum the others apart from the target.
            float mx = TensorPrimitives.Max(z);
            double et = Math.Exp(z[t] - mx), so = 0;
            for (int j = 0; j < z.Length; j++) if (j != t) so += Math.Exp(z[j] - mx);
            double sum = et + so;
            if (hasGrad)
                for (int j = 0; j < z.Length; j++) d[j] = j == t ? (float)(-sc * (so / sum)) : (float)(sc * (Math.Exp(z[j] - mx) / sum));
            // log(sum) - (z_t - mx); log1p keeps the tiny loss of a confident row (z_t is the max, et = 1).
            return (float)(z[t] == mx ? Log1P(so) : Math.Log(sum) - (z[t] - mx));
        });

    /// <summary>log(1 + v) for v &gt;= 0, exact to rounding for tiny v (where 1 + v rounds to 1).</summary>
    static double Log1P(double v) => v < 1e-8 ? v * (1 - 0.5 * v) : Math.Log(1 + v);

    protected override void CwMarginLossCore(Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, bool targeted, float kappa, int rows, int cols)
    {
        ClassLoss(logits, labels, loss, dlogits, gradScale, rows, cols, (_, z, t, d, sc, hasGrad) =>
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

    /// <summary>
    /// The DLR loss of Croce and Hein (2020), in double; see <see cref="IBackend.DlrLoss"/>. z sorted descending is
    /// z_(1) &gt;= z_(2) &gt;= ...; the denominator is z_(1) - z_(3) (untargeted) or z_(1) - (z_(3) + z_(4))/2
    /// (targeted), with fewer classes the deepest that exists (z_(3) for three classes), and 1 for two classes.
    /// </summary>
    protected override void DlrLossCore(Tensor logits, Tensor labels, Tensor targets, Tensor loss, Tensor? dlogits, Tensor gradScale, bool targeted, int rows, int cols)
    {
        var tb = B(targets);
        ClassLoss(logits, labels, loss, dlogits, gradScale, rows, cols, (r, z, y, d, sc, hasGrad) =>
        {
            // The four largest logits, descending (the first index wins ties, as ArgmaxRows).
            Span<int> top = stackalloc int[4];
            int nTop = Math.Min(4, cols);
            for (int k = 0; k < nTop; k++)
            {
                int best = -1;
                for (int j = 0; j < cols; j++)
                {
                    bool used = false;
                    for (int q = 0; q < k; q++) used |= top[q] == j;
                    if (!used && (best < 0 || z[j] > z[best])) best = j;
                }
                top[k] = best;
            }
            // Numerator: the margin z_y - z_o (o: the target, or the best other class), to be made negative.
            int o = targeted ? (int)tb[r] : FirstArgmax(z, y);
            double num = (double)z[y] - z[o];
            // Denominator: z_(1) minus the deepest of z_(3) (and z_(4) when targeted) that exists; 1 for two classes.
            double den = 1;
            if (cols >= 3)
            {
                double low = targeted && cols >= 4 ? 0.5 * ((double)z[top[2]] + z[top[3]]) : z[top[2]];
                den = z[top[0]] - low + 1e-12;
            }
            if (hasGrad)
            {
                d.Clear();
                double gy = -sc / den, gd = sc * num / (den * den);
                d[y] += (float)gy; d[o] -= (float)gy;
                if (cols >= 3)
                {
                    d[top[0]] += (float)gd;
                    if (targeted && cols >= 4) { d[top[2]] -= (float)(0.5 * gd); d[top[3]] -= (float)(0.5 * gd); }
                    else d[top[2]] -= (float)gd;
                }
            }
            return (float)(-num / den);
        });
    }

    protected override void BceWithLogitsCore(Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, int rows)
    {
        var zb = B(logits); var lb = B(labels); var ob = B(loss);
        Buf? gb = dlogits == null ? null : B(dlogits);
        var sb = B(gradScale);
        For(rows, 8, r =>
        {
            // e = exp(-|z|) <= 1, so nothing overflows. sigmoid(z) - y = (1 - y) sigmoid(z) - y sigmoid(-z): the two
            // sigmoids come from e directly, never as 1 - sigmoid, which is 0 in float32 once z is confident (|z| > 17).
            double z = zb[r], y = lb[r], e = Math.Exp(-Math.Abs(z));
            ob[r] = (float)(Math.Max(z, 0) - z * y + Log1P(e));
            if (gb is { } g)
            {
                double sp = z >= 0 ? 1 / (1 + e) : e / (1 + e), sn = z >= 0 ? e / (1 + e) : 1 / (1 + e);
                g[r] = (float)(sb[r] * ((1 - y) * sp - y * sn));
            }
        });
    }
}
