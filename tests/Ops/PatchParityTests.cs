using Perturb.Engine;

namespace Perturb.Tests.Ops;

/// <summary>
/// The adversarial patch's placement and its adjoint on both backends against the double-precision reference: guarded
/// views, a NaN-filled adjoint output, a round mask, placements turned, shrunk, mirrored, partly outside the image and
/// empty; the adjoint identity &lt;A p, g&gt; = &lt;p, A^T g&gt;, and the adjoint as the finite-difference gradient of the
/// reference placement in double. The placements are chosen so no covered pixel's source lies within 1e-3 of a
/// rounding boundary (checked), where float and double could pick different patch pixels.
/// </summary>
[Collection("ops")]
public class PatchParityTests
{
    const int N = 4, C = 2, H = 11, W = 13, S = 5;

    public static IEnumerable<object[]> Backends() => new[] { new object[] { TestBackends.Cpu }, new object[] { TestBackends.IlgpuCpu } };

    static readonly double[] Place =
    [
        2, 3, 7, Math.Cos(0.3), Math.Sin(0.3),     // turned, enlarged
        -2, 10, 4, 1, 0,                           // shrunk, partly outside the image (top and right)
        4, 1, 4, Math.Cos(2.5), Math.Sin(2.5),     // turned past 90 degrees, shrunk
        3, 3, 0, 1, 0,                             // side 0: places nothing
    ];

    static double[] Mask()
    {
        var m = new double[S * S];
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) { double dy = y + 0.5 - S / 2.0, dx = x + 0.5 - S / 2.0; m[y * S + x] = dx * dx + dy * dy <= 5.5 ? 1 : 0; }
        return m;
    }

    /// <summary>The places as floats and back, as the op sees them; asserts their margin to rounding boundaries.</summary>
    static double[] Places()
    {
        var p = Ref.D(Ref.F(Place));
        double margin = 1;
        Ref.PatchPairs(Mask(), p, N, C, H, W, S, ref margin);
        Assert.True(margin > 1e-3, $"a test placement lies {margin:g3} from a rounding boundary");
        return p;
    }

    [Theory, MemberData(nameof(Backends))]
    public void ApplyMatchesReference(string backend)
    {
        using var h = new OpHarness(backend);
        var place = Places(); var mask = Mask();
        var patch = Ref.D(Ref.F(Ref.Rand(C * S * S, 1))); var x = Ref.D(Ref.F(Ref.Rand(N * C * H * W, 2)));
        var tx = h.V(x, N, C, H, W);
        h.Op("patch_apply", () => h.Be.PatchApply(h.V(patch, C, S, S), h.V(mask, S * S), h.V(place, N, 5), tx, N, C, H, W, S), 12L * N * H * W);
        double margin = 1;
        var want = Ref.PatchApply(patch, mask, place, x, N, C, H, W, S, ref margin);
        Ref.AssertClose(want, h.GetF(tx), 0, 0, $"{backend} patch_apply");
        int changed = want.Zip(x, (a, b) => a != b ? 1 : 0).Sum();
        Assert.True(changed > 60, $"only {changed} values changed"); // the placements cover something
        h.CheckGuards();
    }

    [Theory, MemberData(nameof(Backends))]
    public void AdjointMatchesReferenceIsTheTransposeAndTheGradient(string backend)
    {
        using var h = new OpHarness(backend);
        var place = Places(); var mask = Mask();
        var dx = Ref.D(Ref.F(Ref.Rand(N * C * H * W, 3))); var p = Ref.D(Ref.F(Ref.Rand(C * S * S, 4)));
        var tdp = h.Out(true, C, S, S);
        h.Op("patch_apply_adjoint", () => h.Be.PatchApplyAdjoint(h.V(dx, N, C, H, W), h.V(mask, S * S), h.V(place, N, 5), tdp, N, C, H, W, S), 16L * N * C * S * S);
        var dp = h.GetF(tdp);
        double margin = 1;
        Ref.AssertClose(Ref.PatchAdjoint(dx, mask, place, N, C, H, W, S, ref margin), dp, 1e-6, 1e-6, $"{backend} patch_apply_adjoint");
        // <A p, dx> over the covered values (the op's own forward on a zero image) = <p, A^T dx>
        var tz = h.T(new double[N * C * H * W], N, C, H, W);
        h.Be.PatchApply(h.T(p, C, S, S), h.T(mask, S * S), h.T(place, N, 5), tz, N, C, H, W, S);
        var ap = h.GetF(tz);
        double lhs = 0, rhs = 0;
        for (int i = 0; i < ap.Length; i++) lhs += ap[i] * dx[i];
        for (int i = 0; i < dp.Length; i++) rhs += p[i] * dp[i];
        Assert.True(Math.Abs(lhs - rhs) <= 1e-5 * (1 + Math.Abs(lhs)), $"{backend}: <A p, g> = {lhs}, <p, A^T g> = {rhs}");
        // The adjoint is the gradient of L(p) = <dx, A(p) on an image>: central differences of the reference in double.
        var x0 = Ref.Rand(N * C * H * W, 5);
        const double step = 1e-3;
        foreach (int j in new[] { 0, 7, 12, 21, 33, 40, C * S * S - 1 })
        {
            var pp = (double[])p.Clone(); var pm = (double[])p.Clone();
            pp[j] += step; pm[j] -= step;
            double L(double[] v) { double m = 1, s = 0; var y = Ref.PatchApply(v, mask, place, x0, N, C, H, W, S, ref m); for (int i = 0; i < y.Length; i++) s += y[i] * dx[i]; return s; }
            double fd = (L(pp) - L(pm)) / (2 * step);
            Assert.True(Math.Abs(fd - dp[j]) <= 1e-5 * (1 + Math.Abs(fd)), $"{backend}: dL/dpatch[{j}] finite difference {fd}, adjoint {dp[j]}");
        }
        Assert.Contains(dp, v => v == 0f); // masked-out and uncovered patch values get nothing
        Assert.True(dp.Count(v => v != 0f) > 15);
        h.CheckGuards();
    }
}
