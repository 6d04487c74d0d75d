using Perturb.Kernels;

namespace Perturb.Engine.Backends;

/// <summary>
/// The general-tensor ops of IBackend.Tensor.cs, checked and counted once: every tensor's owner, equal lengths for
/// element-wise ops, and that each strided iteration stays inside its tensors (<see cref="Strided.Need"/>). Flops:
/// one per element for element-wise and broadcast ops, one per element reduced for reductions and broadcast
/// gradients, 0 for strided copies (memory ops).
/// </summary>
public abstract partial class BackendBase
{
    public void UnaryForward(UnaryOp op, float a, float b, Tensor x, Tensor y)
    {
        Same("unary_fwd", x, y);
        Counters.Hit("unary_fwd", x.Length);
        if (x.Length > 0) UnaryForwardCore(op, a, b, x, y);
    }
    protected abstract void UnaryForwardCore(UnaryOp op, float a, float b, Tensor x, Tensor y);

    public void UnaryBackward(UnaryOp op, float a, float b, Tensor x, Tensor dy, Tensor dx)
    {
        Same("unary_bwd", x, dy, dx);
        Counters.Hit("unary_bwd", 2L * x.Length);
        if (x.Length > 0) UnaryBackwardCore(op, a, b, x, dy, dx);
    }
    protected abstract void UnaryBackwardCore(UnaryOp op, float a, float b, Tensor x, Tensor dy, Tensor dx);

    /// <summary>Owner, and the iteration's reach in operand k within the tensor (keep and red reach add up).</summary>
    void Reach(Tensor t, string op, string name, int k, in StridedArgs s)
    {
        Own(t, op);
        CheckStrides(s, op);
        if (Strided.Low(s, k) < 0) throw new ArgumentException($"{op}: {name} is reached before its first element");
        Check.Len(t, Strided.Need(s, k), op, name);
    }

    void Reach(Tensor t, string op, string name, int k, in StridedArgs keep, in StridedArgs red)
    {
        Own(t, op);
        CheckStrides(keep, op); CheckStrides(red, op);
        if (Strided.Low(keep, k) + Strided.Low(red, k) < 0) throw new ArgumentException($"{op}: {name} is reached before its first element");
        Check.Len(t, Strided.Need(keep, k) + Strided.Need(red, k) - 1, op, name);
    }

    /// <summary>Ranks and sizes; strides may be negative (reversed slices), the reach of each operand is checked by Reach.</summary>
    static void CheckStrides(in StridedArgs s, string op)
    {
        if (s.Rank < 1 || s.Rank > Strided.MaxRank) throw new ArgumentException($"{op}: iteration rank {s.Rank} outside 1..{Strided.MaxRank}");
        for (int d = 0; d < s.Rank; d++)
            if (s.Dims.Get(d) < 0) throw new ArgumentException($"{op}: negative size on iteration axis {d}");
    }

    public void BroadcastForward(BroadcastOp op, Tensor a, Tensor b, Tensor y, in StridedArgs s)
    {
        const string name = "broadcast_fwd";
        Reach(a, name, "a", 0, s); Reach(b, name, "b", 1, s); Reach(y, name, "y", 2, s);
        Counters.Hit(name, s.Count());
        if (s.Count() > 0) BroadcastForwardCore(op, a, b, y, s);
    }
    protected abstract void BroadcastForwardCore(BroadcastOp op, Tensor a, Tensor b, Tensor y, in StridedArgs s);

    public void BroadcastBackward(BroadcastOp op, int which, Tensor a, Tensor b, Tensor dy, Tensor dx, in StridedArgs keep, in StridedArgs red)
    {
        const string name = "broadcast_bwd";
        if (which is not (0 or 1)) throw new ArgumentException($"{name}: operand {which} is neither 0 (a) nor 1 (b)");
        Reach(a, name, "a", 0, keep, red); Reach(b, name, "b", 1, keep, red); Reach(dy, name, "dy", 2, keep, red);
        Need(dx, keep.Count(), name, "dx");
        Counters.Hit(name, 2L * keep.Count() * red.Count());
        if (keep.Count() > 0) BroadcastBackwardCore(op, which, a, b, dy, dx, keep, red);
    }
    protected abstract void BroadcastBackwardCore(BroadcastOp op, int which, Tensor a, Tensor b, Tensor dy, Tensor dx, in StridedArgs keep, in StridedArgs red);

    public void StridedCopy(Tensor src, Tensor dst, in StridedArgs s)
    {
        Reach(src, "strided_copy", "src", 0, s); Reach(dst, "strided_copy", "dst", 1, s);
        Counters.Hit("strided_copy");
        if (s.Count() > 0) StridedCopyCore(src, dst, s);
    }
    protected abstract void StridedCopyCore(Tensor src, Tensor dst, in StridedArgs s);

    public void ReduceAxes(ReduceOp op, Tensor x, Tensor y, in StridedArgs keep, in StridedArgs red)
    {
        Reach(x, "reduce_axes", "x", 0, keep, red);
        Need(y, keep.Count(), "reduce_axes", "y");
        Counters.Hit("reduce_axes", (long)keep.Count() * red.Count());
        if (keep.Count() > 0) ReduceAxesCore(op, x, y, keep, red);
    }
    protected abstract void ReduceAxesCore(ReduceOp op, Tensor x, Tensor y, in StridedArgs keep, in StridedArgs red);

    public void ReduceAxesBackward(ReduceOp op, Tensor x, Tensor y, Tensor dy, Tensor dx, in StridedArgs keep, in StridedArgs red)
    {
        const string name = "reduce_axes_bwd";
        Reach(x, name, "x", 0, keep, red); Reach(dx, name, "dx", 0, keep, red);
        Need(y, keep.Count(), name, "y"); Need(dy, keep.Count(), name, "dy");
        Counters.Hit(name, 2L * keep.Count() * red.Count());
        if (keep.Count() > 0) ReduceAxesBackwardCore(op, x, y, dy, dx, keep, red);
    }
    protected abstract void ReduceAxesBackwardCore(ReduceOp op, Tensor x, Tensor y, Tensor dy, Tensor dx, in StridedArgs keep, in StridedArgs red);

    /// <summary>The kernel's reduction and its scale: Mean is Sum times 1/count.</summary>
    protected static (int Op, float Scale) KernelReduce(ReduceOp op, in StridedArgs red) => op switch
    {
        ReduceOp.Mean => (Broadcast.RSum, 1f / Math.Max(1, red.Count())),
        ReduceOp.Sum => (Broadcast.RSum, 1f),
        ReduceOp.Max => (Broadcast.RMax, 1f),
        ReduceOp.Min => (Broadcast.RMin, 1f),
        _ => (Broadcast.RL2, 1f),
    };
}
