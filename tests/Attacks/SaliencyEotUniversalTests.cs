using Perturb.Engine;
using Perturb.Engine.Attacks;
using Perturb.Engine.Attacks.Gradient;
using Perturb.Engine.Data;
using Perturb.Engine.Nn;
using Xunit.Abstractions;

namespace Perturb.Tests.Attacks;

/// <summary>JSMA, EOT-PGD and the universal perturbation on the trained LeNet.</summary>
[Collection("trained-lenet")]
public class SaliencyEotUniversalTests
{
    readonly TrainedLeNet _f;
    readonly ITestOutputHelper _out;
    public SaliencyEotUniversalTests(TrainedLeNet f, ITestOutputHelper o) { _f = f; _out = o; }

    [Fact]
    public void JsmaReachesItsTargetWithFewPixels()
    {
        var d = _f.Take(20);
        var jsma = new Jsma { Gamma = 0.2f };
        var r = jsma.Run(_f.Model, d.X, d.Labels, AttackGoal.Random(9));
        AttackAsserts.Valid(r, _f.Model, d.X, null);
        Assert.All(r.Results[0].L0, l0 => Assert.True(l0 <= 0.2 * 784));
        // Threshold: 80% of the samples reach their random target.
        double reach = r.Results[0].Success.Count(s => s) / (double)d.Count;
        _out.WriteLine($"JSMA targeted reach {reach:P0}, mean L0 {r.Results[0].L0.Average():F1}");
        Assert.True(reach >= 0.8, $"JSMA reached the target on {reach:P0}");
        var u = jsma.Run(_f.Model, d.X, d.Labels, AttackGoal.Untargeted);
        AttackAsserts.Valid(u, _f.Model, d.X, null);
        Assert.True(u.Results[0].SuccessRate >= 0.8, $"untargeted JSMA success {u.Results[0].SuccessRate:P0}");
    }

    [Fact]
    public void EotPgdSurvivesRandomTransformsBetterThanPgd()
    {
        var d = _f.Take(40);
        var eps = new[] { 0.12f };
        var pgd = new Pgd { Steps = 10, Seed = 1, EarlyStop = false }.Run(_f.Model, d.X, d.Labels, AttackGoal.Untargeted, eps);
        var eot = new EotPgd { Steps = 10, Samples = 4, Seed = 1 }.Run(_f.Model, d.X, d.Labels, AttackGoal.Untargeted, eps);
        AttackAsserts.Valid(eot, _f.Model, d.X, Norm.Linf);
        double Survive(AttackResult r)
        {
            var ranges = new EotRanges();
            var rng = new SplitMix64(1234);
            int fooled = 0, total = 0;
            for (int t = 0; t < 6; t++)
            {
                var tr = EotTransform.Sample(rng, ranges);
                var x = tr.Apply(_f.Be, r.Results[0].Adversarial, r.N, 1, 28, 28, ranges.NoiseStd, rng);
                using var xt = _f.Be.FromArray(x, r.N, 1, 28, 28);
                var pred = Losses.Predict(_f.Be, _f.Model.Forward(xt));
                for (int i = 0; i < r.N; i++)
                    if (r.PredictedBefore[i] == r.Labels[i]) { total++; if (pred[i] != r.Labels[i]) fooled++; }
            }
            return fooled / (double)total;
        }
        double sp = Survive(pgd), se = Survive(eot);
        _out.WriteLine($"fooled under random transforms: PGD {sp:P1}, EOT-PGD {se:P1}");
        Assert.True(se > sp, $"EOT-PGD {se:P1} does not survive transforms better than PGD {sp:P1}");
    }

    [Fact]
    public void EotPgdEpsilonListEqualsSeparateRuns()
    {
        var d = _f.Take(6);
        EotPgd Make() => new() { Steps = 3, Samples = 2, Seed = 4, Norm = Norm.L2 };
        var all = Make().Run(_f.Model, d.X, d.Labels, AttackGoal.Untargeted, new[] { 0.5f, 1.5f });
        AttackAsserts.Valid(all, _f.Model, d.X, Norm.L2);
        var one = Make().Run(_f.Model, d.X, d.Labels, AttackGoal.Untargeted, new[] { 1.5f });
        Assert.Equal(one.Results[0].Adversarial, all.Results[1].Adversarial);
    }

    [Theory]
    [InlineData(Norm.Linf, 0.2f)] [InlineData(Norm.L2, 4f)]
    public void UniversalPerturbationFoolsMuchOfTheData(Norm norm, float eps)
    {
        var d = _f.Take(100);
        var uap = new UniversalPerturbation { Norm = norm, MaxPasses = 5, Seed = 2, FoolingTarget = 0.8 };
        var r = uap.Run(_f.Model, d.X, d.Labels, AttackGoal.Untargeted, new[] { eps });
        AttackAsserts.Valid(r, _f.Model, d.X, norm);
        var e = r.Results[0];
        var v = e.UniversalPerturbation!;
        Assert.Equal(784, v.Length);
        if (norm == Norm.Linf) Assert.True(v.Max(Math.Abs) <= eps + 1e-6);
        else Assert.True(Math.Sqrt(v.Sum(x => (double)x * x)) <= eps * (1 + 1e-5));
        for (int i = 0; i < d.Count; i++)
            for (int j = 0; j < 784; j += 37)
                Assert.Equal(Math.Clamp(d.X[i * 784 + j] + v[j], 0f, 1f), e.Adversarial[i * 784 + j]);
        // The reported fooling rate is the share of changed predictions.
        double fr = Enumerable.Range(0, r.N).Count(i => e.PredictedAfter[i] != r.PredictedBefore[i]) / (double)r.N;
        Assert.Equal(fr, e.FoolingRate, 9);
        _out.WriteLine($"UAP {norm} eps {eps}: fooling rate {fr:P0}, passes {e.Steps.Max()}");
        Assert.True(fr >= 0.5, $"fooling rate {fr:P0}");
    }
}
