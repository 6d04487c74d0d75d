using Perturb.Engine;

namespace Perturb.Tests.Ops;

/// <summary>
/// CPU backend only, at sizes above its serial threshold (32K elements), so that its Parallel.For and blocked paths
/// run too (the other parity tests are small enough for ILGPU's CPU accelerator and stay on one thread).
/// Same reference, same tolerances as the small tests unless stated.
/// </summary>
[Collection("ops")]
public class LargeCpuParityTests
{
    const string Be = TestBackends.Cpu;

    static readonly (ConvShape s, bool bias)[] Convs =
    {
        (new ConvShape(4, 16, 28, 28, 32, 3, 3, PadH: 1, PadW: 1), true),
        (new ConvShape(3, 8, 30, 29, 16, 3, 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1, Groups: 2), false),
        (new ConvShape(4, 32, 20, 20, 32, 3, 3, PadH: 2, PadW: 2, DilH: 2, DilW: 2, Groups: 32), true),   // depthwise, dilated
    };

    [Theory, InlineData(0), InlineData(1), InlineData(2)]
    public void ConvLarge(int id)
    {
        var (s, withBias) = Convs[id];
        using var h = new OpHarness(Be);
        var x = Ref.Rand(s.N * s.C * s.H * s.W, 1); var w = Ref.Rand(s.K * s.CPerGroup * s.R * s.S, 2);
        var b = withBias ? Ref.Rand(s.K, 3) : null; var dy = Ref.Rand(s.N * s.K * s.OutH * s.OutW, 4);
        var tx = h.V(x, s.N, s.C, s.H, s.W); var tw = h.T(w, s.K, s.CPerGroup, s.R, s.S); var tb = b is null ? null : h.T(b, s.K);
        var tdy = h.T(dy, s.N, s.K, s.OutH, s.OutW);
        var ty = h.Out(true, s.N, s.K, s.OutH, s.OutW); var tdx = h.Out(false, s.N, s.C, s.H, s.W);
        var tdw = h.Out(false, s.K, s.CPerGroup, s.R, s.S); var tdb = withBias ? h.Out(false, s.K) : null;
        h.Op("conv_fwd", () => h.Be.ConvForward(s, tx, tw, tb, ty), flops: s.Flops);
        h.Op("conv_bwd_data", () => h.Be.ConvBackwardData(s, tdy, tw, tdx));
        h.Op("conv_bwd_weights", () => h.Be.ConvBackwardWeights(s, tx, tdy, tdw, tdb));
        Ref.AssertClose(Ref.ConvForward(s, x, w, b), h.GetF(ty), 1e-4, 1e-4, $"cpu conv_fwd {s}");
        Ref.AssertClose(Ref.ConvBackwardData(s, dy, w), h.GetF(tdx), 1e-4, 1e-4, $"cpu conv_bwd_data {s}");
        var (dw, db) = Ref.ConvBackwardWeights(s, x, dy, withBias);
        // dw sums N*OH*OW (up to 3136) products: atol 1e-3
        Ref.AssertClose(dw, h.GetF(tdw), 1e-4, 1e-3, $"cpu conv_bwd_weights dw {s}");
        if (withBias) Ref.AssertClose(db!, h.GetF(tdb!), 1e-4, 1e-3, $"cpu conv_bwd_weights db {s}");
        h.CheckGuards();
    }

