using ILGPU;
using ILGPU.Runtime;
using Perturb.Kernels;
using KA = Perturb.Kernels.Activation;
using V1 = ILGPU.ArrayView<float>;

namespace Perturb.Engine.Backends;

/// <summary>Activations forward and backward (kernels/Activation.cs), one thread per element. The CPU twin is CpuActivation.cs.</summary>
public sealed partial class IlgpuBackend
{
    Action<Index1D, V1, V1, int, float>? _actFwd;
    Action<Index1D, V1, V1, V1, V1, int, float>? _actBwd;

    protected override void ActivationForwardCore(Activation f, float alpha, Tensor x, Tensor y)
    {
        (_actFwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, int, float>(KA.Forward))(x.Length, V(x), V(y), (int)f, alpha);
    }

    protected override void ActivationBackwardCore(Activation f, float alpha, Tensor src, Tensor dy, Tensor dx)
    {
        bool readsX = f is Activation.Relu or Activation.LeakyRelu;
        (_actBwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, int, float>(KA.Backward))(
            dy.Length, readsX ? V(src) : _dummy.View, readsX ? _dummy.View : V(src), V(dy), V(dx), (int)f, alpha);
    }
}
