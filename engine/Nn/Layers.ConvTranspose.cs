using System.Text.Json.Nodes;

namespace Perturb.Engine.Nn;

/// <summary>
/// 2-D transposed convolution, PyTorch's <c>ConvTranspose2d</c>: weight [Cin, Cout/groups, R, S], stride, padding,
/// output_padding, dilation, groups, optional bias; stride, padding, output_padding and dilation may differ between H
/// and W (the *W settings; by default equal to the H ones). Output size per axis:
/// Hout = (H - 1)*stride - 2*padding + dilation*(R - 1) + output_padding + 1 (output_padding &lt; stride on that axis).
///
/// It is the adjoint of a convolution, so it is built from the three convolution ops with the roles swapped. Let
/// conv be the convolution from [Cout, Hout, Wout] to [Cin, H, W] with the same kernel, stride, padding, dilation and
/// groups (its weight [K = Cin, C/G = Cout/G, R, S] is exactly this layer's weight):
/// forward y = conv^T(x) is ConvBackwardData(conv, dy: x, w, dx: y); the input gradient dx = conv(dy) is ConvForward;
/// the weight gradient is ConvBackwardWeights(conv, x: dy, dy: x); the bias gradient sums dy over N, Hout, Wout.
/// </summary>
public sealed class ConvTranspose2d : ConvLayerBase
{
    public int OutputPadding { get; }
    public int OutputPaddingW { get; init; }

    public ConvTranspose2d(int inChannels, int outChannels, int kernel, int stride = 1, int padding = 0, int outputPadding = 0,
        int dilation = 1, int groups = 1, bool bias = true, int kernelW = -1)
        : base("ConvTranspose2d", inChannels, outChannels, kernel, stride, padding, dilation, groups, bias, kernelW,
            $" output_padding={outputPadding}", outputPadding >= 0)
    {
        if (outputPadding >= stride)
            throw new PerturbException($"ConvTranspose2d: output_padding {outputPadding} must be smaller than stride {stride}");
        OutputPadding = outputPadding; OutputPaddingW = outputPadding;
    }

    public override string Type => "ConvTranspose2d";

    static int OutSize(int inSize, int k, int stride, int pad, int dil, int outPad) => (inSize - 1) * stride - 2 * pad + dil * (k - 1) + outPad + 1;

    /// <summary>The adjoint convolution: from this layer's output [Cout, Hout, Wout] to its input [Cin, H, W].</summary>
    ConvShape ShapeFor(int n) => new(n, OutChannels, OutShape[1], OutShape[2], InChannels, KernelH, KernelW,
        Stride, StrideW, Padding, PaddingW, Dilation, DilationW, Groups);

    protected override int[] BuildCore(IBackend be, int[][] inShapes, ulong seed)
    {
        var s = inShapes[0];
        if (s.Length != 3 || s[0] != InChannels) throw ShapeError($"{InChannels}xHxW", s);
        if (StrideW <= 0 || PaddingW < 0 || OutputPaddingW < 0 || DilationW <= 0 || OutputPaddingW >= StrideW)
            throw new PerturbException($"layer '{Name}' (ConvTranspose2d): invalid W settings stride={StrideW} pad={PaddingW} output_padding={OutputPaddingW} dil={DilationW} (output_padding must be smaller than stride)");
        int oh = OutSize(s[1], KernelH, Stride, Padding, Dilation, OutputPadding), ow = OutSize(s[2], KernelW, StrideW, PaddingW, DilationW, OutputPaddingW);
        if (oh <= 0 || ow <= 0)
            throw new PerturbException($"layer '{Name}' (ConvTranspose2d) input {Tensor.ShapeString(s)} gives an empty output {oh}x{ow} (padding {Padding}/{PaddingW} too large)");
        // PyTorch's default initialisation: fan_in is computed from weight.size(1) * R * S = Cout/G * R * S.
        int fanIn = OutChannels / Groups * KernelH * KernelW;
        float bound = 1f / MathF.Sqrt(fanIn);
        Weight = AddParam("weight", be.FromArray(UniformInit(InChannels * fanIn, bound, seed, InitHash.Stream(Name + ".weight")), InChannels, OutChannels / Groups, KernelH, KernelW));
        if (HasBias) Bias = AddParam("bias", be.FromArray(UniformInit(OutChannels, bound, seed, InitHash.Stream(Name + ".bias")), OutChannels), decay: false);
        return new[] { OutChannels, oh, ow };
    }

    public override Tensor Forward(PassContext c, Tensor[] x)
    {
        CheckInput(x[0], 0);
        _x = x[0];
        _s = ShapeFor(x[0].N);
        var y = c.Alloc(Batch(_s.N, OutShape));
        c.Be.ConvBackwardData(_s, _x, Weight.Value, y);
        if (Bias != null) c.Be.BiasAdd(y, Bias.Value, _s.N, OutChannels, OutShape[1] * OutShape[2]);
        return y;
    }

    public override Tensor?[] Backward(PassContext c, Tensor dy, bool weights, bool[] needDx)
    {
        Tensor? dx = null;
        if (needDx[0])
        {
            dx = c.Alloc(_x!.Shape);
            c.Be.ConvForward(_s, dy, Weight.Value, null, dx);
        }
        if (weights)
        {
            c.Be.ConvBackwardWeights(_s, dy, _x!, Weight.EnsureGrad(), null);
            if (Bias != null) c.Be.BiasGrad(dy, Bias.EnsureGrad(), _s.N, OutChannels, OutShape[1] * OutShape[2]);
        }
        return new[] { dx };
    }

    public override JsonObject Config() => new()
    {
        ["in_channels"] = InChannels, ["out_channels"] = OutChannels, ["kernel"] = KernelH, ["kernel_w"] = KernelW,
        ["stride"] = Stride, ["stride_w"] = StrideW, ["padding"] = Padding, ["padding_w"] = PaddingW,
        ["output_padding"] = OutputPadding, ["output_padding_w"] = OutputPaddingW,
        ["dilation"] = Dilation, ["dilation_w"] = DilationW, ["groups"] = Groups, ["bias"] = HasBias,
    };

    internal static ConvTranspose2d FromConfig(JsonObject o) =>
        new(o.I("in_channels"), o.I("out_channels"), o.I("kernel"), o.I("stride", 1), o.I("padding", 0), o.I("output_padding", 0),
            o.I("dilation", 1), o.I("groups", 1), o.B("bias", true), o.I("kernel_w", -1))
        {
            StrideW = o.I("stride_w", o.I("stride", 1)), PaddingW = o.I("padding_w", o.I("padding", 0)),
            OutputPaddingW = o.I("output_padding_w", o.I("output_padding", 0)), DilationW = o.I("dilation_w", o.I("dilation", 1)),
        };
}
