using ILGPU;
using ILGPU.Runtime;
using KP = Perturb.Kernels.Patch;
using V1 = ILGPU.ArrayView<float>;

namespace Perturb.Engine.Backends;

/// <summary>The adversarial patch's placement (kernels/Patch.cs): one thread per image pixel, the adjoint one per patch value. The CPU twin is CpuPatch.cs.</summary>
public sealed partial class IlgpuBackend
{
    Action<Index1D, V1, V1, V1, V1, int, int, int, int>? _patchApply;
    Action<Index1D, V1, V1, V1, V1, int, int, int, int, int>? _patchAdj;

    protected override void PatchApplyCore(Tensor patch, Tensor mask, Tensor place, Tensor x, int n, int c, int h, int w, int size)
    {
        (_patchApply ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, int, int, int, int>(KP.Apply))(n * h * w, V(patch), V(mask), V(place), V(x), c, h, w, size);
    }

    protected override void PatchApplyAdjointCore(Tensor dx, Tensor mask, Tensor place, Tensor dpatch, int n, int c, int h, int w, int size)
    {
        (_patchAdj ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, int, int, int, int, int>(KP.Adjoint))(c * size * size, V(dx), V(mask), V(place), V(dpatch), n, c, h, w, size);
    }
}
