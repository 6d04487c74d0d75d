using System.Numerics.Tensors;

namespace Perturb.Engine.Backends;

/// <summary>Fused attack steps, one sample (row) per work item. The kernel twin is IlgpuAttackStep.cs.</summary>
public sealed partial class CpuBackend
{
    /// <summary>One sample's attack step, in place on x (that sample's row of xadv).</summary>
    delegate void AttackRow(Span<float> x, ReadOnlySpan<float> x0, ReadOnlySpan<float> g, float step, float eps);

    /// <summary>Shared driver of the fused attack steps: runs one sample (row) per work item.</summary>
    void AttackStep(Tensor xadv, Tensor x0, Tensor grad, Tensor step, Tensor eps, int rows, int cols, AttackRow body)
    {
        var xa = B(xadv); var xo = B(x0); var gr = B(grad);
        var st = B(step); var ep = B(eps);
        For(rows, cols, r => body(xa.Span((long)r * cols, cols), xo.Span((long)r * cols, cols), gr.Span((long)r * cols, cols), st[r], ep[r]));
    }

    protected override void AttackStepLinfCore(Tensor xadv, Tensor x0, Tensor grad, Tensor step, Tensor eps, int rows, int cols) =>
        AttackStep(xadv, x0, grad, step, eps, rows, cols, (xs, x0s, gs, a, e) =>
        {
            for (int i = 0; i < xs.Length; i++)
            {
                float g = gs[i], sg = g > 0 ? 1f : g < 0 ? -1f : 0f;
                float v = xs[i] + a * sg;
                v = MathF.Min(MathF.Max(v, x0s[i] - e), x0s[i] + e);
                xs[i] = MathF.Min(MathF.Max(v, 0f), 1f);
            }
        });

    protected override void AttackStepL2Core(Tensor xadv, Tensor x0, Tensor grad, Tensor step, Tensor eps, int rows, int cols) =>
        AttackStep(xadv, x0, grad, step, eps, rows, cols, (xs, x0s, gs, a, e) =>
        {
            int cols = xs.Length;
            float inv = (float)(1.0 / (Math.Sqrt(SumSqD(gs)) + 1e-12));
            // d = xadv + step*g/||g|| - x0 is recomputed in the second pass rather than stored.
            double dd = 0;
            for (int i = 0; i < cols; i++) { float d = xs[i] + a * (gs[i] * inv) - x0s[i]; dd += (double)d * d; }
            double dn = Math.Sqrt(dd);
            float f = dn > 0 ? (float)Math.Min(1.0, e / dn) : 1f;
            for (int i = 0; i < cols; i++)
            {
                float d = (xs[i] + a * (gs[i] * inv) - x0s[i]) * f;
                xs[i] = MathF.Min(MathF.Max(x0s[i] + d, 0f), 1f);
            }
        });

    protected override void JsmaStepCore(Tensor alpha, Tensor beta, Tensor domain, Tensor running, Tensor adv, Tensor changed, float theta, int rows, int d)
    {
        var al = B(alpha); var bt = B(beta); var dm = B(domain); var run = B(running); var xa = B(adv); var ch = B(changed);
        For(rows, 2L * d * d, r =>
        {
            if (run[r] == 0f) return;
            // row spans: the pair loop indexes them directly (the kernel's arithmetic, in the same order)
            ReadOnlySpan<float> A = al.Span((long)r * d, d), Bv = bt.Span((long)r * d, d);
            Span<float> D = dm.Span((long)r * d, d), X = xa.Span((long)r * d, d);
            float sgn = theta > 0f ? 1f : -1f;
            double best = 0; int bp = -1, bq = -1;
            for (int p = 0; p < d; p++)
            {
                if (D[p] == 0f) continue;
                float ap = sgn * A[p], bpv = sgn * Bv[p];
                // the same tail of each row as spans of one length, so the loop's bounds checks fold away
                var Aq = A[(p + 1)..]; var Bq = Bv.Slice(p + 1, Aq.Length); var Dq = D.Slice(p + 1, Aq.Length);
                for (int j = 0; j < Aq.Length; j++)
                {
                    if (Dq[j] == 0f) continue;
                    float a = ap + sgn * Aq[j], bb = bpv + sgn * Bq[j];
                    int q = p + 1 + j;
                    if (a <= 0f || bb >= 0f) continue;
                    double sc = (double)a * -bb;
                    if (sc > best) { best = sc; bp = p; bq = q; }
                }
            }
            if (bp < 0) { run[r] = 0f; return; }
            X[bp] = Math.Clamp(X[bp] + theta, 0f, 1f);
            X[bq] = Math.Clamp(X[bq] + theta, 0f, 1f);
            D[bp] = 0f; D[bq] = 0f;
            ch[r] += 2f;
        });
    }
}
