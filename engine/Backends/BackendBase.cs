namespace Perturb.Engine.Backends;

/// <summary>
/// The backend contract, written once. Every public op of <see cref="IBackend"/> lives here as a non-virtual method
/// that (1) checks every argument (ownership, lengths, shapes, label ranges, counts) and throws
/// <see cref="ArgumentException"/> with one line naming the op and the argument, (2) counts the call and its flops
/// in <see cref="Counters"/>, and (3) calls the protected <c>...Core</c> method that <see cref="CpuBackend"/> and
/// <see cref="IlgpuBackend"/> implement. A core method may assume its arguments are valid and must not count
/// anything. So the two backends cannot disagree on what an op accepts or what it costs.
///
/// Flops are the floating-point operations per call as named in IBackend's doc comments (0 for memory ops); the
/// element counts below are the op's natural size (output elements, or rows*cols for row ops).
/// </summary>
public abstract partial class BackendBase : IBackend
{
    public abstract string Name { get; }
    public abstract string DeviceName { get; }
    public abstract long MemoryBytes { get; }
    public OpCounters Counters { get; } = new();
    public abstract void Dispose();

    // ---------------------------------------------------------------- argument checks

    /// <summary>Owner check; bumps the tensor's <see cref="Tensor.Version"/> (any tensor an op is given may be written).</summary>
    void Own(Tensor t, string op)
    {
        OwnRead(t, op);
        t.Touch();
    }

    /// <summary>Owner check of an operand the op only reads and whose version must stay (conv weights).</summary>
    void OwnRead(Tensor t, string op)
    {
        if (!ReferenceEquals(t.Backend, this)) throw new ArgumentException($"{op}: tensor belongs to backend {t.Backend.Name}, not {Name}");
    }

    /// <summary>Owner and length &gt;= need.</summary>
    void Need(Tensor t, long need, string op, string name) { Own(t, op); Check.Len(t, need, op, name); }

    /// <summary>Owner and length &gt;= need, for a read-only operand (no version bump).</summary>
    void NeedRead(Tensor t, long need, string op, string name) { OwnRead(t, op); Check.Len(t, need, op, name); }

    /// <summary>Owner of every tensor, and all of equal length.</summary>
    void Same(string op, Tensor first, params Tensor[] rest)
    {
        Own(first, op);
        foreach (var t in rest) { Own(t, op); Check.Same(first, t, op); }
    }

    static void NonNegative(string op, params (long V, string Name)[] sizes)
    {
        foreach (var (v, name) in sizes) if (v < 0) throw new ArgumentException($"{op}: {name} = {v} is negative");
    }

    // Shapes are printed field by field: a record's ToString would evaluate OutH, which divides by the stride.
    static string Show(in ConvShape s) =>
        $"N={s.N} C={s.C} H={s.H} W={s.W} K={s.K} kernel {s.R}x{s.S} stride {s.StrideH}x{s.StrideW} pad {s.PadH}x{s.PadW} dilation {s.DilH}x{s.DilW} groups {s.Groups}";
    static string Show(in PoolShape s) =>
        $"N={s.N} C={s.C} H={s.H} W={s.W} window {s.KH}x{s.KW} stride {s.StrideH}x{s.StrideW} pad {s.PadH}x{s.PadW}";

    static void CheckConv(in ConvShape s, string op)
    {
        if (s.N < 0 || s.C <= 0 || s.H <= 0 || s.W <= 0 || s.K <= 0 || s.R <= 0 || s.S <= 0 || s.Groups <= 0
            || s.StrideH <= 0 || s.StrideW <= 0 || s.PadH < 0 || s.PadW < 0 || s.DilH <= 0 || s.DilW <= 0)
            throw new ArgumentException($"{op}: invalid shape {Show(s)}");
        if (s.C % s.Groups != 0 || s.K % s.Groups != 0)
            throw new ArgumentException($"{op}: C={s.C} and K={s.K} must be multiples of Groups={s.Groups}");
        if (s.OutH <= 0 || s.OutW <= 0) throw new ArgumentException($"{op}: empty output for {Show(s)}");
    }

    static void CheckPool(in PoolShape s, string op)
    {
        if (s.N < 0 || s.C <= 0 || s.H <= 0 || s.W <= 0 || s.KH <= 0 || s.KW <= 0 || s.StrideH <= 0 || s.StrideW <= 0
            || s.PadH < 0 || s.PadW < 0)
            throw new ArgumentException($"{op}: invalid shape {Show(s)}");
        if (2 * s.PadH > s.KH || 2 * s.PadW > s.KW)
            throw new ArgumentException($"{op}: padding {s.PadH}x{s.PadW} is more than half the window {s.KH}x{s.KW}");
        if (s.OutH <= 0 || s.OutW <= 0) throw new ArgumentException($"{op}: empty output for {Show(s)}");
    }

    /// <summary>
    /// The tensor's values on the host, for checks that must read data (labels). The CPU backend returns its storage;
    /// a device backend copies (which waits for queued work).
    /// </summary>
    protected abstract ReadOnlySpan<float> PeekHost(Tensor t);

    /// <summary>
    /// Every labels[r], r &lt; rows, must be an integer class index in [0, cols). Reading labels is a device-to-host
    /// copy (a synchronisation on CUDA), so a check that passed is remembered with the labels' <see cref="Tensor.Version"/>:
    /// the loss ops only read their labels (no version bump), so a loss called every attack step with the same
    /// labels checks them once, and any write to them (Upload, an op given them) makes the next loss check again.
    /// Only a pass is remembered: bad labels fail at every call, with the same message on both backends.
    /// </summary>
    void CheckLabels(Tensor labels, int rows, int cols, string op)
    {
        if (rows == 0) return;
        long ver = labels.Version;
        if (_labelsChecked.TryGetValue(labels.Ver, out var done) && done.Version == ver && done.Offset == labels.Offset
            && rows <= done.Rows && cols >= done.Cols) return;
        var l = PeekHost(labels)[..rows];
        for (int r = 0; r < rows; r++)
        {
            float v = l[r];
            if (!(v >= 0 && v < cols && v == MathF.Floor(v)))
                throw new ArgumentException($"{op}: label {v} of row {r} is not a class index in [0, {cols})");
        }
        _labelsChecked.AddOrUpdate(labels.Ver, new LabelsChecked(ver, labels.Offset, rows, cols));
    }

