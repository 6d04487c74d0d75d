using Perturb.Engine;

namespace Perturb.Tests.Ops;

/// <summary>Activations, softmax family and the three losses against <see cref="Ref"/>.</summary>
[Collection("ops")]
public class ActLossParityTests
{
    public static IEnumerable<object[]> ActCases()
    {
        foreach (var be in new[] { TestBackends.Cpu, TestBackends.IlgpuCpu })
            foreach (var f in Enum.GetValues<Activation>())
                yield return new object[] { be, f };
    }

    /// <summary>Inputs with exact zeros (derivative convention at 0) and large magnitudes (saturation).</summary>
    static double[] ActInput()
    {
        var x = Ref.Rand(45, 5, -4, 4);
        x[0] = 0; x[7] = 0; x[13] = -0.0; x[20] = 30; x[21] = -30; x[22] = 1e-3; x[23] = -1e-3; x[30] = 90; x[31] = -90;
        return x;
    }

    /// <summary>Forward out of place and in place; rtol 1e-5, atol 1e-6.</summary>
    [Theory, MemberData(nameof(ActCases))]
    public void ActivationForward(string backend, Activation f)
    {
        using var h = new OpHarness(backend);
        const float alpha = 0.1f;
        var x = ActInput();
        var expected = Ref.Activation(f, alpha, x);
        var tx = h.V(x, 5, 9);
        var ty = h.Out(true, 5, 9);
        h.Op("act_fwd", () => h.Be.ActivationForward(f, alpha, tx, ty));
        Ref.AssertClose(expected, h.GetF(ty), 1e-5, 1e-6, $"{backend} act_fwd {f}");

        var tin = h.V(x, 45);
        h.Op("act_fwd", () => h.Be.ActivationForward(f, alpha, tin, tin));
        Ref.AssertClose(expected, h.GetF(tin), 1e-5, 1e-6, $"{backend} act_fwd {f} in place");
        h.CheckGuards();
    }

    /// <summary>
    /// Backward: ReLU/LeakyReLU from x (derivative at exactly 0 is 0 / alpha), Sigmoid/Tanh from y with x = null;
    /// out of place and with dx aliasing dy. rtol 1e-5, atol 1e-6.
    /// </summary>
    [Theory, MemberData(nameof(ActCases))]
    public void ActivationBackward(string backend, Activation f)
    {
        using var h = new OpHarness(backend);
        const float alpha = 0.2f;
        var x = ActInput();
        var y = Ref.D(Ref.F(Ref.Activation(f, alpha, x)));
        var dy = Ref.Rand(x.Length, 6, -2, 2);
        bool readsX = f is Activation.Relu or Activation.LeakyRelu;
        var expected = Ref.ActivationBackward(f, alpha, readsX ? x : null, readsX ? null : y, dy);

        var tx = readsX ? h.V(x, 45) : null;
        var ty = readsX ? null : h.V(y, 45);
        var tdy = h.V(dy, 45);
        var tdx = h.Out(true, 45);
        h.Op("act_bwd", () => h.Be.ActivationBackward(f, alpha, tx, ty, tdy, tdx));
        Ref.AssertClose(expected, h.GetF(tdx), 1e-5, 1e-6, $"{backend} act_bwd {f}");

        var tdy2 = h.V(dy, 45);
        h.Op("act_bwd", () => h.Be.ActivationBackward(f, alpha, tx, ty, tdy2, tdy2));
        Ref.AssertClose(expected, h.GetF(tdy2), 1e-5, 1e-6, $"{backend} act_bwd {f} dx aliasing dy");
        h.CheckGuards();
    }

    [Fact]
    public void ReferenceActivationDerivativeConventionAtZero()
    {
        var d = Ref.ActivationBackward(Activation.Relu, 0, new[] { 0.0, 1, -1 }, null, new[] { 1.0, 1, 1 });
        Assert.Equal(new[] { 0.0, 1, 0 }, d);
        d = Ref.ActivationBackward(Activation.LeakyRelu, 0.25, new[] { 0.0, 1, -1 }, null, new[] { 1.0, 1, 1 });
        Assert.Equal(new[] { 0.25, 1, 0.25 }, d);
    }

    // ------------------------------------------------------------------ softmax

    /// <summary>Rows of different scales, one at +100 and one at -100 (a softmax that does not subtract the max overflows).</summary>
    static double[] Logits(int rows, int cols, int seed)
    {
        var x = Ref.Rand(rows * cols, seed, -3, 3);
        for (int j = 0; j < cols; j++) { x[cols + j] += 100; if (rows > 2) x[2 * cols + j] -= 100; }
        return x;
    }

