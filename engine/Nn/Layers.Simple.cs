using System.Text.Json.Nodes;

namespace Perturb.Engine.Nn;

/// <summary>ReLU, LeakyReLU, Sigmoid, Tanh: one element-wise layer class, named by its function.</summary>
public sealed class ActivationLayer : Layer
{
    public Activation Function { get; }
    public float Alpha { get; }
    Tensor? _x, _y;

    public ActivationLayer(Activation f, float alpha = 0.01f) { Function = f; Alpha = alpha; }

    public override string Type => Function switch
    {
        Activation.Relu => "ReLU", Activation.LeakyRelu => "LeakyReLU", Activation.Sigmoid => "Sigmoid", _ => "Tanh",
    };

    protected override int[] BuildCore(IBackend be, int[][] inShapes, ulong seed) => (int[])inShapes[0].Clone();

    /// <summary>A ReLU run in the epilogue of the convolution before it (eval mode, set by Model): the node passes its input through.</summary>
    internal bool Absorbed { get; set; }

    public override Tensor Forward(PassContext c, Tensor[] x)
    {
        CheckInput(x[0], 0);
        if (Absorbed) return x[0];
        _x = x[0];
        _y = c.AllocOutput(_x.Shape);
        c.Be.ActivationForward(Function, Alpha, _x, _y);
        return _y;
    }

    public override Tensor?[] Backward(PassContext c, Tensor dy, bool weights, bool[] needDx)
    {
        if (!needDx[0]) return new Tensor?[] { null };
        if (Absorbed) return new[] { dy };
        var dx = c.AllocOutput(dy.Shape);
        c.Be.ActivationBackward(Function, Alpha, _x, _y, dy, dx);
        return new[] { dx };
    }

    public override JsonObject Config() => Function == Activation.LeakyRelu ? new() { ["alpha"] = Alpha } : new();
}

/// <summary>Max or average pooling over H and W.</summary>
public sealed class Pool2d : Layer
{
    public bool IsMax { get; }
    public int KernelH { get; }
    public int KernelW { get; }
    public int StrideH { get; }
    public int StrideW { get; }
    public int PadH { get; }
    public int PadW { get; }
    public bool CeilMode { get; }
    public bool CountIncludePad { get; }
    Tensor? _x;
    PoolShape _s;

    public Pool2d(bool max, int kernel, int stride = -1, int padding = 0, bool ceilMode = false, bool countIncludePad = false,
        int kernelW = -1, int strideW = -1, int paddingW = -1)
    {
        IsMax = max; KernelH = kernel; KernelW = kernelW > 0 ? kernelW : kernel;
        StrideH = stride > 0 ? stride : kernel; StrideW = strideW > 0 ? strideW : (stride > 0 ? stride : KernelW);
        PadH = padding; PadW = paddingW >= 0 ? paddingW : padding; CeilMode = ceilMode; CountIncludePad = countIncludePad;
        if (KernelH <= 0 || KernelW <= 0 || PadH < 0 || PadW < 0 || 2 * PadH > KernelH || 2 * PadW > KernelW)
            throw new PerturbException($"{Type}: invalid kernel {KernelH}x{KernelW} with padding {PadH}x{PadW} (padding must be at most half the kernel)");
    }

    public override string Type => IsMax ? "MaxPool2d" : "AvgPool2d";

    PoolShape ShapeFor(int n) => new(n, InShapes[0][0], InShapes[0][1], InShapes[0][2], KernelH, KernelW, StrideH, StrideW, PadH, PadW, CeilMode, CountIncludePad);

    protected override int[] BuildCore(IBackend be, int[][] inShapes, ulong seed)
    {
        var s = inShapes[0];
        if (s.Length != 3) throw ShapeError("CxHxW", s);
        var ps = new PoolShape(1, s[0], s[1], s[2], KernelH, KernelW, StrideH, StrideW, PadH, PadW, CeilMode, CountIncludePad);
        if (ps.OutH <= 0 || ps.OutW <= 0)
            throw new PerturbException($"layer '{Name}' ({Type}) input {Tensor.ShapeString(s)} is smaller than its {KernelH}x{KernelW} window");
        return new[] { s[0], ps.OutH, ps.OutW };
    }

