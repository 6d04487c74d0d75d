using System.Numerics.Tensors;
using Philox = Perturb.Kernels.Philox;

namespace Perturb.Engine.Backends;

/// <summary>Philox random numbers (Perturb.Kernels.Philox, the rounds the kernels use) and dropout, over parallel chunks. The kernel twin is IlgpuRandom.cs.</summary>
public sealed partial class CpuBackend
{
    protected override void RandomUniformCore(Tensor t, ulong seed, ulong offset)
    {
        var b = B(t);
        Ranges(t.Length, (s, e) => { for (long i = s; i < e; i++) b[i] = Philox.Uniform(seed, offset, i); });
    }

    protected override void RandomNormalCore(Tensor t, ulong seed, ulong offset, float mean, float std)
    {
        var b = B(t);
        Ranges(t.Length, (s, e) => { for (long i = s; i < e; i++) b[i] = mean + std * Philox.Normal(seed, offset, i); });
    }

    protected override void DropoutForwardCore(Tensor x, Tensor y, Tensor mask, float p, ulong seed, ulong offset)
    {
        var xb = B(x); var yb = B(y); var mb = B(mask);
        float keep = 1f / (1f - p);
        Ranges(x.Length, (s, e) =>
        {
            for (long i = s; i < e; i++)
            {
                float m = Philox.Uniform(seed, offset, i) >= p ? keep : 0f;
                mb[i] = m;
                yb[i] = xb[i] * m;
            }
        });
    }
}
