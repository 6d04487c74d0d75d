using Perturb.Tests.Ops;
using Perturb.Engine;
using Perturb.Engine.Nn;

namespace Perturb.Tests.Nn;

/// <summary>
/// Evaluates an engine <see cref="Model"/> in double precision with the plain references of <see cref="Ref"/>, layer
/// by layer over the model's own graph, with parameter values supplied as double arrays. Finite differences of this
/// evaluation are the ground truth for the engine's float32 backward pass.
/// </summary>
public sealed class RefModel
{
    readonly Model _m;
    /// <summary>Parameter values by full name (doubles; perturb these for finite differences).</summary>
    public Dictionary<string, double[]> P { get; } = new();
    public bool Training { get; set; }
    public ulong DropoutSeed { get; set; }

    public RefModel(Model m)
    {
        _m = m;
        foreach (var (name, p) in m.NamedParameters()) P[name] = Ref.D(p.Value.ToArray());
        Training = m.Training;
    }

    double[] Param(Layer l, string p) => P[l.Name + "." + p];

    public double[] Forward(double[] x, int n)
    {
        var outs = new double[_m.Nodes.Count][];
        ulong dropOff = 0;
        for (int i = 0; i < _m.Nodes.Count; i++)
        {
            var node = _m.Nodes[i];
            var ins = node.Inputs.Select(j => j < 0 ? x : outs[j]).ToArray();
            outs[i] = Eval(node.Layer, ins, n, ref dropOff);
        }
        return outs[^1];
    }

    /// <summary>
    /// Transposed convolution by its definition (a scatter, independent of the engine's convolution ops):
    /// y[n, g*Cog + co, ih*s - p + r*d, iw*s - p + q*d] += x[n, ci, ih, iw] * w[ci, co, r, q] for ci in group g.
    /// </summary>
    internal static double[] ConvTranspose(ConvTranspose2d ct, double[] x, double[] w, double[]? b, int n)
    {
        var s = ct.InShapes[0]; var o = ct.OutShape;
        int cin = s[0], h = s[1], wd = s[2], cout = o[0], oh = o[1], ow = o[2], g = ct.Groups, cig = cin / g, cog = cout / g;
        var y = new double[n * cout * oh * ow];
        for (int ni = 0; ni < n; ni++)
            for (int ci = 0; ci < cin; ci++)
            {
                int grp = ci / cig;
                for (int ih = 0; ih < h; ih++)
                    for (int iw = 0; iw < wd; iw++)
                    {
                        double xv = x[((ni * cin + ci) * h + ih) * wd + iw];
                        for (int co = 0; co < cog; co++)
                            for (int r = 0; r < ct.KernelH; r++)
                                for (int q = 0; q < ct.KernelW; q++)
                                {
                                    int yh = ih * ct.Stride - ct.Padding + r * ct.Dilation, yw = iw * ct.StrideW - ct.PaddingW + q * ct.DilationW;
                                    if (yh < 0 || yh >= oh || yw < 0 || yw >= ow) continue;
                                    y[((ni * cout + grp * cog + co) * oh + yh) * ow + yw] += xv * w[((ci * cog + co) * ct.KernelH + r) * ct.KernelW + q];
                                }
                    }
            }
        if (b != null)
            for (int ni = 0; ni < n; ni++)
                for (int co = 0; co < cout; co++)
                    for (int i = 0; i < oh * ow; i++) y[(ni * cout + co) * oh * ow + i] += b[co];
        return y;
    }

