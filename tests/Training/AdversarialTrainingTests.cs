using Perturb.Engine;
using Perturb.Engine.Backends;
using Perturb.Engine.Data;
using Perturb.Engine.Nn;
using Perturb.Engine.Training;
using Xunit.Abstractions;

namespace Perturb.Tests.Training;

public class AdversarialTrainingTests(ITestOutputHelper log)
{
    [Fact]
    public void PgdTrainingRaisesRobustAccuracyAtItsEps()
    {
        using var be = new CpuBackend();
        var data = SyntheticShapes.Create(31, trainCount: 600, testCount: 200);
        var o = new TrainOptions { Epochs = 6, BatchSize = 32, LearningRate = 3e-3f, Seed = 2 };
        const float eps = 0.08f;
        using var std = Presets.Create("lenet", be, 1, 28, 28, 4, 2);
        Trainer.Fit(std, data.Train, null, o);
        using var adv = Presets.Create("lenet", be, 1, 28, 28, 4, 2);
        AdversarialTraining.Fit(adv, data.Train, null, o, new AdversarialOptions { Eps = eps, Steps = 5 });
        double sc = Evaluator.Accuracy(std, data.Test), ac = Evaluator.Accuracy(adv, data.Test);
        double sr = AdversarialTraining.RobustAccuracy(std, data.Test, eps, 10, 1), ar = AdversarialTraining.RobustAccuracy(adv, data.Test, eps, 10, 1);
        log.WriteLine($"standard: clean {sc:P1} robust {sr:P1}; adversarial: clean {ac:P1} robust {ar:P1}");
        Assert.True(ar >= sr + 0.2, $"robust accuracy {ar:P1} vs standard {sr:P1}");
        Assert.True(ac >= 0.5, $"clean accuracy of the adversarially trained model {ac:P1}");
    }

    [Fact]
    public void PerturbStaysInTheBoxAndValidates()
    {
        using var be = new CpuBackend();
        var d = SyntheticShapes.Create(3, trainCount: 8, testCount: 4).Train;
        using var m = Presets.Create("lenet", be, 1, 28, 28, 4, 1);
        using var x = be.FromArray(d.X, 8, 1, 28, 28);
        using var y = be.FromArray(d.Labels.Select(l => (float)l).ToArray(), 8);
        using var a = be.Allocate(x.Shape);
        m.Eval();
        AdversarialTraining.Perturb(m, x, y, a, new AdversarialOptions { Eps = 0.05f, Steps = 3 }, 1, 0);
        var xa = a.ToArray();
        Assert.All(Enumerable.Range(0, xa.Length), i => Assert.True(Math.Abs(xa[i] - d.X[i]) <= 0.05f + 1e-6f && xa[i] >= 0 && xa[i] <= 1));
        Assert.Throws<PerturbException>(() => AdversarialTraining.Fit(m, d, null, new TrainOptions { Epochs = 1 }, new AdversarialOptions { Eps = 0 }));
    }
}

public class AdversarialTrainCliTests : TempDirTest
{
    [Fact]
    public void TrainAdversarialReportsBothModels()
    {
        var j = Path.Combine(Dir, "t.json");
        var (code, o, e) = CliRunner.Run("train", "--data", "synthetic:train=120,test=30", "--arch", "lenet", "--epochs", "1", "--device", "cpu",
            "--adversarial", "pgd", "--eps", "0.05", "--steps", "2", "--json", j);
        Assert.True(code == 0, e);
        Assert.Contains("robust", o);
        var a = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(j))!["adversarial"]!;
        foreach (var k in new[] { "clean_accuracy", "robust_accuracy", "standard_clean_accuracy", "standard_robust_accuracy" }) Assert.NotNull(a[k]);
        Assert.Equal(2, CliRunner.Run("train", "--data", "synthetic:train=20,test=8", "--adversarial", "fgsm", "--device", "cpu").Code);
        Assert.Equal(2, CliRunner.Run("train", "--data", "synthetic:train=20,test=8", "--adversarial", "pgd", "--eps", "0", "--device", "cpu").Code);
    }
}
