using Perturb.Engine.Attacks;
using Perturb.Engine.Attacks.Search;
using Perturb.Engine.Nn;
using Xunit.Abstractions;

namespace Perturb.Tests.Attacks.Search;

[Collection("trained-lenet")]
public class MoeaTests(TrainedLeNet f, ITestOutputHelper log)
{
    [Fact]
    public void DefaultTargetIsTheRunnerUpAndALargeEpsReachesIt()
    {
        // Seen: 82% of the 11 correctly classified images reach the runner-up class at eps 0.3 in 40 generations of 40
        // (least-likely targets: 18%; 100 generations: 91% and 64%).
        var d = f.Take(12);
        var moea = new Moea { Population = 40, Iterations = 40, Seed = 5 };
        var r = moea.Run(f.Model, d, AttackGoal.Untargeted, new[] { 0.3f });
        double share = AttackAsserts.SuccessOverCorrect(r);
        log.WriteLine($"moea L2, runner-up target, eps 0.3, P 40, 40 generations: success {share:P1}, mean L2 {r.Results[0].MeanL2:F3}");
        AttackAsserts.Valid(r, f.Model, d.X, Norm.Linf);
        using var t = f.Be.FromArray(d.X, new[] { d.Count }.Concat(f.Model.InputShape).ToArray());
        var p = Losses.Probabilities(f.Be, f.Model.Forward(t));
        var runnerUp = Enumerable.Range(0, d.Count).Select(i => Enumerable.Range(0, 4).Where(k => k != d.Labels[i]).OrderByDescending(k => p[i][k]).First()).ToArray();
        CheckFronts(moea.ParetoFronts, r, d.X, 0.3f, Norm.L2, runnerUp);
        Assert.True(share >= 0.5, $"success {share}");
        Assert.Equal(40L * 41, r.Results[0].Queries![moea.ParetoFronts[0].Sample]);
    }

    [Fact]
    public void TargetedLinfRunReachesTargetsStaysInBudgetAndReproduces()
    {
        var d = f.Take(6);
        var goal = AttackGoal.LeastLikely;
        var a = new Moea { Population = 20, Iterations = 12, Norm = Norm.Linf, Seed = 9 };
        var ra = a.Run(f.Model, d, goal, new[] { 0.35f, 0.1f });
        var b = new Moea { Population = 20, Iterations = 12, Norm = Norm.Linf, Seed = 9, QueryBatch = 13 };
        var rb = b.Run(f.Model, d, goal, new[] { 0.35f, 0.1f });
        AttackAsserts.Valid(ra, f.Model, d.X, Norm.Linf);
        log.WriteLine($"least-likely, Linf: successes at eps 0.35 {ra.Results[0].Success.Count(v => v)}, at 0.1 {ra.Results[1].Success.Count(v => v)} of {ra.N}");
        Assert.Equal(ra.Results[0].Adversarial, rb.Results[0].Adversarial);
        Assert.Equal(ra.Results[1].Adversarial, rb.Results[1].Adversarial);
        Assert.Equal(a.ParetoFronts.SelectMany(p => p.Norms), b.ParetoFronts.SelectMany(p => p.Norms));
        Assert.Equal(a.ParetoFronts.SelectMany(p => p.TargetConfidence), b.ParetoFronts.SelectMany(p => p.TargetConfidence));
        foreach (var eps in new[] { 0.35f, 0.1f }) CheckFronts(a.ParetoFronts.Where(p => p.Eps == eps).ToList(), ra, d.X, eps, Norm.Linf, ra.Targets!);
        Assert.Contains(true, ra.Results[0].Success);   // seen: 3 of 6 at eps 0.35, none at 0.1
        foreach (var e in ra.Results)
            for (int i = 0; i < ra.N; i++)
                if (e.Success[i]) Assert.Equal(ra.Targets![i], e.PredictedAfter[i]);
        var other = new Moea { Population = 20, Iterations = 12, Norm = Norm.Linf, Seed = 10 }.Run(f.Model, d, goal, new[] { 0.35f, 0.1f });
        Assert.NotEqual(ra.Results[0].Adversarial, other.Results[0].Adversarial);
    }

    /// <summary>Fronts of one eps: mutually non-dominated, sorted by norm, norms and confidences as reported, the answer is their best.</summary>
    static void CheckFronts(IReadOnlyList<ParetoFront> fronts, AttackResult r, float[] x, float eps, Norm norm, int[] targets)
    {
        var attacked = Enumerable.Range(0, r.N).Where(i => r.Targets == null ? r.PredictedBefore[i] == r.Labels[i] : r.PredictedBefore[i] != r.Targets[i]).ToArray();
        Assert.Equal(attacked, fronts.Select(p => p.Sample).ToArray());
        foreach (var p in fronts)
        {
            Assert.NotEmpty(p.Members);
            Assert.Equal(targets[p.Sample], p.Target);
            for (int a = 0; a < p.Members.Length; a++)
            {
                if (a > 0) Assert.True(p.Norms[a] >= p.Norms[a - 1]);
                Assert.InRange(p.TargetConfidence[a], 0, 1);
                // Every member's perturbation: within eps per pixel, x + delta in [0,1], its norm as reported.
                var delta = p.Perturbations[a];
                double sq = 0, mx = 0;
                for (int j = 0; j < delta.Length; j++)
                {
                    float v = x[p.Sample * delta.Length + j] + delta[j];
                    Assert.True(v >= 0f && v <= 1f && Math.Abs(delta[j]) <= eps + 1e-6, $"pixel {v}, delta {delta[j]}");
                    sq += (double)delta[j] * delta[j]; mx = Math.Max(mx, Math.Abs(delta[j]));
                }
                Assert.Equal(norm == Norm.L2 ? Math.Sqrt(sq) : mx, p.Norms[a], 4);
                for (int b = 0; b < p.Members.Length; b++)
                    Assert.False(Nsga2.Dominates(new[] { 1 - p.TargetConfidence[a], p.Norms[a] }, new[] { 1 - p.TargetConfidence[b], p.Norms[b] }),
                        $"image {p.Sample}: member {p.Members[a]} dominates {p.Members[b]}");
            }
            // The answer: the smallest-norm member that reaches the target, else the most confident one.
            int k = Array.IndexOf(p.ReachesTarget, true);
            if (k < 0) k = Array.IndexOf(p.TargetConfidence, p.TargetConfidence.Max());
            Assert.Equal(p.Members[k], p.Best);
            var e = r.Results.Single(q => q.Eps == p.Eps);
            double n = norm == Norm.L2 ? e.L2[p.Sample] : e.Linf[p.Sample];
            Assert.Equal(p.Norms[k], n, 3);
            if (r.Targets != null)
            {
                Assert.Equal(p.ReachesTarget[k], e.Success[p.Sample]);
                Assert.Equal(p.TargetConfidence[k], e.TargetConfidenceAfter![p.Sample], 3);
            }
            else if (p.ReachesTarget[k]) Assert.True(e.Success[p.Sample]);
        }
    }
}