    double[] Eval(Layer l, double[][] x, int n, ref ulong dropOff)
    {
        var s = l.InShapes[0];
        int hw = s.Length == 3 ? s[1] * s[2] : 1;
        switch (l)
        {
            case Conv2d c:
                var cs = new ConvShape(n, c.InChannels, s[1], s[2], c.OutChannels, c.KernelH, c.KernelW, c.Stride, c.StrideW, c.Padding, c.PaddingW, c.Dilation, c.DilationW, c.Groups);
                return Ref.ConvForward(cs, x[0], Param(l, "weight"), c.HasBias ? Param(l, "bias") : null);
            case ConvTranspose2d ct:
                return ConvTranspose(ct, x[0], Param(l, "weight"), ct.HasBias ? Param(l, "bias") : null, n);
            case Linear lin:
                int rows = x[0].Length / lin.In;
                var y = Ref.Gemm(false, true, rows, lin.Out, lin.In, 1, x[0], Param(l, "weight"), 0, null);
                return lin.HasBias ? Ref.BiasAdd(y, Param(l, "bias"), rows, lin.Out, 1) : y;
            case BatchNorm2d bn:
                if (Training) return Ref.BatchNormTrain(x[0], Param(l, "weight"), Param(l, "bias"), bn.Eps, n, bn.Channels, hw).y;
                var g = Param(l, "weight"); var b = Param(l, "bias"); var rm = Param(l, "running_mean"); var rv = Param(l, "running_var");
                var sc = g.Select((gv, i) => gv / Math.Sqrt(rv[i] + bn.Eps)).ToArray();
                return Ref.ChannelAffine(x[0], sc, b.Select((bv, i) => bv - rm[i] * sc[i]).ToArray(), n, bn.Channels, hw);
            case Normalize nz:
                int ch = s[0];
                var scale = Enumerable.Range(0, ch).Select(i => 1.0 / nz.Std[nz.Std.Length == 1 ? 0 : i]).ToArray();
                var shift = Enumerable.Range(0, ch).Select(i => -nz.Mean[nz.Mean.Length == 1 ? 0 : i] * scale[i]).ToArray();
                return Ref.ChannelAffine(x[0], scale, shift, n, ch, hw);
            case ActivationLayer a:
                return Ref.Activation(a.Function, a.Alpha, x[0]);
            case Pool2d p:
                var ps = new PoolShape(n, s[0], s[1], s[2], p.KernelH, p.KernelW, p.StrideH, p.StrideW, p.PadH, p.PadW, p.CeilMode, p.CountIncludePad);
                return p.IsMax ? Ref.MaxPoolForward(ps, x[0]) : Ref.AvgPoolForward(ps, x[0]);
            case GlobalAvgPool:
                return Ref.GlobalAvgPoolForward(x[0], n, s[0], hw);
            case Flatten:
                return x[0];
            case Dropout d:
                if (!Training || d.P == 0) return x[0];
                var r = Ref.Dropout(x[0], d.P, DropoutSeed, dropOff);
                dropOff += (ulong)x[0].Length;
                return r.y;
            case AddLayer:
                return Ref.Add(x[0], x[1]);
            case Concat cat when cat.Axis != 0:
            {
                var so = new[] { n }.Concat(l.OutShape).ToArray();
                var cy = new double[TensorRef.Prod(so)];
                int at = 0;
                for (int i = 0; i < x.Length; i++)
                {
                    var si = new[] { n }.Concat(l.InShapes[i]).ToArray();
                    for (int e = 0; e < x[i].Length; e++)
                    {
                        var idx = TensorRef.Unravel(e, si); idx[cat.Axis + 1] += at;
                        cy[TensorRef.At(idx, so)] = x[i][e];
                    }
                    at += l.InShapes[i][cat.Axis];
                }
                return cy;
            }
            case Concat:
                var outC = l.OutShape[0];
                int inner = Layer.Product(l.OutShape) / outC, off = 0;
                var dst = new double[n * Layer.Product(l.OutShape)];
                for (int i = 0; i < x.Length; i++)
                {
                    int ci = l.InShapes[i][0];
                    dst = Ref.ChannelCopy(x[i], ci, 0, dst, outC, off, ci, n, inner, false);
                    off += ci;
                }
                return dst;
            case SoftmaxLayer sm:
                int smCols = l.OutShape[sm.Axis < 0 ? l.OutShape.Length + sm.Axis : sm.Axis];
                return Ref.Softmax(x[0], x[0].Length / smCols, smCols);
            case ChannelAffineLayer af:
                return Ref.ChannelAffine(x[0], Param(l, "scale"), Param(l, "shift"), n, af.Channels, hw);
            case MulLayer:
                return Ref.Mul(x[0], x[1]);
            case ClipLayer cl:
                return Ref.Clamp(x[0], cl.Min, cl.Max);
            case UnaryLayer u:
                return x[0].Select(v => TensorRef.Unary(u.Op, u.A, u.B, v).F).ToArray();
            case BinaryLayer bl:
            {
                int[] Full(int[] ps) => new[] { n }.Concat(ps).ToArray();
                var sy = Full(l.OutShape);
                if (bl.ConstShape == null) return TensorRef.Broadcast(bl.Op, x[0], Full(l.InShapes[0]), x[1], Full(l.InShapes[1]), sy);
                var c = Param(l, "constant");
                var sk = new[] { 1 }.Concat(bl.Constant!.Value.Shape).ToArray();
                return bl.ConstLeft ? TensorRef.Broadcast(bl.Op, c, sk, x[0], Full(l.InShapes[0]), sy)
                                    : TensorRef.Broadcast(bl.Op, x[0], Full(l.InShapes[0]), c, sk, sy);
            }
            case ReduceLayer rl:
                return TensorRef.Reduce(rl.Op, x[0], new[] { n }.Concat(s).ToArray(), rl.Axes.Select(a => a + 1).ToArray());
            case TransposeLayer tl:
                return TensorRef.Transpose(x[0], new[] { n }.Concat(s).ToArray(), tl.Perm.Select(p => p + 1).Prepend(0).ToArray());
            case ReshapeLayer:
                return x[0];
            case ExpandLayer:
            case TileLayer:
            {
                // out[i] = x[i mod s] along each axis (Expand: s = 1 on the expanded axes)
                var si = new[] { n }.Concat(s).ToArray(); var so = new[] { n }.Concat(l.OutShape).ToArray();
                var ty = new double[TensorRef.Prod(so)];
                for (int e = 0; e < ty.Length; e++)
                {
                    var idx = TensorRef.Unravel(e, so);
                    ty[e] = x[0][TensorRef.At(idx.Select((v, d) => v % si[d]).ToArray(), si)];
                }
                return ty;
            }
            case SliceLayer sl:
                return TensorRef.Slice(x[0], new[] { n }.Concat(s).ToArray(), sl.Starts.Prepend(0).ToArray(), sl.Steps.Prepend(1).ToArray(), sl.Shape.Prepend(n).ToArray());
            case GatherLayer ga:
            {
                // y[..., j, ...] = x[..., Indices[j], ...] along per-sample axis Axis, element by element
                var si = new[] { n }.Concat(s).ToArray(); var so = new[] { n }.Concat(l.OutShape).ToArray();
                var ty = new double[TensorRef.Prod(so)];
                for (int e = 0; e < ty.Length; e++)
                {
                    var idx = TensorRef.Unravel(e, so);
                    idx[ga.Axis + 1] = ga.Indices[idx[ga.Axis + 1]];
                    ty[e] = x[0][TensorRef.At(idx, si)];
                }
                return ty;
            }
            default:
                throw new NotSupportedException($"RefModel has no reference for layer type {l.Type}");
        }
    }
}
