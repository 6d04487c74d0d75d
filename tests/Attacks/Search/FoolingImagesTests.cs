using Perturb.Engine.Attacks.Search;
using Perturb.Engine.Nn;
using Xunit.Abstractions;

namespace Perturb.Tests.Attacks.Search;

[Collection("trained-lenet")]
public class FoolingImagesTests(TrainedLeNet f, ITestOutputHelper log)
{
    [Fact]
    public void EveryClassReaches99PercentWithMapElites()
    {
        // Within 60 generations of 50 offspring (seen: classes 0-3 reach 99% at generations 14, 18, 30, 16; 1,550 queries).
        const int gens = 60;
        var r = new FoolingImages { Population = 50, Generations = gens, Seed = 7 }.Run(f.Model);
        log.WriteLine($"fooling, all 4 classes: confidences {string.Join(", ", r.BestConfidence.Select(v => v.ToString("F4")))}, reached at generations {string.Join(", ", r.ReachedAt)}, {r.Queries} queries");
        Assert.Equal(new[] { 0, 1, 2, 3 }, r.Classes);
        Assert.All(r.ReachedAt, g => Assert.InRange(g, 0, gens));
        Assert.Equal(50L * (1 + r.Generations), r.Queries);
        // A fresh forward pass on the elites confirms the confidences.
        using var t = f.Be.FromArray(r.Images.SelectMany(v => v).ToArray(), 4, 1, 28, 28);
        var p = Losses.Probabilities(f.Be, f.Model.Forward(t));
        for (int a = 0; a < 4; a++)
        {
            Assert.True(p[a][a] >= 0.99, $"class {a}: {p[a][a]}");
            Assert.Equal(r.BestConfidence[a], p[a][a], 4);
            Assert.All(r.Images[a], v => Assert.InRange(v, 0f, 1f));
        }
    }

    [Fact]
    public void OneClassRunReproducesItself()
    {
        var a = new FoolingImages { Population = 20, Generations = 10, Seed = 3, TargetConfidence = 1.1 }.Run(f.Model, new[] { 2 });
        var b = new FoolingImages { Population = 20, Generations = 10, Seed = 3, TargetConfidence = 1.1, QueryBatch = 7 }.Run(f.Model, new[] { 2 });
        Assert.Equal(10, a.Generations);
        Assert.Equal(a.Images[0], b.Images[0]);
        Assert.Equal(a.BestConfidence, b.BestConfidence);
        Assert.Equal(-1, a.ReachedAt[0]);
    }
}