    sealed record LabelsChecked(long Version, int Offset, int Rows, int Cols);
    readonly System.Runtime.CompilerServices.ConditionalWeakTable<Tensor.VersionBox, LabelsChecked> _labelsChecked = new();

        void CheckLoss(string op, Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, int rows, int cols)
    {
        NonNegative(op, (rows, "rows"), (cols, "cols"));
        long len = (long)rows * cols;
        Need(logits, len, op, "logits"); NeedRead(labels, rows, op, "labels"); Need(loss, rows, op, "loss");
        Own(gradScale, op);
        if (dlogits is not null) { Need(dlogits, len, op, "dlogits"); Need(gradScale, rows, op, "gradScale"); }
    }

    void CheckRows(string op, int rows, int cols, params (Tensor T, string Name)[] tensors)
    {
        NonNegative(op, (rows, "rows"), (cols, "cols"));
        foreach (var (t, name) in tensors) Need(t, (long)rows * cols, op, name);
    }

    // ---------------------------------------------------------------- memory

    public Tensor Allocate(params int[] shape)
    {
        long n = 1;
        foreach (var d in shape)
        {
            if (d < 0) throw new ArgumentException($"Allocate: negative dimension in shape [{Tensor.ShapeString(shape)}]");
            n *= d;
            if (n > int.MaxValue) throw new ArgumentException($"Allocate: shape [{Tensor.ShapeString(shape)}] is too large");
        }
        return AllocateCore(shape, (int)n);
    }
    /// <summary>A zero-filled tensor of <paramref name="length"/> elements (the checked product of shape).</summary>
    protected abstract Tensor AllocateCore(int[] shape, int length);

    public Tensor FromArray(ReadOnlySpan<float> data, params int[] shape)
    {
        long n = 1; foreach (var d in shape) n *= Math.Max(d, 0);
        if (data.Length != n) throw new ArgumentException($"FromArray: {data.Length} values for shape [{Tensor.ShapeString(shape)}] of {n}");
        var t = Allocate(shape);
        if (t.Length > 0) UploadCore(t, data);
        return t;
    }

    public float[] ToArray(Tensor t)
    {
        Own(t, "to_array");
        return t.Length == 0 ? [] : ToArrayCore(t);
    }
    protected abstract float[] ToArrayCore(Tensor t);

    public void Upload(Tensor t, ReadOnlySpan<float> data)
    {
        Own(t, "upload");
        if (data.Length != t.Length) throw new ArgumentException($"Upload: {data.Length} values for a tensor of {t.Length}");
        if (t.Length > 0) UploadCore(t, data);
    }
    protected abstract void UploadCore(Tensor t, ReadOnlySpan<float> data);

    public void Copy(Tensor src, Tensor dst)
    {
        Same("copy", src, dst);
        Counters.Hit("copy");
        if (src.Length > 0) CopyCore(src, dst);
    }
    protected abstract void CopyCore(Tensor src, Tensor dst);

    public void Fill(Tensor t, float value)
    {
        Own(t, "fill");
        Counters.Hit("fill");
        if (t.Length > 0) FillCore(t, value);
    }
    protected abstract void FillCore(Tensor t, float value);

    public abstract void Synchronize();
    public abstract void Free(Tensor t);

    // ---------------------------------------------------------------- GEMM

    public void Gemm(bool transA, bool transB, int m, int n, int k, float alpha, Tensor a, Tensor b, float beta, Tensor c)
    {
        const string op = "gemm";
        if (m < 0 || n < 0 || k < 0) throw new ArgumentException($"{op}: negative size {m}x{n}x{k}");
        Need(a, (long)m * k, op, "a"); Need(b, (long)k * n, op, "b"); Need(c, (long)m * n, op, "c");
        Counters.Hit(op, 2L * m * n * k);
        if (m > 0 && n > 0) GemmCore(transA, transB, m, n, k, alpha, a, b, beta, c);
    }
    protected abstract void GemmCore(bool transA, bool transB, int m, int n, int k, float alpha, Tensor a, Tensor b, float beta, Tensor c);

    // ---------------------------------------------------------------- convolution, bias

    public void ConvForward(in ConvShape s, Tensor x, Tensor w, Tensor? bias, Tensor y) => ConvForward(s, x, w, bias, y, false);

    public void ConvForward(in ConvShape s, Tensor x, Tensor w, Tensor? bias, Tensor y, bool relu)
    {
        const string op = "conv_fwd";
        CheckConv(s, op);
        Need(x, (long)s.N * s.C * s.H * s.W, op, "x"); NeedRead(w, (long)s.K * s.CPerGroup * s.R * s.S, op, "w");
        Need(y, (long)s.N * s.K * s.OutH * s.OutW, op, "y");
        if (bias is not null) Need(bias, s.K, op, "bias");
        Counters.Hit(op, s.Flops);
        if (relu) ConvForwardReluCore(s, x, w, bias, y);
        else ConvForwardCore(s, x, w, bias, y);
    }
    protected abstract void ConvForwardCore(in ConvShape s, Tensor x, Tensor w, Tensor? bias, Tensor y);

