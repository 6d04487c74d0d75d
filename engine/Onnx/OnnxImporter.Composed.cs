using Perturb.Engine.Nn;
using Perturb.Engine.Onnx.Proto;

namespace Perturb.Engine.Onnx;

/// <summary>
/// ONNX operators composed from general-tensor layers (each a device kernel on both backends): PRelu, MatMul of two
/// computed tensors, Resize and Upsample. Their gradients are those of the parts.
/// </summary>
sealed partial class Importer
{
    /// <summary>PRelu(x) = max(x, 0) + slope * min(x, 0), slope a constant broadcast onto x (one value or one per channel).</summary>
    void PReluOp(NodeProto n)
    {
        if (!_consts.TryGetValue(In(n, 1), out var slope)) throw Err(n, "the slope must be a constant");
        var x = Plain(n, 0);
        var pos = BindConstBinary(n, BroadcastOp.Max, x, Scalar1(0), false, NodeName(n) + "_pos", false);
        var neg = BindConstBinary(n, BroadcastOp.Min, x, Scalar1(0), false, NodeName(n) + "_neg", false);
        var scaled = BindConstBinary(n, BroadcastOp.Mul, neg, slope, false, NodeName(n) + "_scaled", false);
        if (!scaled.Shape.SequenceEqual(x.Shape)) throw Err(n, $"slope of shape {Tensor.ShapeString(slope.Dims)} does not broadcast onto [N, {string.Join(", ", x.Shape)}] without growing it");
        Emit(n, new AddLayer(), x.Shape, pos, scaled);
    }

    /// <summary>
    /// A [N, ..., m, k] times B [N, ..., k, p], both computed (batch axes broadcast NumPy's way): A as [..., m, k, 1] times
    /// B as [..., 1, k, p] (a broadcast Mul), summed over k. The [..., m, k, p] product is materialised.
    /// </summary>
    void MatMulComputed(NodeProto n)
    {
        var a = Plain(n, 0); var b = Plain(n, 1);
        if (a.Shape.Length < 2 || b.Shape.Length < 2)
            throw Err(n, $"a product of two computed tensors needs both of rank 3 or more (the batch, then matrices), got [N, {string.Join(", ", a.Shape)}] and [N, {string.Join(", ", b.Shape)}]");
        int r = Math.Max(a.Shape.Length, b.Shape.Length);
        var sa = Strided.PadLeft(a.Shape, r); var sb = Strided.PadLeft(b.Shape, r);
        int m = sa[r - 2], k = sa[r - 1], p = sb[r - 1];
        if (sb[r - 2] != k) throw Err(n, $"[N, {string.Join(", ", a.Shape)}] times [N, {string.Join(", ", b.Shape)}]: inner sizes {k} and {sb[r - 2]} differ");
        var ea = sa.Take(r - 2).Concat(new[] { m, k, 1 }).ToArray();
        var eb = sb.Take(r - 2).Concat(new[] { 1, k, p }).ToArray();
        var prod = Strided.BroadcastShape(ea, eb)
            ?? throw Err(n, $"the batch axes of [N, {string.Join(", ", a.Shape)}] and [N, {string.Join(", ", b.Shape)}] do not broadcast");
        var va = Part(n, "a", new ReshapeLayer(ea), ea, a);
        var vb = Part(n, "b", new ReshapeLayer(eb), eb, b);
        var mul = Part(n, "mul", new BinaryLayer(BroadcastOp.Mul), prod, va, vb);
        var outS = prod.Take(r - 2).Concat(new[] { m, p }).ToArray();
        Emit(n, new ReduceLayer(ReduceOp.Sum, new[] { r - 1 }, false), outS, mul);
    }

