using Perturb.Engine;

namespace Perturb.Tests.Ops;

/// <summary>GEMM, convolution and bias ops against <see cref="Ref"/>.</summary>
[Collection("ops")]
public class GemmConvParityTests
{
    // Tolerance for sums of up to ~100 products of values in [-1, 1]: rtol 1e-4, atol 1e-4.
    const double Rtol = 1e-4, Atol = 1e-4;

    static readonly (int m, int n, int k)[] GemmSizes =
    {
        (1, 1, 1), (1, 7, 33), (7, 33, 65), (65, 1, 7), (33, 65, 1), (65, 33, 7), (33, 7, 65),
    };

    public static IEnumerable<object[]> GemmCases()
    {
        foreach (var be in new[] { TestBackends.Cpu, TestBackends.IlgpuCpu })
            for (int s = 0; s < GemmSizes.Length; s++)
                foreach (var ta in new[] { false, true })
                    foreach (var tb in new[] { false, true })
                        yield return new object[] { be, s, ta, tb };
    }

    /// <summary>
    /// Each case: (1) alpha = 1, beta = 0 into a NaN-filled C (must be finite and exact); (2) alpha = -0.5,
    /// beta = 0.75 on that C. A, B and C are views with offsets; guard regions must stay untouched.
    /// </summary>
    [Theory, MemberData(nameof(GemmCases))]
    public void Gemm(string backend, int size, bool transA, bool transB)
    {
        var (m, n, k) = GemmSizes[size];
        RunGemm(backend, m, n, k, transA, transB, seed: 100 * size + (transA ? 10 : 0) + (transB ? 1 : 0));
    }

    /// <summary>The larger product, all four transposes, on the CPU backend only (ILGPU's CPU accelerator is slow).</summary>
    [Theory, InlineData(false, false), InlineData(false, true), InlineData(true, false), InlineData(true, true)]
    public void GemmLargeCpu(bool transA, bool transB) => RunGemm(TestBackends.Cpu, 130, 70, 90, transA, transB, seed: 7);

    static void RunGemm(string backend, int m, int n, int k, bool transA, bool transB, int seed)
    {
        using var h = new OpHarness(backend);
        var a = Ref.Rand(m * k, seed); var b = Ref.Rand(k * n, seed + 1);
        var ta = h.V(a, transA ? new[] { k, m } : new[] { m, k });
        var tb = h.V(b, transB ? new[] { n, k } : new[] { k, n });
        var tc = h.Out(true, m, n);
        string what = $"{backend} gemm m={m} n={n} k={k} tA={transA} tB={transB}";

        h.Op("gemm", () => h.Be.Gemm(transA, transB, m, n, k, 1f, ta, tb, 0f, tc), flops: 2L * m * n * k);
        var c1 = h.GetF(tc);
        var e1 = Ref.Gemm(transA, transB, m, n, k, 1, a, b, 0, null);
        Ref.AssertClose(e1, c1, Rtol, Atol, what + " alpha=1 beta=0 (C was NaN)");

        h.Op("gemm", () => h.Be.Gemm(transA, transB, m, n, k, -0.5f, ta, tb, 0.75f, tc), flops: 2L * m * n * k);
        var e2 = Ref.Gemm(transA, transB, m, n, k, -0.5, a, b, 0.75, Ref.D(c1));
        Ref.AssertClose(e2, h.GetF(tc), Rtol, Atol, what + " alpha=-0.5 beta=0.75");
        h.CheckGuards();
    }

    // ------------------------------------------------------------------ convolution

    internal static readonly (ConvShape s, bool bias)[] ConvCases =
    {
        (new ConvShape(2, 3, 7, 6, 4, 3, 3, PadH: 1, PadW: 1), true),                                  // basic, padding
        (new ConvShape(2, 3, 9, 7, 5, 3, 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1), false),          // stride 2, odd sizes
        (new ConvShape(1, 2, 9, 8, 3, 3, 3, PadH: 2, PadW: 2, DilH: 2, DilW: 2), true),                 // dilation 2
        (new ConvShape(2, 4, 6, 5, 6, 3, 3, PadH: 1, PadW: 1, Groups: 2), true),                        // groups 2
        (new ConvShape(2, 4, 7, 7, 4, 3, 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1, Groups: 4), false), // depthwise, stride 2
        (new ConvShape(3, 5, 5, 4, 2, 1, 1), false),                                                   // 1x1
        (new ConvShape(2, 3, 6, 7, 3, 2, 3, StrideH: 1, StrideW: 2, PadH: 0, PadW: 1, DilH: 2), true),  // rectangular, mixed
        (new ConvShape(1, 1, 5, 5, 1, 5, 5, PadH: 2, PadW: 2), true),                                   // kernel = image
    };

    public static IEnumerable<object[]> ConvCaseIds()
    {
        foreach (var be in new[] { TestBackends.Cpu, TestBackends.IlgpuCpu })
            for (int i = 0; i < ConvCases.Length; i++) yield return new object[] { be, i };
    }

    [Theory, MemberData(nameof(ConvCaseIds))]
    public void ConvForward(string backend, int id)
    {
        var (s, withBias) = ConvCases[id];
        using var h = new OpHarness(backend);
        var x = Ref.Rand(s.N * s.C * s.H * s.W, 10 + id);
        var w = Ref.Rand(s.K * s.CPerGroup * s.R * s.S, 20 + id);
        var bias = withBias ? Ref.Rand(s.K, 30 + id) : null;
        var tx = h.V(x, s.N, s.C, s.H, s.W);
        var tw = h.V(w, s.K, s.CPerGroup, s.R, s.S);
        var tb = bias is null ? null : h.V(bias, s.K);
        var ty = h.Out(true, s.N, s.K, s.OutH, s.OutW);
        h.Op("conv_fwd", () => h.Be.ConvForward(s, tx, tw, tb, ty), flops: s.Flops);
        Ref.AssertClose(Ref.ConvForward(s, x, w, bias), h.GetF(ty), Rtol, Atol, $"{backend} conv_fwd {s} bias={withBias}");
        h.CheckGuards();
    }

