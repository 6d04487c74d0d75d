using Perturb.Engine.Backends;
using Perturb.Engine.Data;
using Perturb.Engine.Nn;
using Perturb.Engine.Poison;
using Perturb.Engine.Training;
using Xunit.Abstractions;

namespace Perturb.Tests.Poison;

public class GenerativePoisonTests(ITestOutputHelper log)
{
    [Fact]
    public void GenerativePoisonRunsWithinBudgetAndReportsTheDrop()
    {
        using var be = new CpuBackend();
        var data = SyntheticShapes.Create(51, trainCount: 400, testCount: 200);
        var o = new TrainOptions { Epochs = 4, BatchSize = 32, LearningRate = 3e-3f, Seed = 8 };
        var r = GenerativePoisoning.Run(() => Presets.Create("lenet", be, 1, 28, 28, 4, 8), data,
            new GenerativePoisonOptions { Rate = 0.2, Eps = 0.3f, Rounds = 2, GeneratorSteps = 20, Seed = 1 }, o, log.WriteLine);
        log.WriteLine($"poisoned {r.PoisonedAccuracy:P1} clean {r.CleanAccuracy:P1} drop {r.AccuracyDrop:P1} linf {r.MaxLinf:F3}");
        Assert.Equal(80, r.PoisonCount);
        Assert.True(r.MaxLinf <= 0.3 + 1e-5);
        Assert.InRange(r.PoisonedAccuracy, 0, 1);
        Assert.Equal(r.CleanAccuracy - r.PoisonedAccuracy, r.AccuracyDrop, 9);
    }
}
