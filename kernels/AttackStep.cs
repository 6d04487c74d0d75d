using ILGPU;
using ILGPU.Algorithms;

namespace Perturb.Kernels;

/// <summary>Fused attack steps over x viewed as [rows, cols], row = sample; step[r] and eps[r] live on the device.</summary>
public static class AttackStep
{
    // xadv = clamp(clamp(xadv + step[r]*sign(grad), x0 - eps[r], x0 + eps[r]), 0, 1), r = i / cols. In place on xadv.
    public static void Linf(Index1D i, ArrayView<float> xadv, ArrayView<float> x0, ArrayView<float> grad, ArrayView<float> step, ArrayView<float> eps, int cols)
    {
        int r = i / cols;
        float g = grad[i];
        float sg = g > 0f ? 1f : g < 0f ? -1f : 0f;
        float v = xadv[i] + step[r] * sg;
        float o = x0[i], e = eps[r];
        v = XMath.Min(XMath.Max(v, o - e), o + e);
        xadv[i] = XMath.Min(XMath.Max(v, 0f), 1f);
    }

    // One group per row r (Grid.IdxX):
    //   gn = ||grad_r||_2;  d = xadv + step[r] * grad / (gn + 1e-12) - x0;  dn = ||d_r||_2;
    //   d *= min(1, eps[r] / dn) unless dn == 0;  xadv = clamp(x0 + d, 0, 1). In place on xadv.
    public static void L2(ArrayView<float> xadv, ArrayView<float> x0, ArrayView<float> grad, ArrayView<float> step, ArrayView<float> eps, int cols)
    {
        var sh = SharedMemory.Allocate<float>(Reduce.GroupSize);
        int r = Grid.IdxX;
        long b = (long)r * cols;
        float q = 0f;
        for (int j = Group.IdxX; j < cols; j += Reduce.GroupSize) { float g = grad[b + j]; q += g * g; }
        float gden = XMath.Sqrt(Reduce.GroupSum(sh, q)) + 1e-12f, st = step[r];
        float dq = 0f;
        for (int j = Group.IdxX; j < cols; j += Reduce.GroupSize) { float d = xadv[b + j] + st * (grad[b + j] / gden) - x0[b + j]; dq += d * d; }
        float dn = XMath.Sqrt(Reduce.GroupSum(sh, dq));
        float f = dn > 0f ? XMath.Min(1f, eps[r] / dn) : 1f;
        for (int j = Group.IdxX; j < cols; j += Reduce.GroupSize)
        {
            float d = (xadv[b + j] + st * (grad[b + j] / gden) - x0[b + j]) * f;
            xadv[b + j] = XMath.Min(XMath.Max(x0[b + j] + d, 0f), 1f);
        }
    }

    // JSMA over pixel pairs, one thread per row r of [rows, d] (the host loop it replaced, as written): s = sign(theta);
    // among p < q with domain[p], domain[q] != 0, a = s alpha[p] + s alpha[q] > 0 and b = s beta[p] + s beta[q] < 0,
    // the pair of largest (double) a * -b, the first in (p, q) order on ties; adv[p], adv[q] = clamp(adv + theta, 0, 1),
    // both leave the domain, changed[r] += 2. No such pair: running[r] = 0. Rows with running[r] == 0 are left alone.
    public static void Jsma(Index1D r, ArrayView<float> alpha, ArrayView<float> beta, ArrayView<float> domain, ArrayView<float> running,
        ArrayView<float> adv, ArrayView<float> changed, float theta, int d)
    {
        if (running[r] == 0f) return;
        long o = (long)(int)r * d;
        float sgn = theta > 0f ? 1f : -1f;
        double best = 0; int bp = -1, bq = -1;
        for (int p = 0; p < d; p++)
        {
            if (domain[o + p] == 0f) continue;
            float ap = sgn * alpha[o + p], bpv = sgn * beta[o + p];
            for (int q = p + 1; q < d; q++)
            {
                if (domain[o + q] == 0f) continue;
                float a = ap + sgn * alpha[o + q], bb = bpv + sgn * beta[o + q];
                if (a <= 0f || bb >= 0f) continue;
                double sc = (double)a * -bb;
                if (sc > best) { best = sc; bp = p; bq = q; }
            }
        }
        if (bp < 0) { running[r] = 0f; return; }
        adv[o + bp] = XMath.Min(XMath.Max(adv[o + bp] + theta, 0f), 1f);
        adv[o + bq] = XMath.Min(XMath.Max(adv[o + bq] + theta, 0f), 1f);
        domain[o + bp] = 0f; domain[o + bq] = 0f;
        changed[r] += 2f;
    }
}
