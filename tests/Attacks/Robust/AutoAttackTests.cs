using Perturb.Engine;
using Perturb.Engine.Attacks;
using Perturb.Engine.Attacks.Gradient;
using Perturb.Engine.Nn;
using Xunit.Abstractions;

namespace Perturb.Tests.Attacks.Robust;

/// <summary>
/// AutoAttack and its stages on the shared trained LeNet (synthetic shapes, 4 classes): properties that fail when an
/// attack is weaker than it must be, or returns what it must not.
/// </summary>
[Collection("trained-lenet")]
public class AutoAttackTests
{
    readonly TrainedLeNet _f;
    readonly ITestOutputHelper _out;
    public AutoAttackTests(TrainedLeNet f, ITestOutputHelper o) { _f = f; _out = o; }

    const int N = 40;

    /// <summary>
    /// Linf and L2: AutoAttack's robust accuracy is at most PGD-100 with 10 restarts' and at most APGD-CE's alone, and
    /// APGD-CE at 100 steps is at least as strong as PGD-100; stage accuracies never rise, and each broken sample names
    /// the stage that broke it (samples still robust name none).
    /// </summary>
    [Theory, InlineData(Norm.Linf, 0.04f), InlineData(Norm.L2, 0.6f)]
    public void AutoAttackIsAtLeastAsStrongAsPgdAndApgd(Norm norm, float eps)
    {
        var d = _f.Take(N);
        var goal = AttackGoal.Untargeted;
        var pgd1 = new Pgd { Norm = norm, Steps = 100, Seed = 3 }.Run(_f.Model, d, goal, new[] { eps });
        var pgd10 = new Pgd { Norm = norm, Steps = 100, Restarts = 10, Seed = 3 }.Run(_f.Model, d, goal, new[] { eps });
        var apgd = new Apgd { Norm = norm, Steps = 100, Seed = 3 }.Run(_f.Model, d, goal, new[] { eps });
        var aa = new AutoAttack { Norm = norm, Seed = 3, Queries = 1000 }.Run(_f.Model, d, goal, new[] { eps });
        double ra(AttackResult r) => r.Results[0].RobustAccuracy;
        _out.WriteLine($"{norm} eps {eps}: clean {aa.CleanAccuracy:F3} pgd-100 {ra(pgd1):F3} pgd-100x10 {ra(pgd10):F3} apgd-ce {ra(apgd):F3} autoattack {ra(aa):F3} " +
                       string.Join(" ", aa.Results[0].Stages!.Select(s => $"{s.Stage}={s.RobustAccuracy:F3}")));
        AttackAsserts.Valid(apgd, _f.Model, d.X, norm);
        AttackAsserts.Valid(aa, _f.Model, d.X, norm);
        Assert.True(ra(aa) < aa.CleanAccuracy, "AutoAttack broke nothing: the budget is too small for the test to mean anything");
        Assert.True(ra(apgd) <= ra(pgd1), $"APGD-CE {ra(apgd)} weaker than PGD-100 {ra(pgd1)}");
        Assert.True(ra(aa) <= ra(pgd10), $"AutoAttack {ra(aa)} weaker than PGD-100 x10 {ra(pgd10)}");
        Assert.True(ra(aa) <= ra(apgd), $"AutoAttack {ra(aa)} weaker than APGD-CE {ra(apgd)}");
        var e = aa.Results[0];
        Assert.Equal(new[] { "apgd-ce", "apgd-t", "fab-t", "square" }, e.Stages!.Select(s => s.Stage));
        for (int k = 1; k < e.Stages!.Count; k++) Assert.True(e.Stages[k].RobustAccuracy <= e.Stages[k - 1].RobustAccuracy);
        Assert.Equal(ra(aa), e.Stages[^1].RobustAccuracy, 9);
        for (int i = 0; i < N; i++)
        {
            bool correct = aa.PredictedBefore[i] == d.Labels[i];
            Assert.Equal(correct && e.Success[i], e.BrokenBy![i] != null);
        }
    }