    [Fact]
    public void PoolsLarge()
    {
        using var h = new OpHarness(Be);
        foreach (var s in new[] { new PoolShape(8, 16, 28, 28, 3, 3, 2, 2, PadH: 1, PadW: 1, CeilMode: true, CountIncludePad: true),
                                  new PoolShape(8, 16, 28, 28, 2, 2, 2, 2) })
        {
            var x = Ref.Rand(s.N * s.C * s.H * s.W, 5); var dy = Ref.Rand(s.N * s.C * s.OutH * s.OutW, 6);
            var tx = h.V(x, s.N, s.C, s.H, s.W); var tdy = h.T(dy, s.N, s.C, s.OutH, s.OutW);
            var ty = h.Out(true, s.N, s.C, s.OutH, s.OutW); var tdx = h.Out(true, s.N, s.C, s.H, s.W);
            h.Op("maxpool_fwd", () => h.Be.MaxPoolForward(s, tx, ty));
            Ref.AssertClose(Ref.MaxPoolForward(s, x), h.GetF(ty), 0, 0, $"cpu maxpool_fwd {s}");
            h.Op("maxpool_bwd", () => h.Be.MaxPoolBackward(s, tx, tdy, tdx));
            Ref.AssertClose(Ref.MaxPoolBackward(s, x, dy), h.GetF(tdx), 1e-5, 1e-6, $"cpu maxpool_bwd {s}");
            h.Op("avgpool_fwd", () => h.Be.AvgPoolForward(s, tx, ty));
            Ref.AssertClose(Ref.AvgPoolForward(s, x), h.GetF(ty), 1e-5, 1e-6, $"cpu avgpool_fwd {s}");
            h.Op("avgpool_bwd", () => h.Be.AvgPoolBackward(s, tdy, tdx));
            Ref.AssertClose(Ref.AvgPoolBackward(s, dy), h.GetF(tdx), 1e-5, 1e-6, $"cpu avgpool_bwd {s}");
        }
        const int n = 8, c = 64, hw = 196;
        var g = Ref.Rand(n * c * hw, 7); var tg = h.T(g, n, c, hw); var tgy = h.Out(true, n, c);
        h.Op("gap_fwd", () => h.Be.GlobalAvgPoolForward(tg, tgy, n, c, hw));
        Ref.AssertClose(Ref.GlobalAvgPoolForward(g, n, c, hw), h.GetF(tgy), 1e-5, 1e-6, "cpu gap_fwd large");
        var tgd = h.Out(true, n, c, hw);
        h.Op("gap_bwd", () => h.Be.GlobalAvgPoolBackward(tgy, tgd, n, c, hw));
        Ref.AssertClose(Ref.GlobalAvgPoolBackward(Ref.D(h.GetF(tgy)), n, c, hw), h.GetF(tgd), 1e-6, 1e-7, "cpu gap_bwd large");
        h.CheckGuards();
    }

