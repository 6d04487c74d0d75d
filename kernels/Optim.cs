using ILGPU;
using ILGPU.Algorithms;

namespace Perturb.Kernels;

public static class Optim
{
    // SGD, PyTorch's rule: g' = g + wd*w; v = momentum*v + g' (v = g' when momentum == 0);
    // w -= lr * (nesterov ? g' + momentum*v : v). One thread per parameter; w, g, v same length.
    public static void Sgd(Index1D i, ArrayView<float> w, ArrayView<float> g, ArrayView<float> v, float lr, float momentum, float wd, int nesterov)
    {
        float gp = g[i] + wd * w[i];
        float vv = momentum == 0f ? gp : momentum * v[i] + gp;
        v[i] = vv;
        w[i] -= lr * (nesterov != 0 ? gp + momentum * vv : vv);
    }

    // Adam, PyTorch's rule with L2 decay: g' = g + wd*w; m = b1*m + (1-b1)*g'; v = b2*v + (1-b2)*g'^2;
    // w -= lr * (m / bc1) / (sqrt(v / bc2) + eps), bc1 = 1 - b1^step, bc2 = 1 - b2^step (computed by the host).
    public static void Adam(Index1D i, ArrayView<float> w, ArrayView<float> g, ArrayView<float> m, ArrayView<float> v,
        float lr, float b1, float b2, float eps, float wd, float bc1, float bc2)
    {
        float gp = g[i] + wd * w[i];
        float mm = b1 * m[i] + (1f - b1) * gp;
        float vv = b2 * v[i] + (1f - b2) * gp * gp;
        m[i] = mm; v[i] = vv;
        w[i] -= lr * (mm / bc1) / (XMath.Sqrt(vv / bc2) + eps);
    }
}
