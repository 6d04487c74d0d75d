using Perturb.Engine;

namespace Perturb.Tests.Ops;

/// <summary>
/// Checks of the reference itself, so that the parity tests rest on more than "two implementations agree": every
/// backward op of <see cref="Ref"/> equals the finite-difference gradient of its forward op (central differences in
/// double, h = 1e-6, rtol 1e-6, atol 1e-7), and the conv backward ops are the adjoints of the forward.
/// </summary>
public class ReferenceSelfTests
{
    const double Rt = 1e-6, At = 1e-7;

    /// <summary>Vector-Jacobian product by finite differences: d/dx sum(f(x) .* dy).</summary>
    static double[] Vjp(Func<double[], double[]> f, double[] x, double[] dy) => Ref.NumericGradient(v => Ref.Dot(f(v), dy), x);

    [Fact]
    public void ConvBackwardIsAdjointOfForwardAndMatchesFiniteDifferences()
    {
        foreach (var (s, withBias) in GemmConvParityTests.ConvCases)
        {
            var x = Ref.Rand(s.N * s.C * s.H * s.W, 1); var w = Ref.Rand(s.K * s.CPerGroup * s.R * s.S, 2);
            var b = withBias ? Ref.Rand(s.K, 4) : null;
            var dy = Ref.Rand(s.N * s.K * s.OutH * s.OutW, 3);
            double yDy = Ref.Dot(Ref.ConvForward(s, x, w, null), dy);
            Assert.Equal(yDy, Ref.Dot(x, Ref.ConvBackwardData(s, dy, w)), 9);
            var (dw, db) = Ref.ConvBackwardWeights(s, x, dy, withBias);
            Assert.Equal(yDy, Ref.Dot(w, dw), 9);
            Ref.AssertClose(Vjp(v => Ref.ConvForward(s, x, v, b), w, dy), dw, Rt, At, $"ref conv dw {s}");
            if (withBias) Ref.AssertClose(Vjp(v => Ref.ConvForward(s, x, w, v), b!, dy), db!, Rt, At, $"ref conv db {s}");
        }
    }

    [Fact]
    public void GemmMatchesExplicitProduct()
    {
        // [[1,2],[3,4]] * [[5,6],[7,8]] = [[19,22],[43,50]]; A^T stored as [[1,3],[2,4]], B^T as [[5,7],[6,8]].
        Assert.Equal(new double[] { 19, 22, 43, 50 }, Ref.Gemm(false, false, 2, 2, 2, 1, new double[] { 1, 2, 3, 4 }, new double[] { 5, 6, 7, 8 }, 0, null));
        Assert.Equal(new double[] { 19, 22, 43, 50 }, Ref.Gemm(true, true, 2, 2, 2, 1, new double[] { 1, 3, 2, 4 }, new double[] { 5, 7, 6, 8 }, 0, null));
        // alpha 0.5, beta 2, C = [1,2,3,4], B given transposed: 0.5*A*B + 2*C.
        Assert.Equal(new double[] { 11.5, 15, 27.5, 33 }, Ref.Gemm(false, true, 2, 2, 2, 0.5, new double[] { 1, 2, 3, 4 }, new double[] { 5, 7, 6, 8 }, 2, new double[] { 1, 2, 3, 4 }));
        // 1x3 times 3x1, A transposed ([3 x 1] storage is the same vector)
        Assert.Equal(new double[] { 32 }, Ref.Gemm(true, false, 1, 1, 3, 1, new double[] { 1, 2, 3 }, new double[] { 4, 5, 6 }, 0, new double[] { double.NaN }));
    }

    [Fact]
    public void PoolBackwardMatchesFiniteDifferences()
    {
        var shapes = new[]
        {
            new PoolShape(1, 2, 7, 7, 3, 3, 2, 2, PadH: 1, PadW: 1),
            new PoolShape(1, 2, 8, 8, 3, 3, 2, 2, CeilMode: true, CountIncludePad: true),
            new PoolShape(2, 1, 5, 6, 3, 3, 2, 2, PadH: 1, PadW: 1, CeilMode: true, CountIncludePad: true),
            new PoolShape(1, 1, 5, 5, 2, 2, 1, 1, PadH: 1, PadW: 1),
        };
        foreach (var s in shapes)
        {
            var x = Ref.Rand(s.N * s.C * s.H * s.W, 5);   // continuous: no ties, max is differentiable
            var dy = Ref.Rand(s.N * s.C * s.OutH * s.OutW, 6);
            Ref.AssertClose(Vjp(v => Ref.MaxPoolForward(s, v), x, dy), Ref.MaxPoolBackward(s, x, dy), Rt, At, $"ref maxpool {s}");
            Ref.AssertClose(Vjp(v => Ref.AvgPoolForward(s, v), x, dy), Ref.AvgPoolBackward(s, dy), Rt, At, $"ref avgpool {s}");
        }
        var g = Ref.Rand(12, 7); var gx = Ref.Rand(2 * 3 * 4, 8);
        Ref.AssertClose(Vjp(v => Ref.GlobalAvgPoolForward(v, 4, 3, 2), gx, g), Ref.GlobalAvgPoolBackward(g, 4, 3, 2), Rt, At, "ref gap");
    }

