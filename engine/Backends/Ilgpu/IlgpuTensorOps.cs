using ILGPU;
using ILGPU.Runtime;
using Perturb.Kernels;
using KU = Perturb.Kernels.Unary;
using KB = Perturb.Kernels.Broadcast;
using V1 = ILGPU.ArrayView<float>;

namespace Perturb.Engine.Backends;

/// <summary>General-tensor ops on ILGPU: one thread per output element (kernels/Unary.cs, kernels/Broadcast.cs).</summary>
public sealed partial class IlgpuBackend
{
    Action<Index1D, V1, V1, int, float, float>? _unaryFwd;
    Action<Index1D, V1, V1, V1, int, float, float>? _unaryBwd;
    Action<Index1D, V1, V1, V1, StridedArgs, int>? _binFwd;
    Action<Index1D, V1, V1, V1, V1, StridedArgs, StridedArgs, int, int>? _binBwd;
    Action<Index1D, V1, V1, StridedArgs>? _strided;
    Action<Index1D, V1, V1, StridedArgs, StridedArgs, int, float>? _reduce;
    Action<Index1D, V1, V1, V1, V1, StridedArgs, StridedArgs, int, float>? _reduceBwd;

    protected override void UnaryForwardCore(UnaryOp op, float a, float b, Tensor x, Tensor y)
    {
        (_unaryFwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, int, float, float>(KU.Forward))(x.Length, V(x), V(y), (int)op, a, b);
    }

    protected override void UnaryBackwardCore(UnaryOp op, float a, float b, Tensor x, Tensor dy, Tensor dx)
    {
        (_unaryBwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, int, float, float>(KU.Backward))(x.Length, V(x), V(dy), V(dx), (int)op, a, b);
    }

    protected override void BroadcastForwardCore(BroadcastOp op, Tensor a, Tensor b, Tensor y, in StridedArgs s)
    {
        (_binFwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, StridedArgs, int>(KB.Forward))(s.Count(), V(a), V(b), V(y), s, (int)op);
    }

    protected override void BroadcastBackwardCore(BroadcastOp op, int which, Tensor a, Tensor b, Tensor dy, Tensor dx, in StridedArgs keep, in StridedArgs red)
    {
        (_binBwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, StridedArgs, StridedArgs, int, int>(KB.Backward))(
            keep.Count(), V(a), V(b), V(dy), V(dx), keep, red, (int)op, which);
    }

    protected override void StridedCopyCore(Tensor src, Tensor dst, in StridedArgs s)
    {
        (_strided ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, StridedArgs>(KB.Copy))(s.Count(), V(src), V(dst), s);
    }

    protected override void ReduceAxesCore(ReduceOp op, Tensor x, Tensor y, in StridedArgs keep, in StridedArgs red)
    {
        var (k, scale) = KernelReduce(op, red);
        (_reduce ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, StridedArgs, StridedArgs, int, float>(KB.Reduce))(keep.Count(), V(x), V(y), keep, red, k, scale);
    }

    protected override void ReduceAxesBackwardCore(ReduceOp op, Tensor x, Tensor y, Tensor dy, Tensor dx, in StridedArgs keep, in StridedArgs red)
    {
        var (k, scale) = KernelReduce(op, red);
        (_reduceBwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, StridedArgs, StridedArgs, int, float>(KB.ReduceBackward))(
            keep.Count(), V(x), V(y), V(dy), V(dx), keep, red, k, scale);
    }
}
