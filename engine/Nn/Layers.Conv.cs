using System.Text.Json.Nodes;

namespace Perturb.Engine.Nn;

internal static class InitHash
{
    /// <summary>FNV-1a of a name: a stable Philox stream per parameter, so adding a layer never shifts another's weights.</summary>
    public static ulong Stream(string name)
    {
        uint h = 2166136261;
        foreach (char ch in name) { h ^= ch; h *= 16777619; }
        return h;
    }
}

/// <summary>
/// What a convolution and a transposed convolution share: channels, kernel, stride, padding, dilation, groups and
/// bias, checked once here, and the weight and bias parameters.
/// </summary>
public abstract class ConvLayerBase : Layer
{
    public int InChannels { get; }
    public int OutChannels { get; }
    public int KernelH { get; }
    public int KernelW { get; }
    public int Stride { get; }
    public int Padding { get; }
    public int Dilation { get; }
    public int Groups { get; }
    public bool HasBias { get; }
    /// <summary>Asymmetric settings (ONNX import, model files); default to the symmetric ones above.</summary>
    public int StrideW { get; init; }
    public int PaddingW { get; init; }
    public int DilationW { get; init; }
    public Parameter Weight { get; protected set; } = null!;
    public Parameter? Bias { get; protected set; }
    protected Tensor? _x;
    protected ConvShape _s;

    /// <param name="type">The layer type, for errors.</param>
    /// <param name="extra">Further settings for the error text (e.g. " output_padding=1").</param>
    /// <param name="extraValid">Whether those further settings are valid.</param>
    protected ConvLayerBase(string type, int inChannels, int outChannels, int kernel, int stride, int padding, int dilation, int groups, bool bias,
        int kernelW, string extra = "", bool extraValid = true)
    {
        if (inChannels <= 0 || outChannels <= 0 || kernel <= 0 || stride <= 0 || padding < 0 || dilation <= 0 || groups <= 0 || !extraValid)
            throw new PerturbException($"{type}: invalid settings in={inChannels} out={outChannels} k={kernel} stride={stride} pad={padding}{extra} dil={dilation} groups={groups}");
        if (inChannels % groups != 0 || outChannels % groups != 0)
            throw new PerturbException($"{type}: groups={groups} must divide in channels {inChannels} and out channels {outChannels}");
        InChannels = inChannels; OutChannels = outChannels; KernelH = kernel; KernelW = kernelW > 0 ? kernelW : kernel;
        Stride = stride; Padding = padding; Dilation = dilation; Groups = groups; HasBias = bias;
        StrideW = stride; PaddingW = padding; DilationW = dilation;
    }
}

/// <summary>2-D convolution: stride, padding, dilation, groups (depthwise when groups == in channels), optional bias.</summary>
public sealed class Conv2d : ConvLayerBase
{
    public Conv2d(int inChannels, int outChannels, int kernel, int stride = 1, int padding = 0, int dilation = 1, int groups = 1, bool bias = true, int kernelW = -1)
        : base("Conv2d", inChannels, outChannels, kernel, stride, padding, dilation, groups, bias, kernelW)
    {
    }

    public override string Type => "Conv2d";

    ConvShape ShapeFor(int n) => new(n, InChannels, InShapes[0][1], InShapes[0][2], OutChannels, KernelH, KernelW,
        Stride, StrideW, Padding, PaddingW, Dilation, DilationW, Groups);

    protected override int[] BuildCore(IBackend be, int[][] inShapes, ulong seed)
    {
        var s = inShapes[0];
        if (s.Length != 3 || s[0] != InChannels) throw ShapeError($"{InChannels}xHxW", s);
        var cs = new ConvShape(1, InChannels, s[1], s[2], OutChannels, KernelH, KernelW, Stride, StrideW, Padding, PaddingW, Dilation, DilationW, Groups);
        if (cs.OutH <= 0 || cs.OutW <= 0)
            throw new PerturbException($"layer '{Name}' (Conv2d) input {Tensor.ShapeString(s)} is too small for a {KernelH}x{KernelW} kernel (dilation {Dilation}, padding {Padding})");
        ExpectParam("weight", OutChannels, InChannels / Groups, KernelH, KernelW);
        if (HasBias) ExpectParam("bias", OutChannels);
        int fanIn = checked(InChannels / Groups * KernelH * KernelW);
        float bound = 1f / MathF.Sqrt(fanIn);
        int wn = checked(OutChannels * fanIn);
        Weight = AddParam("weight", be.FromArray(UniformInit(wn, bound, seed, InitHash.Stream(Name + ".weight")), OutChannels, InChannels / Groups, KernelH, KernelW));
        if (HasBias) Bias = AddParam("bias", be.FromArray(UniformInit(OutChannels, bound, seed, InitHash.Stream(Name + ".bias")), OutChannels), decay: false);
        return new[] { OutChannels, cs.OutH, cs.OutW };
    }