    /// <summary>The convolution, then ReLU in place over its output (a backend overrides it to fuse the two).</summary>
    protected virtual void ConvForwardReluCore(in ConvShape s, Tensor x, Tensor w, Tensor? bias, Tensor y)
    {
        ConvForwardCore(s, x, w, bias, y);
        long len = (long)s.N * s.K * s.OutH * s.OutW;
        if (len == 0) return;
        var out_ = len == y.Length ? y : new Tensor(this, y.Storage, new[] { (int)len }, y.Offset, isView: true);
        ActivationForwardCore(Activation.Relu, 0f, out_, out_);
    }

    public void ConvBackwardData(in ConvShape s, Tensor dy, Tensor w, Tensor dx)
    {
        const string op = "conv_bwd_data";
        CheckConv(s, op);
        Need(dy, (long)s.N * s.K * s.OutH * s.OutW, op, "dy"); NeedRead(w, (long)s.K * s.CPerGroup * s.R * s.S, op, "w");
        Need(dx, (long)s.N * s.C * s.H * s.W, op, "dx");
        Counters.Hit(op, s.Flops);
        ConvBackwardDataCore(s, dy, w, dx);
    }
    protected abstract void ConvBackwardDataCore(in ConvShape s, Tensor dy, Tensor w, Tensor dx);

    public void ConvBackwardWeights(in ConvShape s, Tensor x, Tensor dy, Tensor dw, Tensor? dbias)
    {
        const string op = "conv_bwd_weights";
        CheckConv(s, op);
        Need(x, (long)s.N * s.C * s.H * s.W, op, "x"); Need(dy, (long)s.N * s.K * s.OutH * s.OutW, op, "dy");
        Need(dw, (long)s.K * s.CPerGroup * s.R * s.S, op, "dw");
        if (dbias is not null) Need(dbias, s.K, op, "dbias");
        Counters.Hit(op, s.Flops);
        ConvBackwardWeightsCore(s, x, dy, dw, dbias);
    }
    protected abstract void ConvBackwardWeightsCore(in ConvShape s, Tensor x, Tensor dy, Tensor dw, Tensor? dbias);

    public void BiasAdd(Tensor y, Tensor bias, int outer, int channels, int inner)
    {
        const string op = "bias_add";
        NonNegative(op, (outer, "outer"), (channels, "channels"), (inner, "inner"));
        long len = (long)outer * channels * inner;
        Need(y, len, op, "y"); Need(bias, channels, op, "bias");
        Counters.Hit(op, len);
        if (len > 0) BiasAddCore(y, bias, outer, channels, inner);
    }
    protected abstract void BiasAddCore(Tensor y, Tensor bias, int outer, int channels, int inner);

    public void BiasGrad(Tensor dy, Tensor db, int outer, int channels, int inner)
    {
        const string op = "bias_grad";
        NonNegative(op, (outer, "outer"), (channels, "channels"), (inner, "inner"));
        long len = (long)outer * channels * inner;
        Need(dy, len, op, "dy"); Need(db, channels, op, "db");
        Counters.Hit(op, len);
        if (channels > 0) BiasGradCore(dy, db, outer, channels, inner);
    }
    protected abstract void BiasGradCore(Tensor dy, Tensor db, int outer, int channels, int inner);

    // ---------------------------------------------------------------- activations

    public void ActivationForward(Activation f, float alpha, Tensor x, Tensor y)
    {
        const string op = "act_fwd";
        if (!Enum.IsDefined(f)) throw new ArgumentException($"{op}: unknown activation {f}");
        Same(op, x, y);
        Counters.Hit(op, x.Length);
        if (x.Length > 0) ActivationForwardCore(f, alpha, x, y);
    }
    protected abstract void ActivationForwardCore(Activation f, float alpha, Tensor x, Tensor y);

    public void ActivationBackward(Activation f, float alpha, Tensor? x, Tensor? y, Tensor dy, Tensor dx)
    {
        const string op = "act_bwd";
        if (!Enum.IsDefined(f)) throw new ArgumentException($"{op}: unknown activation {f}");
        bool readsX = f is Activation.Relu or Activation.LeakyRelu;
        Tensor src = (readsX ? x : y) ?? throw new ArgumentException($"{op}: {f} needs {(readsX ? "x" : "y")}");
        Same(op, dy, dx);
        Need(src, dy.Length, op, readsX ? "x" : "y");
        Counters.Hit(op, dy.Length);
        if (dy.Length > 0) ActivationBackwardCore(f, alpha, src, dy, dx);
    }
    /// <summary><paramref name="src"/> is x for ReLU and LeakyReLU, y = f(x) for Sigmoid and Tanh.</summary>
    protected abstract void ActivationBackwardCore(Activation f, float alpha, Tensor src, Tensor dy, Tensor dx);

    // ---------------------------------------------------------------- pooling

    /// <summary>Checks a pooling call's shape and whichever of x, y (input-sized / output-sized), dy, dx it has; counts it.</summary>
    void PoolCall(string op, in PoolShape s, Tensor? x, Tensor? y, Tensor? dy, Tensor? dx)
    {
        CheckPool(s, op);
        long inLen = (long)s.N * s.C * s.H * s.W, outLen = (long)s.N * s.C * s.OutH * s.OutW;
        if (x is not null) Need(x, inLen, op, "x");
        if (y is not null) Need(y, outLen, op, "y");
        if (dy is not null) Need(dy, outLen, op, "dy");
        if (dx is not null) Need(dx, inLen, op, "dx");
        Counters.Hit(op, outLen * s.KH * s.KW);
    }

    public void MaxPoolForward(in PoolShape s, Tensor x, Tensor y)
    {
        PoolCall("maxpool_fwd", s, x, y, null, null);
        if (s.N > 0) MaxPoolForwardCore(s, x, y);
    }
    protected abstract void MaxPoolForwardCore(in PoolShape s, Tensor x, Tensor y);

