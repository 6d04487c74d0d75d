using System.Globalization;
using System.Net;
using System.Text;
using Perturb.Engine.IO;

namespace Perturb.Engine.Wsi;

/// <summary>
/// index.html of a whole-slide run, self-contained (images inlined): the slide's thumbnail beside the heat maps before
/// and after the attack at the same scale, a colour bar of the heat value, and the run's figures.
/// </summary>
public static class WsiReport
{
    public static string Build(WsiResult r, byte[] thumbnailPng, byte[] beforePng, byte[] afterPng, int mapWidth)
    {
        var inv = CultureInfo.InvariantCulture;
        static string E(string s) => WebUtility.HtmlEncode(s);
        static string Img(byte[] png, string alt, int w) => $"<img alt=\"{E(alt)}\" width=\"{w}\" src=\"data:image/png;base64,{Convert.ToBase64String(png)}\">";
        string P(double v) => double.IsFinite(v) ? (100 * v).ToString("0.0", inv) + "%" : "-";
        // The colour bar: the same stops as WsiOutput.Colour, as a CSS gradient (no image, nothing fetched).
        var stops = string.Join(", ", new[] { 0f, 0.25f, 0.5f, 0.75f, 1f }.Select(v =>
        {
            var (cr, cg, cb) = WsiOutput.Colour(v);
            return $"rgb({(int)(cr * 255)},{(int)(cg * 255)},{(int)(cb * 255)}) {v * 100:0}%";
        }));
        int g = (int)(WsiOutput.BackgroundGrey * 255), u = (int)(WsiOutput.UnprocessedGrey * 255);
        string heat = r.IsSegmentation ? "predicted nuclei" : r.HeatClass == "class1" ? "P(class 1)" : "probability of the clean prediction";
        string Tick(float f) => (f * r.HeatMax).ToString(r.IsSegmentation ? "0.#" : "0.##", inv);
        var sb = new StringBuilder();
        sb.Append("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>perturb wsi: ").Append(E(Path.GetFileName(r.SlidePath))).Append("</title><style>\n")
          .Append("body { font-family: \"DejaVu Sans\", Arial, sans-serif; margin: 24px 32px; color: #222; }\n")
          .Append(".maps { display: flex; gap: 24px; flex-wrap: wrap; } .maps figure { margin: 0; } figcaption { text-align: center; color: #444; margin-top: 4px; }\n")
          .Append(".maps img { border: 1px solid #ccc; image-rendering: pixelated; }\n")
          .Append($".bar {{ width: 320px; height: 16px; background: linear-gradient(to right, {stops}); border: 1px solid #999; }}\n")
          .Append(".ticks { width: 320px; display: flex; justify-content: space-between; font-size: 12px; color: #444; }\n")
          .Append(".sw { display: inline-block; width: 14px; height: 14px; border: 1px solid #999; vertical-align: middle; margin: 0 4px 0 12px; }\n")
          .Append("table { border-collapse: collapse; margin-top: 16px; } th { text-align: left; color: #555; font-weight: normal; padding: 2px 16px 2px 0; }\n")
          .Append("</style></head><body>\n");
        sb.Append("<h1>").Append(E(Path.GetFileName(r.SlidePath))).Append("</h1>\n");
        sb.Append($"<p>Level {r.Level} of {r.LevelCount} ({r.LevelWidth} x {r.LevelHeight} pixels, downsample {r.Downsample.ToString("0.##", inv)}), ")
          .Append($"{r.Tile}-pixel tiles: {r.Rows} x {r.Cols} grid. Attack: {E(r.Attack)}")
          .Append(r.Epsilon is { } e ? $", eps {(e * 255).ToString("0.##", inv)}/255" : "").Append(".</p>\n");
        sb.Append("<div class=\"maps\">")
          .Append("<figure>").Append(Img(thumbnailPng, "slide thumbnail", mapWidth)).Append("<figcaption>slide</figcaption></figure>")
          .Append("<figure>").Append(Img(beforePng, "heat map before the attack", mapWidth)).Append($"<figcaption>{E(heat)}, before the attack</figcaption></figure>")
          .Append("<figure>").Append(Img(afterPng, "heat map after the attack", mapWidth)).Append($"<figcaption>{E(heat)}, after the attack</figcaption></figure>")
          .Append("</div>\n");
        sb.Append("<p style=\"margin-top:16px\">").Append(E(heat)).Append(" per tile:</p><div class=\"bar\"></div><div class=\"ticks\">")
          .Append(string.Concat(new[] { 0f, 0.25f, 0.5f, 0.75f, 1f }.Select(f => $"<span>{Tick(f)}</span>"))).Append("</div>\n");
        sb.Append($"<p><span class=\"sw\" style=\"background: rgb({g},{g},{g})\"></span>background (skipped)<span class=\"sw\" style=\"background: rgb({u},{u},{u})\"></span>tissue not processed (--max-tiles)</p>\n");
        sb.Append("<table>")
          .Append($"<tr><th>tiles</th><td>{r.Tiles.Length}: {r.Background} background, {r.Tissue} tissue, {r.Processed} classified and attacked</td></tr>")
          .Append(r.IsSegmentation
              ? $"<tr><th>goal</th><td>{E(r.Goal ?? "")}</td></tr>" +
                $"<tr><th>predicted nuclei per tile, before / after</th><td>{r.MeanCountBefore.ToString("0.0", inv)} / {r.MeanCountAfter.ToString("0.0", inv)}</td></tr>" +
                $"<tr><th>nucleus area, before / after</th><td>{P(r.MeanAreaBefore)} / {P(r.MeanAreaAfter)}</td></tr>" +
                $"<tr><th>tiles where the attack met its goal</th><td>{P(r.SuccessRate)}</td></tr>"
              : $"<tr><th>predicted class 1 before</th><td>{P(r.CleanPositiveFraction)}</td></tr>" +
                $"<tr><th>predicted class 1 after</th><td>{P(r.AfterPositiveFraction)}</td></tr>" +
                $"<tr><th>tiles whose prediction the attack changed</th><td>{P(r.SuccessRate)}</td></tr>")
          .Append($"<tr><th>time</th><td>{r.Seconds.ToString("0.0", inv)} s</td></tr></table>\n");
        sb.Append("<p style=\"color:#888;font-size:12px;margin-top:32px\">Made by perturb wsi. Everything on this page is inside this file; tiles.csv and the .npy heat maps hold the numbers.</p>\n</body></html>\n");
        return sb.ToString();
    }
}