    /// <summary>A two-class model: DLR falls back to the plain margin (no third logit); APGD-DLR and APGD-T still break samples.</summary>
    [Fact]
    public void DlrOnTwoClassModel()
    {
        using var f = new TrainedBinaryLeNet();
        var d = f.Test.Take(30);
        var dlr = new Apgd { Loss = LossKind.Dlr, Steps = 30, Seed = 1 }.Run(f.Model, d, AttackGoal.Untargeted, new[] { 0.3f });
        var t = new ApgdT { Steps = 30, Seed = 1 }.Run(f.Model, d, AttackGoal.Untargeted, new[] { 0.3f });
        AttackAsserts.Valid(dlr, f.Model, d.X, Norm.Linf);
        AttackAsserts.Valid(t, f.Model, d.X, Norm.Linf);
        _out.WriteLine($"binary: clean {dlr.CleanAccuracy:F3} apgd-dlr {dlr.Results[0].RobustAccuracy:F3} apgd-t {t.Results[0].RobustAccuracy:F3}");
        Assert.True(dlr.Results[0].RobustAccuracy < dlr.CleanAccuracy);
        Assert.True(t.Results[0].RobustAccuracy < t.CleanAccuracy);
    }

    /// <summary>
    /// FAB-T returns either the clean image or an adversarial within the budget; with the budget large, it breaks nearly
    /// every sample and its median Linf sits below the budget (a minimal-norm attack), and at a tiny budget it returns clean images.
    /// </summary>
    [Fact]
    public void FabTIsMinimalAndWithinBudget()
    {
        var d = _f.Take(20);
        var r = new FabT { Steps = 50, TargetClasses = 3, Seed = 1 }.Run(_f.Model, d, AttackGoal.Untargeted, new[] { 0.5f, 1e-4f });
        AttackAsserts.Valid(r, _f.Model, d.X, Norm.Linf);
        var big = r.Results[0];
        var ok = Enumerable.Range(0, d.Count).Where(i => r.PredictedBefore[i] == d.Labels[i] && big.Success[i]).Select(i => (double)big.Linf[i]).OrderBy(v => v).ToArray();
        _out.WriteLine($"fab-t: success {big.SuccessRate:F3}, median Linf {ok[ok.Length / 2]:F4}");
        Assert.True(big.SuccessRate >= 0.9, $"success {big.SuccessRate}");
        Assert.True(ok[ok.Length / 2] < 0.5 * 0.5, $"median Linf {ok[ok.Length / 2]} is not small against the budget 0.5");
        Assert.All(r.Results[1].Linf, v => Assert.Equal(0f, v));
    }

    /// <summary>
    /// The box-constrained hyperplane projection: it meets w.delta = c inside the box, and no feasible point found by
    /// random search along the constraint has a smaller norm.
    /// </summary>
    [Theory, InlineData(Norm.Linf), InlineData(Norm.L2)]
    public void BoxHyperplaneProjectionIsFeasibleAndMinimal(Norm norm)
    {
        var rng = new Random(5);
        for (int trial = 0; trial < 50; trial++)
        {
            int dim = 6;
            var w = Enumerable.Range(0, dim).Select(_ => rng.NextDouble() * 2 - 1).ToArray();
            var x = Enumerable.Range(0, dim).Select(_ => rng.NextDouble()).ToArray();
            var lo = x.Select(v => -v).ToArray(); var hi = x.Select(v => 1 - v).ToArray();
            double c = (rng.NextDouble() * 2 - 1) * 0.5;
            var delta = FabT.BoxHyperplaneProjection(w, c, lo, hi, norm);
            double dot = w.Zip(delta, (a, b) => a * b).Sum();
            double reach = w.Select((v, j) => Math.Abs(v) * (Math.Sign(v) == Math.Sign(c) ? hi[j] : -lo[j])).Sum();
            if (reach < Math.Abs(c)) continue;
            Assert.Equal(c, dot, 9);
            for (int j = 0; j < dim; j++) Assert.InRange(delta[j], lo[j] - 1e-12, hi[j] + 1e-12);
            double Nrm(double[] v) => norm == Norm.Linf ? v.Max(Math.Abs) : Math.Sqrt(v.Sum(e => e * e));
            double mine = Nrm(delta);
            for (int s = 0; s < 2000; s++)
            {
                // A random point of the box, moved along w onto the hyperplane when that stays inside the box.
                var p = Enumerable.Range(0, dim).Select(j => lo[j] + rng.NextDouble() * (hi[j] - lo[j])).ToArray();
                double gap = c - w.Zip(p, (a, b) => a * b).Sum(), ww = w.Sum(v => v * v);
                for (int j = 0; j < dim; j++) p[j] += gap * w[j] / ww;
                if (p.Where((v, j) => v < lo[j] || v > hi[j]).Any()) continue;
                Assert.True(Nrm(p) >= mine - 1e-9, $"{norm}: a feasible point of norm {Nrm(p)} beats the projection's {mine}");
            }
        }
    }
}
