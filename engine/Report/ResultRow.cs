using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Perturb.Engine.Attacks;

namespace Perturb.Engine.Report;

/// <summary>
/// One row of a results table: one attack at one budget on one model and data set. The demo, <c>perturb sweep</c>
/// and <c>perturb report</c> all read and write this row, as JSON (one object per row, or one per line in a .jsonl)
/// and as CSV. Figures that do not apply are NaN in memory and null in JSON (empty in CSV).
/// </summary>
public sealed partial record ResultRow
{
    /// <summary>Sweep cell or demo step this row belongs to (free text, e.g. "pneumonia/cnn-small/pgd/eps=0.0078").</summary>
    public string? Cell { get; init; }
    public string? Model { get; init; }
    public string? Data { get; init; }
    public string? Split { get; init; }
    public required string Attack { get; init; }
    /// <summary>Budget in pixel units; null for budget-free attacks.</summary>
    public double? Eps { get; init; }
    public string? Norm { get; init; }
    public bool Targeted { get; init; }
    /// <summary>
    /// Every setting of the attack as it ran (from the attack's setting descriptors, keys sorted: steps, norm, seed,
    /// ...); other producers (the demo's patch and backdoor rows) add their own figures.
    /// </summary>
    public JsonObject? Params { get; init; }
    public int N { get; init; }
    public double CleanAccuracy { get; init; } = double.NaN;
    public double RobustAccuracy { get; init; } = double.NaN;
    public double SuccessRate { get; init; } = double.NaN;
    public double MeanL2 { get; init; } = double.NaN;
    public double MedianL2 { get; init; } = double.NaN;
    public double MaxLinf { get; init; } = double.NaN;
    public double MeanPsnr { get; init; } = double.NaN;
    public double MeanSsim { get; init; } = double.NaN;
    public double MeanQueries { get; init; } = double.NaN;
    public double MedianQueries { get; init; } = double.NaN;
    /// <summary>Universal perturbations: fraction of samples whose prediction the perturbation changes.</summary>
    public double FoolingRate { get; init; } = double.NaN;
    /// <summary>Wall time of the whole attack run this row came from (all its budgets together).</summary>
    public double Seconds { get; init; } = double.NaN;
    public double ImagesPerSecond { get; init; } = double.NaN;
    public string? Device { get; init; }
    public ulong Seed { get; init; }
    /// <summary>Relative path (from the results file's folder) of an .npz with example images, or null.</summary>
    public string? Examples { get; init; }

    /// <summary>
    /// One row per budget of a segmentation attack. The accuracy columns hold nucleus Dice against the truth (clean:
    /// the clean prediction's, robust: the attacked prediction's); params hold task "segmentation", the goal, Dice with
    /// the target (the clean prediction when untargeted), the nucleus counts before and after, and, when
    /// <paramref name="overlayDir"/> is given (the folder <see cref="MaskOverlay.Save"/> wrote, relative to the report),
    /// the overlay PNG of each budget.
    /// </summary>
    public static IEnumerable<ResultRow> FromSegAttack(Attacks.Segmentation.SegAttackResult r, object attack, string? model, string? data, string? split,
        string? device, string? norm = null, string? overlayDir = null)
    {
        var prm = Setting.Params(attack);
        prm["task"] = "segmentation";
        prm["goal"] = r.Goal;
        prm["count_before"] = D(r.MeanCountBefore);
        if (r.TargetCount != null) prm["target_count"] = D(r.TargetCount.Average());
        norm ??= prm["norm"] is JsonValue nv && nv.TryGetValue(out string? ns) ? ns : null;
        foreach (var e in r.Results)
        {
            var p = (JsonObject)prm.DeepClone();
            p["dice_target"] = D(e.MeanDiceTarget);
            p["count_after"] = D(e.MeanCountAfter);
            if (overlayDir != null && r.SampleShape[0] is 1 or 3) p["overlays"] = overlayDir.Replace('\\', '/') + "/overlays_" + AttackOutput.Tag(e.Eps) + ".png";
            yield return new ResultRow
            {
                Model = model, Data = data, Split = split, Attack = r.Attack, Eps = e.Eps, Norm = norm, Targeted = r.Target != null,
                Params = p, N = r.N, CleanAccuracy = r.MeanCleanDiceTruth, RobustAccuracy = e.MeanDiceTruth, SuccessRate = e.SuccessRate,
                MeanL2 = e.MeanL2, MedianL2 = Median(e.L2), MaxLinf = e.MaxLinf, Seconds = r.Seconds, Device = device, Seed = r.Seed,
            };
        }
    }