    public override Tensor Forward(PassContext c, Tensor[] x)
    {
        CheckInput(x[0], 0);
        _x = x[0];
        _s = ShapeFor(x[0].N);
        var y = c.AllocOutput(Batch(_s.N, OutShape));
        if (FoldedNorm != null) EnsureFolded(c);
        c.Be.ConvForward(_s, _x, _foldW ?? Weight.Value, FoldedNorm != null ? _foldB : Bias?.Value, y, FusedRelu);
        _y = FusedRelu ? y : null;
        return y;
    }

    public override Tensor?[] Backward(PassContext c, Tensor dy, bool weights, bool[] needDx)
    {
        if ((FoldedNorm != null || FusedRelu) && weights)
            throw new InvalidOperationException($"layer '{Name}': weight gradients through an eval-mode fold (the model re-runs its forward unfolded first)");
        Tensor? dx = null;
        if (needDx[0])
        {
            var g = dy;
            if (FusedRelu)
            {
                // The ReLU's mask is the fused output's sign: max(z, 0) > 0 exactly where z > 0.
                g = c.AllocOutput(dy.Shape);
                c.Be.ActivationBackward(Activation.Relu, 0f, _y, null, dy, g);
            }
            dx = c.AllocOutput(_x!.Shape);
            c.Be.ConvBackwardData(_s, g, _foldW ?? Weight.Value, dx);
            if (!ReferenceEquals(g, dy)) c.Free(g.Storage);   // the masked gradient: a spare for the next node
        }
        if (weights)
            c.Be.ConvBackwardWeights(_s, _x!, dy, Weight.EnsureGrad(), Bias?.EnsureGrad());
        return new[] { dx };
    }

    // ---------------------------------------------------------------- eval-mode folding (set by Model)

    /// <summary>The BatchNorm folded into this convolution in eval mode; its node then passes this output through.</summary>
    internal BatchNorm2d? FoldedNorm { get; private set; }
    /// <summary>Whether the ReLU after this convolution (or after its folded BatchNorm) runs in its epilogue.</summary>
    internal bool FusedRelu { get; private set; }
    internal bool IsFused => FoldedNorm != null || FusedRelu;
    Tensor? _y, _foldW, _foldB;
    long[]? _foldKey;

    internal void SetFold(BatchNorm2d? norm, bool relu)
    {
        if (!ReferenceEquals(norm, FoldedNorm)) DropFold();
        FoldedNorm = norm; FusedRelu = relu;
    }

    /// <summary>Frees the folded weights (they are rebuilt on the next folded forward).</summary>
    internal void DropFold()
    {
        _foldW?.Dispose(); _foldB?.Dispose();
        _foldW = _foldB = null; _foldKey = null;
    }

    long[] FoldKey(PassContext c, BatchNorm2d bn) => new[]
    {
        c.ParamVersion, Weight.Value.Version, Bias?.Value.Version ?? -1, bn.Gamma.Value.Version, bn.Beta.Value.Version,
        bn.RunningMean.Value.Version, bn.RunningVar.Value.Version,
    };

    /// <summary>
    /// W'[k] = W[k] * a[k], b'[k] = (b[k] - mean[k]) * a[k] + beta[k], a[k] = gamma[k] / sqrt(var[k] + eps), in
    /// double: conv(x, W') + b' equals BatchNorm(conv(x, W) + b) in eval mode. Rebuilt when any of the tensors it
    /// reads has been written since (their versions) or the model's parameters were marked changed.
    /// </summary>
    void EnsureFolded(PassContext c)
    {
        var bn = FoldedNorm!;
        if (_foldW != null && _foldKey!.SequenceEqual(FoldKey(c, bn))) return;
        var w = Weight.Value.ToArray();
        var b = Bias?.Value.ToArray();
        var g = bn.Gamma.Value.ToArray(); var be = bn.Beta.Value.ToArray();
        var m = bn.RunningMean.Value.ToArray(); var v = bn.RunningVar.Value.ToArray();
        int per = w.Length / OutChannels;
        var fw = new float[w.Length]; var fb = new float[OutChannels];
        for (int k = 0; k < OutChannels; k++)
        {
            double a = g[k] / Math.Sqrt((double)v[k] + bn.Eps);
            for (int i = k * per; i < (k + 1) * per; i++) fw[i] = (float)(w[i] * a);
            fb[k] = (float)(((b?[k] ?? 0.0) - m[k]) * a + be[k]);
        }
        DropFold();
        _foldW = c.Be.FromArray(fw, Weight.Value.Shape);
        _foldB = c.Be.FromArray(fb, OutChannels);
        _foldKey = FoldKey(c, bn);
    }

