using Perturb.Engine.Nn;

namespace Perturb.Engine.Backends;

/// <summary>
/// Backend against backend: every op family of <see cref="IBackend"/> run on two backends (typically <c>cuda</c> and
/// <c>cpu</c>) with the same seeded inputs on small shapes, and the outputs compared element by element; then a preset
/// model's logits and input gradient. This is the check of a GPU (or any new device) that has no double-precision
/// reference at hand: <c>cpu</c> itself is held to the plain references by the op tests (tests/Ops), so agreeing with
/// it within float32 rounding is the claim. <c>perturb parity</c> prints it; perf/gpu-check.sh runs it.
///
/// An element passes when |a - b| &lt;= tol * (1 + |b|) (b: the second backend, the reference); NaN only matches NaN.
/// Each case also checks that every op counter it names was hit on both backends, so a case cannot silently skip
/// its op. <see cref="Methods"/> lists the IBackend members the cases exercise (a test holds it to the interface).
/// </summary>
public static class BackendParity
{
    /// <summary>One compared case: the largest difference, the worst |a-b| / (1+|b|), and the verdict.</summary>
    public sealed record Result(string Family, string Case, int Elements, double MaxAbsDiff, double MaxScaledDiff,
        double Tolerance, bool Passed, string? Error)
    {
        public string Line => Error != null
            ? $"{Family,-10} {Case,-44} FAILED: {Error}"
            : $"{Family,-10} {Case,-44} {Elements,7} max|d| {MaxAbsDiff,9:0.00e+00}  scaled {MaxScaledDiff,9:0.00e+00} (tol {Tolerance:0e+00})  {(Passed ? "ok" : "FAILED")}";
    }

    /// <summary>A case: the IBackend members it calls, the op counters they hit, and the run that returns its outputs.</summary>
    sealed record Case(string Family, string Name, string[] Members, string[] Ops, Func<Ctx, float[][]> Run, double Tol = 1e-4);

    /// <summary>
    /// One backend's side of a case: tensors built from a generator seeded by the case, so both backends see the same
    /// inputs, and disposed afterwards.
    /// </summary>
    sealed class Ctx : IDisposable
    {
        public readonly IBackend Be;
        readonly Random _rng;
        readonly List<Tensor> _owned = new();
        public Ctx(IBackend be, int seed) { Be = be; _rng = new Random(seed); }

        public Tensor Own(Tensor t) { _owned.Add(t); return t; }
        /// <summary>Uniform in [lo, hi).</summary>
        public Tensor U(float lo, float hi, params int[] shape) => C(Floats(Len(shape), lo, hi), shape);
        /// <summary>Uniform in [-1, 1).</summary>
        public Tensor R(params int[] shape) => U(-1, 1, shape);
        public Tensor C(float[] data, params int[] shape) => Own(Be.FromArray(data, shape));
        /// <summary>An output filled with NaN: an op must overwrite every element.</summary>
        public Tensor Nan(params int[] shape) { var t = Own(Be.Allocate(shape)); Be.Fill(t, float.NaN); return t; }
        /// <summary>Integers in [0, classes) stored as floats (labels, masks).</summary>
        public Tensor Ints(int n, int classes) => C(Enumerable.Range(0, n).Select(_ => (float)_rng.Next(classes)).ToArray(), n);
        public float[] Floats(int n, float lo, float hi) => Enumerable.Range(0, n).Select(_ => lo + (hi - lo) * (float)_rng.NextDouble()).ToArray();
        public float[] Get(Tensor t) => Be.ToArray(t);
        public float[][] Get(params Tensor[] ts) => ts.Select(Get).ToArray();
        static int Len(int[] shape) { int n = 1; foreach (var d in shape) n *= d; return n; }
        public void Dispose() { foreach (var t in _owned) t.Dispose(); _owned.Clear(); }
    }

    /// <summary>Every case in order, each compared on <paramref name="a"/> against <paramref name="b"/>.</summary>
    public static List<Result> RunOps(IBackend a, IBackend b, Action<Result>? progress = null)
    {
        var results = new List<Result>();
        var cases = Cases();
        for (int i = 0; i < cases.Count; i++)
        {
            var r = Compare(cases[i], a, b, 1000 + i);
            results.Add(r);
            progress?.Invoke(r);
        }
        return results;
    }

    /// <summary>The IBackend members the op cases call.</summary>
    public static IReadOnlySet<string> Methods => Cases().SelectMany(c => c.Members).ToHashSet();

