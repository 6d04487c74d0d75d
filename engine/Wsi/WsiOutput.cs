using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Perturb.Engine.Data;
using Perturb.Engine.IO;

namespace Perturb.Engine.Wsi;

/// <summary>
/// Writes a whole-slide run to a folder, every file to a temporary name then renamed: heatmap_before/after.png and
/// .npy, tiles.csv, thumbnail.png, wsi.json, and index.html (thumbnail and heat maps side by side with a colour bar).
/// </summary>
public static class WsiOutput
{
    /// <summary>Grey of background tiles, and the darker grey of tissue tiles left out by --max-tiles.</summary>
    public const float BackgroundGrey = 0.78f, UnprocessedGrey = 0.35f;

    /// <summary>Pixels per tile side in the heat-map PNGs: 512 / the longer grid side, clamped to 4..32.</summary>
    public static int CellSize(int rows, int cols) => Math.Clamp(512 / Math.Max(1, Math.Max(rows, cols)), 4, 32);

    public static void Save(string dir, WsiResult r, Slide slide, JsonObject? extra = null)
    {
        try { Directory.CreateDirectory(dir); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new PerturbException($"{dir}: cannot create folder: {e.Message}"); }
        var pngs = new byte[2][];
        foreach (bool after in new[] { false, true })
        {
            string name = after ? "heatmap_after" : "heatmap_before";
            var h = r.Heat(after);
            Npy.WriteFile(Path.Combine(dir, name + ".npy"), NpyArray.FromFloats(h, r.Rows, r.Cols));
            var (img, w, hh) = HeatImage(r, after);
            pngs[after ? 1 : 0] = ImageWriter.EncodePng(img, 3, hh, w);
            AtomicFile.WriteBytes(Path.Combine(dir, name + ".png"), pngs[after ? 1 : 0]);
        }
        AtomicFile.WriteText(Path.Combine(dir, "tiles.csv"), Csv(r));
        var th = slide.Thumbnail(r.Level);
        var thPng = ImageWriter.EncodePng(th.Pixels, 3, th.Height, th.Width);
        AtomicFile.WriteBytes(Path.Combine(dir, "thumbnail.png"), thPng);
        AtomicFile.WriteText(Path.Combine(dir, "index.html"), WsiReport.Build(r, thPng, pngs[0], pngs[1], 400));
        var j = Json(r);
        j["thumbnail_factor"] = th.Factor;
        if (extra != null) foreach (var kv in extra) j[kv.Key] = kv.Value?.DeepClone();
        AtomicFile.WriteText(Path.Combine(dir, "wsi.json"), j.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    /// <summary>The heat map as an RGB image: each tile a CellSize square coloured by <see cref="Colour"/> of heat / HeatMax, background grey.</summary>
    public static (float[] Pixels, int Width, int Height) HeatImage(WsiResult r, bool after)
    {
        int cell = CellSize(r.Rows, r.Cols), w = r.Cols * cell, h = r.Rows * cell, hw = w * h;
        var px = new float[3 * hw];
        foreach (var t in r.Tiles)
        {
            float v = after ? t.HeatAfter : t.HeatBefore;
            var (cr, cg, cb) = t.Background ? (BackgroundGrey, BackgroundGrey, BackgroundGrey)
                : float.IsNaN(v) ? (UnprocessedGrey, UnprocessedGrey, UnprocessedGrey) : Colour(v / r.HeatMax);
            for (int y = t.Row * cell; y < (t.Row + 1) * cell; y++)
                for (int x = t.Col * cell; x < (t.Col + 1) * cell; x++)
                {
                    px[y * w + x] = cr; px[hw + y * w + x] = cg; px[2 * hw + y * w + x] = cb;
                }
        }
        return (px, w, h);
    }

    /// <summary>Colour map for a probability: blue (0), cyan (0.25), green (0.5), yellow (0.75), red (1), linear between.</summary>
    public static (float R, float G, float B) Colour(float v)
    {
        ReadOnlySpan<float> st = stackalloc float[] { 0, 0, 1, 0, 1, 1, 0, 0.8f, 0, 1, 1, 0, 1, 0, 0 };
        float p = Math.Clamp(v, 0f, 1f) * 4f;
        int i = Math.Min(3, (int)p);
        float f = p - i;
        return (st[3 * i] + f * (st[3 * i + 3] - st[3 * i]), st[3 * i + 1] + f * (st[3 * i + 4] - st[3 * i + 1]), st[3 * i + 2] + f * (st[3 * i + 5] - st[3 * i + 2]));
    }

    public static string Csv(WsiResult r)
    {
        var sb = new StringBuilder("row,col,x,y,background,processed,brightness,saturation,pred_before,pred_after,heat_before,heat_after,conf_before,conf_after,success,nuclei_before,nuclei_after,nucleus_area_before,nucleus_area_after\n");
        static string F(double v) => double.IsNaN(v) ? "" : v.ToString("0.######", CultureInfo.InvariantCulture);
        static string I(int v) => v < 0 ? "" : v.ToString(CultureInfo.InvariantCulture);
        foreach (var t in r.Tiles)
            sb.Append(CultureInfo.InvariantCulture,
                $"{t.Row},{t.Col},{t.X},{t.Y},{(t.Background ? 1 : 0)},{(t.Processed ? 1 : 0)},{F(t.Brightness)},{F(t.Saturation)},{(t.Processed ? t.PredBefore.ToString(CultureInfo.InvariantCulture) : "")},{(t.Processed ? t.PredAfter.ToString(CultureInfo.InvariantCulture) : "")},{F(t.HeatBefore)},{F(t.HeatAfter)},{F(t.ConfBefore)},{F(t.ConfAfter)},{(t.Processed ? (t.Success ? "1" : "0") : "")},{I(t.CountBefore)},{I(t.CountAfter)},{F(t.AreaBefore)},{F(t.AreaAfter)}\n");
        return sb.ToString();
    }

    static JsonNode? N(double v) => double.IsFinite(v) ? JsonValue.Create(v) : null;

    public static JsonObject Json(WsiResult r)
    {
        var j = ClassificationJson(r);
        if (!r.IsSegmentation) return j;
        j["task"] = "segmentation"; j["goal"] = r.Goal; j["heat_max"] = r.HeatMax;
        j["mean_nuclei_before"] = N(r.MeanCountBefore); j["mean_nuclei_after"] = N(r.MeanCountAfter);
        j["mean_nucleus_area_before"] = N(r.MeanAreaBefore); j["mean_nucleus_area_after"] = N(r.MeanAreaAfter);
        j.Remove("clean_positive_fraction"); j.Remove("after_positive_fraction");
        return j;
    }

    static JsonObject ClassificationJson(WsiResult r) => new()
    {
        ["slide"] = r.SlidePath, ["vendor"] = r.Vendor, ["level"] = r.Level, ["level_count"] = r.LevelCount,
        ["level_width"] = r.LevelWidth, ["level_height"] = r.LevelHeight, ["width0"] = r.Width0, ["height0"] = r.Height0, ["downsample"] = r.Downsample,
        ["tile"] = r.Tile, ["rows"] = r.Rows, ["cols"] = r.Cols, ["tiles"] = r.Tiles.Length, ["background_tiles"] = r.Background,
        ["tissue_tiles"] = r.Tissue, ["processed_tiles"] = r.Processed, ["num_classes"] = r.NumClasses, ["heat"] = r.HeatClass,
        ["attack"] = r.Attack, ["eps"] = r.Epsilon is { } e ? JsonValue.Create(e) : null,
        ["clean_positive_fraction"] = N(r.CleanPositiveFraction), ["after_positive_fraction"] = N(r.AfterPositiveFraction),
        ["success_rate"] = N(r.SuccessRate), ["seconds"] = r.Seconds,
    };
}