    [Fact]
    public void AvgPoolDivisorsAsPyTorch()
    {
        // 1x1x5x5 of ones, k3 s2 p1: interior windows see 9 positions, corners 4. Excluding padding every output is 1;
        // including it, the corner (0,0) is 4/9 and the edge (0,1) 6/9.
        var ones = Ref.Full(25, 1);
        var s = new PoolShape(1, 1, 5, 5, 3, 3, 2, 2, PadH: 1, PadW: 1);
        Assert.All(Ref.AvgPoolForward(s, ones), v => Assert.Equal(1.0, v, 12));
        var inc = Ref.AvgPoolForward(s with { CountIncludePad = true }, ones);
        Assert.Equal(4.0 / 9, inc[0], 12); Assert.Equal(6.0 / 9, inc[1], 12); Assert.Equal(1.0, inc[4], 12);
        // ceil mode, 8x8, k3 s2, no padding, count_include_pad: the last window covers 2 columns, divisor 2*3 (not 9).
        var c = new PoolShape(1, 1, 8, 8, 3, 3, 2, 2, CeilMode: true, CountIncludePad: true);
        Assert.Equal(4, c.OutW);
        Assert.Equal(1.0, Ref.AvgPoolForward(c, Ref.Full(64, 1))[3], 12);
    }

    [Fact]
    public void ActivationBackwardMatchesFiniteDifferences()
    {
        var x = Ref.Rand(40, 9, -3, 3).Select(v => Math.Abs(v) < 1e-3 ? 0.5 : v).ToArray();   // away from the kink at 0
        var dy = Ref.Rand(40, 10);
        foreach (var f in Enum.GetValues<Activation>())
        {
            var y = Ref.Activation(f, 0.1, x);
            Ref.AssertClose(Vjp(v => Ref.Activation(f, 0.1, v), x, dy), Ref.ActivationBackward(f, 0.1, x, y, dy), Rt, At, $"ref act {f}");
        }
    }

    [Fact]
    public void BatchNormAndAffineBackwardMatchFiniteDifferences()
    {
        const int n = 3, c = 2, hw = 4; const double eps = 1e-5;
        var x = Ref.Rand(n * c * hw, 11); var gamma = Ref.Rand(c, 12, 0.5, 1.5); var beta = Ref.Rand(c, 13); var dy = Ref.Rand(x.Length, 14);
        var (_, mean, inv, uvar) = Ref.BatchNormTrain(x, gamma, beta, eps, n, c, hw);
        var (dx, dg, db) = Ref.BatchNormBackward(x, dy, gamma, mean, inv, n, c, hw);
        Ref.AssertClose(Vjp(v => Ref.BatchNormTrain(v, gamma, beta, eps, n, c, hw).y, x, dy), dx, 1e-5, 1e-6, "ref bn dx");
        Ref.AssertClose(Vjp(v => Ref.BatchNormTrain(x, v, beta, eps, n, c, hw).y, gamma, dy), dg, Rt, At, "ref bn dgamma");
        Ref.AssertClose(Vjp(v => Ref.BatchNormTrain(x, gamma, v, eps, n, c, hw).y, beta, dy), db, Rt, At, "ref bn dbeta");
        // unbiased variance: M/(M-1) times the biased one
        double m0 = Enumerable.Range(0, n).SelectMany(b => Enumerable.Range(0, hw).Select(i => x[(b * c) * hw + i])).Average();
        double v0 = Enumerable.Range(0, n).SelectMany(b => Enumerable.Range(0, hw).Select(i => x[(b * c) * hw + i])).Sum(v => (v - m0) * (v - m0)) / (n * hw - 1);
        Assert.Equal(m0, mean[0], 12); Assert.Equal(v0, uvar[0], 12);

        var scale = Ref.Rand(c, 15); var shift = Ref.Rand(c, 16);
        var (adx, ads, adsh) = Ref.ChannelAffineBackward(dy, scale, x, n, c, hw);
        Ref.AssertClose(Vjp(v => Ref.ChannelAffine(v, scale, shift, n, c, hw), x, dy), adx, Rt, At, "ref affine dx");
        Ref.AssertClose(Vjp(v => Ref.ChannelAffine(x, v, shift, n, c, hw), scale, dy), ads, Rt, At, "ref affine dscale");
        Ref.AssertClose(Vjp(v => Ref.ChannelAffine(x, scale, v, n, c, hw), shift, dy), adsh, Rt, At, "ref affine dshift");
    }

