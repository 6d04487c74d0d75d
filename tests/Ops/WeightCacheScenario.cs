using Perturb.Engine;
using Perturb.Engine.Backends;

namespace Perturb.Tests.Ops;

/// <summary>
/// A conv path's cached weight form (Winograd's transforms, the direct path's packing, the GEMM paths' packed A)
/// against every way the weights can be written: repeated calls build nothing, and an Upload, an Axpy through a view
/// and an SGD step each rebuild exactly <c>perWrite</c> forms (forward and backward-data); after each, forward and
/// backward-data match the reference on the weights of the moment.
/// </summary>
static class WeightCacheScenario
{
    public static void Run(CpuBackend be, ConvShape s, Func<long> builds, int perWrite = 2)
    {
        var x = Ref.Rand(s.N * s.C * s.H * s.W, 1); var dy = Ref.Rand(s.N * s.K * s.OutH * s.OutW, 2);
        var w = Ref.Rand(s.K * s.C * s.R * s.S, 3);
        using var tx = be.FromArray(Ref.F(x), s.N, s.C, s.H, s.W);
        using var tdy = be.FromArray(Ref.F(dy), s.N, s.K, s.OutH, s.OutW);
        using var tw = be.FromArray(Ref.F(w), s.K, s.C, s.R, s.S);
        using var ty = be.Allocate(s.N, s.K, s.OutH, s.OutW);
        using var tdx = be.Allocate(s.N, s.C, s.H, s.W);
        long expect = builds();
        void Check(string what, int writes)
        {
            be.ConvForward(s, tx, tw, null, ty);
            be.ConvBackwardData(s, tdy, tw, tdx);
            Ref.AssertClose(Ref.ConvForward(s, x, w, null), be.ToArray(ty), 1e-4, 1e-4, "conv_fwd after " + what);
            Ref.AssertClose(Ref.ConvBackwardData(s, dy, w), be.ToArray(tdx), 1e-4, 1e-4, "conv_bwd_data after " + what);
            expect += writes * perWrite;
            Assert.True(expect == builds(), $"after {what}: {builds() - expect + writes * perWrite} builds, expected {writes * perWrite}");
        }

        Check("first call", 1);
        long version = tw.Version;
        Check("no change", 0);
        Check("no change again", 0);
        Assert.Equal(version, tw.Version);

        w = Ref.Rand(w.Length, 4);
        be.Upload(tw, Ref.F(w));
        Check("upload", 1);

        var delta = Ref.Rand(w.Length, 5);
        using (var td = be.FromArray(Ref.F(delta), w.Length))
            be.Axpy(0.5f, td, tw.Reshape(w.Length));   // written through a view
        w = Ref.D(Ref.F(w)).Zip(Ref.D(Ref.F(delta)), (a, d) => (double)((float)a + 0.5f * (float)d)).ToArray();
        Check("axpy through a view", 1);

        using (var tg = be.FromArray(Ref.F(delta), s.K, s.C, s.R, s.S))
        using (var tv = be.Allocate(s.K, s.C, s.R, s.S))
            be.SgdUpdate(tw, tg, tv, 0.1f, 0f, 0f, false);
        w = Ref.D(be.ToArray(tw));
        Check("sgd step", 1);
    }
}
