using ILGPU;
using ILGPU.Algorithms;

namespace Perturb.Kernels;

/// <summary>
/// Softmax family and per-sample losses. Rows are short (classes), so one thread per row: i = row, the row is
/// x[i*cols .. i*cols + cols).
/// </summary>
public static class Loss
{
    // y[r, j] = exp(x[r, j] - max_r) / sum_j exp(x[r, j] - max_r). In place allowed.
    public static void Softmax(Index1D r, ArrayView<float> x, ArrayView<float> y, int cols)
    {
        long b = (long)r.X * cols;
        float mx = float.NegativeInfinity;
        for (int j = 0; j < cols; j++) mx = XMath.Max(mx, x[b + j]);
        float s = 0f;
        for (int j = 0; j < cols; j++) { float e = XMath.Exp(x[b + j] - mx); y[b + j] = e; s += e; }
        float inv = 1f / s;
        for (int j = 0; j < cols; j++) y[b + j] *= inv;
    }

    // y[r, j] = x[r, j] - max_r - log(sum_j exp(x[r, j] - max_r)). In place allowed.
    public static void LogSoftmax(Index1D r, ArrayView<float> x, ArrayView<float> y, int cols)
    {
        long b = (long)r.X * cols;
        float mx = float.NegativeInfinity;
        for (int j = 0; j < cols; j++) mx = XMath.Max(mx, x[b + j]);
        float s = 0f;
        for (int j = 0; j < cols; j++) s += XMath.Exp(x[b + j] - mx);
        float lse = mx + XMath.Log(s);
        for (int j = 0; j < cols; j++) y[b + j] = x[b + j] - lse;
    }

    // dx[r, j] = y[r, j] * (dy[r, j] - sum_k dy[r, k]*y[r, k]), y = softmax output.
    public static void SoftmaxBackward(Index1D r, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx, int cols)
    {
        long b = (long)r.X * cols;
        float dot = 0f;
        for (int j = 0; j < cols; j++) dot += dy[b + j] * y[b + j];
        for (int j = 0; j < cols; j++) dx[b + j] = y[b + j] * (dy[b + j] - dot);
    }

    // loss[r] = logsumexp(z_r) - z_r[t], t = labels[r];
    // when hasGrad != 0: dz[r, j] = gradScale[r] * (softmax(z_r)_j - [j == t]).
    public static void CrossEntropy(Index1D r, ArrayView<float> z, ArrayView<float> labels, ArrayView<float> loss, ArrayView<float> dz,
        ArrayView<float> gradScale, int cols, int hasGrad)
    {
        long b = (long)r.X * cols;
        int t = (int)labels[r];
        float mx = float.NegativeInfinity;
        for (int j = 0; j < cols; j++) mx = XMath.Max(mx, z[b + j]);
        float s = 0f;
        for (int j = 0; j < cols; j++) s += XMath.Exp(z[b + j] - mx);
        loss[r] = mx + XMath.Log(s) - z[b + t];
        if (hasGrad == 0) return;
        float gs = gradScale[r], inv = 1f / s;
        for (int j = 0; j < cols; j++)
        {
            float p = XMath.Exp(z[b + j] - mx) * inv;
            dz[b + j] = gs * (p - (j == t ? 1f : 0f));
        }
    }

    // Carlini-Wagner margin with t = labels[r], o = first arg-max over j != t of z_r:
    //   untargeted: margin = z_t - z_o;  targeted: margin = z_o - z_t;  loss[r] = max(margin, -kappa)
    //   dz[r] = 0 when margin < -kappa, else gradScale[r] * (+-1 at t, -+1 at o) (untargeted: +1 at t, -1 at o).
    public static void CwMargin(Index1D r, ArrayView<float> z, ArrayView<float> labels, ArrayView<float> loss, ArrayView<float> dz,
        ArrayView<float> gradScale, int cols, int targeted, float kappa, int hasGrad)
    {
        long b = (long)r.X * cols;
        int t = (int)labels[r];
        int o = -1; float zo = float.NegativeInfinity;
        for (int j = 0; j < cols; j++)
        {
            if (j == t) continue;
            float v = z[b + j];
            if (o < 0 || v > zo) { o = j; zo = v; }
        }
        float zt = z[b + t];
        float margin = targeted != 0 ? zo - zt : zt - zo;
        loss[r] = XMath.Max(margin, -kappa);
        if (hasGrad == 0) return;
        for (int j = 0; j < cols; j++) dz[b + j] = 0f;
        if (margin < -kappa || o < 0) return;
        float gs = gradScale[r];
        float sgn = targeted != 0 ? -1f : 1f;
        dz[b + t] = sgn * gs;
        dz[b + o] = -sgn * gs;
    }

    // BCE with logits, one output per row: loss[r] = max(z, 0) - z*y + log(1 + exp(-|z|));
    // when hasGrad != 0: dz[r] = gradScale[r] * (sigmoid(z) - y). log1p is series-expanded for tiny arguments.
    public static void BceWithLogits(Index1D r, ArrayView<float> z, ArrayView<float> labels, ArrayView<float> loss, ArrayView<float> dz,
        ArrayView<float> gradScale, int hasGrad)
    {
        float v = z[r], y = labels[r];
        float e = XMath.Exp(-XMath.Abs(v));
        float l1p = e < 1e-4f ? e * (1f - 0.5f * e) : XMath.Log(1f + e);
        loss[r] = XMath.Max(v, 0f) - v * y + l1p;
        if (hasGrad == 0) return;
        float sig = v >= 0f ? 1f / (1f + e) : e / (1f + e);
        dz[r] = gradScale[r] * (sig - y);
    }
}