    /// <summary>
    /// The row with its file paths (examples, and a segmentation row's overlays), relative to the results file
    /// <paramref name="where"/> in <paramref name="dir"/>, made relative to <paramref name="outDir"/>; a path that leaves
    /// <paramref name="dir"/> is an error naming the file.
    /// </summary>
    public ResultRow RebasedTo(string dir, string where, string outDir)
    {
        var r = Examples is { } ex ? this with { Examples = Path.GetRelativePath(outDir, ExampleSet.ResolveInside(dir, ex, where)) } : this;
        if (Params?["overlays"] is JsonValue ov && ov.TryGetValue(out string? rel))
        {
            var p = (JsonObject)Params.DeepClone();
            p["overlays"] = Path.GetRelativePath(outDir, ExampleSet.ResolveInside(dir, rel, where, "params.overlays"));
            r = r with { Params = p };
        }
        return r;
    }

    /// <summary>Whether the row comes from a segmentation attack (its accuracy columns are Dice scores).</summary>
    public bool IsSegmentation => Params?["task"] is JsonValue t && t.TryGetValue(out string? s) && s == "segmentation";

    /// <summary>A number of the row's params, or NaN.</summary>
    public double Param(string key) => Params?[key] is JsonValue v && v.TryGetValue(out double d) ? d : double.NaN;

    static double Median(float[] a)
    {
        if (a.Length == 0) return double.NaN;
        var s = a.Order().ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : 0.5 * (s[s.Length / 2 - 1] + s[s.Length / 2]);
    }

    /// <summary>
    /// One row per budget of an attack result. The norm and params come from the attack's settings (the run's
    /// <see cref="AttackResult.Params"/>); <paramref name="norm"/> overrides the norm for attacks without one (the
    /// demo calls one-pixel "l0").
    /// </summary>
    public static IEnumerable<ResultRow> FromAttack(AttackResult r, string? model, string? data, string? split, string? device,
        string? cell = null, string? norm = null)
    {
        norm ??= r.Params?["norm"] is JsonValue nv && nv.TryGetValue(out string? ns) ? ns : null;
        foreach (var e in r.Results)
            yield return new ResultRow
            {
                Cell = cell, Model = model, Data = data, Split = split, Attack = r.Attack, Eps = e.Eps, Norm = norm,
                Targeted = r.Targets != null, Params = r.Params == null ? null : (JsonObject)r.Params.DeepClone(), N = r.N,
                CleanAccuracy = r.CleanAccuracy, RobustAccuracy = e.RobustAccuracy, SuccessRate = e.SuccessRate,
                MeanL2 = e.MeanL2, MedianL2 = e.MedianL2, MaxLinf = e.MaxLinf, MeanPsnr = e.MeanPsnr, MeanSsim = e.MeanSsim,
                MeanQueries = e.MeanQueries, MedianQueries = e.MedianQueries, FoolingRate = e.FoolingRate,
                Seconds = r.Seconds, ImagesPerSecond = r.ImagesPerSecond, Device = device, Seed = r.Seed,
            };
    }

    static JsonNode? D(double v) => double.IsFinite(v) ? JsonValue.Create(v) : null;

    public JsonObject ToJson() => new()
    {
        ["cell"] = Cell, ["model"] = Model, ["data"] = Data, ["split"] = Split, ["attack"] = Attack,
        ["eps"] = Eps is { } e && double.IsFinite(e) ? JsonValue.Create(e) : null, ["norm"] = Norm, ["targeted"] = Targeted,
        ["params"] = Params == null ? null : Params.DeepClone(), ["n"] = N,
        ["clean_accuracy"] = D(CleanAccuracy), ["robust_accuracy"] = D(RobustAccuracy), ["success_rate"] = D(SuccessRate),
        ["mean_l2"] = D(MeanL2), ["median_l2"] = D(MedianL2), ["max_linf"] = D(MaxLinf), ["mean_psnr"] = D(MeanPsnr),
        ["mean_ssim"] = D(MeanSsim), ["mean_queries"] = D(MeanQueries), ["median_queries"] = D(MedianQueries),
        ["fooling_rate"] = D(FoolingRate), ["seconds"] = D(Seconds), ["images_per_second"] = D(ImagesPerSecond), ["device"] = Device, ["seed"] = Seed,
        ["examples"] = Examples,
    };