    /// <summary>The number of op cases.</summary>
    public static int CaseCount => Cases().Count;

    static Result Compare(Case c, IBackend a, IBackend b, int seed)
    {
        float[][] oa, ob;
        try
        {
            oa = RunCounted(c, a, seed);
            ob = RunCounted(c, b, seed);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return new Result(c.Family, c.Name, 0, double.NaN, double.NaN, c.Tol, false, e.Message);
        }
        return Diff(c.Family, c.Name, oa, ob, c.Tol);
    }

    static float[][] RunCounted(Case c, IBackend be, int seed)
    {
        var before = c.Ops.Select(be.Counters.Calls).ToArray();
        float[][] outs;
        using (var ctx = new Ctx(be, seed)) outs = c.Run(ctx);
        for (int i = 0; i < c.Ops.Length; i++)
            if (be.Counters.Calls(c.Ops[i]) == before[i])
                throw new InvalidOperationException($"{be.Name}: the case did not hit op '{c.Ops[i]}'");
        return outs;
    }

    /// <summary>Element-wise comparison of two backends' outputs (a against the reference b).</summary>
    public static Result Diff(string family, string name, float[][] a, float[][] b, double tol)
    {
        if (a.Length != b.Length) return new Result(family, name, 0, double.NaN, double.NaN, tol, false, $"{a.Length} outputs against {b.Length}");
        double maxAbs = 0, maxScaled = 0;
        int n = 0;
        for (int k = 0; k < a.Length; k++)
        {
            if (a[k].Length != b[k].Length) return new Result(family, name, n, double.NaN, double.NaN, tol, false, $"output {k}: {a[k].Length} elements against {b[k].Length}");
            for (int i = 0; i < a[k].Length; i++, n++)
            {
                double x = a[k][i], y = b[k][i];
                if (double.IsNaN(x) || double.IsNaN(y))
                {
                    if (double.IsNaN(x) != double.IsNaN(y)) maxAbs = maxScaled = double.PositiveInfinity;
                    continue;
                }
                if (x == y) continue;   // equal infinities included
                double d = Math.Abs(x - y);
                maxAbs = Math.Max(maxAbs, d);
                maxScaled = Math.Max(maxScaled, d / (1 + Math.Abs(y)));
            }
        }
        return new Result(family, name, n, maxAbs, maxScaled, tol, maxScaled <= tol, null);
    }

    /// <summary>
    /// A preset model built on both backends with the same weights (copied from <paramref name="b"/>'s), in eval mode,
    /// on the same seeded batch: the logits, and the input gradient of the summed cross-entropy
    /// (<see cref="BackwardMode.InputOnly"/>). Differences are scaled by the largest magnitude of each output
    /// (|a - b| / max|b|), since a deep network's float32 rounding grows with its outputs, not per element.
    /// </summary>
    public static List<Result> RunModel(IBackend a, IBackend b, string preset, int batch, ulong seed, double tol = 1e-3)
    {
        int ch = 1, hw = 28, classes = 2;
        using var mb = Presets.Create(preset, b, ch, hw, hw, classes, seed);
        using var ma = Presets.Create(preset, a, ch, hw, hw, classes, seed);
        var pb = mb.NamedParameters().ToDictionary(p => p.Name, p => p.P);
        foreach (var (name, p) in ma.NamedParameters()) a.Upload(p.Value, b.ToArray(pb[name].Value));
        ma.MarkParametersChanged();
        var rng = new Random((int)(seed % int.MaxValue));
        var xs = Enumerable.Range(0, batch * ch * hw * hw).Select(_ => (float)rng.NextDouble()).ToArray();
        var ys = Enumerable.Range(0, batch).Select(i => (float)(i % classes)).ToArray();
        var outs = new List<float[][]>();
        foreach (var (m, be) in new[] { (ma, a), (mb, b) })
        {
            m.Eval();
            using var x = be.FromArray(xs, batch, ch, hw, hw);
            using var labels = be.FromArray(ys, batch);
            var lt = m.Forward(x);
            var logits = be.ToArray(lt);
            using var loss = Losses.CrossEntropy(be, lt, labels, 1f);
            var g = m.Backward(loss.Grad!, BackwardMode.InputOnly) ?? throw new InvalidOperationException("no input gradient");
            outs.Add(new[] { logits, be.ToArray(g) });
            m.ReleaseActivations();
        }
        string[] what = { "logits", "input gradient" };
        var results = new List<Result>();
        for (int k = 0; k < 2; k++)
        {
            float[] oa = outs[0][k], ob = outs[1][k];
            double scale = Math.Max(1e-30, ob.Max(v => Math.Abs((double)v)));
            double maxAbs = 0;
            bool finite = true;
            for (int i = 0; i < oa.Length; i++)
            {
                if (!float.IsFinite(oa[i]) || !float.IsFinite(ob[i])) finite = false;
                else maxAbs = Math.Max(maxAbs, Math.Abs(oa[i] - ob[i]));
            }
            double scaled = finite ? maxAbs / scale : double.PositiveInfinity;
            results.Add(new Result("model", $"{preset} {what[k]} B={batch} (eval)", oa.Length, maxAbs, scaled, tol, scaled <= tol,
                finite ? null : "a non-finite value"));
        }
        return results;
    }

