using ILGPU;
using ILGPU.Runtime;
using Perturb.Kernels;
using KW = Perturb.Kernels.Warp;
using V1 = ILGPU.ArrayView<float>;

namespace Perturb.Engine.Backends;

/// <summary>Bilinear affine warps (kernels/Warp.cs): one thread per output pixel, the adjoint one thread per source pixel. The CPU twin is CpuWarp.cs.</summary>
public sealed partial class IlgpuBackend
{
    Action<Index1D, V1, V1, WarpCoefs, int, int, float, float>? _warp, _warpAdj;

    protected override void WarpAffineCore(Tensor x, Tensor y, int planes, int h, int w, in WarpCoefs m, float alpha, float beta)
    {
        (_warp ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, WarpCoefs, int, int, float, float>(KW.Forward))(planes * h * w, V(x), V(y), m, h, w, alpha, beta);
    }

    protected override void WarpAffineAdjointCore(Tensor dy, Tensor dx, int planes, int h, int w, in WarpCoefs m, float alpha, float beta)
    {
        (_warpAdj ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, WarpCoefs, int, int, float, float>(KW.Adjoint))(planes * h * w, V(dy), V(dx), m, h, w, alpha, beta);
    }
}
