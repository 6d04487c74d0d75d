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

    /// <summary>
    /// The patch learned on the device (placement, adjoint, Adam and clamp as backend ops) follows the host algorithm
    /// it replaced: the same draws, the host renderer's Apply and Adjoint, the model's input gradient downloaded, Adam
    /// in double on the host. The gradients are the same bits (same pixels, same sums); only Adam's float state
    /// differs, so after 25 steps the patches agree within 1e-4 and the clamped values are the same.
    /// </summary>
    [Fact]
    public void DeviceLearningFollowsTheHostAlgorithm()
    {
        using var be = new CpuBackend();
        var data = SyntheticShapes.Create(41, trainCount: 120, testCount: 40);
        using var m = Presets.Create("lenet", be, 1, 28, 28, 4, 6);
        Trainer.Fit(m, data.Train, null, new TrainOptions { Epochs = 1, BatchSize = 32, LearningRate = 3e-3f, Seed = 6 });
        var o = new PatchOptions { Target = 0, SizeFraction = 0.2, Steps = 25, BatchSize = 16, Seed = 3, PrintMin = 0.1f, PrintMax = 0.9f };
        var dev = AdversarialPatch.Run(m, data.Train, data.Test, o).Patch;
        var host = HostLearn(m, data.Train, new PatchRenderer(1, PatchRenderer.SideFor(o.SizeFraction, 28, 28, o.Shape), o.Shape), o);
        double worst = 0;
        for (int i = 0; i < host.Length; i++) worst = Math.Max(worst, Math.Abs(host[i] - dev[i]));
        log.WriteLine($"largest difference {worst:g3} over {host.Length} values; {host.Count(v => v == 0.1f || v == 0.9f)} clamped");
        Assert.True(worst < 1e-4, $"device and host patches differ by {worst}");
        for (int i = 0; i < host.Length; i++)
            if (host[i] == 0.1f || host[i] == 0.9f) Assert.Equal(host[i], dev[i]);
        Assert.Contains(host, v => v == 0.1f || v == 0.9f);
    }

    /// <summary>The host algorithm before the device ops (the reference): host rendering and adjoint, double Adam.</summary>
    static float[] HostLearn(Model model, Dataset train, PatchRenderer ren, PatchOptions o)
    {
        var be = model.Backend;
        int c = train.Channels, h = train.Height, w = train.Width, s = train.SampleSize;
        var rng = new SplitMix64(o.Seed ^ 0x9A7C_4000UL);
        int len = c * ren.Size * ren.Size;
        var patch = new float[len];
        for (int i = 0; i < len; i++) patch[i] = o.PrintMin + (o.PrintMax - o.PrintMin) * (float)rng.NextDouble();
        var m1 = new double[len]; var m2 = new double[len]; var g = new float[len];
        model.Eval();
        int n = Math.Min(o.BatchSize, train.Count);
        using var y = be.FromArray(Enumerable.Repeat((float)o.Target, n).ToArray(), n);
        for (int t = 1; t <= o.Steps; t++)
        {
            var idx = new int[n];
            for (int i = 0; i < n; i++) idx[i] = rng.NextInt(train.Count);
            var xb = train.Gather(idx);
            var maps = new (int[], int[])[n];
            for (int i = 0; i < n; i++)
            {
                maps[i] = ren.Map(ren.Sample(rng, h, w, o.ScaleMin, o.ScaleMax, o.MaxRotationDegrees), h, w);
                ren.Apply(patch, xb.AsSpan(i * s, s), maps[i], h, w);
            }
            using var x = be.FromArray(xb, n, c, h, w);
            using var loss = Losses.CrossEntropy(be, model.Forward(x), y, 1f / n);
            var dx = model.Backward(loss.Grad!, BackwardMode.InputOnly)!.ToArray();
            Array.Clear(g);
            for (int i = 0; i < n; i++) ren.Adjoint(dx.AsSpan(i * s, s), g, maps[i], h, w);
            for (int i = 0; i < len; i++)
            {
                m1[i] = 0.9 * m1[i] + 0.1 * g[i];
                m2[i] = 0.999 * m2[i] + 0.001 * g[i] * g[i];
                double mh = m1[i] / (1 - Math.Pow(0.9, t)), vh = m2[i] / (1 - Math.Pow(0.999, t));
                patch[i] = Math.Clamp((float)(patch[i] - o.LearningRate * mh / (Math.Sqrt(vh) + 1e-8)), o.PrintMin, o.PrintMax);
            }
        }
        model.ReleaseActivations();
        return patch;
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
