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

    public void UnaryForward(UnaryOp op, float a, float b, Tensor x, Tensor y)
    {
        Counters.Hit("unary_fwd");
        Check.Same(x, y, "unary_fwd");
        if (x.Length == 0) return;
        (_unaryFwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, int, float, float>(KU.Forward))(x.Length, V(x), V(y), (int)op, a, b);
    }

    public void UnaryBackward(UnaryOp op, float a, float b, Tensor x, Tensor dy, Tensor dx)
    {
        Counters.Hit("unary_bwd");
        Check.Same(x, dy, "unary_bwd"); Check.Same(dy, dx, "unary_bwd");
        if (x.Length == 0) return;
        (_unaryBwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, int, float, float>(KU.Backward))(x.Length, V(x), V(dy), V(dx), (int)op, a, b);
    }

    public void BinaryForward(BinaryOp op, Tensor a, Tensor b, Tensor y, in StridedArgs s)
    {
        Counters.Hit("binary_fwd", s.Count());
        Check.Len(a, Strided.Need(s, 0), "binary_fwd", "a"); Check.Len(b, Strided.Need(s, 1), "binary_fwd", "b");
        Check.Len(y, Strided.Need(s, 2), "binary_fwd", "y");
        if (s.Count() == 0) return;
        (_binFwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, StridedArgs, int>(KB.BinaryForward))(s.Count(), V(a), V(b), V(y), s, (int)op);
    }

    public void BinaryBackward(BinaryOp op, int which, Tensor a, Tensor b, Tensor dy, Tensor dx, in StridedArgs keep, in StridedArgs red)
    {
        Counters.Hit("binary_bwd", (long)keep.Count() * red.Count());
        Check.Len(a, Strided.Need(keep, 0) + Strided.Need(red, 0) - 1, "binary_bwd", "a");
        Check.Len(b, Strided.Need(keep, 1) + Strided.Need(red, 1) - 1, "binary_bwd", "b");
        Check.Len(dy, Strided.Need(keep, 2) + Strided.Need(red, 2) - 1, "binary_bwd", "dy");
        Check.Len(dx, keep.Count(), "binary_bwd", "dx");
        if (keep.Count() == 0) return;
        (_binBwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, StridedArgs, StridedArgs, int, int>(KB.BinaryBackward))(
            keep.Count(), V(a), V(b), V(dy), V(dx), keep, red, (int)op, which);
    }

    public void StridedCopy(Tensor src, Tensor dst, in StridedArgs s)
    {
        Counters.Hit("strided_copy");
        Check.Len(src, Strided.Need(s, 0), "strided_copy", "src"); Check.Len(dst, Strided.Need(s, 1), "strided_copy", "dst");
        if (s.Count() == 0) return;
        (_strided ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, StridedArgs>(KB.Copy))(s.Count(), V(src), V(dst), s);
    }

    static (int Op, float Scale) KernelReduce(ReduceOp op, in StridedArgs red) => op switch
    {
        ReduceOp.Mean => (KB.RSum, 1f / Math.Max(1, red.Count())),
        ReduceOp.Sum => (KB.RSum, 1f),
        ReduceOp.Max => (KB.RMax, 1f),
        ReduceOp.Min => (KB.RMin, 1f),
        _ => (KB.RL2, 1f),
    };

    public void ReduceAxes(ReduceOp op, Tensor x, Tensor y, in StridedArgs keep, in StridedArgs red)
    {
        Counters.Hit("reduce_axes", (long)keep.Count() * red.Count());
        Check.Len(x, Strided.Need(keep, 0) + Strided.Need(red, 0) - 1, "reduce_axes", "x");
        Check.Len(y, keep.Count(), "reduce_axes", "y");
        if (keep.Count() == 0) return;
        var (k, scale) = KernelReduce(op, red);
        (_reduce ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, StridedArgs, StridedArgs, int, float>(KB.Reduce))(keep.Count(), V(x), V(y), keep, red, k, scale);
    }

    public void ReduceAxesBackward(ReduceOp op, Tensor x, Tensor y, Tensor dy, Tensor dx, in StridedArgs keep, in StridedArgs red)
    {
        Counters.Hit("reduce_axes_bwd", (long)keep.Count() * red.Count());
        long need = Strided.Need(keep, 0) + Strided.Need(red, 0) - 1;
        Check.Len(x, need, "reduce_axes_bwd", "x"); Check.Len(dx, need, "reduce_axes_bwd", "dx");
        Check.Len(y, keep.Count(), "reduce_axes_bwd", "y"); Check.Len(dy, keep.Count(), "reduce_axes_bwd", "dy");
        if (keep.Count() == 0) return;
        var (k, scale) = KernelReduce(op, red);
        (_reduceBwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, StridedArgs, StridedArgs, int, float>(KB.ReduceBackward))(
            keep.Count(), V(x), V(y), V(dy), V(dx), keep, red, k, scale);
    }
}
