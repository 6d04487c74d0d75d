using Perturb.Engine;

namespace Perturb.Tests.Ops;

/// <summary>Pooling, global average pooling, batch norm and per-channel affine against <see cref="Ref"/>.</summary>
[Collection("ops")]
public class PoolNormParityTests
{
    /// <summary>Pool case, and how its input is made: 0 continuous in [-1, 1]; 1 quantised to {-1, -0.5, 0, 0.5, 1} (ties); 2 all negative (padding must never win).</summary>
    static readonly (PoolShape s, int data)[] PoolCases =
    {
        (new PoolShape(2, 3, 6, 6, 2, 2, 2, 2), 0),                                                     // plain 2x2/2
        (new PoolShape(2, 2, 7, 7, 3, 3, 2, 2, PadH: 1, PadW: 1), 2),                                   // overlapping 3x3/2, padding, negatives
        (new PoolShape(1, 2, 8, 8, 3, 3, 2, 2, CeilMode: true), 1),                                     // ceil mode (4x4 instead of 3x3), ties
        (new PoolShape(2, 2, 5, 6, 3, 3, 2, 2, PadH: 1, PadW: 1, CeilMode: true, CountIncludePad: true), 0), // ceil + count_include_pad
        (new PoolShape(1, 3, 5, 5, 2, 2, 1, 1, PadH: 1, PadW: 1), 1),                                   // pad 1, stride 1, exclude pad, ties
        (new PoolShape(2, 1, 6, 7, 2, 3, 1, 2, PadH: 0, PadW: 1, CeilMode: true, CountIncludePad: true), 2), // rectangular window and stride
        (new PoolShape(1, 2, 7, 5, 3, 3, 3, 3, PadH: 1, PadW: 1, CountIncludePad: true), 0),            // non-overlapping 3x3/3, include pad
        (new PoolShape(1, 2, 8, 8, 3, 3, 2, 2, CeilMode: true, CountIncludePad: true), 0),               // ceil, no pad: last window past the input, divisor 2x3 / 3x2 / 2x2
        (new PoolShape(2, 3, 7, 9, 2, 2, 2, 2), 1),                                                     // 2x2/2 fast path, odd sizes (last row and column in no window), ties
        (new PoolShape(1, 2, 7, 9, 2, 2, 2, 2, CeilMode: true), 2),                                     // 2x2/2 in ceil mode: clipped last windows, the general loop
        (new PoolShape(2, 2, 5, 13, 2, 2, 2, 2), 1),                                                    // 2x2/2, 6 windows a row: four at once, then the last four overlapping; ties
    };

    public static IEnumerable<object[]> PoolCaseIds()
    {
        foreach (var be in new[] { TestBackends.Cpu, TestBackends.IlgpuCpu })
            for (int i = 0; i < PoolCases.Length; i++) yield return new object[] { be, i };
    }

    static double[] PoolInput(PoolShape s, int mode, int seed)
    {
        var x = Ref.Rand(s.N * s.C * s.H * s.W, seed);
        for (int i = 0; i < x.Length; i++)
            x[i] = (float)(mode switch { 1 => Math.Round(x[i] * 2) / 2, 2 => x[i] * 0.5 - 1.5, _ => x[i] });   // exact floats
        return x;
    }

    [Fact]
    public void PoolShapeOutputSizesAreAsPyTorch()
    {
        // Values from torch.nn.MaxPool2d / AvgPool2d output sizes.
        Assert.Equal(4, PoolCases[1].s.OutH);   // 7, k3, s2, p1: floor((7+2-3)/2)+1 = 4
        Assert.Equal(4, PoolCases[2].s.OutH);   // 8, k3, s2, ceil -> 4
        Assert.Equal(3, PoolCases[3].s.OutH);   // 5, k3, s2, p1, ceil -> 3
        Assert.Equal(4, PoolCases[3].s.OutW);   // 6, k3, s2, p1, ceil -> 4 (last window starts at 5 < 6+1)
    }

    [Theory, MemberData(nameof(PoolCaseIds))]
    public void MaxPool(string backend, int id)
    {
        var (s, mode) = PoolCases[id];
        using var h = new OpHarness(backend);
        var x = PoolInput(s, mode, 200 + id);
        var dy = Ref.Rand(s.N * s.C * s.OutH * s.OutW, 300 + id);
        var tx = h.V(x, s.N, s.C, s.H, s.W);
        var ty = h.Out(true, s.N, s.C, s.OutH, s.OutW);
        h.Op("maxpool_fwd", () => h.Be.MaxPoolForward(s, tx, ty));
        Ref.AssertClose(Ref.MaxPoolForward(s, x), h.GetF(ty), 0, 0, $"{backend} maxpool_fwd {s}");   // a max is exact

        var tdy = h.V(dy, s.N, s.C, s.OutH, s.OutW);
        var tdx = h.Out(true, s.N, s.C, s.H, s.W);
        h.Op("maxpool_bwd", () => h.Be.MaxPoolBackward(s, tx, tdy, tdx));
        Ref.AssertClose(Ref.MaxPoolBackward(s, x, dy), h.GetF(tdx), 1e-5, 1e-6, $"{backend} maxpool_bwd {s}");
        h.CheckGuards();
    }

