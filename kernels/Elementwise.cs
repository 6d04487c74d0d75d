using ILGPU;
using ILGPU.Algorithms;

namespace Perturb.Kernels;

/// <summary>One thread per element; every view has at least as many elements as the launch extent.</summary>
public static class Elementwise
{
    // y = a + b (y may alias a or b)
    public static void Add(Index1D i, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y) => y[i] = a[i] + b[i];

    // y = a * b (y may alias a or b)
    public static void Mul(Index1D i, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y) => y[i] = a[i] * b[i];

    // y = a / b (IEEE; y may alias a or b)
    public static void Div(Index1D i, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y) => y[i] = a[i] / b[i];

    // y = a > b ? 1 : 0 (0 when either is NaN)
    public static void Greater(Index1D i, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y) => y[i] = a[i] > b[i] ? 1f : 0f;

    // y = s > 0 ? s : 0 for s = a + b (0 for NaN): a residual sum and its ReLU in one pass (y may alias a or b)
    public static void AddRelu(Index1D i, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y)
    {
        float s = a[i] + b[i];
        y[i] = s > 0f ? s : 0f;
    }

    // y = |x|: the sign bit cleared (|-0| = 0, NaN stays NaN), bit-identical to the CPU's
    public static void Abs(Index1D i, ArrayView<float> x, ArrayView<float> y) => y[i] = Interop.IntAsFloat(Interop.FloatAsInt(x[i]) & 0x7FFFFFFFu);

    // y[r, c] = m[r] != 0 ? a[r, c] : b[r, c], i indexes [rows, cols]; copies the chosen value (exact for NaN, inf)
    public static void Where(Index1D i, ArrayView<float> m, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y, int cols) =>
        y[i] = m[i / cols] != 0f ? a[i] : b[i];

    // y[r, c] = x[r, c] * v[r], i indexes [rows, cols]
    public static void MulRows(Index1D i, ArrayView<float> x, ArrayView<float> v, ArrayView<float> y, int cols) => y[i] = x[i] * v[i / cols];

    // y[r, c] = x[r, c] + v[r], i indexes [rows, cols]
    public static void AddRows(Index1D i, ArrayView<float> x, ArrayView<float> v, ArrayView<float> y, int cols) => y[i] = x[i] + v[i / cols];

    // y += alpha * x
    public static void Axpy(Index1D i, float alpha, ArrayView<float> x, ArrayView<float> y) => y[i] += alpha * x[i];

    // y = alpha * x
    public static void Scale(Index1D i, float alpha, ArrayView<float> x, ArrayView<float> y) => y[i] = alpha * x[i];

    // y = min(max(x, lo), hi)
    public static void Clamp(Index1D i, ArrayView<float> x, float lo, float hi, ArrayView<float> y) => y[i] = XMath.Min(XMath.Max(x[i], lo), hi);

    // y = sign(x) in {-1, 0, 1}
    public static void Sign(Index1D i, ArrayView<float> x, ArrayView<float> y)
    {
        float v = x[i];
        y[i] = v > 0f ? 1f : v < 0f ? -1f : 0f;
    }

    // y = a + t * (b - a)
    public static void Lerp(Index1D i, ArrayView<float> a, ArrayView<float> b, float t, ArrayView<float> y) => y[i] = a[i] + t * (b[i] - a[i]);

    // t[i] = value
    public static void Fill(Index1D i, ArrayView<float> t, float value) => t[i] = value;

    // dst[i] = src[i]
    public static void Copy(Index1D i, ArrayView<float> src, ArrayView<float> dst) => dst[i] = src[i];

    // dst[n, dstOff + c, j] (+)= src[n, srcOff + c, j], src [outer, srcC, inner], dst [outer, dstC, inner];
    // i indexes [outer, count, inner].
    public static void ChannelCopy(Index1D i, ArrayView<float> src, int srcC, int srcOff, ArrayView<float> dst, int dstC, int dstOff,
        int count, int inner, int accumulate)
    {
        int j = i % inner, c = (i / inner) % count, n = i / (inner * count);
        float v = src[((long)n * srcC + srcOff + c) * inner + j];
        long at = ((long)n * dstC + dstOff + c) * inner + j;
        dst[at] = accumulate != 0 ? dst[at] + v : v;
    }

    // y[n, c, j] += bias[c], y viewed as [outer, channels, inner]
    public static void BiasAdd(Index1D i, ArrayView<float> y, ArrayView<float> bias, int channels, int inner) => y[i] += bias[(i / inner) % channels];

    // dx[r, j] = dy[r] * scale (global-average-pool backward: scale = 1/hw), dx viewed as [rows, hw]
    public static void BroadcastRows(Index1D i, ArrayView<float> dy, ArrayView<float> dx, int hw, float scale) => dx[i] = dy[i / hw] * scale;
}