    /// <summary>
    /// Resize (opset 10+) and Upsample (before 10), nearest and linear, with every coordinate_transformation_mode
    /// PyTorch emits (half_pixel, pytorch_half_pixel, align_corners, asymmetric) and every nearest_mode. Separable: each
    /// resized axis is a Gather of the source positions (nearest), or w0 * Gather(i0) + w1 * Gather(i1) (linear).
    /// </summary>
    void ResizeOp(NodeProto n)
    {
        var x = Plain(n, 0);
        int r = x.Shape.Length + 1;
        bool upsample = n.OpType == "Upsample";
        string mode = AttrS(n, "mode", "nearest");
        string coord = upsample || _opset < 11 ? "asymmetric" : AttrS(n, "coordinate_transformation_mode", "half_pixel");
        string nearest = upsample || _opset < 11 ? "floor" : AttrS(n, "nearest_mode", "round_prefer_floor");
        if (mode is not ("nearest" or "linear" or "bilinear")) throw Err(n, $"mode '{mode}' is not supported (nearest and linear are)");
        if (coord is not ("half_pixel" or "pytorch_half_pixel" or "align_corners" or "asymmetric"))
            throw Err(n, $"coordinate_transformation_mode '{coord}' is not supported (half_pixel, pytorch_half_pixel, align_corners, asymmetric are)");
        if (nearest is not ("floor" or "ceil" or "round_prefer_floor" or "round_prefer_ceil")) throw Err(n, $"nearest_mode '{nearest}' is not known");
        if (AttrI(n, "exclude_outside", 0) != 0) throw Err(n, "exclude_outside is not supported");

        double[]? scales = null; double[]? sizes = null;
        Const? Opt(int i) => In(n, i).Length == 0 ? null
            : _consts.TryGetValue(In(n, i), out var c) ? c : throw Err(n, $"input {i} ({(i == 3 ? "sizes" : "scales")}) must be a constant");
        if (upsample && _opset < 9) scales = (Attr(n, "scales") ?? throw Err(n, "scales missing")).Floats.Select(v => (double)v).ToArray();
        else if (upsample || _opset < 11) scales = Opt(1)?.V;
        else { scales = Opt(2)?.V; sizes = Opt(3)?.V; }
        if (scales is { Length: 0 }) scales = null;
        if (sizes is { Length: 0 }) sizes = null;
        if ((scales ?? sizes) is not { } given) throw Err(n, "neither scales nor sizes is given");
        if (given.Length != r) throw Err(n, $"{(scales != null ? "scales" : "sizes")} has {given.Length} values for a rank-{r} input");
        if (scales != null && scales[0] != 1 || sizes != null && !double.IsNaN(sizes[0]) && sizes[0] <= 0)
            throw Err(n, "resizing the batch axis is not supported");

        var cur = x;
        for (int d = 1; d < r; d++)
        {
            int inD = x.Shape[d - 1];
            double scale; int outD;
            if (scales != null)
            {
                scale = scales[d];
                if (!(scale > 0)) throw Err(n, $"scale {scale} on axis {d} is not positive");
                outD = (int)Math.Floor(inD * scale);
            }
            else
            {
                outD = (int)sizes![d];
                scale = (double)outD / inD;
            }
            if (outD <= 0) throw Err(n, $"axis {d} would have {outD} positions");
            if (outD == inD && scale == 1) continue;
            var shape = (int[])cur.Shape.Clone(); shape[d - 1] = outD;
            string tag = $"ax{d}";
            if (mode == "nearest")
            {
                var ix = Enumerable.Range(0, outD).Select(j => Nearest(nearest, inD, Src(j, inD, outD, scale, coord))).ToArray();
                cur = Part(n, tag, new GatherLayer(d - 1, ix), shape, cur);
                continue;
            }
            var (i0, i1, w1) = Taps(inD, outD, scale, coord);
            var g0 = Part(n, tag + "_i0", new GatherLayer(d - 1, i0), shape, cur);
            if (w1.All(w => w == 0)) { cur = g0; continue; }
            var g1 = Part(n, tag + "_i1", new GatherLayer(d - 1, i1), shape, cur);
            var wd = Enumerable.Repeat(1, r).ToArray(); wd[d] = outD;
            var t0 = BindConstBinary(n, BroadcastOp.Mul, g0, new Const { Dims = wd, V = w1.Select(w => 1 - w).ToArray() }, false, NodeName(n) + "_" + tag + "_w0", false);
            var t1 = BindConstBinary(n, BroadcastOp.Mul, g1, new Const { Dims = wd, V = w1 }, false, NodeName(n) + "_" + tag + "_w1", false);
            cur = Part(n, tag + "_sum", new AddLayer(), shape, t0, t1);
        }
        if (cur == x) { Alias(n, In(n, 0)); return; }
        Bind(n, cur);
    }

    /// <summary>The source coordinate of output position j along an axis (ONNX's coordinate_transformation_mode).</summary>
    static double Src(int j, int inD, int outD, double scale, string coord) => coord switch
    {
        "half_pixel" => (j + 0.5) / scale - 0.5,
        "pytorch_half_pixel" => outD > 1 ? (j + 0.5) / scale - 0.5 : 0,
        "align_corners" => outD == 1 ? 0 : j * (inD - 1.0) / (outD - 1.0),
        _ => j / scale,
    };