    /// <summary>Softmax and log-softmax, out of place and in place; rtol 1e-5, atol 1e-6 (log-softmax atol 1e-5).</summary>
    [Theory, InlineData(TestBackends.Cpu), InlineData(TestBackends.IlgpuCpu)]
    public void SoftmaxAndLogSoftmax(string backend)
    {
        using var h = new OpHarness(backend);
        foreach (var (rows, cols) in new[] { (4, 10), (3, 1), (2, 37) })
        {
            var x = Logits(rows, cols, rows * cols);
            var sm = Ref.Softmax(x, rows, cols); var lsm = Ref.LogSoftmax(x, rows, cols);
            var tx = h.V(x, rows, cols);
            var ty = h.Out(true, rows, cols);
            h.Op("softmax", () => h.Be.Softmax(tx, ty, rows, cols));
            Ref.AssertClose(sm, h.GetF(ty), 1e-5, 1e-6, $"{backend} softmax {rows}x{cols}");
            h.Op("log_softmax", () => h.Be.LogSoftmax(tx, ty, rows, cols));
            Ref.AssertClose(lsm, h.GetF(ty), 1e-5, 1e-5, $"{backend} log_softmax {rows}x{cols}");

            var tin = h.V(x, rows, cols);
            h.Op("softmax", () => h.Be.Softmax(tin, tin, rows, cols));
            Ref.AssertClose(sm, h.GetF(tin), 1e-5, 1e-6, $"{backend} softmax {rows}x{cols} in place");
            var tin2 = h.V(x, rows, cols);
            h.Op("log_softmax", () => h.Be.LogSoftmax(tin2, tin2, rows, cols));
            Ref.AssertClose(lsm, h.GetF(tin2), 1e-5, 1e-5, $"{backend} log_softmax {rows}x{cols} in place");
        }
        h.CheckGuards();
    }

    [Theory, InlineData(TestBackends.Cpu), InlineData(TestBackends.IlgpuCpu)]
    public void SoftmaxBackward(string backend)
    {
        using var h = new OpHarness(backend);
        const int rows = 3, cols = 11;
        var y = Ref.D(Ref.F(Ref.Softmax(Ref.Rand(rows * cols, 8, -2, 2), rows, cols)));
        var dy = Ref.Rand(rows * cols, 9);
        var ty = h.V(y, rows, cols); var tdy = h.V(dy, rows, cols); var tdx = h.Out(true, rows, cols);
        h.Op("softmax_bwd", () => h.Be.SoftmaxBackward(ty, tdy, tdx, rows, cols));
        Ref.AssertClose(Ref.SoftmaxBackward(y, dy, rows, cols), h.GetF(tdx), 1e-5, 1e-6, $"{backend} softmax_bwd");
        h.CheckGuards();
    }

    // ------------------------------------------------------------------ losses

    /// <summary>
    /// Cross-entropy loss and gradient with per-sample gradScale (incl. negative and zero), then loss only.
    /// Loss rtol 1e-5, atol 2e-5 (one row has logits near 100, whose float ulp is 7.6e-6); dlogits rtol 1e-5, atol 1e-6.
    /// </summary>
    [Theory, InlineData(TestBackends.Cpu), InlineData(TestBackends.IlgpuCpu)]
    public void CrossEntropy(string backend)
    {
        using var h = new OpHarness(backend);
        const int rows = 5, cols = 7;
        var z = Logits(rows, cols, 11);
        var labels = new double[] { 3, 0, 6, 2, 2 };
        var gs = new double[] { 0.2, -1, 0.5, 0, 2 };
        var (loss, d) = Ref.CrossEntropy(z, labels, gs, rows, cols);
        var tz = h.V(z, rows, cols); var tl = h.V(labels, rows); var tg = h.V(gs, rows);
        var tloss = h.Out(true, rows); var td = h.Out(true, rows, cols);
        h.Op("ce_loss", () => h.Be.CrossEntropy(tz, tl, tloss, td, tg, rows, cols));
        Ref.AssertClose(loss, h.GetF(tloss), 1e-5, 2e-5, $"{backend} ce_loss loss");
        Ref.AssertClose(d, h.GetF(td), 1e-5, 1e-6, $"{backend} ce_loss dlogits");

        var tloss2 = h.Out(false, rows);
        h.Op("ce_loss", () => h.Be.CrossEntropy(tz, tl, tloss2, null, tg, rows, cols));
        Ref.AssertClose(loss, h.GetF(tloss2), 1e-5, 2e-5, $"{backend} ce_loss loss (no dlogits)");
        h.CheckGuards();
    }

