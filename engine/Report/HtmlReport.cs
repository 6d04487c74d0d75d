using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Perturb.Engine.IO;

namespace Perturb.Engine.Report;

/// <summary>
/// The results report: <c>index.html</c> (self-contained: images are inlined as data URIs, no script, no style sheet
/// or font fetched from anywhere), with a summary table, robustness curves plotted with ScottPlot (robust accuracy and
/// success rate against the budget, one line per attack), and per example set a grid of original, attacked image and
/// amplified perturbation with labels and confidences. <c>results.json</c> and <c>results.csv</c> hold the same rows.
/// </summary>
public static class HtmlReport
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>
    /// Writes results.json ({"meta": ..., "rows": [...]}), results.csv and index.html into <paramref name="dir"/>, each
    /// to a temporary name first. Example paths in the rows are relative to <paramref name="dir"/>.
    /// </summary>
    public static void WriteAll(string dir, IReadOnlyList<ResultRow> rows, JsonObject? meta = null)
    {
        Directory.CreateDirectory(dir);
        var json = new JsonObject { ["meta"] = meta?.DeepClone(), ["rows"] = new JsonArray(rows.Select(r => (JsonNode)r.ToJson()).ToArray()) };
        AtomicFile.WriteText(Path.Combine(dir, "results.json"), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        AtomicFile.WriteText(Path.Combine(dir, "results.csv"), ResultRow.ToCsv(rows));
        WriteHtml(Path.Combine(dir, "index.html"), rows, meta, dir);
    }

    /// <summary>Reads the "meta" object of a results.json, or null (for .jsonl files and bare arrays).</summary>
    public static JsonObject? ReadMeta(string path)
    {
        if (path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase)) return null;
        try { return JsonNode.Parse(IO.SafeFiles.ReadAllText(path, "results file")) is JsonObject o && o["meta"] is JsonObject m ? (JsonObject)m.DeepClone() : null; }
        catch (JsonException) { return null; }
    }

    public static void WriteHtml(string path, IReadOnlyList<ResultRow> rows, JsonObject? meta, string baseDir) =>
        AtomicFile.WriteText(path, Build(rows, meta, baseDir));

    public static string Build(IReadOnlyList<ResultRow> rows, JsonObject? meta, string baseDir)
    {
        var sb = new StringBuilder();
        string title = meta?["title"]?.GetValue<string>() ?? "Perturb report";
        var classNames = meta?["classes"] is JsonArray ca ? ca.Select(c => c?.GetValue<string>() ?? "?").ToArray() : null;
        sb.Append("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>").Append(E(title)).Append("</title>\n<style>\n")
          .Append(Css).Append("</style></head><body>\n<h1>").Append(E(title)).Append("</h1>\n");
        if (meta?["subtitle"] is JsonValue st) sb.Append("<p class=\"sub\">").Append(E(st.ToString())).Append("</p>\n");
        if (meta?["facts"] is JsonObject facts && facts.Count > 0)
        {
            sb.Append("<table class=\"facts\">");
            foreach (var (k, v) in facts) sb.Append("<tr><th>").Append(E(k)).Append("</th><td>").Append(E(Fact(v))).Append("</td></tr>");
            sb.Append("</table>\n");
        }
        if (meta?["notes"] is JsonArray notes && notes.Count > 0)
        {
            sb.Append("<ul class=\"notes\">");
            foreach (var n in notes) sb.Append("<li>").Append(E(n?.ToString() ?? "")).Append("</li>");
            sb.Append("</ul>\n");
        }

        var seg = rows.Where(r => r.IsSegmentation).ToList();
        var cls = rows.Where(r => !r.IsSegmentation).ToList();
        if (cls.Count > 0 || seg.Count == 0)
        {
            sb.Append("<h2>Summary</h2>\n");
            sb.Append(SummaryTable(cls));
        }

        var curves = Curves(cls);
        if (curves.Count > 0)
        {
            sb.Append("<h2>Robustness curves</h2>\n<p>Accuracy on the attacked images and attack success rate against the budget &epsilon; (pixel units &times; 255); &epsilon; = 0 is the clean accuracy.</p>\n<div class=\"plots\">");
            sb.Append(Img(Plot(curves, true), "robust accuracy against epsilon", "plot"));
            sb.Append(Img(Plot(curves, false), "success rate against epsilon", "plot"));
            sb.Append("</div>\n");
            if (curves.Count > InsideLegend)
            {
                sb.Append("<ul class=\"legend\">");
                for (int i = 0; i < curves.Count; i++)
                    sb.Append($"<li><span class=\"sw\" style=\"background:{Palette[i % Palette.Length]}\"></span>{E(curves[i].Label)}</li>");
                sb.Append("</ul>\n");
            }
        }

        if (seg.Count > 0) sb.Append(Segmentation(seg, baseDir));

        var seen = new HashSet<string>();
        var withExamples = cls.Where(r => r.Examples != null && seen.Add(r.Examples)).ToList();
        if (withExamples.Count > 0)
        {
            sb.Append("<h2>Examples</h2>\n<p>Each column: the original image with its true label and the model's confidence in its prediction, the attacked image with the new prediction (red when it is wrong), and the perturbation amplified to fill the grey range (0.5 + &delta; &middot; 0.5 / max|&delta;|).</p>\n");
            foreach (var r in withExamples)
            {
                string kind = r.Params?["example_kind"]?.GetValue<string>() ?? "adversarial";
                var ex = ExampleSet.Load(Path.Combine(baseDir, r.Examples!), RowTitle(r), kind, classNames);
                sb.Append(Grid(ex));
            }
        }
        sb.Append("<p class=\"foot\">Made by perturb. Everything on this page is inside this file.</p>\n</body></html>\n");
        return sb.ToString();
    }

    /// <summary>
    /// The segmentation section: a table (Dice with the truth and with the target, nucleus counts), the Dice-against-budget
    /// plot (one line per attack and goal: Dice with the truth solid, with the target dashed) and, per row with overlays,
    /// the overlay grid its attack wrote (original, prediction, adversarial, attacked prediction, target).
    /// </summary>
    static string Segmentation(List<ResultRow> rows, string baseDir)
    {
        bool multi = rows.Select(r => (r.Model, r.Data)).Distinct().Count() > 1;
        string Label(ResultRow r) => r.Attack + " " + (r.Params?["goal"]?.ToString() ?? "") + (r.Norm != null ? $" {r.Norm}" : "") + (multi ? $" ({r.Model}, {r.Data})" : "");
        var sb = new StringBuilder("<h2>Segmentation</h2>\n<p>Dice is the nucleus (foreground) Dice. Success: untargeted, Dice with the clean prediction below the threshold; targeted (erase, forge), Dice with the target at or above it. Dice with the target is Dice with the clean prediction for untargeted runs.</p>\n");
        sb.Append("<table class=\"sum\"><thead><tr>");
        if (multi) sb.Append("<th>model</th><th>data</th>");
        foreach (var h in new[] { "attack", "goal", "&epsilon;", "norm", "n", "clean Dice (truth)", "Dice (truth)", "Dice (target)", "success", "nuclei before", "nuclei after", "mean L2", "max L&infin;", "time (s)" })
            sb.Append("<th>").Append(h).Append("</th>");
        sb.Append("</tr></thead><tbody>\n");
        foreach (var r in rows)
        {
            sb.Append("<tr>");
            if (multi) sb.Append("<td class=\"t\">").Append(E(r.Model ?? "")).Append("</td><td class=\"t\">").Append(E(r.Data ?? "")).Append("</td>");
            sb.Append("<td class=\"t\">").Append(E(r.Attack)).Append("</td><td class=\"t\">").Append(E(r.Params?["goal"]?.ToString() ?? "")).Append("</td>")
              .Append("<td>").Append(r.Eps is { } e ? Eps255(e) : "&ndash;").Append("</td><td class=\"t\">").Append(E(r.Norm ?? "")).Append("</td>")
              .Append("<td>").Append(r.N.ToString(Inv)).Append("</td>")
              .Append(Num(r.CleanAccuracy, "0.000")).Append(Num(r.RobustAccuracy, "0.000")).Append(Num(r.Param("dice_target"), "0.000")).Append(Pct(r.SuccessRate))
              .Append(Num(r.Param("count_before"), "0.0")).Append(Num(r.Param("count_after"), "0.0"))
              .Append(Num(r.MeanL2, "0.000")).Append(Num(r.MaxLinf, "0.000")).Append(Num(r.Seconds, "0.0")).Append("</tr>\n");
        }
        sb.Append("</tbody></table>\n");

        var lines = rows.Where(r => r.Eps is { } e && double.IsFinite(e)).GroupBy(Label)
            .Select(g => (g.Key, Pts: g.OrderBy(r => r.Eps!.Value).ToList())).Where(g => g.Pts.Select(r => r.Eps).Distinct().Count() >= 2).ToList();
        if (lines.Count > 0)
        {
            var plt = new ScottPlot.Plot();
            for (int i = 0; i < lines.Count; i++)
            {
                var (label, pts) = lines[i];
                var xs = new[] { 0.0 }.Concat(pts.Select(r => r.Eps!.Value * 255)).ToArray();
                var col = ScottPlot.Color.FromHex(Palette[i % Palette.Length]);
                var truth = plt.Add.Scatter(xs, new[] { pts[0].CleanAccuracy }.Concat(pts.Select(r => r.RobustAccuracy)).ToArray());
                truth.LegendText = label + ": Dice with the truth"; truth.Color = col; truth.LineWidth = 2; truth.MarkerSize = 6;
                // At eps 0 the prediction is the clean one: Dice 1 with itself (untargeted), the clean prediction's Dice with the target unknown.
                bool untargeted = !pts[0].Targeted;
                var tx = untargeted ? xs : xs.Skip(1).ToArray();
                var ty = (untargeted ? new[] { 1.0 } : Array.Empty<double>()).Concat(pts.Select(r => r.Param("dice_target"))).ToArray();
                var target = plt.Add.Scatter(tx, ty);
                target.LegendText = label + (untargeted ? ": Dice with the clean prediction" : ": Dice with the target");
                target.Color = col; target.LinePattern = ScottPlot.LinePattern.Dashed; target.LineWidth = 2; target.MarkerSize = 6;
            }
            plt.Title("Segmentation under attack");
            plt.XLabel("epsilon (x 1/255)");
            plt.YLabel("mean nucleus Dice");
            plt.Axes.SetLimitsY(-0.02, 1.02);
            plt.ShowLegend(ScottPlot.Alignment.MiddleRight);
            sb.Append("<div class=\"plots\">").Append(Img(plt.GetImageBytes(720, 420, ScottPlot.ImageFormat.Png), "Dice against epsilon", "plot")).Append("</div>\n");
        }

        var seen = new HashSet<string>();
        foreach (var r in rows)
        {
            if (r.Params?["overlays"] is not JsonValue ov || !ov.TryGetValue(out string? rel) || !seen.Add(rel)) continue;
            var path = Path.Combine(baseDir, rel);
            byte[] png;
            try { png = File.ReadAllBytes(path); }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { throw new PerturbException($"{path}: cannot read the overlay image of {r.Attack}: {ex.Message}"); }
            if (png.Length < 8 || png[0] != 0x89 || png[1] != 0x50 || png[2] != 0x4E || png[3] != 0x47) throw new PerturbException($"{path}: overlay image of {r.Attack} is not a PNG");
            sb.Append("<h3>").Append(E(r.Attack + " " + (r.Params?["goal"]?.ToString() ?? "") + (r.Eps is { } e ? $", eps {Eps255(e)}" : ""))).Append("</h3>\n")
              .Append("<p class=\"sub\">Columns: original, prediction, adversarial, attacked prediction, target (the clean prediction when untargeted). Nucleus in green.</p>\n")
              .Append(Img(png, "segmentation overlays", "px")).Append('\n');
        }
        return sb.ToString();
    }

    static string Fact(JsonNode? v) => v switch
    {
        null => "",
        JsonValue jv when jv.TryGetValue(out double d) => d.ToString(Math.Abs(d) >= 100 || d == Math.Floor(d) ? "0.##" : "0.####", Inv),
        JsonValue jv => jv.ToString(),
        _ => v.ToJsonString(),
    };

    static string RowTitle(ResultRow r)
    {
        var t = r.Attack + (r.Eps is { } e ? $", eps {Eps255(e)}" : "");
        if (r.Model != null && r.Data != null) t += $" ({r.Model} on {r.Data})";
        return t;
    }

    static string Eps255(double e)
    {
        double k = e * 255;
        return Math.Abs(k - Math.Round(k)) < 1e-3 ? $"{Math.Round(k).ToString(Inv)}/255" : e.ToString("0.####", Inv);
    }

    static string SummaryTable(IReadOnlyList<ResultRow> rows)
    {
        bool multi = rows.Select(r => (r.Model, r.Data)).Distinct().Count() > 1;
        var key = ParamsKeyer(rows);
        bool settings = rows.Any(r => key(r).Length > 0);
        var sb = new StringBuilder("<table class=\"sum\"><thead><tr>");
        var heads = new List<string>();
        if (multi) heads.AddRange(new[] { "model", "data" });
        heads.Add("attack");
        if (settings) heads.Add("settings");
        heads.AddRange(new[] { "&epsilon;", "norm", "n", "clean acc.", "robust acc.", "success", "mean L2", "median L2", "max L&infin;", "mean queries", "time (s)" });
        foreach (var h in heads) sb.Append("<th>").Append(h).Append("</th>");
        sb.Append("</tr></thead><tbody>\n");
        foreach (var r in rows)
        {
            sb.Append("<tr>");
            if (multi) sb.Append("<td class=\"t\">").Append(E(r.Model ?? "")).Append("</td><td class=\"t\">").Append(E(r.Data ?? "")).Append("</td>");
            sb.Append("<td class=\"t\">").Append(E(r.Attack)).Append(r.Targeted ? " (targeted)" : "").Append("</td>");
            if (settings) sb.Append("<td class=\"t\">").Append(E(key(r))).Append("</td>");
            sb.Append("<td>").Append(r.Eps is { } e ? Eps255(e) : "&ndash;").Append("</td>")
              .Append("<td class=\"t\">").Append(E(r.Norm ?? "")).Append("</td>")
              .Append("<td>").Append(r.N.ToString(Inv)).Append("</td>")
              .Append(Pct(r.CleanAccuracy)).Append(Pct(r.RobustAccuracy)).Append(Pct(r.SuccessRate))
              .Append(Num(r.MeanL2, "0.000")).Append(Num(r.MedianL2, "0.000")).Append(Num(r.MaxLinf, "0.000"))
              .Append(Num(r.MeanQueries, "0")).Append(Num(r.Seconds, "0.0")).Append("</tr>\n");
        }
        return sb.Append("</tbody></table>\n").ToString();
    }

    static string Pct(double v) => "<td>" + (double.IsFinite(v) ? (100 * v).ToString("0.0", Inv) + "%" : "&ndash;") + "</td>";
    static string Num(double v, string f) => "<td>" + (double.IsFinite(v) ? v.ToString(f, Inv) : "&ndash;") + "</td>";

    /// <summary>One line per (model, data, attack, norm, targeted, settings) with at least two finite budgets.</summary>
    internal sealed record Curve(string Label, double[] Eps, double[] Accuracy, double[] Success, double Clean);

    internal static List<Curve> Curves(IReadOnlyList<ResultRow> rows)
    {
        bool multi = rows.Select(r => (r.Model, r.Data)).Distinct().Count() > 1;
        var list = new List<Curve>();
        var key = ParamsKeyer(rows);
        foreach (var g in rows.Where(r => r.Eps is { } e && double.IsFinite(e))
                     .GroupBy(r => (r.Model, r.Data, r.Attack, r.Norm, r.Targeted, P: key(r))))
        {
            var pts = g.OrderBy(r => r.Eps!.Value).ToList();
            if (pts.Select(r => r.Eps).Distinct().Count() < 2) continue;
            string label = g.Key.Attack + (g.Key.Norm != null ? $" {g.Key.Norm}" : "") + (g.Key.Targeted ? " targeted" : "")
                + (g.Key.P.Length > 0 ? $" {g.Key.P}" : "") + (multi ? $" ({g.Key.Model}, {g.Key.Data})" : "");
            list.Add(new Curve(label, pts.Select(r => r.Eps!.Value * 255).ToArray(), pts.Select(r => r.RobustAccuracy).ToArray(),
                pts.Select(r => r.SuccessRate).ToArray(), pts[0].CleanAccuracy));
        }
        return list;
    }

    /// <summary>
    /// The settings that tell an attack's rows apart: rows carry every setting of their attack in params, so only the
    /// keys whose values differ between rows of the same attack are shown (norm has its own column).
    /// </summary>
    static Func<ResultRow, string> ParamsKeyer(IReadOnlyList<ResultRow> rows)
    {
        static string V(ResultRow r, string k) => r.Params != null && r.Params.TryGetPropertyValue(k, out var v) ? Value(v) : "\u0000";
        var shown = rows.GroupBy(r => r.Attack).ToDictionary(g => g.Key, g =>
            g.SelectMany(r => r.Params?.Select(kv => kv.Key) ?? Enumerable.Empty<string>()).Distinct()
             .Where(k => k is not ("example_kind" or "norm") && g.Select(r => V(r, k)).Distinct().Count() > 1)
             .OrderBy(k => k, StringComparer.Ordinal).ToList());
        return r => r.Params == null ? "" : string.Join(" ", shown[r.Attack].Where(k => r.Params.ContainsKey(k)).Select(k => $"{k}={Value(r.Params[k])}"));
    }

    static string Value(JsonNode? v) => v switch
    {
        JsonValue jv when jv.TryGetValue(out double d) => d.ToString("G4", Inv),
        JsonValue jv when jv.TryGetValue(out string? t) => t ?? "",
        null => "null",
        _ => v.ToJsonString(),
    };

    const int InsideLegend = 3;
    /// <summary>Line colours (matplotlib's tab10); past ten lines the colours repeat with dashed lines.</summary>
    static readonly string[] Palette = { "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf" };

    static byte[] Plot(List<Curve> curves, bool accuracy)
    {
        var plt = new ScottPlot.Plot();
        for (int ci = 0; ci < curves.Count; ci++)
        {
            var c = curves[ci];
            var xs = new List<double>();
            var ys = new List<double>();
            if (accuracy && double.IsFinite(c.Clean)) { xs.Add(0); ys.Add(c.Clean); }
            if (!accuracy) { xs.Add(0); ys.Add(0); }
            for (int i = 0; i < c.Eps.Length; i++)
            {
                double y = accuracy ? c.Accuracy[i] : c.Success[i];
                if (!double.IsFinite(y)) continue;
                if (c.Eps[i] == 0 && xs.Count > 0 && xs[^1] == 0) { ys[^1] = y; continue; }
                xs.Add(c.Eps[i]); ys.Add(y);
            }
            var s = plt.Add.Scatter(xs.ToArray(), ys.ToArray());
            s.LegendText = c.Label;
            s.Color = ScottPlot.Color.FromHex(Palette[ci % Palette.Length]);
            if (ci >= Palette.Length) s.LinePattern = ScottPlot.LinePattern.Dashed;
            s.LineWidth = 2;
            s.MarkerSize = 6;
        }
        plt.Title(accuracy ? "Accuracy under attack" : "Attack success rate");
        plt.XLabel("epsilon (x 1/255)");
        plt.YLabel(accuracy ? "accuracy" : "success rate (of correctly classified)");
        plt.Axes.SetLimitsY(-0.02, 1.02);
        // A few lines: the legend inside, in a corner the curves leave free; more: one HTML legend under both plots.
        if (curves.Count <= InsideLegend) plt.ShowLegend(accuracy ? ScottPlot.Alignment.UpperRight : ScottPlot.Alignment.LowerRight);
        else plt.HideLegend();
        return plt.GetImageBytes(560, 380, ScottPlot.ImageFormat.Png);
    }

    static string Grid(ExampleSet ex)
    {
        var s = ex.SampleShape;
        int c = s[0], h = s.Length > 1 ? s[1] : 1, w = s.Length > 2 ? s[2] : 1, d = ex.SampleSize;
        var sb = new StringBuilder();
        sb.Append("<h3>").Append(E(ex.Title)).Append("</h3>\n");
        if (s.Length != 3 || (c != 1 && c != 3)) return sb.Append("<p>(not an image: no grid)</p>\n").ToString();
        int px = Math.Max(96, Math.Min(160, 3 * Math.Max(h, w)));
        string second = ex.Kind switch { "patched" => "with the patch", "triggered" => "with the trigger", _ => "adversarial" };
        var rowsHtml = new[] { new StringBuilder(), new StringBuilder(), new StringBuilder() };
        rowsHtml[0].Append("<tr><th>original</th>");
        rowsHtml[1].Append("<tr><th>").Append(second).Append("</th>");
        rowsHtml[2].Append("<tr><th>perturbation<br>(amplified)</th>");
        var delta = new float[d];
        for (int i = 0; i < ex.Count; i++)
        {
            var o = ex.Originals.AsSpan(i * d, d);
            var m = ex.Modified.AsSpan(i * d, d);
            float mx = 0;
            for (int k = 0; k < d; k++) { delta[k] = m[k] - o[k]; mx = Math.Max(mx, Math.Abs(delta[k])); }
            for (int k = 0; k < d; k++) delta[k] = mx > 0 ? 0.5f + 0.5f * delta[k] / mx : 0.5f;
            bool wrongAfter = ex.PredAfter[i] != ex.Labels[i];
            rowsHtml[0].Append("<td>").Append(Img(ImageWriter.EncodePng(o, c, h, w), "original", "px", px))
              .Append($"<div>label {E(Name(ex, ex.Labels[i]))}<br>pred {E(Name(ex, ex.PredBefore[i]))} ({ex.ConfBefore[i].ToString("0.00", Inv)})</div></td>");
            rowsHtml[1].Append("<td>").Append(Img(ImageWriter.EncodePng(m, c, h, w), second, "px", px))
              .Append($"<div class=\"{(wrongAfter ? "bad" : "ok")}\">pred {E(Name(ex, ex.PredAfter[i]))} ({ex.ConfAfter[i].ToString("0.00", Inv)})</div></td>");
            rowsHtml[2].Append("<td>").Append(Img(ImageWriter.EncodePng(delta, c, h, w), "perturbation", "px", px))
              .Append($"<div>max |&delta;| {mx.ToString("0.000", Inv)}</div></td>");
        }
        sb.Append("<table class=\"grid\">\n");
        foreach (var r in rowsHtml) sb.Append(r).Append("</tr>\n");
        return sb.Append("</table>\n").ToString();
    }

    static string Name(ExampleSet ex, int k) => ex.ClassNames != null && k >= 0 && k < ex.ClassNames.Length ? ex.ClassNames[k] : k.ToString(Inv);

    static string Img(byte[] png, string alt, string cls, int width = 0) =>
        $"<img class=\"{cls}\" alt=\"{E(alt)}\"{(width > 0 ? $" width=\"{width}\" height=\"{width}\"" : "")} src=\"data:image/png;base64,{Convert.ToBase64String(png)}\">";

    static string E(string s) => WebUtility.HtmlEncode(s);

    const string Css = """
body { font-family: "DejaVu Sans", Arial, sans-serif; margin: 24px 32px; color: #222; max-width: 1200px; }
h1 { margin-bottom: 4px; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 4px; margin-top: 32px; }
.sub { color: #555; margin-top: 0; }
table { border-collapse: collapse; }
.facts th { text-align: left; padding: 2px 12px 2px 0; color: #555; font-weight: normal; } .facts td { padding: 2px 0; }
.sum th, .sum td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; font-size: 14px; }
.sum th { background: #f0f0f0; text-align: center; } .sum td.t { text-align: left; }
.sum tbody tr:nth-child(even) { background: #fafafa; }
.plots { display: flex; flex-wrap: wrap; gap: 16px; } .plot { border: 1px solid #ddd; }
.grid th { font-weight: normal; color: #555; padding: 4px 12px; text-align: right; }
.grid td { text-align: center; padding: 4px 12px; font-size: 13px; vertical-align: top; }
.px { image-rendering: pixelated; border: 1px solid #ccc; }
.bad { color: #c0392b; font-weight: bold; } .ok { color: #1e7d32; }
.notes li { margin: 2px 0; }
.legend { list-style: none; padding: 0; columns: 2; font-size: 13px; } .legend li { margin: 2px 0; }
.sw { display: inline-block; width: 22px; height: 4px; vertical-align: middle; margin-right: 8px; } .foot { color: #888; font-size: 12px; margin-top: 40px; }
""";
}