    /// <summary>Reads a row; <paramref name="where"/> names the file and line for the error message.</summary>
    public static ResultRow FromJson(JsonObject o, string where)
    {
        try
        {
            static double Num(JsonObject o, string k) => o[k] is JsonValue v && v.TryGetValue(out double d) ? d : double.NaN;
            static string? Str(JsonObject o, string k) => o[k] is JsonValue v && v.TryGetValue(out string? s) ? s : null;
            var attack = Str(o, "attack") ?? throw new PerturbException($"{where}: result row has no \"attack\"");
            double eps = Num(o, "eps");
            return new ResultRow
            {
                Cell = Str(o, "cell"), Model = Str(o, "model"), Data = Str(o, "data"), Split = Str(o, "split"), Attack = attack,
                Eps = double.IsNaN(eps) ? null : eps, Norm = Str(o, "norm"),
                Targeted = o["targeted"] is JsonValue t && t.TryGetValue(out bool tb) && tb,
                Params = o["params"] is JsonObject p ? (JsonObject)p.DeepClone() : null,
                N = o["n"] is JsonValue nv && nv.TryGetValue(out int n) ? n : 0,
                CleanAccuracy = Num(o, "clean_accuracy"), RobustAccuracy = Num(o, "robust_accuracy"), SuccessRate = Num(o, "success_rate"),
                MeanL2 = Num(o, "mean_l2"), MedianL2 = Num(o, "median_l2"), MaxLinf = Num(o, "max_linf"), MeanPsnr = Num(o, "mean_psnr"),
                MeanSsim = Num(o, "mean_ssim"), MeanQueries = Num(o, "mean_queries"), MedianQueries = Num(o, "median_queries"),
                FoolingRate = Num(o, "fooling_rate"), Seconds = Num(o, "seconds"), ImagesPerSecond = Num(o, "images_per_second"), Device = Str(o, "device"),
                Seed = o["seed"] is JsonValue sv && sv.TryGetValue(out ulong s) ? s : 0, Examples = Str(o, "examples"),
            };
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException)
        {
            throw new PerturbException($"{where}: malformed result row: {e.Message}");
        }
    }

    public static readonly string CsvHeader =
        "cell,model,data,split,attack,eps,norm,targeted,n,clean_accuracy,robust_accuracy,success_rate,mean_l2,median_l2,max_linf,mean_psnr,mean_ssim,mean_queries,median_queries,seconds,images_per_second,device,seed";

    public string ToCsvLine()
    {
        var inv = CultureInfo.InvariantCulture;
        static string Q(string? s) => s == null ? "" : s.IndexOfAny(new[] { ',', '"', '\n' }) >= 0 ? "\"" + s.Replace("\"", "\"\"") + "\"" : s;
        string F(double v) => double.IsFinite(v) ? v.ToString("G6", inv) : "";
        return string.Join(",", Q(Cell), Q(Model), Q(Data), Q(Split), Q(Attack), Eps is { } e ? F(e) : "", Q(Norm), Targeted ? "1" : "0",
            N.ToString(inv), F(CleanAccuracy), F(RobustAccuracy), F(SuccessRate), F(MeanL2), F(MedianL2), F(MaxLinf), F(MeanPsnr),
            F(MeanSsim), F(MeanQueries), F(MedianQueries), F(Seconds), F(ImagesPerSecond), Q(Device), Seed.ToString(inv));
    }

    public static string ToCsv(IEnumerable<ResultRow> rows)
    {
        var sb = new StringBuilder().AppendLine(CsvHeader);
        foreach (var r in rows) sb.AppendLine(r.ToCsvLine());
        return sb.ToString();
    }