    public void MaxPoolBackward(in PoolShape s, Tensor x, Tensor dy, Tensor dx)
    {
        PoolCall("maxpool_bwd", s, x, null, dy, dx);
        if (s.N > 0) MaxPoolBackwardCore(s, x, dy, dx);
    }
    protected abstract void MaxPoolBackwardCore(in PoolShape s, Tensor x, Tensor dy, Tensor dx);

    public void AvgPoolForward(in PoolShape s, Tensor x, Tensor y)
    {
        PoolCall("avgpool_fwd", s, x, y, null, null);
        if (s.N > 0) AvgPoolForwardCore(s, x, y);
    }
    protected abstract void AvgPoolForwardCore(in PoolShape s, Tensor x, Tensor y);

    public void AvgPoolBackward(in PoolShape s, Tensor dy, Tensor dx)
    {
        PoolCall("avgpool_bwd", s, null, null, dy, dx);
        if (s.N > 0) AvgPoolBackwardCore(s, dy, dx);
    }
    protected abstract void AvgPoolBackwardCore(in PoolShape s, Tensor dy, Tensor dx);

    public void GlobalAvgPoolForward(Tensor x, Tensor y, int n, int c, int hw)
    {
        const string op = "gap_fwd";
        NonNegative(op, (n, "n"), (c, "c"), (hw, "hw"));
        Need(x, (long)n * c * hw, op, "x"); Need(y, (long)n * c, op, "y");
        Counters.Hit(op, (long)n * c * hw);
        if ((long)n * c > 0) GlobalAvgPoolForwardCore(x, y, n, c, hw);
    }
    protected abstract void GlobalAvgPoolForwardCore(Tensor x, Tensor y, int n, int c, int hw);

    public void GlobalAvgPoolBackward(Tensor dy, Tensor dx, int n, int c, int hw)
    {
        const string op = "gap_bwd";
        NonNegative(op, (n, "n"), (c, "c"), (hw, "hw"));
        Need(dy, (long)n * c, op, "dy"); Need(dx, (long)n * c * hw, op, "dx");
        Counters.Hit(op, (long)n * c * hw);
        if ((long)n * c * hw > 0) GlobalAvgPoolBackwardCore(dy, dx, n, c, hw);
    }
    protected abstract void GlobalAvgPoolBackwardCore(Tensor dy, Tensor dx, int n, int c, int hw);

    // ---------------------------------------------------------------- batch norm, channel affine

    void PerChannel(string op, int c, params (Tensor? T, string Name)[] tensors)
    {
        foreach (var (t, name) in tensors) if (t is not null) Need(t, c, op, name);
    }

    public void BatchNormForwardTrain(Tensor x, Tensor gamma, Tensor beta, Tensor y, Tensor saveMean, Tensor saveInvStd,
        Tensor runningMean, Tensor runningVar, float momentum, float eps, int n, int c, int hw)
    {
        const string op = "bn_fwd_train";
        NonNegative(op, (n, "n"), (c, "c"), (hw, "hw"));
        long len = (long)n * c * hw;
        Need(x, len, op, "x"); Need(y, len, op, "y");
        PerChannel(op, c, (gamma, "gamma"), (beta, "beta"), (saveMean, "saveMean"), (saveInvStd, "saveInvStd"),
            (runningMean, "runningMean"), (runningVar, "runningVar"));
        Counters.Hit(op, 8 * len);
        if (c > 0) BatchNormForwardTrainCore(x, gamma, beta, y, saveMean, saveInvStd, runningMean, runningVar, momentum, eps, n, c, hw);
    }
    protected abstract void BatchNormForwardTrainCore(Tensor x, Tensor gamma, Tensor beta, Tensor y, Tensor saveMean, Tensor saveInvStd,
        Tensor runningMean, Tensor runningVar, float momentum, float eps, int n, int c, int hw);

    public void BatchNormBackward(Tensor x, Tensor dy, Tensor gamma, Tensor saveMean, Tensor saveInvStd, Tensor dx,
        Tensor? dgamma, Tensor? dbeta, int n, int c, int hw)
    {
        const string op = "bn_bwd";
        NonNegative(op, (n, "n"), (c, "c"), (hw, "hw"));
        long len = (long)n * c * hw;
        Need(x, len, op, "x"); Need(dy, len, op, "dy"); Need(dx, len, op, "dx");
        PerChannel(op, c, (gamma, "gamma"), (saveMean, "saveMean"), (saveInvStd, "saveInvStd"), (dgamma, "dgamma"), (dbeta, "dbeta"));
        Counters.Hit(op, 10 * len);
        if (c > 0) BatchNormBackwardCore(x, dy, gamma, saveMean, saveInvStd, dx, dgamma, dbeta, n, c, hw);
    }
    protected abstract void BatchNormBackwardCore(Tensor x, Tensor dy, Tensor gamma, Tensor saveMean, Tensor saveInvStd, Tensor dx,
        Tensor? dgamma, Tensor? dbeta, int n, int c, int hw);

    public void ChannelAffine(Tensor x, Tensor scale, Tensor shift, Tensor y, int n, int c, int hw)
    {
        const string op = "channel_affine";
        NonNegative(op, (n, "n"), (c, "c"), (hw, "hw"));
        long len = (long)n * c * hw;
        Need(x, len, op, "x"); Need(y, len, op, "y"); Need(scale, c, op, "scale"); Need(shift, c, op, "shift");
        Counters.Hit(op, 2 * len);
        if (len > 0) ChannelAffineCore(x, scale, shift, y, n, c, hw);
    }
    protected abstract void ChannelAffineCore(Tensor x, Tensor scale, Tensor shift, Tensor y, int n, int c, int hw);