    /// <summary>BN over M = 8*400 values per channel: rtol 1e-4, atol 1e-4 (sums of 3200 values).</summary>
    [Fact]
    public void BatchNormAndAffineLarge()
    {
        using var h = new OpHarness(Be);
        const int n = 8, c = 16, hw = 400; const float eps = 1e-5f, momentum = 0.1f;
        var x = Ref.Rand(n * c * hw, 8).Select((v, i) => (double)(float)(v * 2 + (i / hw) % c)).ToArray();
        var gamma = Ref.Rand(c, 9, 0.5, 1.5); var beta = Ref.Rand(c, 10); var rm0 = Ref.Rand(c, 11); var rv0 = Ref.Rand(c, 12, 0.5, 2);
        var tx = h.V(x, n, c, hw); var tga = h.T(gamma, c); var tbe = h.T(beta, c);
        var ty = h.Out(true, n, c, hw); var tm = h.Out(true, c); var ti = h.Out(true, c); var trm = h.T(rm0, c); var trv = h.T(rv0, c);
        h.Op("bn_fwd_train", () => h.Be.BatchNormForwardTrain(tx, tga, tbe, ty, tm, ti, trm, trv, momentum, eps, n, c, hw));
        var (y, mean, inv, uvar) = Ref.BatchNormTrain(x, gamma, beta, eps, n, c, hw);
        var (rm, rv) = Ref.BatchNormRunning(rm0, rv0, mean, uvar, momentum);
        Ref.AssertClose(y, h.GetF(ty), 1e-4, 1e-4, "cpu bn y large");
        Ref.AssertClose(mean, h.GetF(tm), 1e-4, 1e-5, "cpu bn mean large");
        Ref.AssertClose(inv, h.GetF(ti), 1e-4, 1e-5, "cpu bn invStd large");
        Ref.AssertClose(rm, h.GetF(trm), 1e-4, 1e-5, "cpu bn runningMean large");
        Ref.AssertClose(rv, h.GetF(trv), 1e-4, 1e-5, "cpu bn runningVar large");

        var dy = Ref.Rand(x.Length, 13); var meanF = Ref.D(Ref.F(mean)); var invF = Ref.D(Ref.F(inv));
        var tdy = h.T(dy, n, c, hw); var tdx = h.Out(true, n, c, hw); var tdg = h.Out(true, c); var tdb = h.Out(true, c);
        var tmF = h.T(meanF, c); var tiF = h.T(invF, c);
        h.Op("bn_bwd", () => h.Be.BatchNormBackward(tx, tdy, tga, tmF, tiF, tdx, tdg, tdb, n, c, hw));
        var (dx, dg, db) = Ref.BatchNormBackward(x, dy, gamma, meanF, invF, n, c, hw);
        Ref.AssertClose(dx, h.GetF(tdx), 1e-4, 1e-4, "cpu bn dx large");
        Ref.AssertClose(dg, h.GetF(tdg), 1e-4, 1e-3, "cpu bn dgamma large");
        Ref.AssertClose(db, h.GetF(tdb), 1e-4, 1e-3, "cpu bn dbeta large");

        var ta = h.Out(true, n, c, hw);
        h.Op("channel_affine", () => h.Be.ChannelAffine(tx, tga, tbe, ta, n, c, hw));
        Ref.AssertClose(Ref.ChannelAffine(x, gamma, beta, n, c, hw), h.GetF(ta), 1e-6, 1e-6, "cpu channel_affine large");
        var (adx, ads, adsh) = Ref.ChannelAffineBackward(dy, gamma, x, n, c, hw);
        var tadx = h.Out(true, n, c, hw); var tads = h.Out(true, c); var tadsh = h.Out(true, c);
        h.Op("channel_affine_bwd", () => h.Be.ChannelAffineBackward(tdy, tga, tadx, tx, tads, tadsh, n, c, hw));
        Ref.AssertClose(adx, h.GetF(tadx), 1e-6, 1e-6, "cpu channel_affine_bwd dx large");
        Ref.AssertClose(ads, h.GetF(tads), 1e-4, 1e-3, "cpu channel_affine_bwd dscale large");
        Ref.AssertClose(adsh, h.GetF(tadsh), 1e-4, 1e-3, "cpu channel_affine_bwd dshift large");
        h.CheckGuards();
    }

