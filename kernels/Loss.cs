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

    // loss[r] = logsumexp(z_r) - z_r[t], t = labels[r], from the log-sum-exp at the target: with m = max_j z_j,
    // e_t = exp(z_t - m), S_o = sum_{j != t} exp(z_j - m): loss = log(e_t + S_o) - (z_t - m) (log1p(S_o) when z_t = m);
    // when hasGrad != 0: dz[r, j] = gradScale[r] * p_j (j != t), dz[r, t] = -gradScale[r] * S_o / (e_t + S_o)
    // = -sum_{j != t} p_j, never p_t - 1, which is 0 in float32 once p_t rounds to 1.
    public static void CrossEntropy(Index1D r, ArrayView<float> z, ArrayView<float> labels, ArrayView<float> loss, ArrayView<float> dz,
        ArrayView<float> gradScale, int cols, int hasGrad)
    {
        long b = (long)r.X * cols;
        int t = (int)labels[r];
        float mx = float.NegativeInfinity;
        for (int j = 0; j < cols; j++) mx = XMath.Max(mx, z[b + j]);
        float so = 0f;
        for (int j = 0; j < cols; j++) if (j != t) so += XMath.Exp(z[b + j] - mx);
        float et = XMath.Exp(z[b + t] - mx), s = et + so;
        loss[r] = z[b + t] == mx ? Log1P(so) : XMath.Log(s) - (z[b + t] - mx);
        if (hasGrad == 0) return;
        float gs = gradScale[r], inv = 1f / s;
        for (int j = 0; j < cols; j++)
            dz[b + j] = j == t ? -gs * (so * inv) : gs * (XMath.Exp(z[b + j] - mx) * inv);
    }

    // log(1 + v) for v >= 0, series-expanded where 1 + v rounds to 1.
    static float Log1P(float v) => v < 1e-4f ? v * (1f - 0.5f * v) : XMath.Log(1f + v);

    // Difference-of-logits ratio (Croce and Hein 2020), to be maximised; y = labels[r], z_(k) the k-th largest logit:
    //   untargeted: o = first arg-max over j != y; loss = -(z_y - z_o) / (z_(1) - z_(3) + 1e-12)
    //   targeted (o = targets[r]): loss = -(z_y - z_o) / (z_(1) - (z_(3) + z_(4))/2 + 1e-12)
    // fewer classes: the deepest sorted logit there is (z_(3) for 3 classes), denominator 1 for 2 classes.
    // dz = gradScale[r] * d loss / dz (the sorted positions taken as fixed, first index wins ties).
    public static void Dlr(Index1D r, ArrayView<float> z, ArrayView<float> labels, ArrayView<float> targets, ArrayView<float> loss,
        ArrayView<float> dz, ArrayView<float> gradScale, int cols, int targeted, int hasGrad)
    {
        long b = (long)r.X * cols;
        int y = (int)labels[r];
        // Top four indices by insertion (descending, first index wins ties).
        int i0 = -1, i1 = -1, i2 = -1, i3 = -1;
        for (int j = 0; j < cols; j++)
        {
            float v = z[b + j];
            if (i0 < 0 || v > z[b + i0]) { i3 = i2; i2 = i1; i1 = i0; i0 = j; }
            else if (i1 < 0 || v > z[b + i1]) { i3 = i2; i2 = i1; i1 = j; }
            else if (i2 < 0 || v > z[b + i2]) { i3 = i2; i2 = j; }
            else if (i3 < 0 || v > z[b + i3]) i3 = j;
        }
        int o;
        if (targeted != 0) o = (int)targets[r];
        else
        {
            o = -1;
            for (int j = 0; j < cols; j++)
                if (j != y && (o < 0 || z[b + j] > z[b + o])) o = j;
        }
        float num = z[b + y] - z[b + o];
        int four = targeted != 0 && cols >= 4 ? 1 : 0;
        float den = 1f;
        if (cols >= 3) den = z[b + i0] - (four != 0 ? 0.5f * (z[b + i2] + z[b + i3]) : z[b + i2]) + 1e-12f;
        loss[r] = -num / den;
        if (hasGrad == 0) return;
        for (int j = 0; j < cols; j++) dz[b + j] = 0f;
        float gs = gradScale[r], gy = -gs / den, gd = gs * num / (den * den);
        dz[b + y] += gy;
        dz[b + o] -= gy;
        if (cols < 3) return;
        dz[b + i0] += gd;
        if (four != 0) { dz[b + i2] -= 0.5f * gd; dz[b + i3] -= 0.5f * gd; }
        else dz[b + i2] -= gd;
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
    // when hasGrad != 0: dz[r] = gradScale[r] * (sigmoid(z) - y), computed as (1 - y) sigmoid(z) - y sigmoid(-z) with
    // both sigmoids from e = exp(-|z|), never 1 - sigmoid (0 in float32 once |z| > 17). log1p series for tiny arguments.
    public static void BceWithLogits(Index1D r, ArrayView<float> z, ArrayView<float> labels, ArrayView<float> loss, ArrayView<float> dz,
        ArrayView<float> gradScale, int hasGrad)
    {
        float v = z[r], y = labels[r];
        float e = XMath.Exp(-XMath.Abs(v));
        loss[r] = XMath.Max(v, 0f) - v * y + Log1P(e);
        if (hasGrad == 0) return;
        float inv = 1f / (1f + e);
        float sp = v >= 0f ? inv : e * inv, sn = v >= 0f ? e * inv : inv;
        dz[r] = gradScale[r] * ((1f - y) * sp - y * sn);
    }
}
