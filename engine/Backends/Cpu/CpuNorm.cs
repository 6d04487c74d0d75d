using System.Numerics.Tensors;

namespace Perturb.Engine.Backends;

/// <summary>
/// Batch norm and per-channel affine over x viewed as [n, c, hw], one channel per work item. Statistics are
/// accumulated in double: M = n*hw values per channel, mean = sum/M, biased var = sum((x-mean)^2)/M (two passes).
/// </summary>
public sealed partial class CpuBackend
{
    /// <summary>y = x * a + b (y may be x).</summary>
    static void AffineRow(ReadOnlySpan<float> x, float a, float b, Span<float> y)
    {
        TensorPrimitives.Multiply(x, a, y);
        TensorPrimitives.Add(y, b, y);
    }

    public void BatchNormForwardTrain(Tensor x, Tensor gamma, Tensor beta, Tensor y, Tensor saveMean, Tensor saveInvStd,
        Tensor runningMean, Tensor runningVar, float momentum, float eps, int n, int c, int hw)
    {
        const string op = "bn_fwd_train";
        long len = (long)n * c * hw, m = (long)n * hw;
        Counters.Hit(op, 8 * len);
        var xb = B(x, len, op, "x"); var yb = B(y, len, op, "y");
        var gb = B(gamma, c, op, "gamma"); var bb = B(beta, c, op, "beta");
        var sm = B(saveMean, c, op, "saveMean"); var si = B(saveInvStd, c, op, "saveInvStd");
        var rm = B(runningMean, c, op, "runningMean"); var rv = B(runningVar, c, op, "runningVar");
        For(c, 3 * m, ch =>
        {
            double sum = 0;
            for (int i = 0; i < n; i++) sum += SumD(xb.Span(((long)i * c + ch) * hw, hw));
            double mean = m > 0 ? sum / m : 0;
            double sq = 0;
            for (int i = 0; i < n; i++)
                foreach (var v in xb.Span(((long)i * c + ch) * hw, hw)) { double d = v - mean; sq += d * d; }
            double var = m > 0 ? sq / m : 0;
            float inv = (float)(1.0 / Math.Sqrt(var + eps));
            sm[ch] = (float)mean; si[ch] = inv;
            double unbiased = m > 1 ? var * m / (m - 1) : var;
            rm[ch] = (1 - momentum) * rm[ch] + momentum * (float)mean;
            rv[ch] = (1 - momentum) * rv[ch] + momentum * (float)unbiased;
            // y = (x - mean) * invStd * gamma + beta = x * scale + shift.
            float scale = inv * gb[ch], shift = bb[ch] - (float)mean * scale;
            for (int i = 0; i < n; i++)
            {
                long o = ((long)i * c + ch) * hw;
                AffineRow(xb.Span(o, hw), scale, shift, yb.Span(o, hw));
            }
        });
    }

    public void BatchNormBackward(Tensor x, Tensor dy, Tensor gamma, Tensor saveMean, Tensor saveInvStd, Tensor dx,
        Tensor? dgamma, Tensor? dbeta, int n, int c, int hw)
    {
        const string op = "bn_bwd";
        long len = (long)n * c * hw, m = (long)n * hw;
        Counters.Hit(op, 8 * len);
        var xb = B(x, len, op, "x"); var db = B(dy, len, op, "dy"); var ob = B(dx, len, op, "dx");
        var gb = B(gamma, c, op, "gamma"); var sm = B(saveMean, c, op, "saveMean"); var si = B(saveInvStd, c, op, "saveInvStd");
        Buf? dg = dgamma == null ? null : B(dgamma, c, op, "dgamma");
        Buf? dbt = dbeta == null ? null : B(dbeta, c, op, "dbeta");
        For(c, 3 * m, ch =>
        {
            float mean = sm[ch], inv = si[ch];
            double sdy = 0, sdyxc = 0;
            for (int i = 0; i < n; i++)
            {
                long o = ((long)i * c + ch) * hw;
                var d = db.Span(o, hw); var xs = xb.Span(o, hw);
                for (int j = 0; j < hw; j++) { double gv = d[j]; sdy += gv; sdyxc += gv * (xs[j] - mean); }
            }
            double sdyxhat = inv * sdyxc;
            if (dg is { } g) g[ch] = (float)sdyxhat;
            if (dbt is { } b) b[ch] = (float)sdy;
            if (m == 0) return;
            // dx = gamma*invStd/M * (M*dy - sum(dy) - xhat*sum(dy*xhat)) = k1*dy - k2*xhat - k3.
            double k = gb[ch] * (double)inv / m;
            float k1 = (float)(k * m), k2 = (float)(k * sdyxhat), k3 = (float)(k * sdy);
            for (int i = 0; i < n; i++)
            {
                long o = ((long)i * c + ch) * hw;
                var d = db.Span(o, hw); var xs = xb.Span(o, hw); var outp = ob.Span(o, hw);
                for (int j = 0; j < hw; j++) outp[j] = k1 * d[j] - k2 * ((xs[j] - mean) * inv) - k3;
            }
        });
    }

    public void ChannelAffine(Tensor x, Tensor scale, Tensor shift, Tensor y, int n, int c, int hw)
    {
        const string op = "channel_affine";
        long len = (long)n * c * hw;
        Counters.Hit(op, 2 * len);
        var xb = B(x, len, op, "x"); var yb = B(y, len, op, "y");
        var sc = B(scale, c, op, "scale"); var sf = B(shift, c, op, "shift");
        For(n * c, hw, i =>
        {
            int ch = i % c;
            AffineRow(xb.Span((long)i * hw, hw), sc[ch], sf[ch], yb.Span((long)i * hw, hw));
        });
    }

    public void ChannelAffineBackward(Tensor dy, Tensor scale, Tensor dx, Tensor? x, Tensor? dscale, Tensor? dshift, int n, int c, int hw)
    {
        const string op = "channel_affine_bwd";
        long len = (long)n * c * hw;
        Counters.Hit(op, 4 * len);
        var db = B(dy, len, op, "dy"); var ob = B(dx, len, op, "dx"); var sc = B(scale, c, op, "scale");
        Buf? dsc = dscale == null ? null : B(dscale, c, op, "dscale");
        Buf? dsh = dshift == null ? null : B(dshift, c, op, "dshift");
        Buf? xb = null;
        if (dsc != null) xb = B(x ?? throw new ArgumentException($"{op}: dscale needs x"), len, op, "x");
        // Parameter gradients first: dx may alias dy.
        if (dsc != null || dsh != null)
            For(c, 2L * n * hw, ch =>
            {
                double s = 0, sx = 0;
                for (int i = 0; i < n; i++)
                {
                    long o = ((long)i * c + ch) * hw;
                    if (dsh != null) s += SumD(db.Span(o, hw));
                    if (xb is { } xv) sx += DotD(db.Span(o, hw), xv.Span(o, hw));
                }
                if (dsc is { } a) a[ch] = (float)sx;
                if (dsh is { } b) b[ch] = (float)s;
            });
        For(n * c, hw, i => TensorPrimitives.Multiply(db.Span((long)i * hw, hw), sc[i % c], ob.Span((long)i * hw, hw)));
    }
}
