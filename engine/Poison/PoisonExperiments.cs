using System.Text.Json.Nodes;
using Perturb.Engine.Data;
using Perturb.Engine.IO;
using Perturb.Engine.Nn;
using Perturb.Engine.Training;

namespace Perturb.Engine.Poison;

public sealed record BadNetsReport(double CleanAccuracy, double AttackSuccessRate, double BaselineCleanAccuracy, double BaselineAttackSuccessRate,
    double CleanAuc, double BaselineAuc, int PoisonCount, int TrainCount, int TriggeredTestCount, int[] PoisonIndices)
{
    /// <summary>As `perturb poison badnets --json` writes it: <paramref name="head"/> (arch, data, device, seed, ...) first, then the settings and figures.</summary>
    public JsonObject ToJson(Trigger trigger, double rate, int target, JsonObject? head = null)
    {
        var j = head == null ? new JsonObject() : (JsonObject)head.DeepClone();
        j["attack"] = "badnets"; j["rate"] = rate; j["target"] = target;
        j["trigger"] = trigger.Kind.ToString().ToLowerInvariant(); j["trigger_size"] = trigger.Size; j["alpha"] = trigger.Alpha;
        j["clean_accuracy"] = CleanAccuracy; j["attack_success_rate"] = PoisonJson.N(AttackSuccessRate); j["clean_auc"] = PoisonJson.N(CleanAuc);
        j["baseline_clean_accuracy"] = BaselineCleanAccuracy; j["baseline_attack_success_rate"] = PoisonJson.N(BaselineAttackSuccessRate); j["baseline_auc"] = PoisonJson.N(BaselineAuc);
        j["n_poison"] = PoisonCount; j["n_train"] = TrainCount; j["n_triggered_test"] = TriggeredTestCount;
        return j;
    }

    /// <summary>Writes badnets.json into <paramref name="dir"/>.</summary>
    public void Save(string dir, Trigger trigger, double rate, int target, JsonObject? head = null) => PoisonJson.Save(dir, "badnets.json", ToJson(trigger, rate, target, head));
}

public sealed record LabelFlipPoint(double Rate, int Flipped, double CleanAccuracy, double Auc);

/// <summary>The label-flipping experiment: one point per rate, on a training set of <see cref="TrainCount"/> samples.</summary>
public sealed record LabelFlipReport(IReadOnlyList<LabelFlipPoint> Points, int TrainCount)
{
    public JsonObject ToJson(JsonObject? head = null)
    {
        var j = head == null ? new JsonObject() : (JsonObject)head.DeepClone();
        j["attack"] = "label-flip"; j["n_train"] = TrainCount;
        j["points"] = new JsonArray(Points.Select(p => (JsonNode)new JsonObject
        {
            ["rate"] = p.Rate, ["flipped"] = p.Flipped, ["clean_accuracy"] = p.CleanAccuracy, ["auc"] = PoisonJson.N(p.Auc),
        }).ToArray());
        return j;
    }

    /// <summary>Writes label_flip.json into <paramref name="dir"/>.</summary>
    public void Save(string dir, JsonObject? head = null) => PoisonJson.Save(dir, "label_flip.json", ToJson(head));
}

static class PoisonJson
{
    public static JsonNode? N(double v) => double.IsFinite(v) ? v : null;

    public static void Save(string dir, string name, JsonObject j)
    {
        Directory.CreateDirectory(dir);
        AtomicFile.WriteText(Path.Combine(dir, name), j.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n");
    }
}

/// <summary>Poison, train, and measure: each model is built from the same architecture and seed as its clean twin.</summary>
public static class PoisonExperiments
{
    /// <summary>
    /// Trains a model on the BadNets-poisoned training set and a clean model with the same seed; reports both models'
    /// clean test accuracy and their attack success on the triggered test images of the other classes.
    /// <paramref name="keepPoisoned"/> receives the poisoned model (else it is disposed).
    /// </summary>
    public static BadNetsReport BadNets(Func<Model> makeModel, DataSplits data, Trigger trigger, double rate, int target, TrainOptions o,
        Action<string>? log = null, Action<Model, PoisonedSet>? keepPoisoned = null)
    {
        var poisoned = Poisoning.BadNets(data.Train, trigger, rate, target, o.Seed);
        var triggered = Poisoning.Triggered(data.Test, trigger, target);
        log?.Invoke($"poisoned {poisoned.PoisonIndices.Length} of {data.Train.Count} training samples (rate {rate:G3}, target {target})");
        double acc, asr, auc, bAcc, bAsr, bAuc;
        var m = makeModel();
        try
        {
            Trainer.Fit(m, poisoned.Data, null, o);
            var ev = Evaluator.Evaluate(m, data.Test);
            acc = ev.Accuracy; auc = ev.Auc;
            asr = triggered.Count == 0 ? double.NaN : Evaluator.Accuracy(m, triggered);
            log?.Invoke($"poisoned model: clean accuracy {acc:P2}, attack success {asr:P2}");
            keepPoisoned?.Invoke(m, poisoned);
        }
        finally { if (keepPoisoned == null) m.Dispose(); }
        using (var b = makeModel())
        {
            Trainer.Fit(b, data.Train, null, o);
            var ev = Evaluator.Evaluate(b, data.Test);
            bAcc = ev.Accuracy; bAuc = ev.Auc;
            bAsr = triggered.Count == 0 ? double.NaN : Evaluator.Accuracy(b, triggered);
            log?.Invoke($"clean model: clean accuracy {bAcc:P2}, attack success {bAsr:P2}");
        }
        return new BadNetsReport(acc, asr, bAcc, bAsr, auc, bAuc, poisoned.PoisonIndices.Length, data.Train.Count, triggered.Count, poisoned.PoisonIndices);
    }

    /// <summary>Clean test accuracy after training on label-flipped copies of the training set, one model per rate.</summary>
    public static LabelFlipReport LabelFlip(Func<Model> makeModel, DataSplits data, IReadOnlyList<double> rates, TrainOptions o, Action<string>? log = null)
    {
        var pts = new List<LabelFlipPoint>();
        foreach (var r in rates)
        {
            var p = Poisoning.LabelFlip(data.Train, r, o.Seed);
            using var m = makeModel();
            Trainer.Fit(m, p.Data, null, o);
            var ev = Evaluator.Evaluate(m, data.Test);
            pts.Add(new LabelFlipPoint(r, p.PoisonIndices.Length, ev.Accuracy, ev.Auc));
            log?.Invoke($"rate {r:G3}: {p.PoisonIndices.Length} labels flipped, clean accuracy {ev.Accuracy:P2}");
        }
        return new LabelFlipReport(pts, data.Train.Count);
    }
}