    [Fact]
    public void SoftmaxAndLossGradientsMatchFiniteDifferences()
    {
        const int rows = 3, cols = 5;
        var z = Ref.Rand(rows * cols, 17, -3, 3); var dy = Ref.Rand(rows * cols, 18);
        var y = Ref.Softmax(z, rows, cols);
        Ref.AssertClose(Vjp(v => Ref.Softmax(v, rows, cols), z, dy), Ref.SoftmaxBackward(y, dy, rows, cols), Rt, At, "ref softmax");
        for (int r = 0; r < rows; r++) Assert.Equal(1.0, y.Skip(r * cols).Take(cols).Sum(), 12);
        Ref.AssertClose(Ref.LogSoftmax(z, rows, cols), y.Select(v => Math.Log(v)).ToArray(), 1e-12, 1e-12, "ref log_softmax = log(softmax)");

        var labels = new double[] { 4, 0, 2 }; var gs = new double[] { 0.5, -1, 2 };
        var (_, dce) = Ref.CrossEntropy(z, labels, gs, rows, cols);
        Ref.AssertClose(Ref.NumericGradient(v => Ref.Dot(Ref.CrossEntropy(v, labels, rows, cols).loss, gs), z), dce, Rt, At, "ref ce");

        foreach (var targeted in new[] { false, true })
        {
            var (_, dcw) = Ref.CwMargin(z, labels, gs, targeted, 0.5, rows, cols);
            Ref.AssertClose(Ref.NumericGradient(v => Ref.Dot(Ref.CwMargin(v, labels, targeted, 0.5, rows, cols).loss, gs), z), dcw, Rt, At, $"ref cw targeted={targeted}");
        }

        var bz = new double[] { -3, -0.5, 0.2, 4 }; var by = new double[] { 1, 0, 1, 0 }; var bgs = new double[] { 1, 2, -1, 0.5 };
        var (bl, dbce) = Ref.Bce(bz, by, bgs, 4);
        Ref.AssertClose(Ref.NumericGradient(v => Ref.Dot(Ref.Bce(v, by, 4).loss, bgs), bz), dbce, Rt, At, "ref bce");
        // against the textbook form -y log s - (1-y) log(1-s)
        for (int i = 0; i < 4; i++) { double s = 1 / (1 + Math.Exp(-bz[i])); Assert.Equal(-by[i] * Math.Log(s) - (1 - by[i]) * Math.Log(1 - s), bl[i], 12); }
    }

    [Fact]
    public void OptimiserStepsAsPyTorchByHand()
    {
        // SGD, momentum 0.9, nesterov, wd 0.1: w=1, g=0.5, v=0.2 -> g'=0.6, v=0.78, w = 1 - 0.1*(0.6 + 0.9*0.78) = 0.8698
        var (w, v) = Ref.Sgd(new[] { 1.0 }, new[] { 0.5 }, new[] { 0.2 }, 0.1, 0.9, 0.1, true);
        Assert.Equal(0.78, v[0], 12); Assert.Equal(0.8698, w[0], 12);
        // Adam step 1: m = 0.1 g, v = 0.001 g^2, mhat = g, vhat = g^2: w -= lr * g/(|g| + eps)
        var (aw, am, av) = Ref.Adam(new[] { 1.0 }, new[] { -2.0 }, new[] { 0.0 }, new[] { 0.0 }, 0.01, 0.9, 0.999, 1e-8, 0, 1);
        Assert.Equal(-0.2, am[0], 12); Assert.Equal(0.004, av[0], 12); Assert.Equal(1 + 0.01 * 2 / (2 + 1e-8), aw[0], 12);
    }
}
