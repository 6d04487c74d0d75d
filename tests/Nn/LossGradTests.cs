using Perturb.Engine;
using Perturb.Engine.Backends;
using Perturb.Engine.Nn;

namespace Perturb.Tests.Nn;

/// <summary>The model-level losses: values against the references, gradients against finite differences in double.</summary>
public class LossGradTests
{
    const double H = 1e-6;

    static void CheckGrad(Func<double[], double> loss, double[] z, float[] grad, string what)
    {
        for (int i = 0; i < z.Length; i++)
        {
            double keep = z[i];
            z[i] = keep + H; double lp = loss(z);
            z[i] = keep - H; double lm = loss(z);
            z[i] = keep;
            double num = (lp - lm) / (2 * H);
            Assert.True(Math.Abs(num - grad[i]) <= 1e-5 + 1e-3 * Math.Abs(num), $"{what}[{i}]: analytic {grad[i]}, numeric {num}");
        }
    }

    [Fact]
    public void CrossEntropyMean()
    {
        using var be = new CpuBackend();
        int n = 4, k = 5;
        var z = Ref.Rand(n * k, 3, -3, 3); var lab = Ref.Labels(n, k, 4);
        using var zt = be.FromArray(Ref.F(z), n, k); using var yt = be.FromArray(Ref.F(lab), n);
        using var r = Losses.CrossEntropy(be, zt, yt, 1f / n);
        var ones = Ref.Full(n, 1);
        double Mean(double[] zz) => Ref.CrossEntropy(zz, lab, ones, n, k).loss.Average();
        Assert.Equal(Mean(z), r.Mean(), 4);
        CheckGrad(Mean, z, r.Grad!.ToArray(), "dCE/dz");
    }

    [Fact]
    public void BceForOneOutput()
    {
        using var be = new CpuBackend();
        int n = 6;
        var z = Ref.Rand(n, 5, -4, 4); var lab = Ref.Labels(n, 2, 6);
        using var zt = be.FromArray(Ref.F(z), n, 1); using var yt = be.FromArray(Ref.F(lab), n);
        using var r = Losses.CrossEntropy(be, zt, yt, 1f);
        double Sum(double[] zz) => Ref.Bce(zz, lab, Ref.Full(n, 1), n).loss.Sum();
        Assert.Equal(Sum(z), r.PerSample.ToArray().Sum(v => (double)v), 4);
        CheckGrad(Sum, z, r.Grad!.ToArray(), "dBCE/dz");
        // A one-logit model predicts class 1 exactly when z > 0.
        Assert.Equal(z.Select(v => v > 0 ? 1 : 0).ToArray(), Losses.Predict(be, zt));
    }

    [Theory]
    [InlineData(false, 0f)]
    [InlineData(true, 0f)]
    [InlineData(false, 1.5f)]
    public void CwMargin(bool targeted, float kappa)
    {
        using var be = new CpuBackend();
        int n = 5, k = 4;
        var z = Ref.Rand(n * k, 8, -2, 2); var lab = Ref.Labels(n, k, 9);
        using var zt = be.FromArray(Ref.F(z), n, k); using var yt = be.FromArray(Ref.F(lab), n);
        using var gs = be.FromArray(Enumerable.Repeat(1f, n).ToArray(), n);
        using var r = Losses.CwMargin(be, zt, yt, gs, targeted, kappa);
        double Sum(double[] zz) => Ref.CwMargin(zz, lab, Ref.Full(n, 1), targeted, kappa, n, k).loss.Sum();
        Assert.Equal(Sum(z), r.PerSample.ToArray().Sum(v => (double)v), 4);
        CheckGrad(Sum, z, r.Grad!.ToArray(), "dCW/dz");
    }

    [Fact]
    public void CwMarginOnOneOutputUsesLogitPair()
    {
        using var be = new CpuBackend();
        int n = 4;
        var z = new[] { 2.0, -1.0, 0.5, -3.0 }; var lab = new[] { 1.0, 0, 0, 1 };
        using var zt = be.FromArray(Ref.F(z), n, 1); using var yt = be.FromArray(Ref.F(lab), n);
        using var gs = be.FromArray(Enumerable.Repeat(1f, n).ToArray(), n);
        using var r = Losses.CwMargin(be, zt, yt, gs, false, 0f);
        // Untargeted margin with logits (0, z): label 1 -> max(z - 0, 0); label 0 -> max(0 - z, 0).
        Assert.Equal(new[] { 2f, 1f, 0f, 0f }, r.PerSample.ToArray());
        Assert.Equal(new[] { 1f, -1f, 0f, 0f }, r.Grad!.ToArray());
    }
}
