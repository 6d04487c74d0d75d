using Perturb.Engine.Attacks;
using Perturb.Engine.Attacks.Search;

namespace Perturb.Tests.Attacks.Search;

/// <summary>pixel-saliency on a one-output (sigmoid) model: the saliency gradient goes through the BCE path.</summary>
public class PixelSaliencyBinaryTests(TrainedBinaryLeNet f) : IClassFixture<TrainedBinaryLeNet>
{
    [Fact]
    public void RunsOnASigmoidModelWithExactlyKPixels()
    {
        var d = f.Test.Take(10);
        var r = new PixelSaliency { Pixels = 3, Population = 20, Iterations = 3, Seed = 1 }.Run(f.Model, d.X, d.Labels, AttackGoal.Untargeted);
        AttackAsserts.Valid(r, f.Model, d.X, null);
        var e = r.Results[0];
        int ran = 0;
        for (int i = 0; i < r.N; i++)
        {
            int changed = Enumerable.Range(0, 784).Count(p => e.Adversarial[i * 784 + p] != d.X[i * 784 + p]);
            if (r.PredictedBefore[i] != r.Labels[i]) { Assert.Equal(0, changed); Assert.Equal(0, e.Queries![i]); continue; }
            ran++;
            Assert.Equal(3, changed);
            Assert.Equal(1, e.Gradients[i]);
            Assert.Equal(1L + 20L * (1 + e.Steps[i]), e.Queries![i]);
        }
        Assert.True(ran > 0);
    }
}