    public void ChannelAffineBackward(Tensor dy, Tensor scale, Tensor dx, Tensor? x, Tensor? dscale, Tensor? dshift, int n, int c, int hw)
    {
        const string op = "channel_affine_bwd";
        NonNegative(op, (n, "n"), (c, "c"), (hw, "hw"));
        long len = (long)n * c * hw;
        Need(dy, len, op, "dy"); Need(dx, len, op, "dx"); Need(scale, c, op, "scale");
        PerChannel(op, c, (dscale, "dscale"), (dshift, "dshift"));
        if (dscale is not null) Need(x ?? throw new ArgumentException($"{op}: dscale needs x"), len, op, "x");
        Counters.Hit(op, 4 * len);
        if (c > 0) ChannelAffineBackwardCore(dy, scale, dx, x, dscale, dshift, n, c, hw);
    }
    protected abstract void ChannelAffineBackwardCore(Tensor dy, Tensor scale, Tensor dx, Tensor? x, Tensor? dscale, Tensor? dshift, int n, int c, int hw);

    // ---------------------------------------------------------------- softmax, losses

    public void Softmax(Tensor x, Tensor y, int rows, int cols)
    {
        const string op = "softmax";
        CheckRows(op, rows, cols, (x, "x"), (y, "y"));
        Counters.Hit(op, 5L * rows * cols);
        if (rows > 0) SoftmaxCore(x, y, rows, cols, log: false);
    }

    public void LogSoftmax(Tensor x, Tensor y, int rows, int cols)
    {
        const string op = "log_softmax";
        CheckRows(op, rows, cols, (x, "x"), (y, "y"));
        Counters.Hit(op, 5L * rows * cols);
        if (rows > 0) SoftmaxCore(x, y, rows, cols, log: true);
    }
    /// <summary>Softmax, or log-softmax when <paramref name="log"/>.</summary>
    protected abstract void SoftmaxCore(Tensor x, Tensor y, int rows, int cols, bool log);

    public void SoftmaxBackward(Tensor y, Tensor dy, Tensor dx, int rows, int cols)
    {
        const string op = "softmax_bwd";
        CheckRows(op, rows, cols, (y, "y"), (dy, "dy"), (dx, "dx"));
        Counters.Hit(op, 4L * rows * cols);
        if (rows > 0) SoftmaxBackwardCore(y, dy, dx, rows, cols);
    }
    protected abstract void SoftmaxBackwardCore(Tensor y, Tensor dy, Tensor dx, int rows, int cols);

    public void CrossEntropy(Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, int rows, int cols)
    {
        const string op = "ce_loss";
        CheckLoss(op, logits, labels, loss, dlogits, gradScale, rows, cols);
        CheckLabels(labels, rows, cols, op);
        Counters.Hit(op, 6L * rows * cols);
        if (rows > 0) CrossEntropyCore(logits, labels, loss, dlogits, gradScale, rows, cols);
    }
    protected abstract void CrossEntropyCore(Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, int rows, int cols);

    public void CwMarginLoss(Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, bool targeted, float kappa, int rows, int cols)
    {
        const string op = "cw_loss";
        if (cols < 2) throw new ArgumentException($"{op}: needs at least two classes, got {cols}");
        CheckLoss(op, logits, labels, loss, dlogits, gradScale, rows, cols);
        CheckLabels(labels, rows, cols, op);
        Counters.Hit(op, 2L * rows * cols);
        if (rows > 0) CwMarginLossCore(logits, labels, loss, dlogits, gradScale, targeted, kappa, rows, cols);
    }
    protected abstract void CwMarginLossCore(Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, bool targeted, float kappa, int rows, int cols);

    public void BceWithLogits(Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, int rows)
    {
        const string op = "bce_loss";
        CheckLoss(op, logits, labels, loss, dlogits, gradScale, rows, 1);
        Counters.Hit(op, 8L * rows);
        if (rows > 0) BceWithLogitsCore(logits, labels, loss, dlogits, gradScale, rows);
    }
    protected abstract void BceWithLogitsCore(Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, int rows);

    public void DlrLoss(Tensor logits, Tensor labels, Tensor targets, Tensor loss, Tensor? dlogits, Tensor gradScale, bool targeted, int rows, int cols)
    {
        const string op = "dlr_loss";
        if (cols < 2) throw new ArgumentException($"{op}: needs at least two classes, got {cols}");
        CheckLoss(op, logits, labels, loss, dlogits, gradScale, rows, cols);
        if (targeted) NeedRead(targets, rows, op, "targets");
        CheckLabels(labels, rows, cols, op);
        if (targeted) CheckLabels(targets, rows, cols, op);
        Counters.Hit(op, 4L * rows * cols);
        if (rows > 0) DlrLossCore(logits, labels, targets, loss, dlogits, gradScale, targeted, rows, cols);
    }
    protected abstract void DlrLossCore(Tensor logits, Tensor labels, Tensor targets, Tensor loss, Tensor? dlogits, Tensor gradScale, bool targeted, int rows, int cols);

    // ---------------------------------------------------------------- element-wise

    /// <summary>The element-wise ops that read two inputs and write one output, all of one length.</summary>
    protected enum BinaryOp { Add, Mul, Div, Greater, AddRelu }

    void Binary(string op, BinaryOp kind, Tensor a, Tensor b, Tensor y)
    {
        Same(op, a, b, y);
        Counters.Hit(op, y.Length);
        if (y.Length > 0) BinaryCore(kind, a, b, y);
    }
    protected abstract void BinaryCore(BinaryOp kind, Tensor a, Tensor b, Tensor y);