    [Theory, MemberData(nameof(PoolCaseIds))]
    public void AvgPool(string backend, int id)
    {
        var (s, mode) = PoolCases[id];
        using var h = new OpHarness(backend);
        var x = PoolInput(s, mode, 400 + id);
        var dy = Ref.Rand(s.N * s.C * s.OutH * s.OutW, 500 + id);
        var tx = h.V(x, s.N, s.C, s.H, s.W);
        var ty = h.Out(true, s.N, s.C, s.OutH, s.OutW);
        h.Op("avgpool_fwd", () => h.Be.AvgPoolForward(s, tx, ty));
        Ref.AssertClose(Ref.AvgPoolForward(s, x), h.GetF(ty), 1e-5, 1e-6, $"{backend} avgpool_fwd {s}");

        var tdy = h.V(dy, s.N, s.C, s.OutH, s.OutW);
        var tdx = h.Out(true, s.N, s.C, s.H, s.W);
        h.Op("avgpool_bwd", () => h.Be.AvgPoolBackward(s, tdy, tdx));
        Ref.AssertClose(Ref.AvgPoolBackward(s, dy), h.GetF(tdx), 1e-5, 1e-6, $"{backend} avgpool_bwd {s}");
        h.CheckGuards();
    }

    [Theory, InlineData(TestBackends.Cpu), InlineData(TestBackends.IlgpuCpu)]
    public void GlobalAvgPool(string backend)
    {
        using var h = new OpHarness(backend);
        foreach (var (n, c, hw) in new[] { (2, 3, 10), (3, 2, 1), (1, 5, 49) })
        {
            var x = Ref.Rand(n * c * hw, hw);
            var tx = h.V(x, n, c, hw);
            var ty = h.Out(true, n, c);
            h.Op("gap_fwd", () => h.Be.GlobalAvgPoolForward(tx, ty, n, c, hw));
            Ref.AssertClose(Ref.GlobalAvgPoolForward(x, n, c, hw), h.GetF(ty), 1e-5, 1e-6, $"{backend} gap_fwd {n}x{c}x{hw}");

            var dy = Ref.Rand(n * c, hw + 1);
            var tdy = h.V(dy, n, c);
            var tdx = h.Out(true, n, c, hw);
            h.Op("gap_bwd", () => h.Be.GlobalAvgPoolBackward(tdy, tdx, n, c, hw));
            Ref.AssertClose(Ref.GlobalAvgPoolBackward(dy, n, c, hw), h.GetF(tdx), 1e-6, 1e-7, $"{backend} gap_bwd {n}x{c}x{hw}");
        }
        h.CheckGuards();
    }

    // ------------------------------------------------------------------ batch norm

    public static IEnumerable<object[]> BnCases()
    {
        foreach (var be in new[] { TestBackends.Cpu, TestBackends.IlgpuCpu })
        {
            yield return new object[] { be, 2, 3, 5 };   // M = 10
            yield return new object[] { be, 4, 2, 1 };   // hw = 1 (after a Linear)
            yield return new object[] { be, 3, 4, 16 };  // M = 48
            yield return new object[] { be, 1, 2, 1 };   // M = 1: variance 0, unbiased variance = variance
        }
    }

