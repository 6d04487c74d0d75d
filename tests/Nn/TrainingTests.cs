using Perturb.Engine;
using Perturb.Engine.Backends;
using Perturb.Engine.Data;
using Perturb.Engine.Nn;
using Perturb.Engine.Training;

namespace Perturb.Tests.Nn;

public class TrainingTests
{
    [Fact]
    public void CnnSmallLearnsTheSyntheticSet()
    {
        using var be = new CpuBackend();
        var data = SyntheticShapes.Create(0, trainCount: 1600, testCount: 400);
        using var m = Presets.Create("cnn-small", be, 1, 28, 28, 4, 1);
        var r = Trainer.Fit(m, data.Train, null, new TrainOptions { Epochs = 4, BatchSize = 32, LearningRate = 3e-3f, Optimizer = "adam", Milestones = new[] { 3 }, Seed = 1 });
        double acc = Evaluator.Accuracy(m, data.Test);
        Assert.True(acc >= 0.95, $"held-out accuracy {acc:P1} < 95% (train loss by epoch: {string.Join(", ", r.Epochs.Select(e => e.TrainLoss.ToString("F3")))})");
        Assert.True(r.Epochs[^1].TrainLoss < r.Epochs[0].TrainLoss);
    }

    static float[][] TrainOnce(string optimizer, ulong seed)
    {
        using var be = new CpuBackend();
        var data = SyntheticShapes.Create(3, trainCount: 96, testCount: 8);
        using var m = Presets.Create("cnn-small", be, 1, 28, 28, 4, seed);
        Trainer.Fit(m, data.Train, null, new TrainOptions { Epochs = 2, BatchSize = 16, LearningRate = 0.01f, Optimizer = optimizer, WeightDecay = 1e-4f, Seed = seed });
        return m.NamedParameters().Select(p => p.P.Value.ToArray()).ToArray();
    }

    [Theory]
    [InlineData("sgd")]
    [InlineData("adam")]
    public void SameSeedSameWeights(string optimizer)
    {
        var a = TrainOnce(optimizer, 5);
        var b = TrainOnce(optimizer, 5);
        Assert.Equal(a.Length, b.Length);
        for (int i = 0; i < a.Length; i++) Assert.Equal(a[i], b[i]);
        var c = TrainOnce(optimizer, 6);
        Assert.NotEqual(a[0], c[0]);
    }

    [Fact]
    public void MultiStepScheduleAndBestCheckpoint()
    {
        var s = new MultiStepLr(0.1f, new[] { 5, 8 }, 0.1f);
        Assert.Equal(0.1f, s.RateAt(0), 6); Assert.Equal(0.1f, s.RateAt(4), 6);
        Assert.Equal(0.01f, s.RateAt(5), 6); Assert.Equal(0.001f, s.RateAt(9), 6);

        using var be = new CpuBackend();
        var data = SyntheticShapes.Create(1, trainCount: 200, testCount: 100);
        using var m = Presets.Create("lenet", be, 1, 28, 28, 4, 2);
        var r = Trainer.Fit(m, data.Train, data.Val, new TrainOptions { Epochs = 3, BatchSize = 32, LearningRate = 2e-3f, Seed = 2, KeepBest = true });
        double best = r.Epochs.Max(e => e.ValAccuracy!.Value);
        Assert.Equal(best, r.Epochs[r.BestEpoch - 1].ValAccuracy);
        Assert.Equal(best, Evaluator.Accuracy(m, data.Val!), 6);
    }

    [Fact]
    public void TrainAndEvalModesDiffer()
    {
        using var be = new CpuBackend();
        using var m = Presets.Create("cnn-small", be, 1, 12, 12, 3, 2);
        var rng = new Random(1);
        using var x = be.FromArray(Enumerable.Range(0, 4 * 144).Select(_ => (float)rng.NextDouble()).ToArray(), 4, 1, 12, 12);
        m.Eval();
        var e1 = m.Forward(x).ToArray();
        var e2 = m.Forward(x).ToArray();
        Assert.Equal(e1, e2); // eval is deterministic
        m.Train();
        m.SetDropoutStream(1);
        var t1 = m.Forward(x).ToArray();
        Assert.NotEqual(e1, t1); // batch statistics and dropout
        // The training pass moved the running statistics, which eval mode now uses.
        m.Eval();
        Assert.NotEqual(e1, m.Forward(x).ToArray());
    }

    [Fact]
    public void SyntheticSetIsSeededAndBalanced()
    {
        var a = SyntheticShapes.Create(4, 40, 20);
        var b = SyntheticShapes.Create(4, 40, 20);
        var c = SyntheticShapes.Create(5, 40, 20);
        Assert.Equal(a.Train.X, b.Train.X);
        Assert.NotEqual(a.Train.X, c.Train.X);
        Assert.Equal(new[] { 10, 10, 10, 10 }, a.Train.ClassCounts());
        Assert.All(a.Train.X, v => Assert.InRange(v, 0f, 1f));
        var rgb = SyntheticShapes.Create(4, 8, 4, channels: 3, size: 16, classes: 2);
        Assert.Equal(3 * 16 * 16, rgb.Train.SampleSize);
        Assert.Throws<PerturbException>(() => SyntheticShapes.Create(0, 8, 4, classes: 9));
    }
}
