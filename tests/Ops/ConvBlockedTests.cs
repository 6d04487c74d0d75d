using Perturb.Engine;
using Perturb.Engine.Backends;

namespace Perturb.Tests.Ops;

/// <summary>
/// CpuBackend's sample-blocked forward (im2col of several samples side by side, one GEMM, the bias/ReLU epilogue
/// copying each sample out) and backward-data (the samples' dy side by side, one GEMM, col2im per sample) against the plain double reference, at 1, 2 and 3 threads so that one block, blocks in
/// parallel and a short last block all run. Tolerance as the other conv tests: rtol 1e-4, atol 1e-4.
/// </summary>
[Collection("ops")]
public class ConvBlockedTests
{
    static readonly (ConvShape s, bool bias)[] Cases =
    {
        (new ConvShape(7, 12, 13, 11, 20, 3, 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1), true),   // stride 2, odd sizes
        (new ConvShape(5, 9, 8, 8, 17, 1, 1, StrideH: 2, StrideW: 2), false),                       // 1x1 stride-2 projection
        (new ConvShape(9, 6, 6, 7, 10, 3, 2, PadH: 1, PadW: 0, DilH: 2), true),                       // dilated, rectangular
    };

    public static IEnumerable<object[]> Ids() => Enumerable.Range(0, Cases.Length).Select(i => new object[] { i });

    [Theory, MemberData(nameof(Ids))]
    public void BlockedForwardMatchesReference(int id)
    {
        var (s, withBias) = Cases[id];
        var x = Ref.Rand(s.N * s.C * s.H * s.W, 10 + id); var w = Ref.Rand(s.K * s.C * s.R * s.S, 20 + id);
        var b = withBias ? Ref.Rand(s.K, 30 + id) : null;
        var dy = Ref.Rand(s.N * s.K * s.OutH * s.OutW, 40 + id);
        var want = Ref.ConvForward(s, x, w, b);
        var wantDx = Ref.ConvBackwardData(s, dy, w);
        foreach (var threads in new[] { 1, 2, 3 })
            foreach (var relu in new[] { false, true })
            {
                using var be = new CpuBackend(threads);
                using var tx = be.FromArray(Ref.F(x), s.N, s.C, s.H, s.W);
                using var tw = be.FromArray(Ref.F(w), s.K, s.C, s.R, s.S);
                using var tb = b is null ? null : be.FromArray(Ref.F(b), s.K);
                using var ty = be.FromArray(Ref.F(Ref.Full(s.N * s.K * s.OutH * s.OutW, double.NaN)), s.N, s.K, s.OutH, s.OutW);
                be.ConvForward(s, tx, tw, tb, ty, relu);
                Ref.AssertClose(relu ? want.Select(v => Math.Max(v, 0)).ToArray() : want, be.ToArray(ty), 1e-4, 1e-4,
                    $"blocked conv_fwd case {id} threads {threads} relu {relu}");
                using var tdy = be.FromArray(Ref.F(dy), s.N, s.K, s.OutH, s.OutW);
                using var tdx = be.FromArray(Ref.F(Ref.Full(s.N * s.C * s.H * s.W, double.NaN)), s.N, s.C, s.H, s.W);
                be.ConvBackwardData(s, tdy, tw, tdx);
                Ref.AssertClose(wantDx, be.ToArray(tdx), 1e-4, 1e-4, $"blocked conv_bwd_data case {id} threads {threads}");
            }
    }
}
