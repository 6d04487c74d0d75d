using ILGPU;
using ILGPU.Algorithms;

namespace Perturb.Kernels;

/// <summary>Batch-norm scalars. x is viewed as [N, C, HW]; channel c's M = N*HW values are x[(n*C + c)*HW + i].</summary>
public struct BnArgs
{
    public int N, C, HW;
    public float Momentum, Eps;
}

public static class Norm
{
    static long At(BnArgs a, int c, long e) => (e / a.HW * a.C + c) * a.HW + e % a.HW;

    // Training-mode batch norm, one group per channel c (Grid.IdxX):
    //   mean = sum x / M;  var = sum (x - mean)^2 / M (biased; two passes for accuracy);  invStd = 1/sqrt(var + eps)
    //   y = (x - mean) * invStd * gamma[c] + beta[c]
    //   saveMean[c] = mean, saveInvStd[c] = invStd,
    //   runMean = (1-mom)*runMean + mom*mean, runVar = (1-mom)*runVar + mom*var*M/(M-1)  (var itself when M == 1)
    public static void BatchNormForwardTrain(ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> beta, ArrayView<float> y,
        ArrayView<float> saveMean, ArrayView<float> saveInvStd, ArrayView<float> runMean, ArrayView<float> runVar, BnArgs a)
    {
        var sh = SharedMemory.Allocate<float>(Reduce.GroupSize);
        int c = Grid.IdxX;
        long m = (long)a.N * a.HW;
        float s = 0f;
        for (long e = Group.IdxX; e < m; e += Reduce.GroupSize) s += x[At(a, c, e)];
        float mean = Reduce.GroupSum(sh, s) / m;
        float q = 0f;
        for (long e = Group.IdxX; e < m; e += Reduce.GroupSize) { float d = x[At(a, c, e)] - mean; q += d * d; }
        float var = Reduce.GroupSum(sh, q) / m;
        float invStd = 1f / XMath.Sqrt(var + a.Eps);
        float gm = gamma[c], bt = beta[c];
        for (long e = Group.IdxX; e < m; e += Reduce.GroupSize) { long at = At(a, c, e); y[at] = (x[at] - mean) * invStd * gm + bt; }
        if (Group.IdxX == 0)
        {
            saveMean[c] = mean; saveInvStd[c] = invStd;
            float unbiased = m > 1 ? var * ((float)m / (m - 1)) : var;
            runMean[c] = (1f - a.Momentum) * runMean[c] + a.Momentum * mean;
            runVar[c] = (1f - a.Momentum) * runVar[c] + a.Momentum * unbiased;
        }
    }

    // Batch-norm backward, one group per channel: xhat = (x - mean)*invStd, sdy = sum dy, sdx = sum dy*xhat,
    //   dx = gamma*invStd/M * (M*dy - sdy - xhat*sdx);  dgamma[c] = sdx, dbeta[c] = sdy when hasParamGrads != 0.
    public static void BatchNormBackward(ArrayView<float> x, ArrayView<float> dy, ArrayView<float> gamma, ArrayView<float> saveMean,
        ArrayView<float> saveInvStd, ArrayView<float> dx, ArrayView<float> dgamma, ArrayView<float> dbeta, int hasParamGrads, BnArgs a)
    {
        var sh = SharedMemory.Allocate<float>(Reduce.GroupSize);
        int c = Grid.IdxX;
        long m = (long)a.N * a.HW;
        float mean = saveMean[c], inv = saveInvStd[c];
        float s1 = 0f, s2 = 0f;
        for (long e = Group.IdxX; e < m; e += Reduce.GroupSize)
        {
            long at = At(a, c, e);
            float g = dy[at];
            s1 += g; s2 += g * (x[at] - mean) * inv;
        }
        float sdy = Reduce.GroupSum(sh, s1), sdx = Reduce.GroupSum(sh, s2);
        float k = gamma[c] * inv / m;
        for (long e = Group.IdxX; e < m; e += Reduce.GroupSize)
        {
            long at = At(a, c, e);
            float xh = (x[at] - mean) * inv;
            dx[at] = k * (m * dy[at] - sdy - xh * sdx);
        }
        if (Group.IdxX == 0 && hasParamGrads != 0) { dgamma[c] = sdx; dbeta[c] = sdy; }
    }

    // y[n, c, i] = x[n, c, i] * scale[c] + shift[c]. Elementwise; i indexes x viewed as [N, C, HW]. In place allowed.
    public static void ChannelAffine(Index1D i, ArrayView<float> x, ArrayView<float> scale, ArrayView<float> shift, ArrayView<float> y, int c, int hw)
    {
        int ch = (i / hw) % c;
        y[i] = x[i] * scale[ch] + shift[ch];
    }

    // dx[n, c, i] = dy[n, c, i] * scale[c]. Elementwise; dx may alias dy.
    public static void ChannelAffineBackwardData(Index1D i, ArrayView<float> dy, ArrayView<float> scale, ArrayView<float> dx, int c, int hw)
    {
        int ch = (i / hw) % c;
        dx[i] = dy[i] * scale[ch];
    }

    // Group per channel: dscale[c] = sum dy*x, dshift[c] = sum dy over n, i; then dx = dy*scale[c] (dx may alias dy:
    // every element is read by the sums before the barrier inside GroupSum and rewritten by the same thread after).
    public static void ChannelAffineBackwardFull(ArrayView<float> dy, ArrayView<float> scale, ArrayView<float> dx, ArrayView<float> x,
        ArrayView<float> dscale, ArrayView<float> dshift, BnArgs a)
    {
        var sh = SharedMemory.Allocate<float>(Reduce.GroupSize);
        int c = Grid.IdxX;
        long m = (long)a.N * a.HW;
        float s1 = 0f, s2 = 0f;
        for (long e = Group.IdxX; e < m; e += Reduce.GroupSize) { long at = At(a, c, e); float g = dy[at]; s1 += g * x[at]; s2 += g; }
        float ds = Reduce.GroupSum(sh, s1), dt = Reduce.GroupSum(sh, s2);
        float sc = scale[c];
        for (long e = Group.IdxX; e < m; e += Reduce.GroupSize) { long at = At(a, c, e); dx[at] = dy[at] * sc; }
        if (Group.IdxX == 0) { dscale[c] = ds; dshift[c] = dt; }
    }
}
