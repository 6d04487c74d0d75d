using Perturb.Engine;
using Perturb.Engine.Backends;
using Perturb.Engine.Data;
using Perturb.Engine.Nn;
using Perturb.Engine.Poison;
using Perturb.Engine.Training;
using Xunit.Abstractions;

namespace Perturb.Tests.Poison;

public class BadNetsTests(ITestOutputHelper log)
{
    [Fact]
    public void TriggerStampsTheCornerOnly()
    {
        var img = new float[1 * 8 * 8];
        new Trigger { Kind = TriggerKind.Checkerboard, Size = 2, Margin = 1 }.Apply(img, 1, 8, 8);
        Assert.Equal(1f, img[5 * 8 + 5]); Assert.Equal(0f, img[5 * 8 + 6]); Assert.Equal(1f, img[6 * 8 + 6]);
        Assert.Equal(2, img.Count(v => v != 0));
        var half = Enumerable.Repeat(0.5f, 64).ToArray();
        new Trigger { Kind = TriggerKind.Square, Size = 3, X = 0, Y = 0, Alpha = 0.5f }.Apply(half, 1, 8, 8);
        Assert.Equal(0.75f, half[0]); Assert.Equal(0.5f, half[3]);
    }

    [Fact]
    public void PoisonChoosesOtherClassesAndRelabels()
    {
        var d = SyntheticShapes.Create(5, trainCount: 200, testCount: 40).Train;
        var p = Poisoning.BadNets(d, new Trigger(), 0.1, 2, seed: 9);
        Assert.Equal(20, p.PoisonIndices.Length);
        foreach (var i in p.PoisonIndices) { Assert.NotEqual(2, d.Labels[i]); Assert.Equal(2, p.Data.Labels[i]); }
        Assert.Equal(d.Labels.Count(l => l == 2) + 20, p.Data.Labels.Count(l => l == 2));
        Assert.Equal(p.PoisonIndices, Poisoning.BadNets(d, new Trigger(), 0.1, 2, seed: 9).PoisonIndices);
        var f = Poisoning.LabelFlip(d, 0.25, 3);
        Assert.Equal(50, f.PoisonIndices.Length);
        Assert.All(f.PoisonIndices, i => Assert.NotEqual(d.Labels[i], f.Data.Labels[i]));
        Assert.Throws<PerturbException>(() => Poisoning.BadNets(d, new Trigger(), 1.5, 0, 1));
    }

    [Fact]
    public void BadNetsReachesHighAttackSuccessAndKeepsCleanAccuracy()
    {
        using var be = new CpuBackend();
        var data = SyntheticShapes.Create(21, trainCount: 800, testCount: 400);
        var o = new TrainOptions { Epochs = 8, BatchSize = 32, LearningRate = 3e-3f, Seed = 5 };
        var r = PoisonExperiments.BadNets(() => Presets.Create("lenet", be, 1, 28, 28, 4, 5), data,
            new Trigger { Kind = TriggerKind.Checkerboard, Size = 4 }, rate: 0.1, target: 0, o);
        log.WriteLine($"ASR {r.AttackSuccessRate:P1} (clean model {r.BaselineAttackSuccessRate:P1}); clean accuracy {r.CleanAccuracy:P1} vs {r.BaselineCleanAccuracy:P1}");
        Assert.True(r.AttackSuccessRate >= 0.90, $"attack success {r.AttackSuccessRate:P1}");
        Assert.True(r.CleanAccuracy >= r.BaselineCleanAccuracy - 0.03, $"clean accuracy {r.CleanAccuracy:P1} vs {r.BaselineCleanAccuracy:P1}");
        Assert.True(r.BaselineAttackSuccessRate < 0.5, $"the clean model ignores the trigger: {r.BaselineAttackSuccessRate:P1}");
    }
}
