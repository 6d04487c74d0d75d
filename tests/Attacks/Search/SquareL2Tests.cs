using Perturb.Engine.Attacks;
using Perturb.Engine.Attacks.Search;
using Perturb.Engine.Data;
using Xunit.Abstractions;

namespace Perturb.Tests.Attacks.Search;

[Collection("trained-lenet")]
public class SquareL2Tests(TrainedLeNet f, ITestOutputHelper log)
{
    static void AssertInL2Ball(AttackResult r, float[] x)
    {
        int d = x.Length / r.N;
        foreach (var e in r.Results)
            for (int i = 0; i < r.N; i++)
            {
                double sq = 0;
                for (int j = 0; j < d; j++)
                {
                    float v = e.Adversarial[i * d + j];
                    Assert.InRange(v, 0f, 1f);
                    double df = v - x[i * d + j]; sq += df * df;
                }
                Assert.True(Math.Sqrt(sq) <= e.Eps!.Value + 1e-5, $"sample {i}: L2 {Math.Sqrt(sq)} > eps {e.Eps}");
            }
    }

    [Fact]
    public void StaysInTheL2BallCountsEveryQueryAndSucceedsMoreAtLargeEps()
    {
        var d = f.Take(24);
        float[] eps = { 0.1f, 4f };
        const int budget = 120;
        long per = SquareTests.ConvFlopsPerImage(f);
        long before = f.Be.Counters.Flops("conv_fwd");
        var r = new Square { Norm = Norm.L2, Queries = budget, Seed = 4, QueryBatch = 5 }.Run(f.Model, d.X, d.Labels, AttackGoal.Untargeted, eps);
        long images = (f.Be.Counters.Flops("conv_fwd") - before) / per;
        AssertInL2Ball(r, d.X);
        AttackAsserts.Valid(r, f.Model, d.X, Norm.L2);
        // The backend's own count of images forwarded: the clean pass and one final pass per eps, plus the queries.
        Assert.Equal(images, 24 + 24 * eps.Length + r.Results.Sum(e => e.Queries!.Sum()));
        foreach (var e in r.Results)
            for (int i = 0; i < r.N; i++)
            {
                if (r.PredictedBefore[i] != r.Labels[i]) { Assert.Equal(0, e.Queries![i]); continue; }
                Assert.Equal(1 + e.Steps[i], e.Queries![i]);
                if (!e.Success[i]) Assert.Equal(budget, e.Queries[i]);
            }
        double s0 = AttackAsserts.SuccessOverCorrect(r, 0), s1 = AttackAsserts.SuccessOverCorrect(r, 1);
        log.WriteLine($"square l2, {budget} queries: eps 0.1 success {s0:P0}, eps 4 success {s1:P0} (mean queries {r.Results[1].MeanQueries:F0}, mean L2 {r.Results[1].MeanL2:F2})");
        Assert.True(s1 >= 0.3, $"eps 4 success {s1:P0}");
        Assert.True(s1 > s0 + 0.2, $"eps 4 {s1:P0} vs eps 0.1 {s0:P0}");
    }

    [Fact]
    public void SeededL2RunReproducesAndDiffersFromLinf()
    {
        var d = f.Take(8);
        var goal = AttackGoal.Random(3);
        var r1 = new Square { Norm = Norm.L2, Queries = 60, Seed = 1 }.Run(f.Model, d.X, d.Labels, goal, new[] { 3f });
        var r2 = new Square { Norm = Norm.L2, Queries = 60, Seed = 1, QueryBatch = 3 }.Run(f.Model, d.X, d.Labels, goal, new[] { 3f });
        Assert.Equal(r1.Results[0].Adversarial, r2.Results[0].Adversarial);
        Assert.Equal(r1.Results[0].Queries, r2.Results[0].Queries);
        var r3 = new Square { Norm = Norm.L2, Queries = 60, Seed = 2 }.Run(f.Model, d.X, d.Labels, goal, new[] { 3f });
        Assert.NotEqual(r1.Results[0].Adversarial, r3.Results[0].Adversarial);
        AssertInL2Ball(r1, d.X);
        int hits = r1.Results[0].Success.Count(v => v);
        for (int i = 0; i < r1.N; i++) if (r1.Results[0].Success[i]) Assert.Equal(r1.Targets![i], r1.Results[0].PredictedAfter[i]);
        log.WriteLine($"square l2 targeted eps 3, 60 queries: {hits}/8 reach a random target");
        Assert.Equal(0.1f, new Square { Norm = Norm.L2 }.PInit);
        Assert.Equal(0.05f, new Square().PInit);
    }

    [Fact]
    public void StepsUseTheWholeBudgetAndMetaPerturbationHasUnitNorm()
    {
        var rng = new SplitMix64(3);
        foreach (int s in new[] { 1, 3, 5, 8 })
        {
            var m = Square.MetaPseudoGaussian(s, rng);
            Assert.Equal(1.0, Math.Sqrt(m.Sum(v => v * v)), 9);
        }
        // An interior point (no clipping): the start and every step land exactly on the sphere of radius eps.
        var x = Enumerable.Repeat(0.5f, 3 * 16 * 16).ToArray();
        var best = new float[x.Length]; var cand = new float[x.Length];
        Square.L2Start(x, best, 1.5f, rng, 3, 16, 16);
        Assert.Equal(1.5, Norm2(best, x), 4);
        for (int it = 0; it < 20; it++)
        {
            Square.L2Step(x, best, cand, 1.5f, 0.1, rng, 3, 16, 16);
            Assert.Equal(1.5, Norm2(cand, x), 4);
            Assert.NotEqual(best, cand);
            Array.Copy(cand, best, x.Length);
        }
        static double Norm2(float[] a, float[] b) => Math.Sqrt(a.Zip(b, (p, q) => (double)(p - q) * (p - q)).Sum());
    }

    [Fact]
    public void RegistryAcceptsL2()
    {
        var sq = (Square)AttackRegistry.Create("square", new Dictionary<string, object> { ["norm"] = Norm.L2, ["queries"] = 9 });
        Assert.Equal((Norm.L2, 9), (sq.Norm, sq.Queries));
        Assert.Equal(Norm.Linf, ((Square)AttackRegistry.Create("square")).Norm);
    }
}
