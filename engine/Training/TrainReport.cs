using System.Text.Json;
using System.Text.Json.Nodes;
using Perturb.Engine.IO;

namespace Perturb.Engine.Training;

/// <summary>
/// One training run as `perturb train --json` writes it: the options, the last epoch, the test evaluation, the history,
/// and (for adversarial training) the comparison with a standard model.
/// </summary>
public sealed record TrainReport(TrainResult Result, EvalResult Test, TrainOptions Options, long Parameters, int TrainCount, AdversarialComparison? Adversarial = null)
{
    /// <summary><paramref name="head"/> (the run's arch, data, device, ...) first, then the figures.</summary>
    public JsonObject ToJson(JsonObject? head = null)
    {
        var j = head == null ? new JsonObject() : (JsonObject)head.DeepClone();
        var last = Result.Epochs[^1];
        j["epochs"] = Options.Epochs; j["batch_size"] = Options.BatchSize; j["lr"] = Options.LearningRate; j["optimizer"] = Options.Optimizer;
        j["seed"] = Options.Seed; j["parameters"] = Parameters;
        j["train_loss"] = last.TrainLoss; j["train_accuracy"] = last.TrainAccuracy;
        j["accuracy"] = Test.Accuracy; j["auc"] = double.IsFinite(Test.Auc) ? Test.Auc : null; j["n_test"] = Test.N; j["n_train"] = TrainCount;
        j["val_accuracy"] = last.ValAccuracy; j["best_epoch"] = Result.BestEpoch; j["keep_best"] = Options.KeepBest;
        j["milestones"] = new JsonArray(Options.Milestones.Select(m => (JsonNode)m).ToArray());
        j["seconds"] = Result.Seconds;
        j["history"] = new JsonArray(Result.Epochs.Select(e => (JsonNode)new JsonObject
        {
            ["epoch"] = e.Epoch, ["train_loss"] = e.TrainLoss, ["train_accuracy"] = e.TrainAccuracy,
            ["val_accuracy"] = e.ValAccuracy, ["lr"] = e.LearningRate, ["seconds"] = e.Seconds,
        }).ToArray());
        if (Adversarial != null) j["adversarial"] = Adversarial.ToJson();
        return j;
    }

    /// <summary>Writes train.json into <paramref name="dir"/>.</summary>
    public void Save(string dir, JsonObject? head = null)
    {
        Directory.CreateDirectory(dir);
        AtomicFile.WriteText(Path.Combine(dir, "train.json"), ToJson(head).ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }
}
