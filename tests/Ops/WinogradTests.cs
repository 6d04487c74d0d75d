using Perturb.Engine;
using Perturb.Engine.Backends;

namespace Perturb.Tests.Ops;

/// <summary>
/// CpuBackend's Winograd F(2x2,3x3) path (stride-1 3x3 convolutions, forward and backward-data) against the plain
/// double reference, and its cache of transformed weights. Tolerance as the im2col path: rtol 1e-4, atol 1e-4
/// (the transforms only add and halve; measured error is about 1e-6 on these sums of up to 9*40 products).
/// </summary>
[Collection("ops")]
public class WinogradTests
{
    const double Rtol = 1e-4, Atol = 1e-4;

    static readonly (ConvShape s, bool bias)[] Cases =
    {
        (new ConvShape(1, 16, 5, 5, 24, 3, 3, PadH: 1, PadW: 1), true),       // few tiles: one chunk, phases split over threads
        (new ConvShape(6, 20, 9, 11, 18, 3, 3, PadH: 1, PadW: 1), false),     // odd sizes: partial edge tiles, chunks in parallel
        (new ConvShape(3, 17, 8, 7, 40, 3, 3), true),                         // no padding
        (new ConvShape(2, 16, 4, 6, 16, 3, 3, PadH: 2, PadW: 0), false),      // pad 2 (backward runs pad 0) and mixed pads
        (new ConvShape(40, 16, 4, 4, 32, 3, 3, PadH: 1, PadW: 1), true),      // ResNet stage 4 geometry, many images
        (new ConvShape(2, 16, 5, 34, 16, 3, 3, PadH: 1, PadW: 1), true),      // 17 tiles a row: the scalar transforms
    };

    public static IEnumerable<object[]> Ids() => Enumerable.Range(0, Cases.Length).Select(i => new object[] { i });

    [Theory, MemberData(nameof(Ids))]
    public void ForwardAndBackwardDataMatchReference(int id)
    {
        var (s, withBias) = Cases[id];
        foreach (var threads in new[] { 1, 2, 3 })
        {
            using var be = new CpuBackend(threads);
            var x = Ref.Rand(s.N * s.C * s.H * s.W, 10 + id); var w = Ref.Rand(s.K * s.C * 9, 20 + id);
            var b = withBias ? Ref.Rand(s.K, 30 + id) : null; var dy = Ref.Rand(s.N * s.K * s.OutH * s.OutW, 40 + id);
            using var tx = be.FromArray(Ref.F(x), s.N, s.C, s.H, s.W);
            using var tw = be.FromArray(Ref.F(w), s.K, s.C, 3, 3);
            using var tb = b is null ? null : be.FromArray(Ref.F(b), s.K);
            using var tdy = be.FromArray(Ref.F(dy), s.N, s.K, s.OutH, s.OutW);
            using var ty = be.FromArray(Ref.F(Ref.Full(s.N * s.K * s.OutH * s.OutW, double.NaN)), s.N, s.K, s.OutH, s.OutW);
            using var tdx = be.FromArray(Ref.F(Ref.Full(s.N * s.C * s.H * s.W, double.NaN)), s.N, s.C, s.H, s.W);
            long builds = be.WinogradBuilds;
            be.ConvForward(s, tx, tw, tb, ty);
            be.ConvBackwardData(s, tdy, tw, tdx);
            Assert.True(be.WinogradBuilds >= builds + 2, $"shape {id}: the Winograd path was not taken");
            Ref.AssertClose(Ref.ConvForward(s, x, w, b), be.ToArray(ty), Rtol, Atol, $"winograd conv_fwd case {id} threads {threads}");
            Ref.AssertClose(Ref.ConvBackwardData(s, dy, w), be.ToArray(tdx), Rtol, Atol, $"winograd conv_bwd_data case {id} threads {threads}");
            be.ConvForward(s, tx, tw, tb, ty, relu: true);
            Ref.AssertClose(Ref.ConvForward(s, x, w, b).Select(v => Math.Max(v, 0)).ToArray(), be.ToArray(ty), Rtol, Atol, $"winograd conv_fwd relu case {id} threads {threads}");
        }
    }

    /// <summary>
    /// The transformed weights are reused while the weights are unchanged, and rebuilt after any op writes them
    /// (Upload, an Axpy through a view, an SGD step): each conv afterwards matches the reference on the new weights.
    /// </summary>
    [Fact]
    public void WeightCacheFollowsEveryWrite()
    {
        using var be = new CpuBackend(2);
        WeightCacheScenario.Run(be, new ConvShape(2, 16, 6, 6, 16, 3, 3, PadH: 1, PadW: 1), () => be.WinogradBuilds);
    }
}
