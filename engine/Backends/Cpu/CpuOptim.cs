using System.Numerics.Tensors;

namespace Perturb.Engine.Backends;

/// <summary>Optimiser updates over parallel chunks of the weights. The kernel twin is IlgpuOptim.cs.</summary>
public sealed partial class CpuBackend
{
    protected override void SgdUpdateCore(Tensor w, Tensor g, Tensor v, float lr, float momentum, float weightDecay, bool nesterov)
    {
        var wb = B(w); var gb = B(g); var vb = B(v);
        Ranges(w.Length, (s, e) =>
        {
            for (long i = s; i < e; i++)
            {
                float gp = gb[i] + weightDecay * wb[i];
                float vi = momentum == 0f ? gp : momentum * vb[i] + gp;
                vb[i] = vi;
                wb[i] -= lr * (nesterov ? gp + momentum * vi : vi);
            }
        });
    }

    protected override void AdamUpdateCore(Tensor w, Tensor g, Tensor m, Tensor v, float lr, float beta1, float beta2, float eps, float weightDecay, int step)
    {
        var wb = B(w); var gb = B(g); var mb = B(m); var vb = B(v);
        float bc1 = (float)(1 - Math.Pow(beta1, step)), bc2 = (float)(1 - Math.Pow(beta2, step));
        Ranges(w.Length, (s, e) =>
        {
            for (long i = s; i < e; i++)
            {
                float gp = gb[i] + weightDecay * wb[i];
                float mi = beta1 * mb[i] + (1f - beta1) * gp;
                float vi = beta2 * vb[i] + (1f - beta2) * gp * gp;
                mb[i] = mi; vb[i] = vi;
                wb[i] -= lr * (mi / bc1) / (MathF.Sqrt(vi / bc2) + eps);
            }
        });
    }
}