    /// <summary>The fused epilogue: y = max(conv(x, w) + bias, 0), one "conv_fwd" op and no activation op.</summary>
    [Theory, MemberData(nameof(ConvCaseIds))]
    public void ConvForwardRelu(string backend, int id)
    {
        var (s, withBias) = ConvCases[id];
        using var h = new OpHarness(backend);
        var x = Ref.Rand(s.N * s.C * s.H * s.W, 110 + id);
        var w = Ref.Rand(s.K * s.CPerGroup * s.R * s.S, 120 + id);
        var bias = withBias ? Ref.Rand(s.K, 130 + id) : null;
        var tx = h.V(x, s.N, s.C, s.H, s.W);
        var tw = h.V(w, s.K, s.CPerGroup, s.R, s.S);
        var tb = bias is null ? null : h.V(bias, s.K);
        var ty = h.Out(true, s.N, s.K, s.OutH, s.OutW);
        h.Op("conv_fwd", () => h.Be.ConvForward(s, tx, tw, tb, ty, relu: true), flops: s.Flops);
        var want = Ref.ConvForward(s, x, w, bias).Select(v => Math.Max(v, 0)).ToArray();
        Assert.Contains(want, v => v == 0);
        Ref.AssertClose(want, h.GetF(ty), Rtol, Atol, $"{backend} conv_fwd relu {s} bias={withBias}");
        h.CheckGuards();
    }

    [Theory, MemberData(nameof(ConvCaseIds))]
    public void ConvBackwardData(string backend, int id)
    {
        var (s, _) = ConvCases[id];
        using var h = new OpHarness(backend);
        var dy = Ref.Rand(s.N * s.K * s.OutH * s.OutW, 40 + id);
        var w = Ref.Rand(s.K * s.CPerGroup * s.R * s.S, 50 + id);
        var tdy = h.V(dy, s.N, s.K, s.OutH, s.OutW);
        var tw = h.V(w, s.K, s.CPerGroup, s.R, s.S);
        var tdx = h.Out(true, s.N, s.C, s.H, s.W);
        h.Op("conv_bwd_data", () => h.Be.ConvBackwardData(s, tdy, tw, tdx));
        Ref.AssertClose(Ref.ConvBackwardData(s, dy, w), h.GetF(tdx), Rtol, Atol, $"{backend} conv_bwd_data {s}");
        h.CheckGuards();
    }

    [Theory, MemberData(nameof(ConvCaseIds))]
    public void ConvBackwardWeights(string backend, int id)
    {
        var (s, withBias) = ConvCases[id];
        using var h = new OpHarness(backend);
        var x = Ref.Rand(s.N * s.C * s.H * s.W, 60 + id);
        var dy = Ref.Rand(s.N * s.K * s.OutH * s.OutW, 70 + id);
        var tx = h.V(x, s.N, s.C, s.H, s.W);
        var tdy = h.V(dy, s.N, s.K, s.OutH, s.OutW);
        var tdw = h.Out(true, s.K, s.CPerGroup, s.R, s.S);
        var tdb = withBias ? h.Out(true, s.K) : null;
        h.Op("conv_bwd_weights", () => h.Be.ConvBackwardWeights(s, tx, tdy, tdw, tdb));
        var (dw, db) = Ref.ConvBackwardWeights(s, x, dy, withBias);
        Ref.AssertClose(dw, h.GetF(tdw), Rtol, Atol, $"{backend} conv_bwd_weights dw {s}");
        if (withBias) Ref.AssertClose(db!, h.GetF(tdb!), Rtol, Atol, $"{backend} conv_bwd_weights dbias {s}");
        h.CheckGuards();
    }

    // ------------------------------------------------------------------ bias

    [Theory, InlineData(TestBackends.Cpu), InlineData(TestBackends.IlgpuCpu)]
    public void BiasAddAndGrad(string backend)
    {
        using var h = new OpHarness(backend);
        foreach (var (outer, ch, inner) in new[] { (2, 3, 5), (3, 4, 1), (1, 7, 9) })
        {
            var y = Ref.Rand(outer * ch * inner, outer + ch);
            var bias = Ref.Rand(ch, inner);
            var ty = h.V(y, outer, ch, inner);
            var tb = h.V(bias, ch);
            h.Op("bias_add", () => h.Be.BiasAdd(ty, tb, outer, ch, inner));
            Ref.AssertClose(Ref.BiasAdd(y, bias, outer, ch, inner), h.GetF(ty), 1e-6, 1e-6, $"{backend} bias_add {outer}x{ch}x{inner}");

            var dy = Ref.Rand(outer * ch * inner, 3 * inner);
            var tdy = h.V(dy, outer, ch, inner);
            var tdb = h.Out(true, ch);
            h.Op("bias_grad", () => h.Be.BiasGrad(tdy, tdb, outer, ch, inner));
            Ref.AssertClose(Ref.BiasGrad(dy, outer, ch, inner), h.GetF(tdb), 1e-5, 1e-5, $"{backend} bias_grad {outer}x{ch}x{inner}");
        }
        h.CheckGuards();
    }
}
