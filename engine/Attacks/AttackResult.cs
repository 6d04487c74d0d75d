using System.Text.Json.Nodes;
using Perturb.Engine.Report;

namespace Perturb.Engine.Attacks;

/// <summary>
/// One epsilon's outcome (or the single outcome of a budget-free attack, <see cref="Eps"/> null). Per-sample arrays are
/// indexed like the input batch. Success flags, predictions and confidences come from a fresh forward pass on
/// <see cref="Adversarial"/> after the attack.
/// </summary>
public sealed class EpsResult
{
    public float? Eps { get; init; }
    /// <summary>The adversarial batch, N x C x H x W in [0,1].</summary>
    public required float[] Adversarial { get; init; }
    /// <summary>Untargeted: prediction != true label. Targeted: prediction == target.</summary>
    public required bool[] Success { get; init; }
    public required int[] PredictedAfter { get; init; }
    public required float[] L0 { get; init; }
    public required float[] L2 { get; init; }
    public required float[] Linf { get; init; }
    /// <summary>Probability of the predicted class after the attack.</summary>
    public required float[] ConfidenceAfter { get; init; }
    /// <summary>Probability of the true class after the attack.</summary>
    public required float[] TrueConfidenceAfter { get; init; }
    /// <summary>Probability of the target class after the attack (targeted goals only).</summary>
    public float[]? TargetConfidenceAfter { get; init; }
    /// <summary>Steps in which the sample was still being attacked (early stop halts a sample's count).</summary>
    public required int[] Steps { get; init; }
    /// <summary>Forward-plus-input-gradient evaluations spent on the sample.</summary>
    public required long[] Gradients { get; init; }
    /// <summary>Search attacks: model queries spent per sample (the run's clean and final passes not included); else null.</summary>
    public long[]? Queries { get; init; }
    /// <summary>Mean and median queries over the samples the attack ran on (queries &gt; 0); NaN without query counts.</summary>
    public double MeanQueries => Queries is { } q && q.Any(v => v > 0) ? q.Where(v => v > 0).Average() : double.NaN;
    public double MedianQueries
    {
        get
        {
            if (Queries is not { } q) return double.NaN;
            var s = q.Where(v => v > 0).OrderBy(v => v).ToArray();
            return s.Length == 0 ? double.NaN : s.Length % 2 == 1 ? s[s.Length / 2] : 0.5 * (s[s.Length / 2 - 1] + s[s.Length / 2]);
        }
    }

    /// <summary>Universal perturbation attacks: the one perturbation (C x H x W) added to every image, else null.</summary>
    public float[]? UniversalPerturbation { get; init; }
    /// <summary>Universal perturbation attacks: fraction of samples whose prediction the perturbation changes (NaN otherwise).</summary>
    public double FoolingRate { get; init; } = double.NaN;

    /// <summary>Composite attacks (AutoAttack): the stage that broke each sample, null where none did (or it was wrong to begin with).</summary>
    public string?[]? BrokenBy { get; init; }
    /// <summary>Composite attacks: robust accuracy after each stage, in the order they ran.</summary>
    public IReadOnlyList<(string Stage, double RobustAccuracy)>? Stages { get; init; }

    /// <summary>Fraction of all samples predicted as their true label after the attack.</summary>
    public double RobustAccuracy { get; init; }
    /// <summary>Success rate over the samples classified correctly before the attack.</summary>
    public double SuccessRate { get; init; }
    /// <summary>Mean and median L2 of the successful adversarials among the samples correct before the attack (NaN if none).</summary>
    public double MeanL2 { get; init; }
    public double MedianL2 { get; init; }
    /// <summary>Largest Linf over all samples.</summary>
    public double MaxLinf { get; init; }
    /// <summary>Mean PSNR (dB, peak 1) and SSIM over the images the attack changed (L0 &gt; 0); NaN if none changed.</summary>
    public double MeanPsnr { get; init; }
    public double MeanSsim { get; init; }
}

/// <summary>The result of one attack run over a batch and a list of epsilons.</summary>
public sealed class AttackResult
{
    public required string Attack { get; init; }
    public int N { get; init; }
    public required int[] SampleShape { get; init; }
    public required int[] Labels { get; init; }
    /// <summary>Target per sample for targeted goals, else null.</summary>
    public int[]? Targets { get; init; }
    public required int[] PredictedBefore { get; init; }
    /// <summary>Probability of the predicted class and of the true class before the attack.</summary>
    public required float[] ConfidenceBefore { get; init; }
    public required float[] TrueConfidenceBefore { get; init; }
    public double CleanAccuracy { get; init; }
    public ulong Seed { get; init; }
    public double Seconds { get; init; }
    /// <summary>Attacked images (samples times epsilons) per second, the final evaluation included.</summary>
    public double ImagesPerSecond { get; init; }
    public required IReadOnlyList<EpsResult> Results { get; init; }

    /// <summary>Every setting of the attack as it ran, keys sorted (see <see cref="Setting.Params"/>).</summary>
    public JsonObject? Params { get; init; }

    /// <summary>
    /// The summary the CLI writes with --json: the run's fields, its params, and one <see cref="ResultRow"/> per
    /// epsilon under "results" (eps null for budget-free attacks). NaN and infinite figures are written as null.
    /// Composite attacks (AutoAttack) add "stages" to each entry: per stage, the robust accuracy after it and the
    /// samples it broke.
    /// </summary>
    public JsonObject ToJson(string? model = null)
    {
        static JsonNode? D(double v) => double.IsFinite(v) ? JsonValue.Create(v) : null;
        var rows = ResultRow.FromAttack(this, model, null, null, null).Select(r => r.ToJson()).ToArray();
        for (int e = 0; e < rows.Length; e++)
            if (Results[e].Stages is { } st)
                rows[e]["stages"] = new JsonArray(st.Select(s => (JsonNode)new JsonObject
                {
                    ["stage"] = s.Stage, ["robust_accuracy"] = D(s.RobustAccuracy),
                    ["broken"] = Results[e].BrokenBy!.Count(v => v == s.Stage),
                }).ToArray());
        return new JsonObject
        {
            ["attack"] = Attack,
            ["model"] = model,
            ["n"] = N,
            ["seed"] = Seed,
            ["targeted"] = Targets != null,
            ["params"] = Params?.DeepClone(),
            ["results"] = new JsonArray(rows.Select(r => (JsonNode)r).ToArray()),
        };
    }

    /// <summary>Per-sample rows for one epsilon entry (<see cref="ResultRow.SampleCsv"/>).</summary>
    public string ToCsv(int epsIndex) => ResultRow.SampleCsv(this, epsIndex);
}
