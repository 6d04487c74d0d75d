using System.Text.Json.Nodes;
using Perturb.Engine.IO;
using Perturb.Engine.Nn;
using Perturb.Engine.Poison;

namespace Perturb.Engine.Defenses;

/// <summary>
/// The backdoor-detection experiment: features of a model trained on a poisoned set, then spectral signatures and
/// activation clustering, each scored against the known poison.
/// </summary>
public static class BackdoorDetection
{
    /// <summary>The defender's assumed bound for spectral signatures: the poisoned share of the target class.</summary>
    public static double ExpectedPoisonRate(PoisonedSet p, int target) =>
        Math.Clamp(p.PoisonIndices.Length / (double)Math.Max(1, p.Data.Labels.Count(l => l == target)), 1e-6, 0.999);

    public static BackdoorDetectionReport Run(Model m, PoisonedSet p, int target, ulong seed)
    {
        var feats = Features.Extract(m, p.Data);
        double eps = ExpectedPoisonRate(p, target);
        return new BackdoorDetectionReport(Features.DefaultLayer(m), eps, p.Mask(),
            SpectralSignatures.Detect(feats, p.Data.Labels, p.Data.NumClasses, eps),
            ActivationClustering.Detect(feats, p.Data.Labels, p.Data.NumClasses, seed: seed));
    }
}

/// <summary>What each detector flagged, with precision and recall against the known poison (<see cref="Truth"/>).</summary>
public sealed record BackdoorDetectionReport(string Layer, double Eps, bool[] Truth, DetectionResult SpectralSignatures, DetectionResult ActivationClustering)
{
    static double? N(double v) => double.IsFinite(v) ? v : null;

    static string Line(DetectionResult d, bool[] truth)
    {
        var (p, r) = d.PrecisionRecall(truth);
        return $"{d.Flagged.Length} flagged, precision {p:P1}, recall {r:P1}";
    }

    static JsonObject Json(DetectionResult d, bool[] truth)
    {
        var (p, r) = d.PrecisionRecall(truth);
        return new JsonObject
        {
            ["flagged"] = new JsonArray(d.Flagged.Select(i => (JsonNode)i).ToArray()),
            ["n_flagged"] = d.Flagged.Length, ["precision"] = N(p), ["recall"] = N(r),
        };
    }

    public string Summary => $"spectral signatures: {Line(SpectralSignatures, Truth)}; activation clustering: {Line(ActivationClustering, Truth)}";

    public JsonObject ToJson() => new()
    {
        ["layer"] = Layer, ["eps"] = Eps,
        ["spectral_signatures"] = Json(SpectralSignatures, Truth), ["activation_clustering"] = Json(ActivationClustering, Truth),
    };

    /// <summary>Writes detection.json into <paramref name="dir"/>.</summary>
    public void Save(string dir)
    {
        Directory.CreateDirectory(dir);
        AtomicFile.WriteText(Path.Combine(dir, "detection.json"), ToJson().ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n");
    }
}