    /// <summary>Forward (y, saved mean and invStd, running statistics) and backward (dx, dgamma, dbeta; and without dgamma/dbeta). rtol 1e-4, atol 1e-4.</summary>
    [Theory, MemberData(nameof(BnCases))]
    public void BatchNorm(string backend, int n, int c, int hw)
    {
        const double tol = 1e-4;
        const float momentum = 0.1f, eps = 1e-5f;
        using var h = new OpHarness(backend);
        var x = Ref.Rand(n * c * hw, n + 10 * c + 100 * hw);
        for (int i = 0; i < x.Length; i++) x[i] = (float)(x[i] * (1 + (i / hw) % c) + 0.5 * ((i / hw) % c));  // per-channel shift and scale
        var gamma = Ref.Rand(c, 1, 0.5, 1.5); var beta = Ref.Rand(c, 2);
        var rm0 = Ref.Rand(c, 3); var rv0 = Ref.Rand(c, 4, 0.5, 2);
        var tx = h.V(x, n, c, hw);
        var tg = h.V(gamma, c); var tbeta = h.V(beta, c);
        var ty = h.Out(true, n, c, hw);
        var tmean = h.Out(true, c); var tinv = h.Out(true, c);
        var trm = h.V(rm0, c); var trv = h.V(rv0, c);
        string what = $"{backend} bn n={n} c={c} hw={hw}";

        h.Op("bn_fwd_train", () => h.Be.BatchNormForwardTrain(tx, tg, tbeta, ty, tmean, tinv, trm, trv, momentum, eps, n, c, hw));
        var (y, mean, inv, uvar) = Ref.BatchNormTrain(x, gamma, beta, eps, n, c, hw);
        var (rm, rv) = Ref.BatchNormRunning(rm0, rv0, mean, uvar, momentum);
        Ref.AssertClose(y, h.GetF(ty), tol, tol, what + " y");
        Ref.AssertClose(mean, h.GetF(tmean), tol, 1e-5, what + " saveMean");
        Ref.AssertClose(inv, h.GetF(tinv), tol, 1e-5, what + " saveInvStd");
        Ref.AssertClose(rm, h.GetF(trm), tol, 1e-5, what + " runningMean");
        Ref.AssertClose(rv, h.GetF(trv), tol, 1e-5, what + " runningVar");

        // Backward from the reference's saved statistics (rounded to float, as the backend would hold them).
        var dy = Ref.Rand(x.Length, 77);
        var meanF = Ref.D(Ref.F(mean)); var invF = Ref.D(Ref.F(inv));
        var tdy = h.V(dy, n, c, hw);
        var tm2 = h.V(meanF, c); var ti2 = h.V(invF, c);
        var tdx = h.Out(true, n, c, hw); var tdg = h.Out(true, c); var tdb = h.Out(true, c);
        h.Op("bn_bwd", () => h.Be.BatchNormBackward(tx, tdy, tg, tm2, ti2, tdx, tdg, tdb, n, c, hw));
        var (dx, dg, db) = Ref.BatchNormBackward(x, dy, gamma, meanF, invF, n, c, hw);
        double dxAtol = tol * Math.Max(1, invF.Max() / 10);   // M = 1 has invStd = 1/sqrt(eps) ~ 316 and dx = 0 up to cancellation
        Ref.AssertClose(dx, h.GetF(tdx), tol, dxAtol, what + " dx");
        Ref.AssertClose(dg, h.GetF(tdg), tol, tol, what + " dgamma");
        Ref.AssertClose(db, h.GetF(tdb), tol, tol, what + " dbeta");

        var tdx2 = h.Out(false, n, c, hw);
        h.Op("bn_bwd", () => h.Be.BatchNormBackward(tx, tdy, tg, tm2, ti2, tdx2, null, null, n, c, hw));
        Ref.AssertClose(dx, h.GetF(tdx2), tol, dxAtol, what + " dx (no dgamma/dbeta)");
        h.CheckGuards();
    }

    [Theory, InlineData(TestBackends.Cpu), InlineData(TestBackends.IlgpuCpu)]
    public void ChannelAffine(string backend)
    {
        using var h = new OpHarness(backend);
        const int n = 2, c = 3, hw = 7;
        var x = Ref.Rand(n * c * hw, 1); var scale = Ref.Rand(c, 2); var shift = Ref.Rand(c, 3);
        var tx = h.V(x, n, c, hw); var ts = h.V(scale, c); var tsh = h.V(shift, c);
        var ty = h.Out(true, n, c, hw);
        var expected = Ref.ChannelAffine(x, scale, shift, n, c, hw);
        h.Op("channel_affine", () => h.Be.ChannelAffine(tx, ts, tsh, ty, n, c, hw));
        Ref.AssertClose(expected, h.GetF(ty), 1e-6, 1e-6, $"{backend} channel_affine");

        var tin = h.V(x, n, c, hw);
        h.Op("channel_affine", () => h.Be.ChannelAffine(tin, ts, tsh, tin, n, c, hw));
        Ref.AssertClose(expected, h.GetF(tin), 1e-6, 1e-6, $"{backend} channel_affine in place");

        var dy = Ref.Rand(n * c * hw, 4);
        var (dx, dscale, dshift) = Ref.ChannelAffineBackward(dy, scale, x, n, c, hw);
        var tdy = h.V(dy, n, c, hw);
        var tdx = h.Out(true, n, c, hw); var tds = h.Out(true, c); var tdsh = h.Out(true, c);
        h.Op("channel_affine_bwd", () => h.Be.ChannelAffineBackward(tdy, ts, tdx, tx, tds, tdsh, n, c, hw));
        Ref.AssertClose(dx, h.GetF(tdx), 1e-6, 1e-6, $"{backend} channel_affine_bwd dx");
        Ref.AssertClose(dscale, h.GetF(tds), 1e-5, 1e-5, $"{backend} channel_affine_bwd dscale");
        Ref.AssertClose(dshift, h.GetF(tdsh), 1e-5, 1e-5, $"{backend} channel_affine_bwd dshift");

        // dx aliasing dy, no x and no parameter gradients.
        var tdy2 = h.V(dy, n, c, hw);
        h.Op("channel_affine_bwd", () => h.Be.ChannelAffineBackward(tdy2, ts, tdy2, null, null, null, n, c, hw));
        Ref.AssertClose(dx, h.GetF(tdy2), 1e-6, 1e-6, $"{backend} channel_affine_bwd dx aliasing dy");
        h.CheckGuards();
    }
}