    public override Tensor Forward(PassContext c, Tensor[] x)
    {
        CheckInput(x[0], 0);
        _x = x[0]; _s = ShapeFor(_x.N);
        var y = c.AllocOutput(Batch(_s.N, OutShape)); // every pooling op writes its whole output (dx too: the backward clears it)
        if (IsMax) c.Be.MaxPoolForward(_s, _x, y); else c.Be.AvgPoolForward(_s, _x, y);
        return y;
    }

    public override Tensor?[] Backward(PassContext c, Tensor dy, bool weights, bool[] needDx)
    {
        if (!needDx[0]) return new Tensor?[] { null };
        var dx = c.AllocOutput(_x!.Shape);
        if (IsMax) c.Be.MaxPoolBackward(_s, _x, dy, dx); else c.Be.AvgPoolBackward(_s, dy, dx);
        return new[] { dx };
    }

    public override JsonObject Config() => new()
    {
        ["kernel"] = KernelH, ["kernel_w"] = KernelW, ["stride"] = StrideH, ["stride_w"] = StrideW,
        ["padding"] = PadH, ["padding_w"] = PadW, ["ceil_mode"] = CeilMode, ["count_include_pad"] = CountIncludePad,
    };

    internal static Pool2d FromConfig(bool max, JsonObject o) => new(max, o.I("kernel"), o.I("stride", -1), o.I("padding", 0),
        o.B("ceil_mode", false), o.B("count_include_pad", false), o.I("kernel_w", -1), o.I("stride_w", -1), o.I("padding_w", -1));
}

/// <summary>Mean over H and W: [N, C, H, W] to [N, C, 1, 1].</summary>
public sealed class GlobalAvgPool : Layer
{
    int _c, _hw;
    public override string Type => "GlobalAvgPool";

    protected override int[] BuildCore(IBackend be, int[][] inShapes, ulong seed)
    {
        var s = inShapes[0];
        if (s.Length != 3) throw ShapeError("CxHxW", s);
        _c = s[0]; _hw = s[1] * s[2];
        return new[] { s[0], 1, 1 };
    }

    public override Tensor Forward(PassContext c, Tensor[] x)
    {
        CheckInput(x[0], 0);
        var y = c.AllocOutput(x[0].N, _c, 1, 1);
        c.Be.GlobalAvgPoolForward(x[0], y, x[0].N, _c, _hw);
        return y;
    }

    public override Tensor?[] Backward(PassContext c, Tensor dy, bool weights, bool[] needDx)
    {
        if (!needDx[0]) return new Tensor?[] { null };
        var dx = c.AllocOutput(Batch(dy.N, InShapes[0]));
        c.Be.GlobalAvgPoolBackward(dy, dx, dy.N, _c, _hw);
        return new[] { dx };
    }

    public override JsonObject Config() => new();
}

/// <summary>[N, ...] to [N, F]: a view, no copy.</summary>
public sealed class Flatten : Layer
{
    public override string Type => "Flatten";
    protected override int[] BuildCore(IBackend be, int[][] inShapes, ulong seed) => new[] { Product(inShapes[0]) };
    public override Tensor Forward(PassContext c, Tensor[] x) { CheckInput(x[0], 0); return x[0].Reshape(x[0].N, OutShape[0]); }
    public override Tensor?[] Backward(PassContext c, Tensor dy, bool weights, bool[] needDx) =>
        new Tensor?[] { needDx[0] ? dy.Reshape(Batch(dy.N, InShapes[0])) : null };
    public override JsonObject Config() => new();
}

/// <summary>Inverted dropout with a seeded Philox mask in training; identity in eval.</summary>
public sealed class Dropout : Layer
{
    public float P { get; }
    Tensor? _mask;
    public Dropout(float p)
    {
        if (!(p >= 0 && p < 1)) throw new PerturbException($"Dropout: p must be in [0, 1), got {p}");
        P = p;
    }
    public override string Type => "Dropout";
    protected override int[] BuildCore(IBackend be, int[][] inShapes, ulong seed) => (int[])inShapes[0].Clone();

