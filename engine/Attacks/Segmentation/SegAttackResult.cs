using System.Text.Json.Nodes;
using Perturb.Engine.Training;

namespace Perturb.Engine.Attacks.Segmentation;

/// <summary>
/// One budget's outcome, per image: Dice and IoU (foreground) of the attacked prediction against the target (the
/// clean prediction for untargeted runs) and against the truth, pixel accuracy against the truth, the nucleus count
/// after (8-connected components), L2 and Linf of the perturbation, success; and their means.
/// </summary>
public sealed class SegEpsResult
{
    public float? Eps { get; init; }
    public float[] Adversarial { get; init; } = Array.Empty<float>();
    public int[] PredictionAfter { get; init; } = Array.Empty<int>();
    public double[] DiceTarget { get; init; } = Array.Empty<double>();
    public double[] IouTarget { get; init; } = Array.Empty<double>();
    public double[]? DiceTruth { get; init; }
    public double[]? IouTruth { get; init; }
    public double[]? PixelAccuracy { get; init; }
    public int[] CountAfter { get; init; } = Array.Empty<int>();
    public float[] L2 { get; init; } = Array.Empty<float>();
    public float[] Linf { get; init; } = Array.Empty<float>();
    public bool[] Success { get; init; } = Array.Empty<bool>();
    public int[] Steps { get; init; } = Array.Empty<int>();

    public double SuccessRate => Success.Length == 0 ? double.NaN : Success.Count(s => s) / (double)Success.Length;
    public double MeanDiceTarget => Mean(DiceTarget);
    public double MeanDiceTruth => DiceTruth == null ? double.NaN : Mean(DiceTruth);
    public double MeanPixelAccuracy => PixelAccuracy == null ? double.NaN : Mean(PixelAccuracy);
    public double MeanCountAfter => CountAfter.Length == 0 ? double.NaN : CountAfter.Average();
    public double MeanL2 => L2.Length == 0 ? double.NaN : L2.Average(v => (double)v);
    public double MaxLinf => Linf.Length == 0 ? double.NaN : Linf.Max();

    static double Mean(double[] a) => a.Length == 0 ? double.NaN : a.Average();

    internal static SegEpsResult Of(float? eps, float[] x, float[] adv, int[] pred, int[] clean, int[]? target, int[]? truth,
        int n, int d, int h, int w, int[] steps, Func<double, bool> success)
    {
        int p = h * w;
        var goal = target ?? clean;
        var dt = new double[n]; var it = new double[n]; var cnt = new int[n]; var l2 = new float[n]; var linf = new float[n]; var ok = new bool[n];
        double[]? dtr = truth == null ? null : new double[n], itr = truth == null ? null : new double[n], pa = truth == null ? null : new double[n];
        for (int i = 0; i < n; i++)
        {
            var pm = pred.AsSpan(i * p, p);
            dt[i] = SegMetrics.ForegroundDice(pm, goal.AsSpan(i * p, p));
            it[i] = SegMetrics.ForegroundIou(pm, goal.AsSpan(i * p, p));
            if (truth != null)
            {
                dtr![i] = SegMetrics.ForegroundDice(pm, truth.AsSpan(i * p, p));
                itr![i] = SegMetrics.ForegroundIou(pm, truth.AsSpan(i * p, p));
                pa![i] = SegMetrics.PixelAccuracy(pm, truth.AsSpan(i * p, p));
            }
            cnt[i] = SegMetrics.CountComponents(pm, h, w);
            double sq = 0; float mx = 0;
            for (int j = 0; j < d; j++)
            {
                float v = adv[(long)i * d + j] - x[(long)i * d + j];
                sq += (double)v * v; mx = Math.Max(mx, Math.Abs(v));
            }
            l2[i] = (float)Math.Sqrt(sq); linf[i] = mx;
            ok[i] = success(dt[i]);
        }
        return new SegEpsResult
        {
            Eps = eps, Adversarial = adv, PredictionAfter = pred, DiceTarget = dt, IouTarget = it, DiceTruth = dtr, IouTruth = itr,
            PixelAccuracy = pa, CountAfter = cnt, L2 = l2, Linf = linf, Success = ok, Steps = steps,
        };
    }
}

/// <summary>A segmentation attack's run: the clean state of every image and one <see cref="SegEpsResult"/> per budget.</summary>
public sealed class SegAttackResult
{
    public string Attack { get; init; } = "";
    public string Goal { get; init; } = "";
    public int N { get; init; }
    public int[] SampleShape { get; init; } = Array.Empty<int>();
    public int Classes { get; init; }
    public int[]? Truth { get; init; }
    public int[] CleanPrediction { get; init; } = Array.Empty<int>();
    /// <summary>Target masks (null for untargeted runs).</summary>
    public int[]? Target { get; init; }
    public double[]? CleanDiceTruth { get; init; }
    public int[] CountBefore { get; init; } = Array.Empty<int>();
    public int[]? TargetCount { get; init; }
    public ulong Seed { get; init; }
    public double Seconds { get; init; }
    public IReadOnlyList<SegEpsResult> Results { get; init; } = Array.Empty<SegEpsResult>();

    public double MeanCleanDiceTruth => CleanDiceTruth is { Length: > 0 } c ? c.Average() : double.NaN;
    public double MeanCountBefore => CountBefore.Length == 0 ? double.NaN : CountBefore.Average();

    static JsonNode? J(double v) => double.IsFinite(v) ? v : null;

    /// <summary>The summary as JSON: one entry per budget.</summary>
    public JsonObject ToJson(object attack) => new()
    {
        ["task"] = "segmentation", ["attack"] = Attack, ["goal"] = Goal, ["n"] = N, ["seed"] = Seed, ["seconds"] = Seconds,
        ["params"] = Setting.Params(attack),
        ["clean_dice_truth"] = J(MeanCleanDiceTruth), ["count_before"] = J(MeanCountBefore),
        ["target_count"] = TargetCount == null ? null : J(TargetCount.Average()),
        ["results"] = new JsonArray(Results.Select(e => (JsonNode)new JsonObject
        {
            ["eps"] = e.Eps, ["success_rate"] = J(e.SuccessRate), ["dice_target"] = J(e.MeanDiceTarget), ["dice_truth"] = J(e.MeanDiceTruth),
            ["pixel_accuracy"] = J(e.MeanPixelAccuracy), ["count_after"] = J(e.MeanCountAfter), ["mean_l2"] = J(e.MeanL2), ["max_linf"] = J(e.MaxLinf),
            ["mean_steps"] = e.Steps.Length == 0 ? null : J(e.Steps.Average()),
        }).ToArray()),
    };

    /// <summary>Per-image rows of one budget as CSV.</summary>
    public string Csv(int e)
    {
        var r = Results[e];
        var sb = new System.Text.StringBuilder("index,success,dice_target,iou_target,dice_truth,iou_truth,pixel_accuracy,count_before,count_after,l2,linf,steps\n");
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        for (int i = 0; i < N; i++)
            sb.Append(string.Format(inv, "{0},{1},{2:R},{3:R},{4},{5},{6},{7},{8},{9:R},{10:R},{11}\n", i, r.Success[i] ? 1 : 0, r.DiceTarget[i], r.IouTarget[i],
                r.DiceTruth?[i].ToString("R", inv) ?? "", r.IouTruth?[i].ToString("R", inv) ?? "", r.PixelAccuracy?[i].ToString("R", inv) ?? "",
                CountBefore[i], r.CountAfter[i], r.L2[i], r.Linf[i], r.Steps[i]));
        return sb.ToString();
    }
}
