using Perturb.Engine;
using Perturb.Engine.Attacks;
using Perturb.Engine.Attacks.Gradient;
using Xunit.Abstractions;

namespace Perturb.Tests.Attacks;

/// <summary>DeepFool and Carlini-Wagner L2 (budget-free, minimal-perturbation attacks) on the trained LeNet.</summary>
[Collection("trained-lenet")]
public class MinimalAttackTests
{
    readonly TrainedLeNet _f;
    readonly ITestOutputHelper _out;
    public MinimalAttackTests(TrainedLeNet f, ITestOutputHelper o) { _f = f; _out = o; }

    static CarliniWagner Cw(float kappa = 0) => new() { Steps = 50, BinarySteps = 5, InitialC = 0.1f, LearningRate = 0.02f, Kappa = kappa };

    [Fact]
    public void DeepFoolAndCwFoolAlmostEverySampleAndCwIsSmaller()
    {
        var d = _f.Take(40);
        var df = new DeepFool().Run(_f.Model, d.X, d.Labels, AttackGoal.Untargeted);
        var cw = Cw().Run(_f.Model, d.X, d.Labels, AttackGoal.Untargeted);
        AttackAsserts.Valid(df, _f.Model, d.X, null);
        AttackAsserts.Valid(cw, _f.Model, d.X, null);
        Assert.Single(df.Results);
        Assert.Null(df.Results[0].Eps);
        _out.WriteLine($"clean accuracy {df.CleanAccuracy:P1}; DeepFool success {df.Results[0].SuccessRate:P1} median L2 {df.Results[0].MedianL2:F3}; " +
            $"C&W success {cw.Results[0].SuccessRate:P1} median L2 {cw.Results[0].MedianL2:F3}");
        Assert.True(df.Results[0].SuccessRate >= 0.95, $"DeepFool success {df.Results[0].SuccessRate:P1}");
        Assert.True(cw.Results[0].SuccessRate >= 0.95, $"C&W success {cw.Results[0].SuccessRate:P1}");
        Assert.True(cw.Results[0].MedianL2 < df.Results[0].MedianL2,
            $"C&W median L2 {cw.Results[0].MedianL2:F3} not below DeepFool's {df.Results[0].MedianL2:F3}");
        Assert.True(df.Results[0].Steps.Max() <= 50);
    }

    [Fact]
    public void DeepFoolLinfSucceeds()
    {
        var d = _f.Take(30);
        var df = new DeepFool { Norm = Norm.Linf, TopK = 3 }.Run(_f.Model, d.X, d.Labels, AttackGoal.Untargeted);
        AttackAsserts.Valid(df, _f.Model, d.X, null);
        Assert.True(df.Results[0].SuccessRate >= 0.95, $"DeepFool Linf success {df.Results[0].SuccessRate:P1}");
        // The Linf variant spreads the change: its Linf is well below the L2 variant's typical pixel change.
        Assert.True(df.Results[0].MaxLinf < 0.5, $"max Linf {df.Results[0].MaxLinf}");
    }

    [Fact]
    public void TargetedCwReachesItsTarget()
    {
        var d = _f.Take(30);
        var r = Cw().Run(_f.Model, d.X, d.Labels, AttackGoal.Random(5));
        AttackAsserts.Valid(r, _f.Model, d.X, null);
        // Threshold: 90% of all samples reach their random target.
        double reach = r.Results[0].Success.Count(s => s) / (double)d.Count;
        Assert.True(reach >= 0.9, $"targeted C&W reached {reach:P0}");
    }

    [Fact]
    public void CwConfidenceRaisesTheMargin()
    {
        var d = _f.Take(20);
        var lo = Cw().Run(_f.Model, d.X, d.Labels, AttackGoal.Untargeted);
        var hi = Cw(kappa: 5f).Run(_f.Model, d.X, d.Labels, AttackGoal.Untargeted);
        AttackAsserts.Valid(hi, _f.Model, d.X, null);
        double Conf(AttackResult r) => Enumerable.Range(0, r.N).Where(i => r.Results[0].Success[i]).Average(i => r.Results[0].ConfidenceAfter[i]);
        Assert.True(Conf(hi) > Conf(lo), $"confidence with kappa 5 {Conf(hi):F3} not above kappa 0 {Conf(lo):F3}");
        Assert.True(hi.Results[0].MedianL2 > lo.Results[0].MedianL2);
    }

    [Fact]
    public void BudgetFreeAttacksRejectEpsilons()
    {
        var d = _f.Take(2);
        Assert.Throws<PerturbException>(() => new DeepFool().Run(_f.Model, d.X, d.Labels, AttackGoal.Untargeted, new[] { 0.1f }));
    }
}
