using Perturb.Engine;
using Perturb.Engine.Backends;

namespace Perturb.Tests.Ops;

/// <summary>
/// Every CpuBackend convolution path forced in turn (<see cref="CpuBackend.ForcePath"/>), forward (with and without
/// bias, with and without the ReLU epilogue) and backward-data, against the plain double reference, on guarded views
/// (inputs, weights and outputs at an offset inside a larger storage; outputs NaN-filled), at 1 and 2 threads:
/// batch 1 and more, odd sizes, padded and unpadded, tile rows longer than one vector segment.
/// Tolerances (|diff| &lt;= atol + rtol |ref|), on these sums of up to 9 x 40 products of values in [-1, 1]:
/// rtol 1e-4, atol 1e-4 for im2col and the sample blocks (measured worst |diff| 1.0e-5) and Winograd F(2x2,3x3)
/// (5.2e-6); rtol 1e-4, atol 3e-4 for F(4x4,3x3) (measured worst 6.2e-5: its transforms scale terms by up to 8 and
/// 1/24, about ten times F(2x2)'s rounding); rtol 1e-4, atol 1e-4 for the stride-2 polyphase Winograd (measured worst
/// forward |diff| 3e-6 with 2x2 tiles, 1.5e-5 with 4x4 tiles, whose F(4,2) transforms scale by up to 8 and 1/6).
/// </summary>
[Collection("ops")]
public class ConvPathTests
{
    static readonly (ConvShape s, bool bias)[] Cases =
    {
        (new ConvShape(1, 16, 5, 5, 24, 3, 3, PadH: 1, PadW: 1), true),       // batch 1, a few tiles: phases split over threads
        (new ConvShape(3, 20, 9, 11, 18, 3, 3, PadH: 1, PadW: 1), false),     // odd sizes: partial edge tiles
        (new ConvShape(2, 17, 8, 7, 40, 3, 3), true),                         // no padding
        (new ConvShape(2, 16, 4, 6, 16, 3, 3, PadH: 2, PadW: 0), false),      // pad 2 (backward runs pad 0), mixed pads
        (new ConvShape(2, 16, 28, 28, 16, 3, 3, PadH: 1, PadW: 1), true),     // stage 1 geometry: 7 F(4x4) tiles a row, chunks in parallel
        (new ConvShape(1, 16, 6, 38, 16, 3, 3, PadH: 1, PadW: 1), true),      // 10 F(4x4) tiles a row: two segments; 19 F(2x2): scalar transforms
        (new ConvShape(4, 16, 7, 7, 24, 3, 3, PadH: 1, PadW: 1), false),      // stage 3 geometry
        (new ConvShape(5, 32, 4, 4, 32, 3, 3, PadH: 1, PadW: 1), true),       // stage 4 geometry
        (new ConvShape(3, 12, 13, 11, 20, 3, 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1), true),   // stride 2 (no Winograd)
        (new ConvShape(5, 9, 8, 8, 17, 1, 1, StrideH: 2, StrideW: 2), false),                       // 1x1 stride-2 projection
        (new ConvShape(3, 6, 11, 12, 10, 3, 2, StrideH: 3, StrideW: 3, PadH: 1, PadW: 2, DilH: 2), true),   // stride 3, dilated, rectangular
        (new ConvShape(2, 3, 40, 37, 16, 3, 3, PadH: 1, PadW: 1), true),                            // a stem: 3 channels, rows of 37
        (new ConvShape(3, 16, 13, 11, 20, 3, 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1), true),   // stride 2, odd sizes: 7x6 output, partial tiles
        (new ConvShape(2, 16, 7, 7, 24, 3, 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1), false),    // stage 4's stride-2 geometry: 4x4 output
        (new ConvShape(17, 16, 14, 14, 16, 3, 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1), true),  // 7x7 output, 17 samples: more tiles than lanes, odd over threads
        (new ConvShape(2, 16, 9, 8, 16, 3, 3, StrideH: 2, StrideW: 2, PadH: 2, PadW: 0), false),    // stride 2, pad 2 and 0
        (new ConvShape(1, 16, 28, 28, 32, 3, 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1), true),   // stride 2, batch 1: the phases split over threads
        (new ConvShape(2, 8, 7, 41, 8, 3, 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1), false),     // stride 2, rows of 21 outputs: a tap row in two segments
        // F(4x4) with the lanes over 16 images: one group (phases split over threads), groups and a rest of images
        // through the tile-row transforms, planes that are not a multiple of 16 pixels, pads 2 and 0, partial tiles
        (new ConvShape(16, 16, 14, 14, 16, 3, 3, PadH: 1, PadW: 1), true),
        (new ConvShape(35, 16, 4, 4, 20, 3, 3, PadH: 1, PadW: 1), false),
        (new ConvShape(19, 16, 7, 7, 24, 3, 3, PadH: 1, PadW: 1), true),
        (new ConvShape(17, 16, 9, 6, 16, 3, 3, PadH: 2, PadW: 0), true),
        (new ConvShape(32, 16, 28, 28, 16, 3, 3, PadH: 1, PadW: 1), false),
        // stride 2 with 16 samples and more (chunks of several samples): 4x4 output, 7x6 output (partial tiles), pads 2 and 0
        (new ConvShape(16, 16, 7, 7, 24, 3, 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1), true),
        (new ConvShape(33, 16, 13, 11, 20, 3, 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1), false),
        (new ConvShape(18, 16, 9, 8, 16, 3, 3, StrideH: 2, StrideW: 2, PadH: 2, PadW: 0), true),
    };