    public override Tensor Forward(PassContext c, Tensor[] x)
    {
        CheckInput(x[0], 0);
        if (!c.Training || P == 0) { _mask = null; return x[0]; }
        var y = c.Alloc(x[0].Shape);
        _mask = c.Alloc(x[0].Shape);
        c.Be.DropoutForward(x[0], y, _mask, P, c.DropoutSeed, c.DropoutOffset);
        c.DropoutOffset += (ulong)x[0].Length;
        return y;
    }

    public override Tensor?[] Backward(PassContext c, Tensor dy, bool weights, bool[] needDx)
    {
        if (!needDx[0]) return new Tensor?[] { null };
        if (_mask == null) return new[] { dy };
        var dx = c.Alloc(dy.Shape);
        c.Be.Mul(dy, _mask, dx);
        return new[] { dx };
    }

    public override JsonObject Config() => new() { ["p"] = P };
}

/// <summary>Element-wise sum of two inputs of the same shape (residual connections).</summary>
public sealed class AddLayer : Layer
{
    public override string Type => "Add";
    public override int Arity => 2;
    protected override int[] BuildCore(IBackend be, int[][] inShapes, ulong seed)
    {
        if (!inShapes[0].SequenceEqual(inShapes[1]))
            throw new PerturbException($"layer '{Name}' (Add) needs equal shapes, got {Tensor.ShapeString(inShapes[0])} and {Tensor.ShapeString(inShapes[1])}");
        return (int[])inShapes[0].Clone();
    }
    public override Tensor Forward(PassContext c, Tensor[] x)
    {
        CheckInput(x[0], 0); CheckInput(x[1], 1);
        if (x[0].N != x[1].N) throw new PerturbException($"layer '{Name}' (Add) got batch sizes {x[0].N} and {x[1].N}");
        var y = c.AllocOutput(x[0].Shape);
        if (FusedRelu) c.Be.AddRelu(x[0], x[1], y);
        else c.Be.Add(x[0], x[1], y);
        _y = FusedRelu ? y : null;
        return y;
    }
    public override Tensor?[] Backward(PassContext c, Tensor dy, bool weights, bool[] needDx)
    {
        var g = dy;
        if (FusedRelu && (needDx[0] || needDx[1]))
        {
            // The ReLU's mask is the fused output's sign: max(s, 0) > 0 exactly where s > 0. Both inputs get this one tensor.
            g = c.AllocOutput(dy.Shape);
            c.Be.ActivationBackward(Activation.Relu, 0f, _y, null, dy, g);
        }
        return new Tensor?[] { needDx[0] ? g : null, needDx[1] ? g : null };
    }

    /// <summary>Whether the ReLU that alone reads this sum runs in the same pass (eval-mode folding, set by Model); that ReLU node then passes its input through.</summary>
    internal bool FusedRelu { get; set; }
    Tensor? _y;
    public override JsonObject Config() => new();
}

/// <summary>
/// Concatenation along one per-sample axis (default 0: channels, or features). The channel axis copies whole channel
/// blocks; any other axis is a strided copy per input.
/// </summary>
public sealed class Concat : Layer
{
    int _inner;
    public int Axis { get; }
    public Concat(int axis = 0) { Axis = axis; }
    public override string Type => "Concat";
    public override int Arity => -1;
    protected override int[] BuildCore(IBackend be, int[][] inShapes, ulong seed)
    {
        if (inShapes.Length == 0) throw new PerturbException($"layer '{Name}' (Concat) needs at least one input");
        var first = inShapes[0];
        if (Axis < 0 || Axis >= first.Length) throw new PerturbException($"layer '{Name}' (Concat) axis {Axis} outside input {Tensor.ShapeString(first)}");
        int ch = 0;
        foreach (var s in inShapes)
        {
            bool same = s.Length == first.Length;
            for (int d = 0; same && d < s.Length; d++) same = d == Axis || s[d] == first[d];
            if (!same)
                throw new PerturbException($"layer '{Name}' (Concat) inputs differ beyond axis {Axis}: {Tensor.ShapeString(first)} and {Tensor.ShapeString(s)}");
            ch += s[Axis];
        }
        _inner = Product(first) / first[0];
        var o = (int[])first.Clone(); o[Axis] = ch;
        return o;
    }

