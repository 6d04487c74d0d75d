using Perturb.Engine.Backends;
using Perturb.Engine.Data;
using Perturb.Engine.Nn;
using Perturb.Engine.Poison;
using Perturb.Engine.Training;
using Xunit.Abstractions;

namespace Perturb.Tests.Poison;

public class GenerativePoisonTests(ITestOutputHelper log)
{
    /// <summary>
    /// The generator must steer the victim it crafts against: the poison lands in the target class far more often
    /// than random ±eps noise of the same budget does (measured 41.0% against 16.5% at this setting, seed 8; 36.5%
    /// against 4.5% at seed 9). The victims' test accuracies are logged, not asserted: at this setting the poisoned
    /// victim does not score below the control (78.5% poisoned, 71.0% control, 70.5% clean at seed 8), so no claim
    /// that this poisoning lowers accuracy is made here. No stable setting was found where it does (tried: rate 1,
    /// eps 0.3 and 0.5, 1 to 3 rounds of 100 to 200 generator steps, seeds 8, 9, 10; with 4 victim epochs poisoned
    /// minus control ranged from -12 to +8 points between seeds; with 10 epochs the clean victim is stable at 95 to
    /// 96.5%, the poisoned one scores 91 to 98.5% and the ±eps control 84.5 to 97%). What this test asserts is the
    /// behaviour that does hold: the generator steers the victim within its budget.
    /// </summary>
    [Fact]
    public void GeneratorSteersTheVictimWithinBudgetMoreThanRandomNoise()
    {
        using var be = new CpuBackend();
        var data = SyntheticShapes.Create(51, trainCount: 400, testCount: 200);
        var o = new TrainOptions { Epochs = 4, BatchSize = 32, LearningRate = 3e-3f, Seed = 8 };
        var g = new GenerativePoisonOptions { Rate = 0.5, Eps = 0.3f, Rounds = 1, GeneratorSteps = 60, GeneratorLr = 1e-2f, Seed = 8 };
        var r = GenerativePoisoning.Run(() => Presets.Create("lenet", be, 1, 28, 28, 4, 8), data, g, o, log.WriteLine);
        log.WriteLine($"poisoned {r.PoisonedAccuracy:P1} clean {r.CleanAccuracy:P1} control {r.ControlAccuracy:P1}; target class: poison {r.PoisonTargetRate:P1}, control {r.ControlTargetRate:P1}; linf {r.MaxLinf:F3}");
        Assert.Equal(200, r.PoisonCount);
        Assert.True(r.MaxLinf <= 0.3 + 1e-5, $"max Linf {r.MaxLinf}");
        Assert.True(r.PoisonTargetRate > r.ControlTargetRate + 0.15,
            $"the poison reaches the target class {r.PoisonTargetRate:P1} of the time, random noise {r.ControlTargetRate:P1}");
        var j = r.ToJson(g);
        Assert.Equal(r.ControlAccuracy, (double)j["control_clean_accuracy"]!);
    }
}