    static readonly CpuBackend.ConvPath[] Paths =
        { CpuBackend.ConvPath.Im2Col, CpuBackend.ConvPath.Blocked, CpuBackend.ConvPath.Implicit, CpuBackend.ConvPath.Winograd, CpuBackend.ConvPath.Winograd4,
          CpuBackend.ConvPath.Winograd4Rows, CpuBackend.ConvPath.WinogradS2, CpuBackend.ConvPath.WinogradS2F4, CpuBackend.ConvPath.Direct };

    public static IEnumerable<object[]> Ids() =>
        from i in Enumerable.Range(0, Cases.Length) from p in Paths
        where CpuBackend.PathApplies(p, Cases[i].s) select new object[] { i, p.ToString() };

    [Theory, MemberData(nameof(Ids))]
    public void PathMatchesReference(int id, string pathName)
    {
        var path = Enum.Parse<CpuBackend.ConvPath>(pathName);
        var (s, withBias) = Cases[id];
        double atol = path is CpuBackend.ConvPath.Winograd4 or CpuBackend.ConvPath.Winograd4Rows ? 3e-4 : 1e-4;
        var x = Ref.Rand(s.N * s.C * s.H * s.W, 10 + id); var w = Ref.Rand(s.K * s.C * s.R * s.S, 20 + id);
        var b = withBias ? Ref.Rand(s.K, 30 + id) : null; var dy = Ref.Rand(s.N * s.K * s.OutH * s.OutW, 40 + id);
        var want = Ref.ConvForward(s, x, w, b);
        var wantDx = Ref.ConvBackwardData(s, dy, w);
        foreach (var threads in new[] { 1, 2 })
        {
            using var be = new CpuBackend(threads) { ForcePath = path };
            using var h = new OpHarness(be);
            var tx = h.V(x, s.N, s.C, s.H, s.W); var tw = h.V(w, s.K, s.C, s.R, s.S); var tb = b is null ? null : h.V(b, s.K);
            var tdy = h.V(dy, s.N, s.K, s.OutH, s.OutW);
            long builds = be.WinogradBuilds;
            foreach (var relu in new[] { false, true })
            {
                var ty = h.Out(true, s.N, s.K, s.OutH, s.OutW);
                h.Op("conv_fwd", () => be.ConvForward(s, tx, tw, tb, ty, relu));
                Ref.AssertClose(relu ? want.Select(v => Math.Max(v, 0)).ToArray() : want, h.GetF(ty), 1e-4, atol,
                    $"{path} conv_fwd case {id} threads {threads} relu {relu}");
            }
            var tdx = h.Out(true, s.N, s.C, s.H, s.W);
            h.Op("conv_bwd_data", () => be.ConvBackwardData(s, tdy, tw, tdx));
            Ref.AssertClose(wantDx, h.GetF(tdx), 1e-4, atol, $"{path} conv_bwd_data case {id} threads {threads}");
            h.CheckGuards();
            bool winograd = path is CpuBackend.ConvPath.Winograd or CpuBackend.ConvPath.Winograd4 or CpuBackend.ConvPath.Winograd4Rows or CpuBackend.ConvPath.WinogradS2 or CpuBackend.ConvPath.WinogradS2F4;
            Assert.True(winograd == (be.WinogradBuilds == builds + 2), $"{path} case {id}: {be.WinogradBuilds - builds} weight transforms built");
        }
    }

    /// <summary>
    /// The GEMM paths (im2col, sample blocks, implicit GEMM) pack their weights once per weight version and follow
    /// every write (<see cref="WeightCacheScenario"/>): a 1x1 stride-2 projection through the sample blocks and a 3x3
    /// through im2col, forward and backward-data each.
    /// </summary>
    [Theory]
    [InlineData("Blocked", 1)]
    [InlineData("Im2Col", 3)]
    public void GemmWeightsArePackedOncePerVersion(string pathName, int kernel)
    {
        var s = new ConvShape(4, 12, 9, 9, 20, kernel, kernel, StrideH: 2, StrideW: 2, PadH: kernel / 2, PadW: kernel / 2);
        using var be = new CpuBackend(2) { ForcePath = Enum.Parse<CpuBackend.ConvPath>(pathName) };
        WeightCacheScenario.Run(be, s, () => be.WeightPackBuilds);
    }

    /// <summary>The direct path packs its weights once per weight version and follows every write (<see cref="WeightCacheScenario"/>).</summary>
    [Avx512Fact]
    public void DirectWeightsArePackedOncePerVersion()
    {
        var s = new ConvShape(3, 16, 9, 9, 40, 3, 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1);
        using var be = new CpuBackend(2) { ForcePath = CpuBackend.ConvPath.Direct };
        WeightCacheScenario.Run(be, s, () => be.DirectBuilds);
    }
}

/// <summary>A fact about an AVX-512 path, skipped with the reason on a CPU without AVX-512.</summary>
sealed class Avx512FactAttribute : FactAttribute
{
    public Avx512FactAttribute()
    {
        if (!System.Runtime.Intrinsics.X86.Avx512F.IsSupported) Skip = "this CPU has no AVX-512, which the path needs";
    }
}