    [Fact]
    public void ElementwiseReduceSoftmaxLossLarge()
    {
        using var h = new OpHarness(Be);
        const int n = 100_003;
        var a = Ref.Rand(n, 14, -2, 2); var b = Ref.Rand(n, 15, -2, 2);
        var ta = h.V(a, n); var tb = h.V(b, n); var ty = h.Out(true, n);
        h.Op("add", () => h.Be.Add(ta, tb, ty)); Ref.AssertClose(Ref.Add(a, b), h.GetF(ty), 1e-6, 1e-7, "cpu add large");
        h.Op("mul", () => h.Be.Mul(ta, tb, ty)); Ref.AssertClose(Ref.Mul(a, b), h.GetF(ty), 1e-6, 1e-7, "cpu mul large");
        h.Op("lerp", () => h.Be.Lerp(ta, tb, 0.25f, ty)); Ref.AssertClose(Ref.Lerp(a, b, 0.25), h.GetF(ty), 1e-6, 1e-6, "cpu lerp large");
        h.Op("clamp", () => h.Be.Clamp(ta, -1f, 0.5f, ty)); Ref.AssertClose(Ref.Clamp(a, -1, 0.5), h.GetF(ty), 0, 0, "cpu clamp large");
        h.Op("sign", () => h.Be.Sign(ta, ty)); Ref.AssertClose(Ref.Sign(a), h.GetF(ty), 0, 0, "cpu sign large");
        h.Op("scale", () => h.Be.Scale(0.5f, ta, ty)); Ref.AssertClose(Ref.Scale(0.5, a), h.GetF(ty), 0, 0, "cpu scale large");
        var tyy = h.V(b, n);
        h.Op("axpy", () => h.Be.Axpy(2f, ta, tyy)); Ref.AssertClose(Ref.Axpy(2, a, b), h.GetF(tyy), 1e-6, 1e-7, "cpu axpy large");
        foreach (var f in Enum.GetValues<Activation>())
        {
            h.Op("act_fwd", () => h.Be.ActivationForward(f, 0.1f, ta, ty));
            Ref.AssertClose(Ref.Activation(f, 0.1f, a), h.GetF(ty), 1e-5, 1e-6, $"cpu act_fwd {f} large");
            var yv = Ref.D(h.GetF(ty)); var tdx = h.Out(false, n);
            h.Op("act_bwd", () => h.Be.ActivationBackward(f, 0.1f, ta, ty, tb, tdx));
            Ref.AssertClose(Ref.ActivationBackward(f, 0.1f, a, yv, b), h.GetF(tdx), 1e-5, 1e-6, $"cpu act_bwd {f} large");
        }

        const int rows = 64, cols = 1000;
        var x = Ref.Rand(rows * cols, 16, -3, 3);
        var tx = h.V(x, rows, cols); var to = h.Out(true, rows);
        foreach (var k in Enum.GetValues<Reduction>())
        {
            h.Op("reduce", () => h.Be.ReduceRows(k, tx, to, rows, cols));
            Ref.AssertClose(Ref.ReduceRows(k, x, rows, cols), h.GetF(to), 1e-5, k == Reduction.Sum ? 1e-4 : 0, $"cpu reduce {k} large");
        }
        h.Op("argmax", () => h.Be.ArgmaxRows(tx, to, rows, cols));
        Ref.AssertClose(Ref.ArgmaxRows(x, rows, cols), h.GetF(to), 0, 0, "cpu argmax large");

        var tsm = h.Out(true, rows, cols);
        h.Op("softmax", () => h.Be.Softmax(tx, tsm, rows, cols));
        var sm = Ref.Softmax(x, rows, cols);
        Ref.AssertClose(sm, h.GetF(tsm), 1e-5, 1e-7, "cpu softmax large");
        h.Op("log_softmax", () => h.Be.LogSoftmax(tx, tsm, rows, cols));
        Ref.AssertClose(Ref.LogSoftmax(x, rows, cols), h.GetF(tsm), 1e-5, 1e-5, "cpu log_softmax large");
        var dyv = Ref.Rand(rows * cols, 17); var smF = Ref.D(Ref.F(sm));
        var tdsx = h.Out(true, rows, cols); var tsmF = h.T(smF, rows, cols); var tdyv = h.T(dyv, rows, cols);
        h.Op("softmax_bwd", () => h.Be.SoftmaxBackward(tsmF, tdyv, tdsx, rows, cols));
        Ref.AssertClose(Ref.SoftmaxBackward(smF, dyv, rows, cols), h.GetF(tdsx), 1e-5, 1e-6, "cpu softmax_bwd large");

        var labels = Ref.Labels(rows, cols, 18); var gs = Ref.Rand(rows, 19);
        var tl = h.T(labels, rows); var tgs = h.T(gs, rows); var tloss = h.Out(true, rows); var tdl = h.Out(true, rows, cols);
        h.Op("ce_loss", () => h.Be.CrossEntropy(tx, tl, tloss, tdl, tgs, rows, cols));
        var (ce, dce) = Ref.CrossEntropy(x, labels, gs, rows, cols);
        Ref.AssertClose(ce, h.GetF(tloss), 1e-5, 2e-5, "cpu ce_loss large");
        Ref.AssertClose(dce, h.GetF(tdl), 1e-5, 1e-7, "cpu ce_loss dlogits large");
        h.Op("cw_loss", () => h.Be.CwMarginLoss(tx, tl, tloss, tdl, tgs, false, 0.5f, rows, cols));
        var (cw, dcw) = Ref.CwMargin(x, labels, gs, false, 0.5, rows, cols);
        Ref.AssertClose(cw, h.GetF(tloss), 1e-6, 1e-6, "cpu cw_loss large");
        Ref.AssertClose(dcw, h.GetF(tdl), 1e-6, 1e-6, "cpu cw_loss dlogits large");
        h.CheckGuards();
    }

