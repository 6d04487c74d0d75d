using ILGPU;
using ILGPU.Runtime;
using Perturb.Kernels;
using KO = Perturb.Kernels.Optim;
using V1 = ILGPU.ArrayView<float>;

namespace Perturb.Engine.Backends;

/// <summary>Optimiser updates (kernels/Optim.cs), one thread per weight. The CPU twin is CpuOptim.cs.</summary>
public sealed partial class IlgpuBackend
{
    Action<Index1D, V1, V1, V1, float, float, float, int>? _sgd;
    Action<Index1D, V1, V1, V1, V1, float, float, float, float, float, float, float>? _adam;

    protected override void SgdUpdateCore(Tensor w, Tensor g, Tensor v, float lr, float momentum, float weightDecay, bool nesterov)
    {
        (_sgd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, float, float, float, int>(KO.Sgd))(w.Length, V(w), V(g), V(v), lr, momentum, weightDecay, nesterov ? 1 : 0);
    }

    protected override void AdamUpdateCore(Tensor w, Tensor g, Tensor m, Tensor v, float lr, float beta1, float beta2, float eps, float weightDecay, int step)
    {
        float bc1 = (float)(1.0 - Math.Pow(beta1, step)), bc2 = (float)(1.0 - Math.Pow(beta2, step));
        (_adam ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, float, float, float, float, float, float, float>(KO.Adam))(
            w.Length, V(w), V(g), V(m), V(v), lr, beta1, beta2, eps, weightDecay, bc1, bc2);
    }
}