    /// <summary>
    /// Hand-made logits (4 classes) whose margins are far from the clamp except one exact boundary case (margin == -kappa
    /// for kappa = 3, untargeted, row 3: the gradient is then not zero, since the margin is not strictly below), and a tie
    /// among the other classes (row 1: the gradient goes to the first arg-max).
    /// </summary>
    static readonly double[] CwLogits =
    {
        2.0, 0.5, -1.0, 0.25,
        0.1, 3.0, 3.0, -2.0,
        1.5, -0.5, 1.0, 0.75,
        -1.0, 4.0, 0.0, 1.0,
        0.3, 0.2, 0.1, 5.0,
        10, -10, 3, 2,
    };
    static readonly double[] CwLabels = { 0, 0, 2, 3, 1, 0 };

    public static IEnumerable<object[]> CwCases()
    {
        foreach (var be in new[] { TestBackends.Cpu, TestBackends.IlgpuCpu })
            foreach (var targeted in new[] { false, true })
                foreach (var kappa in new[] { 0f, 2f, 3f })
                    yield return new object[] { be, targeted, kappa };
    }

    /// <summary>CW margin loss and gradient; exact up to float rounding of the logits (rtol 1e-6, atol 1e-6).</summary>
    [Theory, MemberData(nameof(CwCases))]
    public void CwMarginLoss(string backend, bool targeted, float kappa)
    {
        using var h = new OpHarness(backend);
        const int rows = 6, cols = 4;
        var gs = new double[] { 1, 0.5, -1, 2, 0.25, 1 };
        var (loss, d) = Ref.CwMargin(CwLogits, CwLabels, gs, targeted, kappa, rows, cols);
        var tz = h.V(CwLogits, rows, cols); var tl = h.V(CwLabels, rows); var tg = h.V(gs, rows);
        var tloss = h.Out(true, rows); var td = h.Out(true, rows, cols);
        string what = $"{backend} cw_loss targeted={targeted} kappa={kappa}";
        h.Op("cw_loss", () => h.Be.CwMarginLoss(tz, tl, tloss, td, tg, targeted, kappa, rows, cols));
        Ref.AssertClose(loss, h.GetF(tloss), 1e-6, 1e-6, what + " loss");
        Ref.AssertClose(d, h.GetF(td), 1e-6, 1e-6, what + " dlogits");

        var tloss2 = h.Out(false, rows);
        h.Op("cw_loss", () => h.Be.CwMarginLoss(tz, tl, tloss2, null, tg, targeted, kappa, rows, cols));
        Ref.AssertClose(loss, h.GetF(tloss2), 1e-6, 1e-6, what + " loss (no dlogits)");
        h.CheckGuards();
    }

    [Fact]
    public void ReferenceCwMarginHandChecked()
    {
        var gs = Ref.Full(6, 1);
        var (loss, d) = Ref.CwMargin(CwLogits, CwLabels, gs, false, 0, 6, 4);
        Assert.Equal(new[] { 1.5, 0, 0, 0, 0, 7 }, loss);
        Assert.Equal(new[] { 1.0, -1, 0, 0 }, d[0..4]);            // t = 0, best other = 1
        Assert.Equal(new double[] { 0, 0, 0, 0 }, d[4..8]);        // clamped
        (loss, d) = Ref.CwMargin(CwLogits, CwLabels, gs, true, 0, 6, 4);
        Assert.Equal(new[] { 0, 2.9, 0.5, 3, 4.8, 0 }, loss, new ToleranceComparer(1e-12));
        Assert.Equal(new[] { -1.0, 1, 0, 0 }, d[4..8]);            // tie between 1 and 2: first wins
        (loss, d) = Ref.CwMargin(CwLogits, CwLabels, gs, false, 3, 6, 4);
        Assert.Equal(-3, loss[3]);
        Assert.Equal(new[] { 0.0, -1, 0, 1 }, d[12..16]);          // margin == -kappa exactly: not clamped
    }

    sealed class ToleranceComparer(double tol) : IEqualityComparer<double>
    {
        public bool Equals(double a, double b) => Math.Abs(a - b) <= tol;
        public int GetHashCode(double v) => 0;
    }

