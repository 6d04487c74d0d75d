using Perturb.Engine;
using Perturb.Engine.Attacks;
using Perturb.Engine.Attacks.Gradient;
using Perturb.Engine.Backends;
using Perturb.Engine.Nn;
using Xunit.Abstractions;

namespace Perturb.Tests.Attacks;

/// <summary>FGSM, BIM, PGD (Linf, L2) and MI-FGSM on a trained LeNet.</summary>
[Collection("trained-lenet")]
public class IterativeAttackTests
{
    readonly TrainedLeNet _f;
    readonly ITestOutputHelper _out;
    public IterativeAttackTests(TrainedLeNet f, ITestOutputHelper o) { _f = f; _out = o; }

    static readonly float[] Eps = { 0.02f, 0.05f, 0.1f, 0.2f };
    static readonly float[] EpsL2 = { 0.25f, 0.5f, 1f, 2f };

    static IAttack Make(string name, Norm norm, ulong seed = 1) => name switch
    {
        "fgsm" => new Fgsm { Norm = norm, Seed = seed },
        "bim" => new Bim { Norm = norm, Seed = seed, Steps = 5 },
        "pgd" => new Pgd { Norm = norm, Seed = seed, Steps = 10 },
        "pgd-restarts" => new Pgd { Norm = norm, Seed = seed, Steps = 5, Restarts = 3, MaxBatch = 50 },
        "pgd-cw" => new Pgd { Norm = norm, Seed = seed, Steps = 10, Loss = LossKind.CwMargin, EarlyStop = false },
        "mifgsm" => new MiFgsm { Norm = norm, Seed = seed, Steps = 5 },
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [InlineData("fgsm", Norm.Linf)] [InlineData("fgsm", Norm.L2)]
    [InlineData("bim", Norm.Linf)] [InlineData("bim", Norm.L2)]
    [InlineData("pgd", Norm.Linf)] [InlineData("pgd", Norm.L2)]
    [InlineData("pgd-restarts", Norm.Linf)] [InlineData("pgd-restarts", Norm.L2)]
    [InlineData("pgd-cw", Norm.Linf)]
    [InlineData("mifgsm", Norm.Linf)] [InlineData("mifgsm", Norm.L2)]
    public void WithinBudgetAndFlagsMatchAFreshPass(string name, Norm norm)
    {
        var d = _f.Take(40);
        var eps = norm == Norm.Linf ? Eps : EpsL2;
        var r = Make(name, norm).Run(_f.Model, d.X, d.Labels, AttackGoal.Untargeted, eps);
        Assert.Equal(eps.Length, r.Results.Count);
        AttackAsserts.Valid(r, _f.Model, d.X, norm);
        // Success grows with eps, and the largest budget fools most samples.
        for (int e = 1; e < eps.Length; e++)
            Assert.True(r.Results[e].SuccessRate >= r.Results[e - 1].SuccessRate - 1e-9 || name == "fgsm",
                $"{name}: success {r.Results[e].SuccessRate} at eps {eps[e]} below {r.Results[e - 1].SuccessRate} at {eps[e - 1]}");
        Assert.True(r.Results[^1].SuccessRate > 0.5, $"{name} {norm}: success {r.Results[^1].SuccessRate:P0} at the largest eps");
    }

    [Fact]
    public void ModelIsTrained() => Assert.True(_f.Accuracy > 0.9, $"accuracy {_f.Accuracy:P1}");

    [Fact]
    public void PgdBeatsFgsmAndGrowsWithEps()
    {
        var d = _f.Take(60);
        var fg = new Fgsm().Run(_f.Model, d.X, d.Labels, AttackGoal.Untargeted, Eps);
        var pg = new Pgd { Steps = 10, Seed = 3 }.Run(_f.Model, d.X, d.Labels, AttackGoal.Untargeted, Eps);
        for (int e = 0; e < Eps.Length; e++)
            _out.WriteLine($"eps {Eps[e]}: FGSM success {fg.Results[e].SuccessRate:P1}, PGD-10 success {pg.Results[e].SuccessRate:P1}, robust accuracy {pg.Results[e].RobustAccuracy:P1}");
        for (int e = 0; e < Eps.Length; e++)
            Assert.True(pg.Results[e].SuccessRate >= fg.Results[e].SuccessRate,
                $"eps {Eps[e]}: PGD {pg.Results[e].SuccessRate:P1} < FGSM {fg.Results[e].SuccessRate:P1}");
        for (int e = 1; e < Eps.Length; e++)
            Assert.True(pg.Results[e].SuccessRate >= pg.Results[e - 1].SuccessRate);
        Assert.True(pg.Results[^1].RobustAccuracy < 0.2, $"robust accuracy {pg.Results[^1].RobustAccuracy:P1} at eps 0.2");
        Assert.Equal(pg.CleanAccuracy, fg.CleanAccuracy);
    }

    [Theory]
    [InlineData("pgd", Norm.Linf)] [InlineData("pgd", Norm.L2)] [InlineData("pgd-restarts", Norm.Linf)]
    [InlineData("mifgsm", Norm.Linf)] [InlineData("bim", Norm.L2)]
    public void EpsilonListEqualsSeparateRuns(string name, Norm norm)
    {
        var d = _f.Take(12);
        var eps = norm == Norm.Linf ? Eps : EpsL2;
        var all = Make(name, norm, 5).Run(_f.Model, d.X, d.Labels, AttackGoal.Untargeted, eps);
        for (int e = 0; e < eps.Length; e++)
        {
            var one = Make(name, norm, 5).Run(_f.Model, d.X, d.Labels, AttackGoal.Untargeted, new[] { eps[e] });
            Assert.Equal(one.Results[0].Adversarial, all.Results[e].Adversarial);
            Assert.Equal(one.Results[0].Success, all.Results[e].Success);
            Assert.Equal(one.Results[0].L2, all.Results[e].L2);
            Assert.Equal(one.Results[0].Steps, all.Results[e].Steps);
            Assert.Equal(one.Results[0].ConfidenceAfter, all.Results[e].ConfidenceAfter);
        }
    }

    [Fact]
    public void SeededRunsReproduceAndTheSeedMovesTheRandomStart()
    {
        var d = _f.Take(8);
        var p = new Pgd { Steps = 1, Seed = 7, EarlyStop = false, StepSize = 1e-6f };
        var a = p.Run(_f.Model, d.X, d.Labels, AttackGoal.Untargeted, new[] { 0.1f });
        var b = new Pgd { Steps = 1, Seed = 7, EarlyStop = false, StepSize = 1e-6f }.Run(_f.Model, d.X, d.Labels, AttackGoal.Untargeted, new[] { 0.1f });
        var c = new Pgd { Steps = 1, Seed = 8, EarlyStop = false, StepSize = 1e-6f }.Run(_f.Model, d.X, d.Labels, AttackGoal.Untargeted, new[] { 0.1f });
        Assert.Equal(a.Results[0].Adversarial, b.Results[0].Adversarial);
        Assert.NotEqual(a.Results[0].Adversarial, c.Results[0].Adversarial);
        // The random start fills the box: most pixels move, by up to eps.
        Assert.True(a.Results[0].L0.Average() > 0.5 * 784);
        Assert.True(a.Results[0].Linf.Max() > 0.09);
        // A different batch layout (chunks of 3) gives the same images.
        var e = new Pgd { Steps = 1, Seed = 7, EarlyStop = false, StepSize = 1e-6f, MaxBatch = 3 }.Run(_f.Model, d.X, d.Labels, AttackGoal.Untargeted, new[] { 0.1f });
        Assert.Equal(a.Results[0].Adversarial, e.Results[0].Adversarial);
    }

    [Theory]
    [InlineData(Norm.Linf)] [InlineData(Norm.L2)]
    public void TargetedPgdReachesItsTarget(Norm norm)
    {
        var d = _f.Take(40);
        var eps = norm == Norm.Linf ? 0.3f : 4f;
        foreach (var goal in new[] { AttackGoal.Random(3), AttackGoal.LeastLikely, AttackGoal.TargetAll(2, d.Count) })
        {
            var r = new Pgd { Norm = norm, Steps = 20, Seed = 1 }.Run(_f.Model, d.X, d.Labels, goal, new[] { eps });
            AttackAsserts.Valid(r, _f.Model, d.X, norm);
            Assert.NotNull(r.Targets);
            if (goal.Kind != GoalKind.Targeted) Assert.All(Enumerable.Range(0, d.Count), i => Assert.NotEqual(d.Labels[i], r.Targets![i]));
            // Threshold: 90% of the samples reach their target.
            double reach = r.Results[0].Success.Count(s => s) / (double)d.Count;
            Assert.True(reach >= 0.9, $"{goal.Kind} {norm}: {reach:P0} reach the target");
        }
    }

    [Fact]
    public void SummaryFigures()
    {
        var d = _f.Take(20);
        var r = new Pgd { Steps = 5 }.Run(_f.Model, d.X, d.Labels, AttackGoal.Untargeted, new[] { 0f, 0.1f });
        Assert.Equal(0, r.Results[0].MaxLinf);
        Assert.Equal(r.CleanAccuracy, r.Results[0].RobustAccuracy, 9);
        Assert.True(double.IsNaN(r.Results[0].MeanPsnr));
        var e = r.Results[1];
        Assert.True(e.MeanPsnr > 15 && e.MeanPsnr < 60, $"PSNR {e.MeanPsnr}");
        Assert.True(e.MeanSsim > 0 && e.MeanSsim < 1, $"SSIM {e.MeanSsim}");
        Assert.True(e.MedianL2 > 0);
        Assert.True(r.ImagesPerSecond > 0);
        var j = r.ToJson("m");
        Assert.Equal(2, j["results"]!.AsArray().Count);
        Assert.Null(j["results"]![0]!["mean_psnr"]);
        Assert.Contains("index,eps,label", r.ToCsv(1));
        Assert.Equal(21, r.ToCsv(1).Trim().Split('\n').Length);
    }

    [Fact]
    public void BadSettingsAreRejected()
    {
        var d = _f.Take(2);
        Assert.Throws<PerturbException>(() => new Pgd().Run(_f.Model, d.X, d.Labels, AttackGoal.Untargeted));
        Assert.Throws<PerturbException>(() => new Pgd { Steps = 0 }.Run(_f.Model, d.X, d.Labels, AttackGoal.Untargeted, new[] { 0.1f }));
        Assert.Throws<PerturbException>(() => new Pgd().Run(_f.Model, d.X, d.Labels, AttackGoal.Untargeted, new[] { -0.1f }));
        Assert.Throws<PerturbException>(() => new Pgd().Run(_f.Model, d.X, d.Labels, AttackGoal.Target(1), new[] { 0.1f }));
        Assert.Throws<PerturbException>(() => new Pgd().Run(_f.Model, d.X.AsSpan(1).ToArray(), d.Labels, AttackGoal.Untargeted, new[] { 0.1f }));
    }
}
