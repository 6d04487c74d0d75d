using Perturb.Engine.Attacks;
using Perturb.Engine.Attacks.Search;
using Xunit.Abstractions;

namespace Perturb.Tests.Attacks.Search;

[Collection("trained-lenet")]
public class SquareTests(TrainedLeNet f, ITestOutputHelper log)
{
    long ConvFlopsPerImage() => ConvFlopsPerImage(f);

    /// <summary>conv_fwd flops the backend counts for one image through the model.</summary>
    internal static long ConvFlopsPerImage(TrainedLeNet f)
    {
        var c = f.Be.Counters; long before = c.Flops("conv_fwd");
        using var t = f.Be.FromArray(f.Test.X.AsSpan(0, 784), 1, 1, 28, 28);
        f.Model.Forward(t); f.Model.ReleaseActivations();
        return c.Flops("conv_fwd") - before;
    }

    [Fact]
    public void StaysInBudgetAndCountsEveryQueryExactly()
    {
        var d = f.Take(16);
        float[] eps = { 0.1f, 0.25f };
        const int budget = 150;
        long per = ConvFlopsPerImage();
        long before = f.Be.Counters.Flops("conv_fwd");
        var r = new Square { Queries = budget, Seed = 4, QueryBatch = 5 }.Run(f.Model, d.X, d.Labels, AttackGoal.Untargeted, eps);
        long images = (f.Be.Counters.Flops("conv_fwd") - before) / per;
        AttackAsserts.Valid(r, f.Model, d.X, Norm.Linf);
        // The backend's own count of images forwarded: the run's clean pass and one final pass per eps, plus the queries.
        long counted = r.Results.Sum(e => e.Queries!.Sum());
        Assert.Equal(images, 16 + 16 * eps.Length + counted);
        foreach (var e in r.Results)
            for (int i = 0; i < r.N; i++)
            {
                Assert.InRange(e.Queries![i], 0, budget);
                if (r.PredictedBefore[i] != r.Labels[i]) { Assert.Equal(0, e.Queries[i]); continue; }
                Assert.Equal(1 + e.Steps[i], e.Queries[i]);
                if (!e.Success[i]) Assert.Equal(budget, e.Queries[i]);
            }
        double s0 = AttackAsserts.SuccessOverCorrect(r, 0), s1 = AttackAsserts.SuccessOverCorrect(r, 1);
        log.WriteLine($"square linf, {budget} queries: eps 0.1 success {s0:P0} (mean queries {r.Results[0].MeanQueries:F0}), eps 0.25 success {s1:P0} (mean queries {r.Results[1].MeanQueries:F0})");
        Assert.True(s1 >= 0.5, $"eps 0.25 success {s1:P0}");
        Assert.True(s1 >= s0);
    }

    [Fact]
    public void TargetedSquareReachesTargetsAndReproduces()
    {
        var d = f.Take(8);
        var goal = AttackGoal.Random(3);
        var r1 = new Square { Queries = 100, Seed = 1 }.Run(f.Model, d.X, d.Labels, goal, new[] { 0.3f });
        var r2 = new Square { Queries = 100, Seed = 1, QueryBatch = 3 }.Run(f.Model, d.X, d.Labels, goal, new[] { 0.3f });
        AttackAsserts.Valid(r1, f.Model, d.X, Norm.Linf);
        Assert.Equal(r1.Results[0].Adversarial, r2.Results[0].Adversarial);
        Assert.Equal(r1.Results[0].Queries, r2.Results[0].Queries);
        int hits = r1.Results[0].Success.Count(v => v);
        log.WriteLine($"square targeted eps 0.3, 100 queries: {hits}/8 reach a random target");
        Assert.True(hits > 0);
    }

    [Fact]
    public void ScheduleHalvesAtThePapersIterations()
    {
        Assert.Equal(0.05, Square.PSelection(0.05, 10, 10000), 10);
        Assert.Equal(0.025, Square.PSelection(0.05, 11, 10000), 10);
        Assert.Equal(0.05 / 512, Square.PSelection(0.05, 9999, 10000), 10);
        Assert.Equal(0.05 / 4, Square.PSelection(0.05, 2, 100), 10); // 200 of 10,000
        Assert.Equal(0.05 / 16, Square.PSelection(0.05, 6, 100), 10); // 600 of 10,000
    }
}
