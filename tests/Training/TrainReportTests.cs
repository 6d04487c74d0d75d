using System.Text.Json.Nodes;
using Perturb.Engine.Backends;
using Perturb.Engine.Data;
using Perturb.Engine.Nn;
using Perturb.Engine.Poison;
using Perturb.Engine.Training;

namespace Perturb.Tests.Training;

/// <summary>The results `train` and `poison label-flip` write come from the engine's report objects (ToJson/Save), not the CLI.</summary>
public class TrainReportTests : TempDirTest
{
    [Fact]
    public void TrainReportSavesItsOptionsFiguresAndHistory()
    {
        using var be = new CpuBackend();
        var data = SyntheticShapes.Create(3, trainCount: 64, testCount: 32);
        using var m = Presets.Create("lenet", be, 1, 28, 28, 4, 1);
        var o = new TrainOptions { Epochs = 2, BatchSize = 32, LearningRate = 2e-3f, Seed = 1 };
        var res = Trainer.Fit(m, data.Train, null, o);
        var test = Evaluator.Evaluate(m, data.Test);
        new TrainReport(res, test, o, m.ParameterCount, data.Train.Count).Save(Dir, new JsonObject { ["arch"] = "lenet" });
        var j = JsonNode.Parse(File.ReadAllText(Path.Combine(Dir, "train.json")))!;
        Assert.Equal("lenet", (string)j["arch"]!);
        Assert.Equal(test.Accuracy, (double)j["accuracy"]!);
        Assert.Equal(64, (int)j["n_train"]!);
        Assert.Equal(m.ParameterCount, (long)j["parameters"]!);
        Assert.Equal(res.Epochs[^1].TrainLoss, (double)j["train_loss"]!);
        Assert.Equal(new[] { 1, 2 }, j["history"]!.AsArray().Select(e => (int)e!["epoch"]!));
        Assert.Null(j["adversarial"]);
        Assert.Empty(Directory.GetFiles(Dir).Where(f => !f.EndsWith("train.json")));
    }

    [Fact]
    public void LabelFlipReportSavesOnePointPerRate()
    {
        using var be = new CpuBackend();
        var data = SyntheticShapes.Create(3, trainCount: 64, testCount: 32);
        var o = new TrainOptions { Epochs = 1, BatchSize = 32, LearningRate = 2e-3f, Seed = 1 };
        var r = PoisonExperiments.LabelFlip(() => Presets.Create("lenet", be, 1, 28, 28, 4, 1), data, new[] { 0.0, 0.5 }, o);
        r.Save(Dir);
        var j = JsonNode.Parse(File.ReadAllText(Path.Combine(Dir, "label_flip.json")))!;
        Assert.Equal("label-flip", (string)j["attack"]!);
        var pts = j["points"]!.AsArray();
        Assert.Equal(new[] { 0, 32 }, pts.Select(p => (int)p!["flipped"]!));
        Assert.Equal(r.Points[1].CleanAccuracy, (double)pts[1]!["clean_accuracy"]!);
    }
}