    [Fact]
    public void RandomOptimAttackLarge()
    {
        using var h = new OpHarness(Be);
        const int n = 100_003;
        var t = h.Out(true, n);
        h.Op("rand_uniform", () => h.Be.RandomUniform(t, 31337, 5));
        Ref.AssertBitEqual(Ref.Uniform(n, 31337, 5), h.GetF(t), "cpu rand_uniform large");
        h.Op("rand_normal", () => h.Be.RandomNormal(t, 31337, 5, 0.5f, 2f));
        Ref.AssertClose(Ref.Normal(n, 31337, 5, 0.5, 2), h.GetF(t), 1e-4, 1e-4, "cpu rand_normal large");
        var x = Ref.Rand(n, 20); var tx = h.T(x, n); var tm = h.Out(true, n);
        h.Op("dropout", () => h.Be.DropoutForward(tx, t, tm, 0.5f, 77, 0));
        var (dy, dm) = Ref.Dropout(x, 0.5f, 77, 0);
        Ref.AssertClose(dm, h.GetF(tm), 1e-6, 0, "cpu dropout mask large");
        Ref.AssertClose(dy, h.GetF(t), 1e-6, 0, "cpu dropout y large");

        var w = Ref.Rand(n, 21); var g = Ref.Rand(n, 22); var v = Ref.Rand(n, 23); var m = Ref.Rand(n, 24); var v2 = Ref.Rand(n, 25, 0, 1);
        var tw = h.T(w, n); var tg = h.T(g, n); var tv = h.T(v, n);
        h.Op("sgd", () => h.Be.SgdUpdate(tw, tg, tv, 0.1f, 0.9f, 1e-3f, true));
        var (sw, sv) = Ref.Sgd(w, g, v, 0.1f, 0.9f, 1e-3f, true);
        Ref.AssertClose(sw, h.GetF(tw), 1e-5, 1e-6, "cpu sgd w large"); Ref.AssertClose(sv, h.GetF(tv), 1e-5, 1e-6, "cpu sgd v large");
        var tw2 = h.T(w, n); var tm2 = h.T(m, n); var tv2 = h.T(v2, n);
        h.Op("adam", () => h.Be.AdamUpdate(tw2, tg, tm2, tv2, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 4));
        var (aw, am, av) = Ref.Adam(w, g, m, v2, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 4);
        Ref.AssertClose(aw, h.GetF(tw2), 1e-5, 1e-6, "cpu adam w large");
        Ref.AssertClose(am, h.GetF(tm2), 1e-5, 1e-7, "cpu adam m large");
        Ref.AssertClose(av, h.GetF(tv2), 1e-5, 1e-8, "cpu adam v large");

        const int rows = 16, cols = 3 * 32 * 32;
        var x0 = Ref.Rand(rows * cols, 26, 0, 1); var grad = Ref.Rand(rows * cols, 27);
        var eps = Ref.Rand(rows, 28, 0, 0.3); var step = Ref.Rand(rows, 29, 0, 0.5);
        var tx0 = h.T(x0, rows, cols); var tgr = h.T(grad, rows, cols); var te = h.T(eps, rows); var ts = h.T(step, rows);
        var xl = h.T(x0, rows, cols);
        h.Op("attack_step_linf", () => h.Be.AttackStepLinf(xl, tx0, tgr, ts, te, rows, cols));
        Ref.AssertClose(Ref.AttackStepLinf(x0, x0, grad, step, eps, rows, cols), h.GetF(xl), 1e-6, 1e-6, "cpu attack_step_linf large");
        var x2 = h.T(x0, rows, cols);
        h.Op("attack_step_l2", () => h.Be.AttackStepL2(x2, tx0, tgr, ts, te, rows, cols));
        Ref.AssertClose(Ref.AttackStepL2(x0, x0, grad, step, eps, rows, cols), h.GetF(x2), 1e-5, 1e-6, "cpu attack_step_l2 large");
        h.CheckGuards();
    }
}