    public override JsonObject Config() => new()
    {
        ["in_channels"] = InChannels, ["out_channels"] = OutChannels, ["kernel"] = KernelH, ["kernel_w"] = KernelW,
        ["stride"] = Stride, ["stride_w"] = StrideW, ["padding"] = Padding, ["padding_w"] = PaddingW,
        ["dilation"] = Dilation, ["dilation_w"] = DilationW, ["groups"] = Groups, ["bias"] = HasBias,
    };

    internal static Conv2d FromConfig(JsonObject o) =>
        new(o.I("in_channels"), o.I("out_channels"), o.I("kernel"), o.I("stride", 1), o.I("padding", 0), o.I("dilation", 1), o.I("groups", 1), o.B("bias", true), o.I("kernel_w", -1))
        {
            StrideW = o.I("stride_w", o.I("stride", 1)), PaddingW = o.I("padding_w", o.I("padding", 0)), DilationW = o.I("dilation_w", o.I("dilation", 1)),
        };
}

/// <summary>Fully connected: y = x W^T + b, x of shape [N, In], W of shape [Out, In].</summary>
public sealed class Linear : Layer
{
    public int In { get; }
    public int Out { get; }
    public bool HasBias { get; }
    public Parameter Weight { get; private set; } = null!;
    public Parameter? Bias { get; private set; }
    Tensor? _x;

    public Linear(int inFeatures, int outFeatures, bool bias = true)
    {
        if (inFeatures <= 0 || outFeatures <= 0) throw new PerturbException($"Linear: invalid sizes {inFeatures} -> {outFeatures}");
        In = inFeatures; Out = outFeatures; HasBias = bias;
    }

    public override string Type => "Linear";

    protected override int[] BuildCore(IBackend be, int[][] inShapes, ulong seed)
    {
        var s = inShapes[0];
        if (s.Length == 0 || s[^1] != In) throw ShapeError($"{In} (or [..., {In}]: the last axis)", s);
        ExpectParam("weight", Out, In);
        if (HasBias) ExpectParam("bias", Out);
        float bound = 1f / MathF.Sqrt(In);
        Weight = AddParam("weight", be.FromArray(UniformInit(checked(Out * In), bound, seed, InitHash.Stream(Name + ".weight")), Out, In));
        if (HasBias) Bias = AddParam("bias", be.FromArray(UniformInit(Out, bound, seed, InitHash.Stream(Name + ".bias")), Out), decay: false);
        var o = (int[])s.Clone(); o[^1] = Out;
        return o;
    }

    // Rows of the product: every position of the leading axes (the batch for [N, In]; N*T for [N, T, In]).
    public override Tensor Forward(PassContext c, Tensor[] x)
    {
        CheckInput(x[0], 0);
        _x = x[0];
        int n = _x.Length / In;
        var y = c.AllocOutput(Batch(_x.N, OutShape));
        c.Be.Gemm(false, true, n, Out, In, 1f, _x, Weight.Value, 0f, y);
        if (Bias != null) c.Be.BiasAdd(y, Bias.Value, n, Out, 1);
        return y;
    }

    public override Tensor?[] Backward(PassContext c, Tensor dy, bool weights, bool[] needDx)
    {
        int n = _x!.Length / In;
        Tensor? dx = null;
        if (needDx[0])
        {
            dx = c.AllocOutput(_x.Shape);
            c.Be.Gemm(false, false, n, In, Out, 1f, dy, Weight.Value, 0f, dx);
        }
        if (weights)
        {
            c.Be.Gemm(true, false, Out, In, n, 1f, dy, _x, 0f, Weight.EnsureGrad());
            if (Bias != null) c.Be.BiasGrad(dy, Bias.EnsureGrad(), n, Out, 1);
        }
        return new[] { dx };
    }

    public override JsonObject Config() => new() { ["in"] = In, ["out"] = Out, ["bias"] = HasBias };
    internal static Linear FromConfig(JsonObject o) => new(o.I("in"), o.I("out"), o.B("bias", true));
}

internal static class JsonExt
{
    public static int I(this JsonObject o, string k, int? def = null)
    {
        if (o.TryGetPropertyValue(k, out var v) && v != null) return v.GetValue<int>();
        return def ?? throw new PerturbException($"layer config lacks '{k}'");
    }
    public static float F(this JsonObject o, string k, float? def = null)
    {
        if (o.TryGetPropertyValue(k, out var v) && v != null) return (float)v.GetValue<double>();
        return def ?? throw new PerturbException($"layer config lacks '{k}'");
    }
    public static bool B(this JsonObject o, string k, bool def) =>
        o.TryGetPropertyValue(k, out var v) && v != null ? v.GetValue<bool>() : def;
    public static float[] Fa(this JsonObject o, string k) =>
        (o[k] as JsonArray ?? throw new PerturbException($"layer config lacks '{k}'")).Select(v => (float)v!.GetValue<double>()).ToArray();
}
