using ILGPU;
using ILGPU.Runtime;
using Perturb.Kernels;
using KP = Perturb.Kernels.Pool;
using KE = Perturb.Kernels.Elementwise;
using V1 = ILGPU.ArrayView<float>;

namespace Perturb.Engine.Backends;

/// <summary>Max, average and global average pooling (kernels/Pool.cs); backward passes gather per input element, so no atomics. The CPU twin is CpuPool.cs.</summary>
public sealed partial class IlgpuBackend
{
    Action<Index1D, V1, V1, PoolArgs>? _maxFwd, _avgFwd, _avgBwd;
    Action<Index1D, V1, V1, V1, PoolArgs>? _maxBwd;
    Action<Index1D, V1, V1, int, float>? _bcastRows;

    static PoolArgs Args(in PoolShape s) => new()
    {
        N = s.N, C = s.C, H = s.H, W = s.W, OH = s.OutH, OW = s.OutW, KH = s.KH, KW = s.KW,
        StrideH = s.StrideH, StrideW = s.StrideW, PadH = s.PadH, PadW = s.PadW, CountIncludePad = s.CountIncludePad ? 1 : 0,
    };

    protected override void MaxPoolForwardCore(in PoolShape s, Tensor x, Tensor y)
    {
        int n = s.N * s.C * s.OutH * s.OutW;
        (_maxFwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, PoolArgs>(KP.MaxForward))(n, V(x), V(y), Args(s));
    }

    protected override void MaxPoolBackwardCore(in PoolShape s, Tensor x, Tensor dy, Tensor dx)
    {
        int n = s.N * s.C * s.H * s.W;
        (_maxBwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, PoolArgs>(KP.MaxBackward))(n, V(x), V(dy), V(dx), Args(s));
    }

    protected override void AvgPoolForwardCore(in PoolShape s, Tensor x, Tensor y)
    {
        int n = s.N * s.C * s.OutH * s.OutW;
        (_avgFwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, PoolArgs>(KP.AvgForward))(n, V(x), V(y), Args(s));
    }

    protected override void AvgPoolBackwardCore(in PoolShape s, Tensor dy, Tensor dx)
    {
        int n = s.N * s.C * s.H * s.W;
        (_avgBwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, PoolArgs>(KP.AvgBackward))(n, V(dy), V(dx), Args(s));
    }

    protected override void GlobalAvgPoolForwardCore(Tensor x, Tensor y, int n, int c, int hw)
    {
        RowsRaw(V(x), V(y), n * c, hw, ReduceKind.Sum, hw == 0 ? 0f : 1f / hw);
    }

    protected override void GlobalAvgPoolBackwardCore(Tensor dy, Tensor dx, int n, int c, int hw)
    {
        (_bcastRows ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, int, float>(KE.BroadcastRows))(n * c * hw, V(dy), V(dx), hw, 1f / hw);
    }
}