    public void Add(Tensor a, Tensor b, Tensor y) => Binary("add", BinaryOp.Add, a, b, y);
    public void Mul(Tensor a, Tensor b, Tensor y) => Binary("mul", BinaryOp.Mul, a, b, y);
    public void Div(Tensor a, Tensor b, Tensor y) => Binary("div", BinaryOp.Div, a, b, y);
    public void Greater(Tensor a, Tensor b, Tensor y) => Binary("greater", BinaryOp.Greater, a, b, y);

    public void AddRelu(Tensor a, Tensor b, Tensor y)
    {
        Same("add_relu", a, b, y);
        Counters.Hit("add_relu", 2L * y.Length);
        if (y.Length > 0) BinaryCore(BinaryOp.AddRelu, a, b, y);
    }

    public void Abs(Tensor x, Tensor y)
    {
        Same("abs", x, y);
        Counters.Hit("abs", y.Length);
        if (y.Length > 0) AbsCore(x, y);
    }
    protected abstract void AbsCore(Tensor x, Tensor y);

    public void Where(Tensor m, Tensor a, Tensor b, Tensor y, int rows, int cols)
    {
        const string op = "where";
        CheckRows(op, rows, cols, (a, "a"), (b, "b"), (y, "y"));
        Need(m, rows, op, "m");
        Counters.Hit(op, (long)rows * cols);
        if ((long)rows * cols > 0) WhereCore(m, a, b, y, rows, cols);
    }
    protected abstract void WhereCore(Tensor m, Tensor a, Tensor b, Tensor y, int rows, int cols);

    void RowBroadcast(string op, BinaryOp kind, Tensor x, Tensor v, Tensor y, int rows, int cols)
    {
        CheckRows(op, rows, cols, (x, "x"), (y, "y"));
        Need(v, rows, op, "v");
        Counters.Hit(op, (long)rows * cols);
        if ((long)rows * cols > 0) RowBroadcastCore(kind, x, v, y, rows, cols);
    }
    /// <summary>y[r, c] = x[r, c] op v[r] for op Add or Mul.</summary>
    protected abstract void RowBroadcastCore(BinaryOp kind, Tensor x, Tensor v, Tensor y, int rows, int cols);

    public void MulRows(Tensor x, Tensor v, Tensor y, int rows, int cols) => RowBroadcast("mul_rows", BinaryOp.Mul, x, v, y, rows, cols);
    public void AddRows(Tensor x, Tensor v, Tensor y, int rows, int cols) => RowBroadcast("add_rows", BinaryOp.Add, x, v, y, rows, cols);

    public void Axpy(float alpha, Tensor x, Tensor y)
    {
        Same("axpy", x, y);
        Counters.Hit("axpy", 2L * y.Length);
        if (y.Length > 0) AxpyCore(alpha, x, y);
    }
    protected abstract void AxpyCore(float alpha, Tensor x, Tensor y);

    public void Scale(float alpha, Tensor x, Tensor y)
    {
        Same("scale", x, y);
        Counters.Hit("scale", y.Length);
        if (y.Length > 0) ScaleCore(alpha, x, y);
    }
    protected abstract void ScaleCore(float alpha, Tensor x, Tensor y);

    public void Clamp(Tensor x, float lo, float hi, Tensor y)
    {
        Same("clamp", x, y);
        Counters.Hit("clamp", y.Length);
        if (y.Length > 0) ClampCore(x, lo, hi, y);
    }
    protected abstract void ClampCore(Tensor x, float lo, float hi, Tensor y);

    public void Sign(Tensor x, Tensor y)
    {
        Same("sign", x, y);
        Counters.Hit("sign", y.Length);
        if (y.Length > 0) SignCore(x, y);
    }
    protected abstract void SignCore(Tensor x, Tensor y);

    public void Lerp(Tensor a, Tensor b, float t, Tensor y)
    {
        Same("lerp", a, b, y);
        Counters.Hit("lerp", 3L * y.Length);
        if (y.Length > 0) LerpCore(a, b, t, y);
    }
    protected abstract void LerpCore(Tensor a, Tensor b, float t, Tensor y);

    public void ChannelCopy(Tensor src, int srcC, int srcOff, Tensor dst, int dstC, int dstOff, int count, int outer, int inner, bool accumulate)
    {
        const string op = "channel_copy";
        NonNegative(op, (outer, "outer"), (inner, "inner"));
        if (srcOff < 0 || dstOff < 0 || count < 0 || srcOff + count > srcC || dstOff + count > dstC)
            throw new ArgumentException($"{op}: channels [{srcOff},{srcOff + count}) of {srcC} into [{dstOff},{dstOff + count}) of {dstC} out of range");
        Need(src, (long)outer * srcC * inner, op, "src"); Need(dst, (long)outer * dstC * inner, op, "dst");
        long n = (long)outer * count * inner;
        Counters.Hit(op, n);
        if (n > 0) ChannelCopyCore(src, srcC, srcOff, dst, dstC, dstOff, count, outer, inner, accumulate);
    }
    protected abstract void ChannelCopyCore(Tensor src, int srcC, int srcOff, Tensor dst, int dstC, int dstOff, int count, int outer, int inner, bool accumulate);

    // ---------------------------------------------------------------- per-sample reductions

    public void ReduceRows(Reduction kind, Tensor x, Tensor outp, int rows, int cols)
    {
        const string op = "reduce";
        if (!Enum.IsDefined(kind)) throw new ArgumentException($"{op}: unknown reduction {kind}");
        CheckRows(op, rows, cols, (x, "x"));
        Need(outp, rows, op, "outp");
        Counters.Hit(op, (long)rows * cols);
        if (rows > 0) ReduceRowsCore(kind, x, outp, rows, cols);
    }
    protected abstract void ReduceRowsCore(Reduction kind, Tensor x, Tensor outp, int rows, int cols);