    /// <summary>BCE with logits including |z| up to 100 (the naive formula overflows); rtol 1e-5, atol 1e-6.</summary>
    [Theory, InlineData(TestBackends.Cpu), InlineData(TestBackends.IlgpuCpu)]
    public void BceWithLogits(string backend)
    {
        using var h = new OpHarness(backend);
        var z = new double[] { -100, -30, -2.5, -0.1, 0, 0.7, 3, 30, 100, 0.25, -1 };
        int rows = z.Length;
        var y = new double[] { 1, 0, 1, 0, 1, 0, 1, 1, 0, 1, 0 };
        var gs = new double[] { 1, 0.5, -1, 2, 1, 1, 0.1, -0.5, 1, 0, 3 };
        var (loss, d) = Ref.Bce(z, y, gs, rows);
        var tz = h.V(z, rows, 1); var ty = h.V(y, rows); var tg = h.V(gs, rows);
        var tloss = h.Out(true, rows); var td = h.Out(true, rows, 1);
        h.Op("bce_loss", () => h.Be.BceWithLogits(tz, ty, tloss, td, tg, rows));
        Ref.AssertClose(loss, h.GetF(tloss), 1e-5, 1e-6, $"{backend} bce_loss loss");
        Ref.AssertClose(d, h.GetF(td), 1e-5, 1e-6, $"{backend} bce_loss dlogits");

        var tloss2 = h.Out(false, rows); var tz1 = h.V(z, rows);
        h.Op("bce_loss", () => h.Be.BceWithLogits(tz1, ty, tloss2, null, tg, rows));
        Ref.AssertClose(loss, h.GetF(tloss2), 1e-5, 1e-6, $"{backend} bce_loss loss (logits [rows], no dlogits)");
        h.CheckGuards();
    }

    // ------------------------------------------------------------------ confident rows (p_t rounds to 1 in float32)

    /// <summary>
    /// Rows whose true class wins by 18 to 85 logits: p_t is 1 in float32 and p_t - 1 would be 0. The true class's
    /// gradient entry (-sum of the other probabilities, down to 1e-37) and the loss must match the double reference to
    /// rtol 1e-4 with no absolute slack, so a vanishing gradient fails.
    /// </summary>
    [Theory, InlineData(TestBackends.Cpu), InlineData(TestBackends.IlgpuCpu)]
    public void CrossEntropyOnConfidentRowsDoesNotVanish(string backend)
    {
        using var h = new OpHarness(backend);
        const int rows = 4, cols = 5;
        var z = Ref.Rand(rows * cols, 21, -1, 1);
        double[] lead = { 18, 30, 60, 85 };
        var labels = new double[] { 2, 0, 4, 1 };
        for (int r = 0; r < rows; r++) z[r * cols + (int)labels[r]] += lead[r];
        var gs = new double[] { 1, -1, 0.5, 1 };
        var (loss, d) = Ref.CrossEntropy(z, labels, gs, rows, cols);
        var tz = h.V(z, rows, cols); var tl = h.V(labels, rows); var tg = h.V(gs, rows);
        var tloss = h.Out(true, rows); var td = h.Out(true, rows, cols);
        h.Op("ce_loss", () => h.Be.CrossEntropy(tz, tl, tloss, td, tg, rows, cols));
        var got = h.GetF(td);
        for (int r = 0; r < rows; r++)
        {
            int k = r * cols + (int)labels[r];
            Assert.True(Math.Sign(got[k]) == Math.Sign(d[k]) && got[k] != 0, $"{backend}: row {r} (lead {lead[r]}) true-class gradient {got[k]:R}, reference {d[k]:R}");
        }
        Ref.AssertClose(d, got, 1e-4, 0, $"{backend} ce_loss dlogits, confident rows");
        Ref.AssertClose(loss, h.GetF(tloss), 1e-4, 0, $"{backend} ce_loss loss, confident rows");
        h.CheckGuards();
    }

