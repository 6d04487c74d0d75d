using Perturb.Engine.Training;

namespace Perturb.Tests.Training;

public class MetricsTests
{
    /// <summary>AUC by brute force: the share of (positive, negative) pairs ranked correctly, ties counting one half.</summary>
    static double BruteAuc(double[] s, bool[] p)
    {
        double good = 0; long pairs = 0;
        for (int i = 0; i < s.Length; i++)
            for (int j = 0; j < s.Length; j++)
                if (p[i] && !p[j]) { pairs++; good += s[i] > s[j] ? 1 : s[i] == s[j] ? 0.5 : 0; }
        return good / pairs;
    }

    [Fact]
    public void AucMatchesPairCountingWithTies()
    {
        var rng = new Random(3);
        for (int trial = 0; trial < 20; trial++)
        {
            int n = 5 + trial * 3;
            var s = Enumerable.Range(0, n).Select(_ => Math.Round(rng.NextDouble() * 4) / 4).ToArray(); // many ties
            var p = Enumerable.Range(0, n).Select(i => i % 3 == 0 || rng.NextDouble() < 0.3).ToArray();
            if (p.All(x => x) || !p.Any(x => x)) continue;
            Assert.Equal(BruteAuc(s, p), Metrics.Auc(s, p), 12);
        }
        Assert.Equal(1.0, Metrics.Auc(new[] { 0.1, 0.2, 0.8, 0.9 }, new[] { false, false, true, true }));
        Assert.Equal(0.0, Metrics.Auc(new[] { 0.9, 0.8, 0.2, 0.1 }, new[] { false, false, true, true }));
        Assert.Equal(0.75, Metrics.Auc(new[] { 0.1, 0.4, 0.35, 0.8 }, new[] { false, false, true, true }));
        Assert.True(double.IsNaN(Metrics.Auc(new[] { 0.1, 0.2 }, new[] { true, true })));
    }

    [Fact]
    public void MultiClassAucIsTheMeanOfOneVsRest()
    {
        var probs = new[] { new[] { 0.7f, 0.2f, 0.1f }, new[] { 0.1f, 0.8f, 0.1f }, new[] { 0.2f, 0.3f, 0.5f }, new[] { 0.5f, 0.4f, 0.1f } };
        var labels = new[] { 0, 1, 2, 1 };
        var (auc, per) = Metrics.Auc(probs, labels, 3);
        for (int c = 0; c < 3; c++)
            Assert.Equal(BruteAuc(probs.Select(p => (double)p[c]).ToArray(), labels.Select(l => l == c).ToArray()), per[c], 12);
        Assert.Equal(per.Average(), auc, 12);
        var (bin, _) = Metrics.Auc(new[] { new[] { 0.9f, 0.1f }, new[] { 0.2f, 0.8f }, new[] { 0.6f, 0.4f } }, new[] { 0, 1, 1 }, 2);
        Assert.Equal(1.0, bin);
    }

    [Fact]
    public void MedmnistRecipe()
    {
        var o = Recipes.Apply("medmnist", new TrainOptions { Epochs = 20 });
        Assert.Equal("adam", o.Optimizer); Assert.Equal(1e-3f, o.LearningRate); Assert.Equal(128, o.BatchSize);
        Assert.Equal(new[] { 10, 15 }, o.Milestones); Assert.True(o.KeepBest);
        Assert.Throws<Perturb.Engine.PerturbException>(() => Recipes.Apply("nope", o));
    }
}
