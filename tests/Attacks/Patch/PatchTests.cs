using Perturb.Engine.Attacks.Patch;
using Perturb.Engine.Backends;
using Perturb.Engine.Data;
using Perturb.Engine.Nn;
using Perturb.Engine.Training;
using Xunit.Abstractions;

namespace Perturb.Tests.Attacks.Patch;

public class PatchTests(ITestOutputHelper log)
{
    [Fact]
    public void RenderAdjointIsExact()
    {
        var ren = new PatchRenderer(2, 7, PatchShape.Round);
        var r = new SplitMix64(4);
        var pl = ren.Sample(r, 20, 20, 0.5, 1.0, 22.5);
        var map = ren.Map(pl, 20, 20);
        var p = Enumerable.Range(0, 2 * 49).Select(_ => (float)r.Normal()).ToArray();
        var gi = Enumerable.Range(0, 2 * 400).Select(_ => (float)r.Normal()).ToArray();
        // <A p, g> over the covered pixels equals <p, A^T g>.
        var img = new float[800];
        ren.Apply(p, img, map, 20, 20);
        double lhs = 0;
        var covered = new bool[400]; foreach (var d in map.Dst) covered[d] = true;
        for (int ch = 0; ch < 2; ch++) for (int i = 0; i < 400; i++) if (covered[i]) lhs += img[ch * 400 + i] * gi[ch * 400 + i];
        var gp = new float[98];
        ren.Adjoint(gi, gp, map, 20, 20);
        double rhs = p.Zip(gp, (a, b) => (double)a * b).Sum();
        Assert.Equal(lhs, rhs, 3);
        Assert.Equal(map.Dst.Length, map.Dst.Distinct().Count());
        Assert.Equal(14, PatchRenderer.SideFor(0.25, 28, 28, PatchShape.Square));
    }

    [Fact]
    public void LearnedPatchBeatsTheNaturalControl()
    {
        using var be = new CpuBackend();
        var data = SyntheticShapes.Create(41, trainCount: 600, testCount: 200);
        using var m = Presets.Create("lenet", be, 1, 28, 28, 4, 6);
        Trainer.Fit(m, data.Train, null, new TrainOptions { Epochs = 6, BatchSize = 32, LearningRate = 3e-3f, Seed = 6 });
        // Target "disc", a patch of 20% of the image (13x13), 300 Adam steps of 32 images.
        var r = AdversarialPatch.Run(m, data.Train, data.Test, new PatchOptions { Target = 0, SizeFraction = 0.2, Steps = 300, Seed = 3 });
        log.WriteLine($"side {r.Side}: learned success {r.Learned.TargetedSuccess:P1} acc {r.Learned.Accuracy:P1} AUC {r.Learned.Auc:F3}; " +
            $"control success {r.Control.TargetedSuccess:P1} acc {r.Control.Accuracy:P1}; clean success {r.Clean.TargetedSuccess:P1} acc {r.Clean.Accuracy:P1} ({r.Seconds:F1}s)");
        Assert.True(r.Learned.TargetedSuccess >= 0.6 && r.Learned.TargetedSuccess >= r.Control.TargetedSuccess + 0.5,
            $"learned {r.Learned.TargetedSuccess:P1} vs control {r.Control.TargetedSuccess:P1}");
        Assert.True(r.Learned.Accuracy < r.Control.Accuracy);
        Assert.All(r.Patch, v => Assert.InRange(v, 0f, 1f));
    }

    [Fact]
    public void PrintableRangeHoldsThroughoutAndStillAttacks()
    {
        using var be = new CpuBackend();
        var data = SyntheticShapes.Create(41, trainCount: 300, testCount: 100);
        using var m = Presets.Create("lenet", be, 1, 28, 28, 4, 6);
        Trainer.Fit(m, data.Train, null, new TrainOptions { Epochs = 4, BatchSize = 32, LearningRate = 3e-3f, Seed = 6 });
        var r = AdversarialPatch.Run(m, data.Train, data.Test, new PatchOptions { Target = 0, SizeFraction = 0.2, Steps = 100, Seed = 3, PrintMin = 0.2f, PrintMax = 0.8f });
        Assert.All(r.Patch, v => Assert.InRange(v, 0.2f, 0.8f));
        Assert.Contains(r.Patch, v => v == 0.2f || v == 0.8f); // the optimiser presses against the printable bounds
        Assert.True(r.Learned.TargetedSuccess > r.Control.TargetedSuccess, $"learned {r.Learned.TargetedSuccess:P1} vs control {r.Control.TargetedSuccess:P1}");
        Assert.Throws<Perturb.Engine.PerturbException>(() => AdversarialPatch.Run(m, data.Train, data.Test, new PatchOptions { Target = 0, Steps = 1, PrintMin = 0.9f, PrintMax = 0.1f }));
    }
}
