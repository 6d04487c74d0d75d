using Perturb.Engine.Backends;
using Perturb.Engine.Data;
using Perturb.Engine.Defenses;
using Perturb.Engine.Nn;
using Perturb.Engine.Poison;
using Perturb.Engine.Training;
using Xunit.Abstractions;

namespace Perturb.Tests.Defenses;

public class DetectionTests(ITestOutputHelper log)
{
    [Fact]
    public void SpectralSignaturesFlagMostOfATenPercentPoison()
    {
        using var be = new CpuBackend();
        var data = SyntheticShapes.Create(23, trainCount: 800, testCount: 100);
        var p = Poisoning.BadNets(data.Train, new Trigger { Kind = TriggerKind.Checkerboard, Size = 4 }, 0.1, 0, seed: 7);
        using var m = Presets.Create("lenet", be, 1, 28, 28, 4, 7);
        Trainer.Fit(m, p.Data, null, new TrainOptions { Epochs = 8, BatchSize = 32, LearningRate = 3e-3f, Seed = 7 });
        var asr = Evaluator.Accuracy(m, Poisoning.Triggered(data.Test, new Trigger { Kind = TriggerKind.Checkerboard, Size = 4 }, 0));
        Assert.Equal("relu4", Features.PenultimateLayer(m));
        Assert.Equal("flatten", Features.DefaultLayer(m));
        var f = Features.Extract(m, p.Data);
        Assert.Equal(400, f[0].Length);
        var truth = p.Mask();
        // 10% of the training set poisoned, all relabelled to class 0: eps is the poisoned share of class 0 (80 of 280).
        double eps = BackdoorDetection.ExpectedPoisonRate(p, 0);
        Assert.Equal(80 / 280.0, eps, 2);
        var ss = SpectralSignatures.Detect(f, p.Data.Labels, 4, eps);
        var (sp, sr) = ss.PrecisionRecall(truth);
        var ac = ActivationClustering.Detect(f, p.Data.Labels, 4, seed: 1);
        var (ap, ar) = ac.PrecisionRecall(truth);
        log.WriteLine($"ASR {asr:P1}; spectral: {ss.Flagged.Length} flagged, precision {sp:P1} recall {sr:P1}; activation clustering: {ac.Flagged.Length} flagged, precision {ap:P1} recall {ar:P1}");
        Assert.True(asr >= 0.9, $"the backdoor took: {asr:P1}");
        Assert.True(sr >= 0.8, $"spectral signatures recall {sr:P1}");
        Assert.True(ar >= 0.8 && ap >= 0.5, $"activation clustering precision {ap:P1} recall {ar:P1}");
    }
}
