using System.Text.Json.Nodes;

namespace Perturb.Engine.Nn;

/// <summary>
/// 2-D transposed convolution, PyTorch's <c>ConvTranspose2d</c>: weight [Cin, Cout/groups, R, S], stride, padding,
/// output_padding, dilation, groups, optional bias. Output size per axis:
/// Hout = (H - 1)*stride - 2*padding + dilation*(R - 1) + output_padding + 1 (output_padding &lt; max(stride, dilation)).
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

    public ConvTranspose2d(int inChannels, int outChannels, int kernel, int stride = 1, int padding = 0, int outputPadding = 0,
        int dilation = 1, int groups = 1, bool bias = true, int kernelW = -1)
        : base("ConvTranspose2d", inChannels, outChannels, kernel, stride, padding, dilation, groups, bias, kernelW,
            $" output_padding={outputPadding}", outputPadding >= 0)
    {
        if (outputPadding >= stride)
            throw new PerturbException($"ConvTranspose2d: output_padding {outputPadding} must be smaller than stride {stride}");
        OutputPadding = outputPadding;
    }

    public override string Type => "ConvTranspose2d";

    int OutSize(int inSize, int k) => (inSize - 1) * Stride - 2 * Padding + Dilation * (k - 1) + OutputPadding + 1;

    /// <summary>The adjoint convolution: from this layer's output [Cout, Hout, Wout] to its input [Cin, H, W].</summary>
    ConvShape ShapeFor(int n) => new(n, OutChannels, OutShape[1], OutShape[2], InChannels, KernelH, KernelW,
        Stride, Stride, Padding, Padding, Dilation, Dilation, Groups);

    protected override int[] BuildCore(IBackend be, int[][] inShapes, ulong seed)
    {
        var s = inShapes[0];
        if (s.Length != 3 || s[0] != InChannels) throw ShapeError($"{InChannels}xHxW", s);
        int oh = OutSize(s[1], KernelH), ow = OutSize(s[2], KernelW);
        if (oh <= 0 || ow <= 0)
            throw new PerturbException($"layer '{Name}' (ConvTranspose2d) input {Tensor.ShapeString(s)} gives an empty output (padding {Padding} too large)");
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
        ["stride"] = Stride, ["padding"] = Padding, ["output_padding"] = OutputPadding,
        ["dilation"] = Dilation, ["groups"] = Groups, ["bias"] = HasBias,
    };

    internal static ConvTranspose2d FromConfig(JsonObject o) =>
        new(o.I("in_channels"), o.I("out_channels"), o.I("kernel"), o.I("stride", 1), o.I("padding", 0), o.I("output_padding", 0),
            o.I("dilation", 1), o.I("groups", 1), o.B("bias", true), o.I("kernel_w", -1));
}
