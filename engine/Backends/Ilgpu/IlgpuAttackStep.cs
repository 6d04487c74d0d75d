using ILGPU;
using ILGPU.Runtime;
using Perturb.Kernels;
using KS = Perturb.Kernels.AttackStep;
using V1 = ILGPU.ArrayView<float>;

namespace Perturb.Engine.Backends;

/// <summary>Fused attack steps (kernels/AttackStep.cs): L-inf one thread per element, L2 one group per row. The CPU twin is CpuAttackStep.cs.</summary>
public sealed partial class IlgpuBackend
{
    Action<Index1D, V1, V1, V1, V1, V1, int>? _stepLinf;
    Action<KernelConfig, V1, V1, V1, V1, V1, int>? _stepL2;

    protected override void AttackStepLinfCore(Tensor xadv, Tensor x0, Tensor grad, Tensor step, Tensor eps, int rows, int cols)
    {
        (_stepLinf ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, V1, int>(KS.Linf))(rows * cols, V(xadv), V(x0), V(grad), V(step), V(eps), cols);
    }

    protected override void AttackStepL2Core(Tensor xadv, Tensor x0, Tensor grad, Tensor step, Tensor eps, int rows, int cols)
    {
        (_stepL2 ??= _acc.LoadStreamKernel<V1, V1, V1, V1, V1, int>(KS.L2))(PerRow(rows), V(xadv), V(x0), V(grad), V(step), V(eps), cols);
    }

    Action<Index1D, V1, V1, V1, V1, V1, V1, float, int>? _jsma;

    protected override void JsmaStepCore(Tensor alpha, Tensor beta, Tensor domain, Tensor running, Tensor adv, Tensor changed, float theta, int rows, int d)
    {
        (_jsma ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, V1, V1, float, int>(KS.Jsma))(rows, V(alpha), V(beta), V(domain), V(running), V(adv), V(changed), theta, d);
    }
}
