using Perturb.Engine.Backends;
using Perturb.Engine.Data;
using Perturb.Engine.Nn;
using Perturb.Engine.Training;

namespace Perturb.Tests.Data;

public class SyntheticHistologyTests
{
    [Fact]
    public void SeededBalancedShapedAndInRange()
    {
        var a = SyntheticHistology.Create(7, trainCount: 40, testCount: 10, size: 28);
        var b = SyntheticHistology.Create(7, trainCount: 40, testCount: 10, size: 28);
        var c = SyntheticHistology.Create(8, trainCount: 40, testCount: 10, size: 28);
        Assert.Equal(a.Train.X, b.Train.X);
        Assert.Equal(a.Test.X, b.Test.X);
        Assert.NotEqual(a.Train.X, c.Train.X);
        Assert.NotEqual(a.Train.X, a.Test.X.Concat(a.Test.X).Concat(a.Test.X).Concat(a.Test.X).ToArray());
        Assert.Equal((3, 28, 28), (a.Train.Channels, a.Train.Height, a.Train.Width));
        Assert.Equal(new[] { 20, 20 }, a.Train.ClassCounts());
        Assert.Equal(new[] { 5, 5 }, a.Test.ClassCounts());
        Assert.Equal(5, a.Val!.Count);
        Assert.Equal(new[] { "benign", "malignant" }, a.Train.ClassNames);
        Assert.All(a.Train.X, v => Assert.InRange(v, 0f, 1f));
        // H&E colouring: eosin pink and haematoxylin purple both absorb green most, so green is the darkest channel.
        var d = SyntheticHistology.Create(1, 20, 2, 32).Train;
        double[] mean = new double[3];
        for (int i = 0; i < d.Count; i++)
            for (int ch = 0; ch < 3; ch++) mean[ch] += d.Sample(i).Slice(ch * 1024, 1024).ToArray().Average();
        Assert.True(mean[1] < 0.9 * mean[0] && mean[1] < 0.9 * mean[2], $"channel means R {mean[0]:F2} G {mean[1]:F2} B {mean[2]:F2}");
        Assert.Equal(32, SyntheticHistology.Create(1, 4, 2).Train.Height);
    }

    /// <summary>The best single threshold on a tile's mean intensity, as an accuracy: the classes must not split on it.</summary>
    static double MeanIntensityAccuracy(Dataset d)
    {
        var m = Enumerable.Range(0, d.Count).Select(i => (Mean: d.Sample(i).ToArray().Average(), L: d.Labels[i])).OrderBy(t => t.Mean).ToArray();
        int pos = m.Count(t => t.L == 1), best = Math.Max(pos, d.Count - pos), below1 = 0, below0 = 0;
        for (int i = 0; i < m.Length; i++)
        {
            if (m[i].L == 1) below1++; else below0++;
            // predict 1 above the threshold, or 1 below it
            best = Math.Max(best, Math.Max(below0 + (pos - below1), below1 + (d.Count - pos - below0)));
        }
        return (double)best / d.Count;
    }

    [Fact]
    public void NotSeparableByMeanIntensity()
    {
        var d = SyntheticHistology.Create(11, trainCount: 1000, testCount: 2, size: 32).Train;
        double acc = MeanIntensityAccuracy(d);
        Assert.True(acc < 0.8, $"a threshold on mean intensity separates {acc:P1} of the tiles");
    }

    [Fact]
    public void SmallCnnLearnsIt()
    {
        const int S = 28;
        var data = SyntheticHistology.Create(3, trainCount: 600, testCount: 300, size: S);
        using var be = new CpuBackend();
        using var m = Presets.Create("cnn-small", be, 3, S, S, 2, 5);
        Trainer.Fit(m, data.Train, null, new TrainOptions { Epochs = 3, BatchSize = 32, LearningRate = 3e-3f, Optimizer = "adam", Seed = 5 });
        double acc = Evaluator.Accuracy(m, data.Test);
        Assert.True(acc >= 0.85, $"held-out accuracy {acc:P1} < 85%");
    }

    [Fact]
    public void OverlapKeepsTheDefaultAndBringsTheClassesCloser()
    {
        var d0 = SyntheticHistology.Create(4, trainCount: 200, testCount: 10, size: 32);
        var z = SyntheticHistology.Create(4, trainCount: 200, testCount: 10, size: 32, overlap: 0);
        var o = SyntheticHistology.Create(4, trainCount: 200, testCount: 10, size: 32, overlap: 0.9);
        var o2 = SyntheticHistology.Create(4, trainCount: 200, testCount: 10, size: 32, overlap: 0.9);
        Assert.Equal(d0.Train.X, z.Train.X);
        Assert.Equal(o.Train.X, o2.Train.X);
        Assert.NotEqual(d0.Train.X, o.Train.X);
        Assert.Equal(d0.Train.Labels, o.Train.Labels);
        Assert.All(o.Train.X, v => Assert.InRange(v, 0f, 1f));
        // Share of dark (nuclear) pixels per tile: the class gap shrinks when the classes overlap.
        static double Gap(Dataset d)
        {
            var m = new double[2]; var n = new int[2];
            int hw = d.Height * d.Width;
            for (int i = 0; i < d.Count; i++)
            {
                var x = d.Sample(i);
                int dark = 0;
                for (int p = 0; p < hw; p++) if (0.299 * x[p] + 0.587 * x[hw + p] + 0.114 * x[2 * hw + p] < 0.45) dark++;
                m[d.Labels[i]] += (double)dark / hw; n[d.Labels[i]]++;
            }
            return m[1] / n[1] - m[0] / n[0];
        }
        double g0 = Gap(d0.Train), g9 = Gap(o.Train);
        Assert.True(g9 < 0.8 * g0, $"dark-pixel gap {g0:F4} at overlap 0, {g9:F4} at 0.9");
        Assert.Throws<Perturb.Engine.PerturbException>(() => SyntheticHistology.Create(4, 20, 10, 32, overlap: 1.5));
    }

    [Fact]
    public void NucleusDensityDoesNotDependOnTileSize()
    {
        // Share of dark pixels per class at 32 and 64 pixels: the same tissue drawn at twice the resolution.
        static double[] Dark(int size)
        {
            var d = SyntheticHistology.Create(9, trainCount: 120, testCount: 2, size: size).Train;
            var m = new double[2]; var n = new int[2];
            int hw = size * size;
            for (int i = 0; i < d.Count; i++)
            {
                var x = d.Sample(i);
                int dark = 0;
                for (int p = 0; p < hw; p++) if (0.299 * x[p] + 0.587 * x[hw + p] + 0.114 * x[2 * hw + p] < 0.45) dark++;
                m[d.Labels[i]] += (double)dark / hw; n[d.Labels[i]]++;
            }
            return new[] { m[0] / n[0], m[1] / n[1] };
        }
        var a = Dark(32); var b = Dark(64);
        for (int c = 0; c < 2; c++)
            Assert.True(Math.Abs(a[c] - b[c]) < 0.35 * a[c], $"class {c}: dark share {a[c]:F3} at 32 px, {b[c]:F3} at 64 px");
    }
}
