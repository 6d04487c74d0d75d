using ILGPU;

namespace Perturb.Kernels;

/// <summary>Pooling shape: x [N, C, H, W], y [N, C, OH, OW]; window KH x KW, stride, padding.</summary>
public struct PoolArgs
{
    public int N, C, H, W, OH, OW, KH, KW, StrideH, StrideW, PadH, PadW;
    public int CountIncludePad;
}

public static class Pool
{
    // Index, within plane x[n, c, :, :], of the first maximum of window (oh, ow) in row-major window order.
    // Padded positions never win; the first in-image element seeds the search and only a strictly larger value replaces it.
    static int WindowArgmax(ArrayView<float> x, long plane, PoolArgs a, int oh, int ow)
    {
        int h0 = oh * a.StrideH - a.PadH, w0 = ow * a.StrideW - a.PadW;
        int best = -1; float bv = 0f;
        for (int r = 0; r < a.KH; r++)
        {
            int h = h0 + r;
            if (h < 0 || h >= a.H) continue;
            for (int s = 0; s < a.KW; s++)
            {
                int w = w0 + s;
                if (w < 0 || w >= a.W) continue;
                float v = x[plane + h * a.W + w];
                if (best < 0 || v > bv) { best = h * a.W + w; bv = v; }
            }
        }
        return best;
    }

    // y[n, c, oh, ow] = max over the window's in-image positions of x[n, c, h, w]. i indexes y.
    public static void MaxForward(Index1D i, ArrayView<float> x, ArrayView<float> y, PoolArgs a)
    {
        int ow = i % a.OW, oh = (i / a.OW) % a.OH, nc = i / (a.OW * a.OH);
        long plane = (long)nc * a.H * a.W;
        int at = WindowArgmax(x, plane, a, oh, ow);
        y[i] = at >= 0 ? x[plane + at] : 0f;
    }

    // dx[n, c, h, w] = sum over windows (oh, ow) containing (h, w) whose first maximum is (h, w) of dy[n, c, oh, ow]
    // A gather per input pixel: each containing window's argmax is recomputed from x, so no atomics. i indexes dx.
    public static void MaxBackward(Index1D i, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dx, PoolArgs a)
    {
        int w = i % a.W, h = (i / a.W) % a.H, nc = i / (a.W * a.H);
        long plane = (long)nc * a.H * a.W, oplane = (long)nc * a.OH * a.OW;
        // windows with oh*sh - ph <= h < oh*sh - ph + KH
        int ohLo = XMathInt.CeilDivNonNeg(h + a.PadH - a.KH + 1, a.StrideH), ohHi = (h + a.PadH) / a.StrideH;
        int owLo = XMathInt.CeilDivNonNeg(w + a.PadW - a.KW + 1, a.StrideW), owHi = (w + a.PadW) / a.StrideW;
        if (ohHi > a.OH - 1) ohHi = a.OH - 1;
        if (owHi > a.OW - 1) owHi = a.OW - 1;
        int me = h * a.W + w;
        float sum = 0f;
        for (int oh = ohLo; oh <= ohHi; oh++)
            for (int ow = owLo; ow <= owHi; ow++)
                if (WindowArgmax(x, plane, a, oh, ow) == me) sum += dy[oplane + oh * a.OW + ow];
        dx[i] = sum;
    }

    // Divisor of window (oh, ow), as PyTorch: the window clipped to [-pad, size + pad) counts when CountIncludePad,
    // otherwise only its in-image part.
    static int Divisor(PoolArgs a, int oh, int ow)
    {
        int hs = oh * a.StrideH - a.PadH, ws = ow * a.StrideW - a.PadW;
        int he = hs + a.KH, we = ws + a.KW;
        if (he > a.H + a.PadH) he = a.H + a.PadH;
        if (we > a.W + a.PadW) we = a.W + a.PadW;
        int pool = (he - hs) * (we - ws);
        if (a.CountIncludePad != 0) return pool;
        if (hs < 0) hs = 0;
        if (ws < 0) ws = 0;
        if (he > a.H) he = a.H;
        if (we > a.W) we = a.W;
        return (he - hs) * (we - ws);
    }

    // y[n, c, oh, ow] = (sum of the window's in-image x) / Divisor(oh, ow). i indexes y.
    public static void AvgForward(Index1D i, ArrayView<float> x, ArrayView<float> y, PoolArgs a)
    {
        int ow = i % a.OW, oh = (i / a.OW) % a.OH, nc = i / (a.OW * a.OH);
        long plane = (long)nc * a.H * a.W;
        int h0 = oh * a.StrideH - a.PadH, w0 = ow * a.StrideW - a.PadW;
        float sum = 0f;
        for (int r = 0; r < a.KH; r++)
        {
            int h = h0 + r;
            if (h < 0 || h >= a.H) continue;
            for (int s = 0; s < a.KW; s++)
            {
                int w = w0 + s;
                if (w >= 0 && w < a.W) sum += x[plane + h * a.W + w];
            }
        }
        int d = Divisor(a, oh, ow);
        y[i] = d > 0 ? sum / d : 0f;
    }

    // dx[n, c, h, w] = sum over windows containing (h, w) of dy[n, c, oh, ow] / Divisor(oh, ow). i indexes dx.
    public static void AvgBackward(Index1D i, ArrayView<float> dy, ArrayView<float> dx, PoolArgs a)
    {
        int w = i % a.W, h = (i / a.W) % a.H, nc = i / (a.W * a.H);
        long oplane = (long)nc * a.OH * a.OW;
        int ohLo = XMathInt.CeilDivNonNeg(h + a.PadH - a.KH + 1, a.StrideH), ohHi = (h + a.PadH) / a.StrideH;
        int owLo = XMathInt.CeilDivNonNeg(w + a.PadW - a.KW + 1, a.StrideW), owHi = (w + a.PadW) / a.StrideW;
        if (ohHi > a.OH - 1) ohHi = a.OH - 1;
        if (owHi > a.OW - 1) owHi = a.OW - 1;
        float sum = 0f;
        for (int oh = ohLo; oh <= ohHi; oh++)
            for (int ow = owLo; ow <= owHi; ow++)
            {
                int d = Divisor(a, oh, ow);
                if (d > 0) sum += dy[oplane + oh * a.OW + ow] / d;
            }
        dx[i] = sum;
    }
}

/// <summary>Small integer helpers shared by kernels.</summary>
public static class XMathInt
{
    /// <summary>ceil(v / d) for d &gt; 0, clamped below at 0 (negative v gives 0).</summary>
    public static int CeilDivNonNeg(int v, int d) => v <= 0 ? 0 : (v + d - 1) / d;
}