    /// <summary>
    /// The per-sample table of one budget of an attack run (results_EPS.csv): index, label, target, predictions,
    /// confidences, norms, steps, gradients, queries for search attacks, and the stage that broke the sample for AutoAttack.
    /// </summary>
    public static string SampleCsv(AttackResult a, int epsIndex)
    {
        var r = a.Results[epsIndex];
        var sb = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        sb.AppendLine("index,eps,label,target,pred_before,pred_after,success,conf_before,true_conf_before,conf_after,true_conf_after,l0,l2,linf,steps,gradients"
            + (r.Queries != null ? ",queries" : "") + (r.BrokenBy != null ? ",broken_by" : ""));
        for (int i = 0; i < a.N; i++)
            sb.AppendLine(string.Format(inv, "{0},{1},{2},{3},{4},{5},{6},{7:G6},{8:G6},{9:G6},{10:G6},{11},{12:G6},{13:G6},{14},{15}",
                i, r.Eps?.ToString("G6", inv) ?? "", a.Labels[i], a.Targets?[i].ToString(inv) ?? "", a.PredictedBefore[i], r.PredictedAfter[i],
                r.Success[i] ? 1 : 0, a.ConfidenceBefore[i], a.TrueConfidenceBefore[i], r.ConfidenceAfter[i], r.TrueConfidenceAfter[i],
                r.L0[i], r.L2[i], r.Linf[i], r.Steps[i], r.Gradients[i]) + (r.Queries != null ? "," + r.Queries[i].ToString(inv) : "")
                + (r.BrokenBy != null ? "," + (r.BrokenBy[i] ?? "") : ""));
        return sb.ToString();
    }

    /// <summary>
    /// Reads rows from a results.json (an object with a "rows" array, or a bare array), a <c>perturb attack --json</c>
    /// summary, or a .jsonl (one row per line; a torn last line from a killed writer is ignored). Errors name the file
    /// and the line.
    /// </summary>
    public static List<ResultRow> ReadFile(string path)
    {
        string text;
        text = IO.SafeFiles.ReadAllText(path, "results file");
        var rows = new List<ResultRow>();
        if (path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase))
        {
            var lines = text.Split('\n');
            for (int i = 0; i < lines.Length; i++)
            {
                var line = lines[i].Trim();
                if (line.Length == 0) continue;
                JsonNode? node;
                try { node = JsonNode.Parse(line); }
                catch (JsonException e)
                {
                    if (i == lines.Length - 1 && !text.EndsWith('\n')) break; // torn final line of an interrupted writer
                    throw new PerturbException($"{path}:{i + 1}: not valid JSON: {e.Message}");
                }
                if (node is not JsonObject o) throw new PerturbException($"{path}:{i + 1}: expected a JSON object");
                rows.Add(FromJson(o, $"{path}:{i + 1}"));
            }
            return rows;
        }
        JsonNode? root;
        try { root = JsonNode.Parse(text); }
        catch (JsonException e) { throw new PerturbException($"{path}: not valid JSON: {e.Message}"); }
        // The --json summary of `perturb attack`: one entry per budget under "results", the run's fields beside it.
        if (root is JsonObject att && att["rows"] == null && att["results"] is JsonArray res && att["attack"] is JsonValue)
        {
            for (int i = 0; i < res.Count; i++)
            {
                if (res[i] is not JsonObject e) throw new PerturbException($"{path}: results[{i}] is not an object");
                var o = (JsonObject)e.DeepClone();
                foreach (var k in new[] { "attack", "model", "data", "split", "n", "seed", "targeted", "device" })
                    if (o[k] == null && att[k] != null) o[k] = att[k]!.DeepClone();
                rows.Add(FromJson(o, $"{path}: results[{i}]"));
            }
            return rows;
        }
        var arr = root switch
        {
            JsonArray a => a,
            JsonObject o when o["rows"] is JsonArray a => a,
            _ => throw new PerturbException($"{path}: expected a results file (an object with a \"rows\" array, an array of rows, or a perturb attack --json summary)"),
        };
        for (int i = 0; i < arr.Count; i++)
        {
            if (arr[i] is not JsonObject o) throw new PerturbException($"{path}: row {i} is not an object");
            rows.Add(FromJson(o, $"{path}: row {i}"));
        }
        return rows;
    }
}
