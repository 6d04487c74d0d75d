using Perturb.Kernels;

namespace Perturb.Engine;

/// <summary>
/// General-tensor ops (the models people export: squeeze-excitation, hard-swish, LayerNorm, transposes): element-wise
/// functions, NumPy-broadcast binary ops, reductions over any axes and strided copies. Shapes travel as
/// <see cref="StridedArgs"/> built by <see cref="Strided"/>; every offset an iteration reaches must lie inside its tensor
/// (checked), and tensors are contiguous from their Offset.
/// </summary>
public partial interface IBackend
{
    /// <summary>y = f(x) elementwise (<see cref="UnaryOp"/>; a, b its parameters). In place allowed. Op "unary_fwd".</summary>
    void UnaryForward(UnaryOp op, float a, float b, Tensor x, Tensor y);
    /// <summary>dx = dy * f'(x). dx may alias dy. Op "unary_bwd".</summary>
    void UnaryBackward(UnaryOp op, float a, float b, Tensor x, Tensor dy, Tensor dx);
    /// <summary>y[o2] = a[o0] op b[o1] over the iteration s (offsets from S0, S1, S2). Op "broadcast_fwd".</summary>
    void BroadcastForward(BroadcastOp op, Tensor a, Tensor b, Tensor y, in StridedArgs s);
    /// <summary>
    /// dx = gradient of operand <paramref name="which"/> (0: a, 1: b) of a broadcast binary op: dx[i] = sum over red of
    /// dy * d(a op b)/d operand, keep and red from <see cref="Strided.BinaryGrad"/>. Op "broadcast_bwd".
    /// </summary>
    void BroadcastBackward(BroadcastOp op, int which, Tensor a, Tensor b, Tensor dy, Tensor dx, in StridedArgs keep, in StridedArgs red);
    /// <summary>dst[o1] = src[o0] over the iteration s (Transpose, Slice, Concat on any axis, Expand). Op "strided_copy".</summary>
    void StridedCopy(Tensor src, Tensor dst, in StridedArgs s);
    /// <summary>
    /// y[i] = reduction of x over red from keep's element i (<see cref="Strided.Reduce"/>): Sum, Mean (sum / count), Max,
    /// Min, L2. Op "reduce_axes".
    /// </summary>
    void ReduceAxes(ReduceOp op, Tensor x, Tensor y, in StridedArgs keep, in StridedArgs red);
    /// <summary>
    /// dx (shaped as x) of <see cref="ReduceAxes"/>: Sum/Mean spread dy; Max/Min send dy to the first extreme; L2 dy*x/y.
    /// Writes every element of dx. Op "reduce_axes_bwd".
    /// </summary>
    void ReduceAxesBackward(ReduceOp op, Tensor x, Tensor y, Tensor dy, Tensor dx, in StridedArgs keep, in StridedArgs red);
}
