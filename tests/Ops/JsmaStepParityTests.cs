using Perturb.Engine;

namespace Perturb.Tests.Ops;

/// <summary>
/// JSMA's pair step (<see cref="IBackend.JsmaStep"/>) on both backends against the double reference, theta up and
/// down: guarded views, a stopped row left alone, a row whose domain holds no qualifying pair stopping, pixels clamped.
/// </summary>
[Collection("ops")]
public class JsmaStepParityTests
{
    public static IEnumerable<object[]> Cases() =>
        from be in new[] { TestBackends.Cpu, TestBackends.IlgpuCpu } from th in new[] { 1.0, -0.3 } select new object[] { be, th };

    [Theory, MemberData(nameof(Cases))]
    public void JsmaStepMatchesReference(string backend, double theta)
    {
        const int rows = 5, d = 17;
        using var h = new OpHarness(backend);
        var alpha = Ref.D(Ref.F(Ref.Rand(rows * d, 1))); var beta = Ref.D(Ref.F(Ref.Rand(rows * d, 2)));
        var adv = Ref.D(Ref.F(Ref.Rand(rows * d, 3, 0, 1)));
        var domain = Ref.Rand(rows * d, 4, 0, 1).Select(v => v < 0.75 ? 1.0 : 0.0).ToArray();
        for (int j = 0; j < d; j++) domain[3 * d + j] = j == 5 ? 1 : 0; // row 3: one value left, no pair: it stops
        double[] running = [1, 0, 1, 1, 1], changed = [0, 4, 2, 6, 8];
        var ta = h.V(adv, rows, d); var td = h.V(domain, rows, d); var tr = h.V(running, rows); var tc = h.V(changed, rows);
        h.Op("jsma_step", () => h.Be.JsmaStep(h.V(alpha, rows, d), h.V(beta, rows, d), td, tr, ta, tc, (float)theta, rows, d), 2L * rows * d * d);
        var want = Ref.JsmaStep(alpha, beta, domain, running, adv, changed, (float)theta, rows, d);
        Ref.AssertClose(want.Adv, h.GetF(ta), 0, 1e-7, $"{backend} jsma adv");
        Ref.AssertClose(want.Domain, h.GetF(td), 0, 0, $"{backend} jsma domain");
        Ref.AssertClose(want.Running, h.GetF(tr), 0, 0, $"{backend} jsma running");
        Ref.AssertClose(want.Changed, h.GetF(tc), 0, 0, $"{backend} jsma changed");
        Assert.Equal([1.0, 0, 1, 0, 1], want.Running);      // row 3 stopped, row 1 was stopped
        Assert.Equal(8.0, want.Changed[4] - 2);              // rows that found a pair moved two values
        h.CheckGuards();
    }
}