    public void ArgmaxRows(Tensor x, Tensor outp, int rows, int cols)
    {
        const string op = "argmax";
        CheckRows(op, rows, cols, (x, "x"));
        Need(outp, rows, op, "outp");
        Counters.Hit(op, (long)rows * cols);
        if (rows > 0) ArgmaxRowsCore(x, outp, rows, cols);
    }
    protected abstract void ArgmaxRowsCore(Tensor x, Tensor outp, int rows, int cols);

    // ---------------------------------------------------------------- random

    public void RandomUniform(Tensor t, ulong seed, ulong offset)
    {
        Own(t, "rand_uniform");
        Counters.Hit("rand_uniform", t.Length);
        if (t.Length > 0) RandomUniformCore(t, seed, offset);
    }
    protected abstract void RandomUniformCore(Tensor t, ulong seed, ulong offset);

    public void RandomNormal(Tensor t, ulong seed, ulong offset, float mean = 0f, float std = 1f)
    {
        Own(t, "rand_normal");
        Counters.Hit("rand_normal", t.Length);
        if (t.Length > 0) RandomNormalCore(t, seed, offset, mean, std);
    }
    protected abstract void RandomNormalCore(Tensor t, ulong seed, ulong offset, float mean, float std);

    public void DropoutForward(Tensor x, Tensor y, Tensor mask, float p, ulong seed, ulong offset)
    {
        const string op = "dropout";
        if (!(p >= 0f && p <= 1f)) throw new ArgumentException($"{op}: probability p = {p} is not in [0, 1]");
        Same(op, x, y, mask);
        Counters.Hit(op, x.Length);
        if (x.Length > 0) DropoutForwardCore(x, y, mask, p, seed, offset);
    }
    protected abstract void DropoutForwardCore(Tensor x, Tensor y, Tensor mask, float p, ulong seed, ulong offset);

    // ---------------------------------------------------------------- optimisers

    public void SgdUpdate(Tensor w, Tensor g, Tensor v, float lr, float momentum, float weightDecay, bool nesterov)
    {
        Same("sgd", w, g, v);
        Counters.Hit("sgd", 5L * w.Length);
        if (w.Length > 0) SgdUpdateCore(w, g, v, lr, momentum, weightDecay, nesterov);
    }
    protected abstract void SgdUpdateCore(Tensor w, Tensor g, Tensor v, float lr, float momentum, float weightDecay, bool nesterov);

    public void AdamUpdate(Tensor w, Tensor g, Tensor m, Tensor v, float lr, float beta1, float beta2, float eps, float weightDecay, int step)
    {
        if (step < 1) throw new ArgumentException($"adam: step must start at 1, got {step}");
        Same("adam", w, g, m, v);
        Counters.Hit("adam", 12L * w.Length);
        if (w.Length > 0) AdamUpdateCore(w, g, m, v, lr, beta1, beta2, eps, weightDecay, step);
    }
    protected abstract void AdamUpdateCore(Tensor w, Tensor g, Tensor m, Tensor v, float lr, float beta1, float beta2, float eps, float weightDecay, int step);

    // ---------------------------------------------------------------- fused attack steps

    void CheckStep(string op, Tensor xadv, Tensor x0, Tensor grad, Tensor step, Tensor eps, int rows, int cols)
    {
        CheckRows(op, rows, cols, (xadv, "xadv"), (x0, "x0"), (grad, "grad"));
        Need(step, rows, op, "step"); Need(eps, rows, op, "eps");
    }

    public void AttackStepLinf(Tensor xadv, Tensor x0, Tensor grad, Tensor step, Tensor eps, int rows, int cols)
    {
        const string op = "attack_step_linf";
        CheckStep(op, xadv, x0, grad, step, eps, rows, cols);
        Counters.Hit(op, 6L * rows * cols);
        if ((long)rows * cols > 0) AttackStepLinfCore(xadv, x0, grad, step, eps, rows, cols);
    }
    protected abstract void AttackStepLinfCore(Tensor xadv, Tensor x0, Tensor grad, Tensor step, Tensor eps, int rows, int cols);

    public void AttackStepL2(Tensor xadv, Tensor x0, Tensor grad, Tensor step, Tensor eps, int rows, int cols)
    {
        const string op = "attack_step_l2";
        CheckStep(op, xadv, x0, grad, step, eps, rows, cols);
        Counters.Hit(op, 10L * rows * cols);
        if (rows > 0) AttackStepL2Core(xadv, x0, grad, step, eps, rows, cols);
    }
    protected abstract void AttackStepL2Core(Tensor xadv, Tensor x0, Tensor grad, Tensor step, Tensor eps, int rows, int cols);

    public void JsmaStep(Tensor alpha, Tensor beta, Tensor domain, Tensor running, Tensor adv, Tensor changed, float theta, int rows, int d)
    {
        const string op = "jsma_step";
        NonNegative(op, (rows, "rows"), (d, "d"));
        long len = (long)rows * d;
        NeedRead(alpha, len, op, "alpha"); NeedRead(beta, len, op, "beta");
        Need(domain, len, op, "domain"); Need(adv, len, op, "adv"); Need(running, rows, op, "running"); Need(changed, rows, op, "changed");
        if (!(theta != 0f && float.IsFinite(theta))) throw new ArgumentException($"{op}: theta = {theta} must be finite and non-zero");
        Counters.Hit(op, 2L * rows * d * d);
        if (len > 0) JsmaStepCore(alpha, beta, domain, running, adv, changed, theta, rows, d);
    }
    protected abstract void JsmaStepCore(Tensor alpha, Tensor beta, Tensor domain, Tensor running, Tensor adv, Tensor changed, float theta, int rows, int d);

    // ---------------------------------------------------------------- geometric warps

