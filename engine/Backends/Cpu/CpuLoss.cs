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

    /// <summary>Runs body(row) for every row after checking x and y hold rows*cols values.</summary>
    void ForRows(string op, Tensor x, Tensor y, int rows, int cols, long flopsPerValue, Action<Span<float>, Span<float>> body)
    {
        long len = (long)rows * cols;
        var xb = B(x, len, op, "x"); var yb = B(y, len, op, "y");
        Counters.Hit(op, flopsPerValue * len);
        For(rows, cols, r => body(xb.Span((long)r * cols, cols), yb.Span((long)r * cols, cols)));
    }

    public void Softmax(Tensor x, Tensor y, int rows, int cols) =>
        ForRows("softmax", x, y, rows, cols, 4, (xs, ys) =>
        {
            var (mx, ls) = LogSumExp(xs);
            for (int j = 0; j < xs.Length; j++) ys[j] = MathF.Exp(xs[j] - mx - ls);
        });

    public void LogSoftmax(Tensor x, Tensor y, int rows, int cols) =>
        ForRows("log_softmax", x, y, rows, cols, 4, (xs, ys) =>
        {
            var (mx, ls) = LogSumExp(xs);
            for (int j = 0; j < xs.Length; j++) ys[j] = xs[j] - mx - ls;
        });

    public void SoftmaxBackward(Tensor y, Tensor dy, Tensor dx, int rows, int cols)
    {
        const string op = "softmax_bwd";
        long len = (long)rows * cols;
        var yb = B(y, len, op, "y"); var db = B(dy, len, op, "dy"); var ob = B(dx, len, op, "dx");
        Counters.Hit(op, 4 * len);
        For(rows, cols, r =>
        {
            var ys = yb.Span((long)r * cols, cols); var g = db.Span((long)r * cols, cols); var o = ob.Span((long)r * cols, cols);
            float dot = (float)DotD(g, ys);
            for (int j = 0; j < cols; j++) o[j] = ys[j] * (g[j] - dot);
        });
    }

    /// <summary>Reads the label of row r as an integer class index and checks its range.</summary>
    static int Label(Buf labels, int r, int cols, string op)
    {
        float v = labels[r];
        int t = (int)v;
        if (t < 0 || t >= cols || t != v) throw new ArgumentException($"{op}: label {v} of row {r} is not a class index in [0, {cols})");
        return t;
    }

    /// <summary>Per-row loss: returns loss of logits z with class t; writes scale * d loss/d z into grad when hasGrad.</summary>
    delegate float RowLoss(ReadOnlySpan<float> z, int t, Span<float> grad, float scale, bool hasGrad);

    /// <summary>Shared driver of the class-label losses: checks, counts, validates labels, runs one row per work item.</summary>
    void ClassLoss(string op, long flopsPerValue, Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, int rows, int cols, RowLoss body)
    {
        long len = (long)rows * cols;
        var zb = B(logits, len, op, "logits"); var lb = B(labels, rows, op, "labels"); var ob = B(loss, rows, op, "loss");
        Buf? gb = dlogits == null ? null : B(dlogits, len, op, "dlogits");
        var sb = B(gradScale, gb == null ? 0 : rows, op, "gradScale");
        Counters.Hit(op, flopsPerValue * len);
        for (int r = 0; r < rows; r++) Label(lb, r, cols, op);
        For(rows, cols, r =>
        {
            bool hasGrad = gb != null;
            var d = gb is { } g ? g.Span((long)r * cols, cols) : Span<float>.Empty;
            ob[r] = body(zb.Span((long)r * cols, cols), (int)lb[r], d, hasGrad ? sb[r] : 0f, hasGrad);
        });
    }

    public void CrossEntropy(Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, int rows, int cols) =>
        ClassLoss("ce_loss", 5, logits, labels, loss, dlogits, gradScale, rows, cols, (z, t, d, sc, hasGrad) =>
        {
            var (mx, ls) = LogSumExp(z);
            if (hasGrad)
                for (int j = 0; j < z.Length; j++) d[j] = sc * (MathF.Exp(z[j] - mx - ls) - (j == t ? 1f : 0f));
            return mx + ls - z[t];
        });

    public void CwMarginLoss(Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, bool targeted, float kappa, int rows, int cols)
    {
        if (cols < 2) throw new ArgumentException($"cw_loss: needs at least two classes, got {cols}");
        ClassLoss("cw_loss", 2, logits, labels, loss, dlogits, gradScale, rows, cols, (z, t, d, sc, hasGrad) =>
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

    public void BceWithLogits(Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, int rows)
    {
        const string op = "bce_loss";
        var zb = B(logits, rows, op, "logits"); var lb = B(labels, rows, op, "labels"); var ob = B(loss, rows, op, "loss");
        Buf? gb = dlogits == null ? null : B(dlogits, rows, op, "dlogits");
        var sb = B(gradScale, gb == null ? 0 : rows, op, "gradScale");
        Counters.Hit(op, 8L * rows);
        For(rows, 8, r =>
        {
            float z = zb[r], y = lb[r];
            ob[r] = MathF.Max(z, 0f) - z * y + MathF.Log(1f + MathF.Exp(-MathF.Abs(z)));
            if (gb is { } g) g[r] = sb[r] * (1f / (1f + MathF.Exp(-z)) - y);
        });
    }
}
