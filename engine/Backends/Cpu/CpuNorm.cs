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

    protected override void BatchNormForwardTrainCore(Tensor x, Tensor gamma, Tensor beta, Tensor y, Tensor saveMean, Tensor saveInvStd,
        Tensor runningMean, Tensor runningVar, float momentum, float eps, int n, int c, int hw)
    {
        long m = (long)n * hw;
        var xb = B(x); var yb = B(y);
        var gb = B(gamma); var bb = B(beta);
        var sm = B(saveMean); var si = B(saveInvStd);
        var rm = B(runningMean); var rv = B(runningVar);
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

    protected override void BatchNormBackwardCore(Tensor x, Tensor dy, Tensor gamma, Tensor saveMean, Tensor saveInvStd, Tensor dx,
        Tensor? dgamma, Tensor? dbeta, int n, int c, int hw)
    {
        long m = (long)n * hw;
        var xb = B(x); var db = B(dy); var ob = B(dx);
        var gb = B(gamma); var sm = B(saveMean); var si = B(saveInvStd);
        Buf? dg = dgamma == null ? null : B(dgamma);
        Buf? dbt = dbeta == null ? null : B(dbeta);
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

    protected override void ChannelAffineCore(Tensor x, Tensor scale, Tensor shift, Tensor y, int n, int c, int hw)
    {
        var xb = B(x); var yb = B(y);
        var sc = B(scale); var sf = B(shift);
        For(n * c, hw, i =>
        {
            int ch = i % c;
            AffineRow(xb.Span((long)i * hw, hw), sc[ch], sf[ch], yb.Span((long)i * hw, hw));
        });
    }

    protected override void ChannelAffineBackwardCore(Tensor dy, Tensor scale, Tensor dx, Tensor? x, Tensor? dscale, Tensor? dshift, int n, int c, int hw)
    {
        var db = B(dy); var ob = B(dx); var sc = B(scale);
        Buf? dsc = dscale == null ? null : B(dscale);
        Buf? dsh = dshift == null ? null : B(dshift);
        Buf? xb = null;
        if (dsc != null) xb = B(x!);
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