    /// <summary>Linear taps of each output position: the source clamped to [0, in - 1], i0 its floor, i1 = min(i0 + 1, in - 1), w1 the weight of i1.</summary>
    static (int[] I0, int[] I1, double[] W1) Taps(int inD, int outD, double scale, string coord)
    {
        var i0 = new int[outD]; var i1 = new int[outD]; var w1 = new double[outD];
        for (int j = 0; j < outD; j++)
        {
            double s = Math.Clamp(Src(j, inD, outD, scale, coord), 0, inD - 1);
            i0[j] = (int)Math.Floor(s);
            i1[j] = Math.Min(i0[j] + 1, inD - 1);
            w1[j] = i1[j] == i0[j] ? 0 : s - i0[j];
        }
        return (i0, i1, w1);
    }

    /// <summary>The source index of a nearest resize (ONNX nearest_mode on the unclamped source, then clamped).</summary>
    static int Nearest(string mode, int inD, double src)
    {
        double v = mode switch
        {
            "floor" => Math.Floor(src),
            "ceil" => Math.Ceiling(src),
            "round_prefer_ceil" => Math.Floor(src + 0.5),
            _ => Math.Ceiling(src - 0.5),
        };
        return (int)Math.Clamp(v, 0, inD - 1);
    }

    /// <summary>
    /// ConvTranspose on [N, C, H, W] to the ConvTranspose2d layer (PyTorch semantics); strides, pads, dilations and
    /// output_padding may differ between H and W. Asymmetric pads (begin b, end e on an axis) crop b at the start and e
    /// at the end of the full output: that is padding b with output_padding output_padding + b - e, which the layer
    /// takes when it lies in [0, stride).
    /// </summary>
    void ConvTransposeOp(NodeProto n)
    {
        var x = Plain(n, 0);
        if (x.Shape.Length != 3) throw Err(n, $"only 2-D ConvTranspose on [N, C, H, W] is supported, the input is [N, {string.Join(", ", x.Shape)}]");
        var w = ConstIn(n, 1, "weight");
        int group = (int)AttrI(n, "group", 1);
        if (w.Dims.Length != 4 || w.Dims[0] != x.Shape[0]) throw Err(n, $"weight has shape {Tensor.ShapeString(w.Dims)}, expected [{x.Shape[0]}, K/group, kH, kW]");
        if (Attr(n, "output_shape") != null) throw Err(n, "output_shape is not supported (give pads and output_padding)");
        if (AttrS(n, "auto_pad", "NOTSET") is not ("NOTSET" or "VALID")) throw Err(n, "auto_pad SAME_* is not supported");
        var st = Pair(n, "strides", 1); var dl = Pair(n, "dilations", 1);
        var op = AttrInts(n, "output_padding") ?? new long[] { 0, 0 };
        var pads = AttrInts(n, "pads") ?? new long[] { 0, 0, 0, 0 };
        if (op.Length != 2) throw Err(n, $"output_padding has {op.Length} values, expected 2 (2-D)");
        if (pads.Length != 4) throw Err(n, $"pads has {pads.Length} values, expected 4 (2-D)");
        if (pads.Any(v => v < 0 || v > int.MaxValue) || op.Any(v => v < 0 || v > int.MaxValue)) throw Err(n, "pads and output_padding must be non-negative");
        var pd = new int[2]; var opd = new int[2];
        for (int a = 0; a < 2; a++)
        {
            long b = pads[a], e = pads[a + 2], o = op[a] + b - e;
            if (o < 0 || o >= st[a])
                throw Err(n, $"pads {b}/{e} with output_padding {op[a]} on {(a == 0 ? "H" : "W")} (stride {st[a]}) cannot be expressed (output_padding must be below the stride, and an end pad larger than the begin pad needs begin + output_padding >= end)");
            pd[a] = (int)b; opd[a] = (int)o;
        }
        int k = w.Dims[1] * group, kh = w.Dims[2], kw = w.Dims[3], c = x.Shape[0];
        float[]? bias = null;
        if (In(n, 2).Length > 0)
        {
            var b = ConstIn(n, 2, "bias");
            if (b.Count != k) throw Err(n, $"bias has {b.Count} values for {k} output channels");
            bias = F(b.V);
        }
        int oh = (x.Shape[1] - 1) * st[0] - 2 * pd[0] + dl[0] * (kh - 1) + opd[0] + 1, ow = (x.Shape[2] - 1) * st[1] - 2 * pd[1] + dl[1] * (kw - 1) + opd[1] + 1;
        if (oh <= 0 || ow <= 0) throw Err(n, $"the output would be {oh}x{ow}");
        var layer = new ConvTranspose2d(c, k, kh, st[0], pd[0], opd[0], dl[0], group, bias != null, kw)
            { StrideW = st[1], PaddingW = pd[1], OutputPaddingW = opd[1], DilationW = dl[1] };
        var p = Emit(n, layer, new[] { k, oh, ow }, x);
        p.W["weight"] = F(w.V);
        if (bias != null) p.W["bias"] = bias;
    }
}