    /// <summary>BCE at |z| from 17 to 80 on the side of the label: sigmoid(z) - y must not round to 0 (rtol 1e-4, no atol).</summary>
    [Theory, InlineData(TestBackends.Cpu), InlineData(TestBackends.IlgpuCpu)]
    public void BceOnConfidentRowsDoesNotVanish(string backend)
    {
        using var h = new OpHarness(backend);
        var z = new double[] { 17, 25, 40, 80, -17, -25, -40, -80 };
        var y = new double[] { 1, 1, 1, 1, 0, 0, 0, 0 };
        int rows = z.Length;
        var gs = Ref.Full(rows, 1);
        var (loss, d) = Ref.Bce(z, y, gs, rows);
        var tz = h.V(z, rows); var ty = h.V(y, rows); var tg = h.V(gs, rows);
        var tloss = h.Out(true, rows); var td = h.Out(true, rows);
        h.Op("bce_loss", () => h.Be.BceWithLogits(tz, ty, tloss, td, tg, rows));
        Ref.AssertClose(d, h.GetF(td), 1e-4, 0, $"{backend} bce_loss dlogits, confident rows");
        Ref.AssertClose(loss, h.GetF(tloss), 1e-4, 0, $"{backend} bce_loss loss, confident rows");
        h.CheckGuards();
    }

    public static IEnumerable<object[]> DlrCases()
    {
        foreach (var be in new[] { TestBackends.Cpu, TestBackends.IlgpuCpu })
            foreach (var targeted in new[] { false, true })
                foreach (var cols in new[] { 2, 3, 4, 10 })
                    yield return new object[] { be, targeted, cols };
    }

    /// <summary>
    /// DLR loss and gradient against the double reference, for 2, 3, 4 and 10 classes, with a confident row (lead 60)
    /// and a row with a tie; rtol 1e-5, atol 1e-6.
    /// </summary>
    [Theory, MemberData(nameof(DlrCases))]
    public void DlrLoss(string backend, bool targeted, int cols)
    {
        using var h = new OpHarness(backend);
        const int rows = 5;
        var z = Ref.Rand(rows * cols, 30 + cols, -3, 3);
        var labels = Enumerable.Range(0, rows).Select(r => (double)(r % cols)).ToArray();
        var targets = labels.Select(l => (double)(((int)l + 1) % cols)).ToArray();
        z[0 * cols + (int)labels[0]] += 60;
        z[1 * cols + 0] = z[1 * cols + 1];
        var gs = new double[] { 1, -1, 0.5, 2, 0 };
        var (loss, d) = Ref.Dlr(z, labels, targets, gs, targeted, rows, cols);
        var tz = h.V(z, rows, cols); var tl = h.V(labels, rows); var tt = h.V(targets, rows); var tg = h.V(gs, rows);
        var tloss = h.Out(true, rows); var td = h.Out(true, rows, cols);
        string what = $"{backend} dlr_loss targeted={targeted} classes={cols}";
        h.Op("dlr_loss", () => h.Be.DlrLoss(tz, tl, tt, tloss, td, tg, targeted, rows, cols));
        Ref.AssertClose(loss, h.GetF(tloss), 1e-5, 1e-6, what + " loss");
        Ref.AssertClose(d, h.GetF(td), 1e-5, 1e-6, what + " dlogits");
        h.CheckGuards();
    }

    /// <summary>The DLR reference's gradient against central differences of its loss (double, away from ties).</summary>
    [Theory, InlineData(false, 2), InlineData(false, 3), InlineData(true, 3), InlineData(false, 10), InlineData(true, 10)]
    public void ReferenceDlrGradientMatchesFiniteDifferences(bool targeted, int cols)
    {
        const int rows = 3;
        var z = Ref.Rand(rows * cols, 40 + cols, -3, 3);
        var labels = new double[] { 0, 1 % cols, 2 % cols };
        var targets = labels.Select(l => (double)(((int)l + 1) % cols)).ToArray();
        var gs = Ref.Full(rows, 1);
        var (_, d) = Ref.Dlr(z, labels, targets, gs, targeted, rows, cols);
        for (int i = 0; i < z.Length; i++)
        {
            var zp = (double[])z.Clone(); zp[i] += 1e-6;
            var zm = (double[])z.Clone(); zm[i] -= 1e-6;
            double fd = (Ref.Dlr(zp, labels, targets, gs, targeted, rows, cols).loss[i / cols] - Ref.Dlr(zm, labels, targets, gs, targeted, rows, cols).loss[i / cols]) / 2e-6;
            Assert.True(Math.Abs(fd - d[i]) <= 1e-6 + 1e-5 * Math.Abs(fd), $"dlr targeted={targeted} classes={cols} [{i}]: fd {fd}, analytic {d[i]}");
        }
        // Two classes: the plain (negated) margin.
        if (cols == 2) Assert.Equal(-(z[0] - z[1]), Ref.Dlr(z, labels, targets, gs, false, rows, cols).loss[0], 12);
    }
}