    void CheckWarp(string op, Tensor src, Tensor dst, int planes, int h, int w, in WarpMap map, string srcName, string dstName)
    {
        NonNegative(op, (planes, "planes"), (h, "h"), (w, "w"));
        long len = (long)planes * h * w;
        Need(src, len, op, srcName); Need(dst, len, op, dstName);
        if (ReferenceEquals(src.Storage, dst.Storage) && src.Offset < dst.Offset + len && dst.Offset < src.Offset + len && len > 0)
            throw new ArgumentException($"{op}: {srcName} and {dstName} overlap");
        double det = map.Det;
        if (!(float.IsFinite(map.A) && float.IsFinite(map.B) && float.IsFinite(map.C) && float.IsFinite(map.D) && float.IsFinite(map.E) && float.IsFinite(map.F))
            || !(Math.Abs(det) > 1e-12) || !double.IsFinite(1 / det))
            throw new ArgumentException($"{op}: the map ({map.A}, {map.B}, {map.C}; {map.D}, {map.E}, {map.F}) is not an invertible finite affine map");
    }

    public void WarpAffine(Tensor x, Tensor y, int planes, int h, int w, in WarpMap map, float alpha, float beta)
    {
        const string op = "warp_affine";
        CheckWarp(op, x, y, planes, h, w, map, "x", "y");
        long n = (long)planes * h * w;
        Counters.Hit(op, 8 * n);
        if (n > 0) WarpAffineCore(x, y, planes, h, w, map.Coefs(), alpha, beta);
    }
    protected abstract void WarpAffineCore(Tensor x, Tensor y, int planes, int h, int w, in Perturb.Kernels.WarpCoefs m, float alpha, float beta);

    public void WarpAffineAdjoint(Tensor dy, Tensor dx, int planes, int h, int w, in WarpMap map, float alpha, float beta)
    {
        const string op = "warp_affine_adjoint";
        CheckWarp(op, dy, dx, planes, h, w, map, "dy", "dx");
        long n = (long)planes * h * w;
        Counters.Hit(op, 8 * n);
        if (n > 0) WarpAffineAdjointCore(dy, dx, planes, h, w, map.Coefs(), alpha, beta);
    }
    protected abstract void WarpAffineAdjointCore(Tensor dy, Tensor dx, int planes, int h, int w, in Perturb.Kernels.WarpCoefs m, float alpha, float beta);

    // ---------------------------------------------------------------- candidate images (search attacks)

    public void ScatterRows(Tensor x, Tensor src, Tensor idx, Tensor val, Tensor y, int images, int rows, int cols, int edits)
    {
        const string op = "scatter_rows";
        NonNegative(op, (images, "images"), (rows, "rows"), (cols, "cols"), (edits, "edits"));
        NeedRead(x, (long)images * cols, op, "x"); NeedRead(src, rows, op, "src");
        NeedRead(idx, (long)rows * edits, op, "idx"); NeedRead(val, (long)rows * edits, op, "val");
        long len = (long)rows * cols;
        Need(y, len, op, "y");
        long xl = (long)images * cols;
        if (ReferenceEquals(x.Storage, y.Storage) && x.Offset < y.Offset + len && y.Offset < x.Offset + xl && len > 0 && xl > 0)
            throw new ArgumentException($"{op}: x and y overlap");
        Counters.Hit(op, (long)rows * (cols + edits));
        if (len > 0) ScatterRowsCore(x, src, idx, val, y, images, rows, cols, edits);
    }
    protected abstract void ScatterRowsCore(Tensor x, Tensor src, Tensor idx, Tensor val, Tensor y, int images, int rows, int cols, int edits);

    // ---------------------------------------------------------------- adversarial patch

    void CheckPatch(string op, Tensor patch, Tensor mask, Tensor place, Tensor x, int n, int c, int h, int w, int size, string patchName, string xName)
    {
        NonNegative(op, (n, "n"), (c, "c"), (h, "h"), (w, "w"), (size, "size"));
        long pl = (long)c * size * size, xl = (long)n * c * h * w;
        NeedRead(mask, (long)size * size, op, "mask"); NeedRead(place, 5L * n, op, "place");
        NeedRead(patch, pl, op, patchName); NeedRead(x, xl, op, xName);
        if (ReferenceEquals(patch.Storage, x.Storage) && patch.Offset < x.Offset + xl && x.Offset < patch.Offset + pl && pl > 0 && xl > 0)
            throw new ArgumentException($"{op}: {patchName} and {xName} overlap");
    }

    public void PatchApply(Tensor patch, Tensor mask, Tensor place, Tensor x, int n, int c, int h, int w, int size)
    {
        const string op = "patch_apply";
        CheckPatch(op, patch, mask, place, x, n, c, h, w, size, "patch", "x");
        if (ReferenceEquals(mask.Storage, x.Storage)) throw new ArgumentException($"{op}: mask and x share storage");
        Own(x, op);
        long px = (long)n * h * w;
        Counters.Hit(op, 12 * px);
        if (px > 0 && c > 0 && size > 0) PatchApplyCore(patch, mask, place, x, n, c, h, w, size);
    }
    protected abstract void PatchApplyCore(Tensor patch, Tensor mask, Tensor place, Tensor x, int n, int c, int h, int w, int size);

    public void PatchApplyAdjoint(Tensor dx, Tensor mask, Tensor place, Tensor dpatch, int n, int c, int h, int w, int size)
    {
        const string op = "patch_apply_adjoint";
        CheckPatch(op, dpatch, mask, place, dx, n, c, h, w, size, "dpatch", "dx");
        Own(dpatch, op);
        long pv = (long)c * size * size;
        Counters.Hit(op, 16 * n * pv);
        if (pv > 0) PatchApplyAdjointCore(dx, mask, place, dpatch, n, c, h, w, size);
    }
    protected abstract void PatchApplyAdjointCore(Tensor dx, Tensor mask, Tensor place, Tensor dpatch, int n, int c, int h, int w, int size);
}