    /// <summary>The iteration over input i's elements: S0 contiguous in the input, S1 (Off1) its place in the output.</summary>
    Perturb.Kernels.StridedArgs Part(int n, int i, int off)
    {
        var dims = Batch(n, InShapes[i]);
        var so = Strided.Contiguous(Batch(n, OutShape));
        return Strided.Make(dims, Strided.Contiguous(dims), so, null, 0, off * so[Axis + 1]);
    }

    public override Tensor Forward(PassContext c, Tensor[] x)
    {
        int n = x[0].N;
        var y = c.Alloc(Batch(n, OutShape));
        int off = 0;
        for (int i = 0; i < x.Length; i++)
        {
            CheckInput(x[i], i);
            int ci = InShapes[i][Axis];
            if (Axis == 0) c.Be.ChannelCopy(x[i], ci, 0, y, OutShape[0], off, ci, n, _inner, false);
            else c.Be.StridedCopy(x[i], y, Part(n, i, off));
            off += ci;
        }
        return y;
    }
    public override Tensor?[] Backward(PassContext c, Tensor dy, bool weights, bool[] needDx)
    {
        var dxs = new Tensor?[InShapes.Length];
        int off = 0, n = dy.N;
        for (int i = 0; i < dxs.Length; i++)
        {
            int ci = InShapes[i][Axis];
            if (needDx[i])
            {
                dxs[i] = c.Alloc(Batch(n, InShapes[i]));
                if (Axis == 0) c.Be.ChannelCopy(dy, OutShape[0], off, dxs[i]!, ci, 0, ci, n, _inner, false);
                else
                {
                    var a = Part(n, i, off);
                    (a.S0, a.S1) = (a.S1, a.S0); (a.Off0, a.Off1) = (a.Off1, a.Off0);
                    c.Be.StridedCopy(dy, dxs[i]!, a);
                }
            }
            off += ci;
        }
        return dxs;
    }
    public override JsonObject Config() => Axis == 0 ? new() : new() { ["axis"] = Axis };
}

/// <summary>
/// Softmax over one axis of the per-sample shape (default the last) when every dimension after it is 1: [K],
/// [K, 1, 1], [T, K]. The rows are all the other positions.
/// </summary>
public sealed class SoftmaxLayer : Layer
{
    Tensor? _y;
    int _cols;
    /// <summary>Per-sample axis (no batch dimension); -1: the last.</summary>
    public int Axis { get; }
    public SoftmaxLayer(int axis = -1) { Axis = axis; }
    public override string Type => "Softmax";
    protected override int[] BuildCore(IBackend be, int[][] inShapes, ulong seed)
    {
        var s = inShapes[0];
        int a = Axis < 0 ? s.Length + Axis : Axis;
        if (a < 0 || a >= s.Length || s.Skip(a + 1).Any(d => d != 1))
            throw new PerturbException($"layer '{Name}' (Softmax) over axis {Axis} of {Tensor.ShapeString(s)}: only an axis followed by size-1 dimensions is supported");
        _cols = s[a];
        return (int[])s.Clone();
    }
    public override Tensor Forward(PassContext c, Tensor[] x)
    {
        CheckInput(x[0], 0);
        _y = c.Alloc(x[0].Shape);
        c.Be.Softmax(x[0], _y, x[0].Length / _cols, _cols);
        return _y;
    }
    public override Tensor?[] Backward(PassContext c, Tensor dy, bool weights, bool[] needDx)
    {
        if (!needDx[0]) return new Tensor?[] { null };
        var dx = c.Alloc(dy.Shape);
        c.Be.SoftmaxBackward(_y!, dy, dx, dy.Length / _cols, _cols);
        return new[] { dx };
    }
    public override JsonObject Config() => Axis == -1 ? new() : new() { ["axis"] = Axis };
}