    // ------------------------------------------------------------------ the cases

    static List<Case>? _cases;

    static List<Case> Cases() => _cases ??= Build();

    static List<Case> Build()
    {
        var l = new List<Case>();
        void Add(string family, string name, string[] members, string[] ops, Func<Ctx, float[][]> run, double tol = 1e-4) =>
            l.Add(new Case(family, name, members, ops, run, tol));

        Add("memory", "copy, fill, upload", new[] { nameof(IBackend.Copy), nameof(IBackend.Fill), nameof(IBackend.Upload), nameof(IBackend.Allocate) },
            new[] { "copy", "fill" }, c =>
            {
                var x = c.R(37); var y = c.Own(c.Be.Allocate(37)); var z = c.Nan(5, 3);
                c.Be.Copy(x, y); c.Be.Fill(z, 2.5f); c.Be.Upload(x, c.Floats(37, -3, 3));
                return c.Get(x, y, z);
            }, 0);

        foreach (var (ta, tb) in new[] { (false, false), (false, true), (true, false), (true, true) })
            Add("gemm", $"gemm 33x65x47 {(ta ? "T" : "N")}{(tb ? "T" : "N")} alpha -0.5 beta 0.75", new[] { nameof(IBackend.Gemm) }, new[] { "gemm" }, c =>
            {
                int m = 33, n = 65, k = 47;
                var a = c.R(ta ? new[] { k, m } : new[] { m, k }); var b = c.R(tb ? new[] { n, k } : new[] { k, n });
                var y = c.R(m, n); var y0 = c.Nan(m, n);
                c.Be.Gemm(ta, tb, m, n, k, -0.5f, a, b, 0.75f, y);
                c.Be.Gemm(ta, tb, m, n, k, 1f, a, b, 0f, y0);
                return c.Get(y, y0);
            });

        var convs = new (string Name, ConvShape S)[]
        {
            ("3x3 pad 1", new ConvShape(2, 3, 7, 6, 4, 3, 3, PadH: 1, PadW: 1)),
            ("3x3 16->16 pad 1 (Winograd on cpu)", new ConvShape(2, 16, 8, 8, 16, 3, 3, PadH: 1, PadW: 1)),
            ("3x3 stride 2", new ConvShape(2, 3, 9, 7, 5, 3, 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1)),
            ("3x3 dilation 2", new ConvShape(1, 2, 9, 8, 3, 3, 3, PadH: 2, PadW: 2, DilH: 2, DilW: 2)),
            ("3x3 groups 2", new ConvShape(2, 4, 6, 5, 6, 3, 3, PadH: 1, PadW: 1, Groups: 2)),
            ("3x3 depthwise stride 2", new ConvShape(2, 4, 7, 7, 4, 3, 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1, Groups: 4)),
            ("1x1 stride 2", new ConvShape(3, 5, 6, 6, 8, 1, 1, StrideH: 2, StrideW: 2)),
        };
        foreach (var (nm, s) in convs)
            Add("conv", nm, new[] { nameof(IBackend.ConvForward), nameof(IBackend.ConvBackwardData), nameof(IBackend.ConvBackwardWeights) },
                new[] { "conv_fwd", "conv_bwd_data", "conv_bwd_weights" }, c =>
                {
                    var x = c.R(s.N, s.C, s.H, s.W); var w = c.R(s.K, s.CPerGroup, s.R, s.S); var bias = c.R(s.K);
                    var dy = c.R(s.N, s.K, s.OutH, s.OutW);
                    var y = c.Nan(s.N, s.K, s.OutH, s.OutW); var yr = c.Nan(s.N, s.K, s.OutH, s.OutW); var dx = c.Nan(s.N, s.C, s.H, s.W);
                    var dw = c.Nan(s.K, s.CPerGroup, s.R, s.S); var db = c.Nan(s.K);
                    c.Be.ConvForward(s, x, w, bias, y);
                    c.Be.ConvForward(s, x, w, bias, yr, relu: true);   // the fused ReLU epilogue of eval-mode folding
                    c.Be.ConvBackwardData(s, dy, w, dx);
                    c.Be.ConvBackwardWeights(s, x, dy, dw, db);
                    return c.Get(y, yr, dx, dw, db);
                });

        Add("bias", "bias add and gradient [3,5,7]", new[] { nameof(IBackend.BiasAdd), nameof(IBackend.BiasGrad) }, new[] { "bias_add", "bias_grad" }, c =>
        {
            var y = c.R(3, 5, 7); var b = c.R(5); var db = c.Nan(5);
            c.Be.BiasAdd(y, b, 3, 5, 7); c.Be.BiasGrad(y, db, 3, 5, 7);
            return c.Get(y, db);
        });

        foreach (var f in Enum.GetValues<Activation>())
            Add("activation", f.ToString(), new[] { nameof(IBackend.ActivationForward), nameof(IBackend.ActivationBackward) }, new[] { "act_fwd", "act_bwd" }, c =>
            {
                var x = c.U(-3, 3, 101); var dy = c.R(101); var y = c.Nan(101); var dx = c.Nan(101);
                c.Be.ActivationForward(f, 0.1f, x, y);
                c.Be.ActivationBackward(f, 0.1f, x, y, dy, dx);
                return c.Get(y, dx);
            });

        var pools = new (string Name, PoolShape S)[]
        {
            ("2x2 stride 2", new PoolShape(2, 3, 8, 7, 2, 2, 2, 2)),
            ("3x3 stride 2 pad 1 ceil", new PoolShape(2, 2, 9, 8, 3, 3, 2, 2, 1, 1, CeilMode: true)),
            ("3x3 stride 1 pad 1 count pad", new PoolShape(1, 3, 6, 6, 3, 3, 1, 1, 1, 1, CountIncludePad: true)),
        };
        foreach (var (nm, s) in pools)
            Add("pool", nm, new[] { nameof(IBackend.MaxPoolForward), nameof(IBackend.MaxPoolBackward), nameof(IBackend.AvgPoolForward), nameof(IBackend.AvgPoolBackward) },
                new[] { "maxpool_fwd", "maxpool_bwd", "avgpool_fwd", "avgpool_bwd" }, c =>
                {
                    var x = c.R(s.N, s.C, s.H, s.W); var dy = c.R(s.N, s.C, s.OutH, s.OutW);
                    var ym = c.Nan(s.N, s.C, s.OutH, s.OutW); var ya = c.Nan(s.N, s.C, s.OutH, s.OutW);
                    var dxm = c.Nan(s.N, s.C, s.H, s.W); var dxa = c.Nan(s.N, s.C, s.H, s.W);
                    c.Be.MaxPoolForward(s, x, ym); c.Be.MaxPoolBackward(s, x, dy, dxm);
                    c.Be.AvgPoolForward(s, x, ya); c.Be.AvgPoolBackward(s, dy, dxa);
                    return c.Get(ym, dxm, ya, dxa);
                });

        Add("pool", "global average [3,4,25]", new[] { nameof(IBackend.GlobalAvgPoolForward), nameof(IBackend.GlobalAvgPoolBackward) }, new[] { "gap_fwd", "gap_bwd" }, c =>
        {
            var x = c.R(3, 4, 5, 5); var dy = c.R(3, 4); var y = c.Nan(3, 4); var dx = c.Nan(3, 4, 5, 5);
            c.Be.GlobalAvgPoolForward(x, y, 3, 4, 25); c.Be.GlobalAvgPoolBackward(dy, dx, 3, 4, 25);
            return c.Get(y, dx);
        });

        Add("norm", "batch norm train [4,3,10]", new[] { nameof(IBackend.BatchNormForwardTrain), nameof(IBackend.BatchNormBackward) }, new[] { "bn_fwd_train", "bn_bwd" }, c =>
        {
            int n = 4, ch = 3, hw = 10;
            var x = c.U(-2, 3, n, ch, hw); var g = c.U(0.5f, 1.5f, ch); var be = c.R(ch); var y = c.Nan(n, ch, hw);
            var sm = c.Nan(ch); var si = c.Nan(ch); var rm = c.R(ch); var rv = c.U(0.5f, 2, ch);
            var dy = c.R(n, ch, hw); var dx = c.Nan(n, ch, hw); var dg = c.Nan(ch); var db = c.Nan(ch);
            c.Be.BatchNormForwardTrain(x, g, be, y, sm, si, rm, rv, 0.1f, 1e-5f, n, ch, hw);
            c.Be.BatchNormBackward(x, dy, g, sm, si, dx, dg, db, n, ch, hw);
            return c.Get(y, sm, si, rm, rv, dx, dg, db);
        });

        Add("norm", "channel affine [2,3,9]", new[] { nameof(IBackend.ChannelAffine), nameof(IBackend.ChannelAffineBackward) }, new[] { "channel_affine", "channel_affine_bwd" }, c =>
        {
            var x = c.R(2, 3, 9); var sc = c.R(3); var sh = c.R(3); var y = c.Nan(2, 3, 9);
            var dy = c.R(2, 3, 9); var dx = c.Nan(2, 3, 9); var ds = c.Nan(3); var dh = c.Nan(3);
            c.Be.ChannelAffine(x, sc, sh, y, 2, 3, 9); c.Be.ChannelAffineBackward(dy, sc, dx, x, ds, dh, 2, 3, 9);
            return c.Get(y, dx, ds, dh);
        });

        Add("softmax", "softmax, log-softmax, backward [7,11]", new[] { nameof(IBackend.Softmax), nameof(IBackend.LogSoftmax), nameof(IBackend.SoftmaxBackward) },
            new[] { "softmax", "log_softmax", "softmax_bwd" }, c =>
            {
                var x = c.U(-8, 8, 7, 11); var y = c.Nan(7, 11); var ly = c.Nan(7, 11); var dy = c.R(7, 11); var dx = c.Nan(7, 11);
                c.Be.Softmax(x, y, 7, 11); c.Be.LogSoftmax(x, ly, 7, 11); c.Be.SoftmaxBackward(y, dy, dx, 7, 11);
                return c.Get(y, ly, dx);
            });

        Add("loss", "cross-entropy, CW margin (both goals), DLR (both goals) [9,5]",
            new[] { nameof(IBackend.CrossEntropy), nameof(IBackend.CwMarginLoss), nameof(IBackend.DlrLoss) }, new[] { "ce_loss", "cw_loss", "dlr_loss" }, c =>
            {
                int r = 9, k = 5;
                var z = c.U(-6, 6, r, k); var lab = c.Ints(r, k); var tgt = c.Ints(r, k); var gs = c.R(r);
                var outs = new List<Tensor>();
                (Tensor, Tensor) Pair() { var l = c.Nan(r); var d = c.Nan(r, k); outs.Add(l); outs.Add(d); return (l, d); }
                var (l1, d1) = Pair(); c.Be.CrossEntropy(z, lab, l1, d1, gs, r, k);
                foreach (var t in new[] { false, true }) { var (l, d) = Pair(); c.Be.CwMarginLoss(z, lab, l, d, gs, t, 0.5f, r, k); }
                foreach (var t in new[] { false, true }) { var (l, d) = Pair(); c.Be.DlrLoss(z, lab, tgt, l, d, gs, t, r, k); }
                return c.Get(outs.ToArray());
            });

        Add("loss", "BCE with logits [13]", new[] { nameof(IBackend.BceWithLogits) }, new[] { "bce_loss" }, c =>
        {
            var z = c.U(-20, 20, 13); var lab = c.Ints(13, 2); var gs = c.R(13); var l = c.Nan(13); var d = c.Nan(13);
            c.Be.BceWithLogits(z, lab, l, d, gs, 13);
            return c.Get(l, d);
        });

        Add("elementwise", "add mul div greater abs [57]", new[] { nameof(IBackend.Add), nameof(IBackend.Mul), nameof(IBackend.Div), nameof(IBackend.Greater), nameof(IBackend.Abs) },
            new[] { "add", "mul", "div", "greater", "abs" }, c =>
            {
                var a = c.R(57); var b = c.U(0.25f, 2, 57); var ys = Enumerable.Range(0, 5).Select(_ => c.Nan(57)).ToArray();
                c.Be.Add(a, b, ys[0]); c.Be.Mul(a, b, ys[1]); c.Be.Div(a, b, ys[2]); c.Be.Greater(a, ys[0], ys[3]); c.Be.Abs(a, ys[4]);
                return c.Get(ys);
            });

        Add("elementwise", "add_relu [57]", new[] { nameof(IBackend.AddRelu) }, new[] { "add_relu" }, c =>
        {
            var a = c.R(57); var b = c.R(57); var y = c.Nan(57);
            c.Be.AddRelu(a, b, y);
            c.Be.AddRelu(a, b, b);   // y aliasing an input
            return c.Get(y, b);
        });

        Add("elementwise", "where mul_rows add_rows [6,9]", new[] { nameof(IBackend.Where), nameof(IBackend.MulRows), nameof(IBackend.AddRows) },
            new[] { "where", "mul_rows", "add_rows" }, c =>
            {
                var m = c.Ints(6, 2); var a = c.R(6, 9); var b = c.R(6, 9); var v = c.R(6);
                var y1 = c.Nan(6, 9); var y2 = c.Nan(6, 9); var y3 = c.Nan(6, 9);
                c.Be.Where(m, a, b, y1, 6, 9); c.Be.MulRows(a, v, y2, 6, 9); c.Be.AddRows(a, v, y3, 6, 9);
                return c.Get(y1, y2, y3);
            });

        Add("elementwise", "axpy scale clamp sign lerp [45]", new[] { nameof(IBackend.Axpy), nameof(IBackend.Scale), nameof(IBackend.Clamp), nameof(IBackend.Sign), nameof(IBackend.Lerp) },
            new[] { "axpy", "scale", "clamp", "sign", "lerp" }, c =>
            {
                var x = c.R(45); var y = c.R(45); var s = c.Nan(45); var cl = c.Nan(45); var sg = c.Nan(45); var lp = c.Nan(45);
                c.Be.Axpy(-0.75f, x, y); c.Be.Scale(3f, x, s); c.Be.Clamp(x, -0.3f, 0.6f, cl); c.Be.Sign(x, sg); c.Be.Lerp(x, y, 0.3f, lp);
                return c.Get(y, s, cl, sg, lp);
            });

        Add("elementwise", "channel copy, plain and accumulating", new[] { nameof(IBackend.ChannelCopy) }, new[] { "channel_copy" }, c =>
        {
            var src = c.R(2, 5, 6); var dst = c.R(2, 7, 6); var dst2 = c.R(2, 7, 6);
            c.Be.ChannelCopy(src, 5, 1, dst, 7, 3, 3, 2, 6, false);
            c.Be.ChannelCopy(src, 5, 0, dst2, 7, 2, 4, 2, 6, true);
            return c.Get(dst, dst2);
        });

        Add("reduce", "per-row sum max L0 L2 Linf, argmax [5,23]", new[] { nameof(IBackend.ReduceRows), nameof(IBackend.ArgmaxRows) }, new[] { "reduce", "argmax" }, c =>
        {
            var data = c.Floats(5 * 23, -1, 1).Select((v, i) => i % 4 == 0 ? 0f : v).ToArray();
            var x = c.C(data, 5, 23);
            var outs = Enum.GetValues<Reduction>().Select(k => { var o = c.Nan(5); c.Be.ReduceRows(k, x, o, 5, 23); return o; }).ToList();
            var am = c.Nan(5); c.Be.ArgmaxRows(x, am, 5, 23); outs.Add(am);
            return c.Get(outs.ToArray());
        });

        Add("random", "Philox uniform, normal, dropout", new[] { nameof(IBackend.RandomUniform), nameof(IBackend.RandomNormal), nameof(IBackend.DropoutForward) },
            new[] { "rand_uniform", "rand_normal", "dropout" }, c =>
            {
                var u = c.Nan(1000); var nrm = c.Nan(1000); var x = c.R(1000); var y = c.Nan(1000); var m = c.Nan(1000);
                c.Be.RandomUniform(u, 12345, 77); c.Be.RandomNormal(nrm, 12345, 5000, 0.5f, 2f); c.Be.DropoutForward(x, y, m, 0.3f, 99, 11);
                return c.Get(u, nrm, y, m);
            }, 1e-5);

        Add("optim", "SGD (momentum, nesterov), Adam [64]", new[] { nameof(IBackend.SgdUpdate), nameof(IBackend.AdamUpdate) }, new[] { "sgd", "adam" }, c =>
        {
            var w = c.R(64); var g = c.R(64); var v = c.R(64); var w2 = c.R(64); var m2 = c.R(64); var v2 = c.U(0, 1, 64);
            c.Be.SgdUpdate(w, g, v, 0.1f, 0.9f, 1e-4f, true);
            c.Be.AdamUpdate(w2, g, m2, v2, 0.01f, 0.9f, 0.999f, 1e-8f, 1e-4f, 3);
            return c.Get(w, v, w2, m2, v2);
        });

        Add("attack", "fused L-inf and L2 steps [4,50]", new[] { nameof(IBackend.AttackStepLinf), nameof(IBackend.AttackStepL2) }, new[] { "attack_step_linf", "attack_step_l2" }, c =>
        {
            var x0 = c.U(0, 1, 4, 50); var g = c.R(4, 50); var step = c.U(0.01f, 0.05f, 4); var eps = c.U(0.02f, 0.2f, 4);
            var xa = c.Own(c.Be.Allocate(4, 50)); var xb = c.Own(c.Be.Allocate(4, 50));
            c.Be.Copy(x0, xa); c.Be.Copy(x0, xb); c.Be.Axpy(0.05f, g, xa);
            c.Be.AttackStepLinf(xa, x0, g, step, eps, 4, 50); c.Be.AttackStepL2(xb, x0, g, step, eps, 4, 50);
            return c.Get(xa, xb);
        });

        Add("attack", "JSMA pair step, theta 1 and -1 [5,30]", new[] { nameof(IBackend.JsmaStep) }, new[] { "jsma_step" }, c =>
        {
            var outs = new List<Tensor>();
            foreach (float theta in new[] { 1f, -1f })
            {
                var al = c.R(5, 30); var bt = c.R(5, 30); var adv = c.U(0, 1, 5, 30); var ch = c.U(0, 4, 5);
                var dom = c.C(c.Floats(150, 0, 1).Select(v => v < 0.8f ? 1f : 0f).ToArray(), 5, 30);
                var run = c.C(new float[] { 1, 1, 0, 1, 1 }, 5);
                c.Be.JsmaStep(al, bt, dom, run, adv, ch, theta, 5, 30);
                outs.AddRange(new[] { adv, dom, run, ch });
            }
            return c.Get(outs.ToArray());
        }, 0);

        Add("warp", "bilinear affine warp and adjoint [6,9,11]", new[] { nameof(IBackend.WarpAffine), nameof(IBackend.WarpAffineAdjoint) }, new[] { "warp_affine", "warp_affine_adjoint" }, c =>
        {
            var map = WarpMap.RotateScaleTranslate(17, 0.9, 1.4, -0.6, 9, 11);
            var x = c.R(6, 9, 11); var dy = c.R(6, 9, 11); var y = c.Nan(6, 9, 11); var dx = c.Nan(6, 9, 11); var acc = c.R(6, 9, 11);
            c.Be.WarpAffine(x, y, 6, 9, 11, map, 1.2f, 0f);
            c.Be.WarpAffineAdjoint(dy, dx, 6, 9, 11, map, 0.7f, 0f);
            c.Be.WarpAffineAdjoint(dy, acc, 6, 9, 11, map, 0.7f, 1f);
            return c.Get(y, dx, acc);
        });

        Add("scatter", "candidate images: row copies and edits [5 of 3,40]", new[] { nameof(IBackend.ScatterRows) }, new[] { "scatter_rows" }, c =>
        {
            var x = c.R(3, 40); var y = c.Nan(5, 40);
            var src = c.C(new float[] { 2, 0, 1, 2, 7 }, 5); // the last row's source is out of range: NaN on both
            var idx = c.C(new float[] { 0, 39, 5, 5, -1, 12, 40, 3, 17, 17, 1, 2, 3, 4, 5 }, 5, 3);
            var val = c.R(5, 3);
            c.Be.ScatterRows(x, src, idx, val, y, 3, 5, 40, 3);
            return new[] { c.Get(y) };
        }, 0);

        Add("patch", "patch placement and adjoint [3 of 2,11,13], patch 5x5", new[] { nameof(IBackend.PatchApply), nameof(IBackend.PatchApplyAdjoint) }, new[] { "patch_apply", "patch_apply_adjoint" }, c =>
        {
            // (top, left, side, cos, sin): turned 17 degrees, the identity scale partly outside, a shrunk and mirrored one
            var place = c.C(new float[] { 2, 3, 7, 0.9563f, 0.2924f, -1, 9, 5, 1, 0, 4, 1, 3, -0.6f, 0.8f }, 3, 5);
            var mask = c.C(Enumerable.Range(0, 25).Select(i => i % 7 == 3 ? 0f : 1f).ToArray(), 25);
            var patch = c.R(2, 5, 5); var x = c.R(3, 2, 11, 13); var dx = c.R(3, 2, 11, 13); var dp = c.Nan(2, 5, 5);
            c.Be.PatchApply(patch, mask, place, x, 3, 2, 11, 13, 5);
            c.Be.PatchApplyAdjoint(dx, mask, place, dp, 3, 2, 11, 13, 5);
            return c.Get(x, dp);
        });

        foreach (var op in Enum.GetValues<UnaryOp>())
        {
            bool positive = op is UnaryOp.Sqrt or UnaryOp.Log or UnaryOp.Pow or UnaryOp.Reciprocal;
            (float pa, float pb) = op switch
            {
                UnaryOp.HardSigmoid => (0.2f, 0.5f), UnaryOp.Elu => (1f, 0f), UnaryOp.Selu => (1.6733f, 1.0507f), UnaryOp.Pow => (2.5f, 0f), _ => (0f, 0f),
            };
            Add("tensor", $"unary {op}", new[] { nameof(IBackend.UnaryForward), nameof(IBackend.UnaryBackward) }, new[] { "unary_fwd", "unary_bwd" }, c =>
            {
                var x = positive ? c.U(0.2f, 3, 61) : c.U(-4, 4, 61); var dy = c.R(61); var y = c.Nan(61); var dx = c.Nan(61);
                c.Be.UnaryForward(op, pa, pb, x, y); c.Be.UnaryBackward(op, pa, pb, x, dy, dx);
                return c.Get(y, dx);
            });
        }

        foreach (var op in Enum.GetValues<BroadcastOp>())
            Add("tensor", $"broadcast {op} [2,3,4] by [3,1]", new[] { nameof(IBackend.BroadcastForward), nameof(IBackend.BroadcastBackward) }, new[] { "broadcast_fwd", "broadcast_bwd" }, c =>
            {
                int[] sa = { 2, 3, 4 }, sb = { 3, 1 };
                var a = c.U(0.25f, 2, sa); var b = c.U(0.5f, 2, sb); var dy = c.R(sa); var y = c.Nan(sa);
                c.Be.BroadcastForward(op, a, b, y, Strided.Binary(sa, sb, sa));
                var outs = new List<Tensor> { y };
                for (int which = 0; which < 2; which++)
                {
                    var (keep, red) = Strided.BinaryGrad(sa, sb, sa, which);
                    var dx = which == 0 ? c.Nan(sa) : c.Nan(sb);
                    c.Be.BroadcastBackward(op, which, a, b, dy, dx, keep, red);
                    outs.Add(dx);
                }
                return c.Get(outs.ToArray());
            });

        Add("tensor", "strided copy (transpose [2,3,4] -> [4,2,3])", new[] { nameof(IBackend.StridedCopy) }, new[] { "strided_copy" }, c =>
        {
            int[] sx = { 2, 3, 4 }, perm = { 2, 0, 1 };
            var cs = Strided.Contiguous(sx);
            var sy = perm.Select(p => sx[p]).ToArray();
            var x = c.R(sx); var y = c.Nan(sy);
            c.Be.StridedCopy(x, y, Strided.Make(sy, perm.Select(p => cs[p]).ToArray(), Strided.Contiguous(sy)));
            return new[] { c.Get(y) };
        }, 0);

        foreach (var op in Enum.GetValues<ReduceOp>())
            Add("tensor", $"reduce axes {op} [3,4,5] over 0,2", new[] { nameof(IBackend.ReduceAxes), nameof(IBackend.ReduceAxesBackward) }, new[] { "reduce_axes", "reduce_axes_bwd" }, c =>
            {
                int[] sx = { 3, 4, 5 };
                var (keep, red) = Strided.Reduce(sx, new[] { 0, 2 });
                var x = c.R(sx); var y = c.Nan(4); var dy = c.R(4); var dx = c.Nan(sx);
                c.Be.ReduceAxes(op, x, y, keep, red); c.Be.ReduceAxesBackward(op, x, y, dy, dx, keep, red);
                return c.Get(y, dx);
            });
        return l;
    }
}
