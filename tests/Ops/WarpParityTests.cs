using Perturb.Engine;

namespace Perturb.Tests.Ops;

/// <summary>
/// The bilinear affine warp and its adjoint (EOT-PGD's transformations) on both backends against the dense
/// double-precision reference: guarded views, NaN-filled outputs (beta = 0 must not read them), accumulation with
/// beta, the adjoint identity &lt;W x, y&gt; = &lt;x, W^T y&gt;, and the adjoint as the finite-difference gradient of the
/// reference forward.
/// </summary>
[Collection("ops")]
public class WarpParityTests
{
    const int Planes = 3, H = 5, W = 7, Len = Planes * H * W;

    public static IEnumerable<object[]> Cases()
    {
        foreach (var be in new[] { TestBackends.Cpu, TestBackends.IlgpuCpu })
            for (int m = 0; m < Maps.Length; m++) yield return new object[] { be, m };
    }

    static readonly WarpMap[] Maps =
    [
        WarpMap.RotateScaleTranslate(0, 1, 0, 0, H, W),          // identity
        WarpMap.RotateScaleTranslate(13, 0.9, 1.3, -0.7, H, W),  // EOT's kind: rotate, scale, translate
        WarpMap.RotateScaleTranslate(-40, 1.7, -2.2, 0.4, H, W), // a zoom in, part of the image leaves
        new WarpMap(-1, 0, W - 1, 0.3f, 1, -0.6f),               // mirror with a shear
        WarpMap.RotateScaleTranslate(5, 0.4, 0, 0, H, W),        // a strong zoom out: many outputs outside the source
    ];

    [Theory, MemberData(nameof(Cases))]
    public void ForwardMatchesReference(string backend, int mi)
    {
        using var h = new OpHarness(backend);
        var m = Maps[mi];
        var x = Ref.D(Ref.F(Ref.Rand(Len, 1))); var y0 = Ref.D(Ref.F(Ref.Rand(Len, 2)));
        var tx = h.V(x, Planes, H, W);
        var ty = h.Out(true, Planes, H, W);
        h.Op("warp_affine", () => h.Be.WarpAffine(tx, ty, Planes, H, W, m, 1.5f, 0f), 8L * Len);
        Ref.AssertClose(Ref.Warp(x, y0, Planes, H, W, m, 1.5, 0, false), h.GetF(ty), 1e-5, 1e-5, $"{backend} warp_affine map {mi}");
        var ta = h.V(y0, Planes, H, W);
        h.Op("warp_affine", () => h.Be.WarpAffine(tx, ta, Planes, H, W, m, -0.5f, 0.75f), 8L * Len);
        Ref.AssertClose(Ref.Warp(x, y0, Planes, H, W, m, -0.5, 0.75, false), h.GetF(ta), 1e-5, 1e-5, $"{backend} warp_affine beta map {mi}");
        h.CheckGuards();
    }

    [Theory, MemberData(nameof(Cases))]
    public void AdjointMatchesReferenceAndIsTheTranspose(string backend, int mi)
    {
        using var h = new OpHarness(backend);
        var m = Maps[mi];
        var x = Ref.D(Ref.F(Ref.Rand(Len, 3))); var dy = Ref.D(Ref.F(Ref.Rand(Len, 4)));
        var tdy = h.V(dy, Planes, H, W);
        var tdx = h.Out(true, Planes, H, W);
        h.Op("warp_affine_adjoint", () => h.Be.WarpAffineAdjoint(tdy, tdx, Planes, H, W, m, 0.8f, 0f), 8L * Len);
        var dx = h.GetF(tdx);
        Ref.AssertClose(Ref.Warp(dy, x, Planes, H, W, m, 0.8, 0, true), dx, 1e-5, 1e-5, $"{backend} warp_affine_adjoint map {mi}");
        var tacc = h.V(x, Planes, H, W);
        h.Op("warp_affine_adjoint", () => h.Be.WarpAffineAdjoint(tdy, tacc, Planes, H, W, m, 0.8f, 1f), 8L * Len);
        Ref.AssertClose(Ref.Warp(dy, x, Planes, H, W, m, 0.8, 1, true), h.GetF(tacc), 1e-5, 1e-5, $"{backend} warp_affine_adjoint beta map {mi}");
        // <W x, dy> = <x, W^T dy> with the op's own outputs
        var tx = h.V(x, Planes, H, W);
        var twx = h.Out(false, Planes, H, W);
        h.Be.WarpAffine(tx, twx, Planes, H, W, m, 0.8f, 0f);
        var wx = h.GetF(twx);
        double lhs = 0, rhs = 0;
        for (int i = 0; i < Len; i++) { lhs += wx[i] * dy[i]; rhs += x[i] * dx[i]; }
        Assert.True(Math.Abs(lhs - rhs) <= 1e-5 * (1 + Math.Abs(lhs)), $"{backend} map {mi}: <Wx, y> = {lhs}, <x, W^T y> = {rhs}");
        // The adjoint is the gradient of L(x) = <dy, 0.8 W x>: central differences of the reference forward, in double.
        const double step = 1e-3;
        foreach (int j in new[] { 0, 17, 38, 52, Len - 1 })
        {
            var xp = (double[])x.Clone(); var xm = (double[])x.Clone();
            xp[j] += step; xm[j] -= step;
            double L(double[] v) { var o = Ref.Warp(v, v, Planes, H, W, m, 0.8, 0, false); double s = 0; for (int i = 0; i < Len; i++) s += o[i] * dy[i]; return s; }
            double fd = (L(xp) - L(xm)) / (2 * step);
            Assert.True(Math.Abs(fd - dx[j]) <= 1e-5 * (1 + Math.Abs(fd)), $"{backend} map {mi}: dL/dx[{j}] finite difference {fd}, adjoint {dx[j]}");
        }
        h.CheckGuards();
    }
}
