using ILGPU;
using ILGPU.Runtime;
using Perturb.Kernels;
using KN = Perturb.Kernels.Norm;
using V1 = ILGPU.ArrayView<float>;

namespace Perturb.Engine.Backends;

/// <summary>Batch norm and per-channel affine (kernels/Norm.cs): one group per channel for the statistics. The CPU twin is CpuNorm.cs.</summary>
public sealed partial class IlgpuBackend
{
    Action<KernelConfig, V1, V1, V1, V1, V1, V1, V1, V1, BnArgs>? _bnFwd;
    Action<KernelConfig, V1, V1, V1, V1, V1, V1, V1, V1, int, BnArgs>? _bnBwd;
    Action<Index1D, V1, V1, V1, V1, int, int>? _chAffine;
    Action<Index1D, V1, V1, V1, int, int>? _chAffineBwdData;
    Action<KernelConfig, V1, V1, V1, V1, V1, V1, BnArgs>? _chAffineBwdFull;

    V1 Scratch(int n) => Workspace(ref _wsSmall, n);

    protected override void BatchNormForwardTrainCore(Tensor x, Tensor gamma, Tensor beta, Tensor y, Tensor saveMean, Tensor saveInvStd,
        Tensor runningMean, Tensor runningVar, float momentum, float eps, int n, int c, int hw)
    {
        (_bnFwd ??= _acc.LoadStreamKernel<V1, V1, V1, V1, V1, V1, V1, V1, BnArgs>(KN.BatchNormForwardTrain))(PerRow(c),
            V(x), V(gamma), V(beta), V(y), V(saveMean), V(saveInvStd), V(runningMean), V(runningVar),
            new BnArgs { N = n, C = c, HW = hw, Momentum = momentum, Eps = eps });
    }

    protected override void BatchNormBackwardCore(Tensor x, Tensor dy, Tensor gamma, Tensor saveMean, Tensor saveInvStd, Tensor dx,
        Tensor? dgamma, Tensor? dbeta, int n, int c, int hw)
    {
        bool grads = dgamma is not null || dbeta is not null;
        V1 scratch = grads && (dgamma is null || dbeta is null) ? Scratch(c) : _dummy.View;
        (_bnBwd ??= _acc.LoadStreamKernel<V1, V1, V1, V1, V1, V1, V1, V1, int, BnArgs>(KN.BatchNormBackward))(PerRow(c),
            V(x), V(dy), V(gamma), V(saveMean), V(saveInvStd), V(dx),
            dgamma is null ? scratch : V(dgamma), dbeta is null ? scratch : V(dbeta), grads ? 1 : 0,
            new BnArgs { N = n, C = c, HW = hw });
    }

    protected override void ChannelAffineCore(Tensor x, Tensor scale, Tensor shift, Tensor y, int n, int c, int hw)
    {
        long len = (long)n * c * hw;
        (_chAffine ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, int, int>(KN.ChannelAffine))((int)len, V(x), V(scale), V(shift), V(y), c, hw);
    }

    protected override void ChannelAffineBackwardCore(Tensor dy, Tensor scale, Tensor dx, Tensor? x, Tensor? dscale, Tensor? dshift, int n, int c, int hw)
    {
        long len = (long)n * c * hw;
        if (dscale is null && dshift is null)
        {
            if (len == 0) return;
            (_chAffineBwdData ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, int, int>(KN.ChannelAffineBackwardData))((int)len, V(dy), V(scale), V(dx), c, hw);
            return;
        }
        // the kernel reads x for dscale; with dshift alone any tensor of the length will do (its sum goes to scratch)
        V1 scratch = dscale is null || dshift is null ? Scratch(c) : _dummy.View;
        (_chAffineBwdFull ??= _acc.LoadStreamKernel<V1, V1, V1, V1, V1, V1, BnArgs>(KN.ChannelAffineBackwardFull))(PerRow(c),
            V(dy), V(scale), V(dx), V(x ?? dy), dscale is null ? scratch : V(dscale), dshift is null ? scratch : V(dshift),
            new BnArgs { N = n, C = c, HW = hw });
    }
}
