using Perturb.Engine.Attacks;
using Perturb.Engine.Attacks.Segmentation;
using Perturb.Engine.Data;
using Perturb.Engine.IO;

namespace Perturb.Engine.Report;

/// <summary>
/// Coloured mask overlays and the files of a segmentation attack run. An overlay blends a class colour over the tile
/// at 55% (background left as is; class 1 green, class 2 magenta, class 3 yellow).
/// </summary>
public static class MaskOverlay
{
    static readonly float[][] Colours = { new[] { 0f, 0.85f, 0.2f }, new[] { 0.95f, 0.1f, 0.8f }, new[] { 1f, 0.9f, 0f }, new[] { 0.1f, 0.6f, 1f } };

    /// <summary>The tile (C = 1 or 3, CHW in [0,1]) as RGB with <paramref name="mask"/> blended over it (mask may be null: the tile only).</summary>
    public static float[] Overlay(ReadOnlySpan<float> tile, int c, int h, int w, ReadOnlySpan<int> mask)
    {
        int p = h * w;
        var o = new float[3 * p];
        for (int j = 0; j < p; j++)
        {
            for (int ch = 0; ch < 3; ch++) o[ch * p + j] = tile[(c == 3 ? ch : 0) * p + j];
            if (mask.IsEmpty || mask[j] <= 0) continue;
            var col = Colours[(mask[j] - 1) % Colours.Length];
            for (int ch = 0; ch < 3; ch++) o[ch * p + j] = 0.45f * o[ch * p + j] + 0.55f * col[ch];
        }
        return o;
    }

    /// <summary>
    /// One PNG grid, a row per image (the first <paramref name="rows"/>): original, clean prediction over it, adversarial,
    /// attacked prediction over it, target (the clean prediction for untargeted runs) over the original; each
    /// panel scaled up <paramref name="zoom"/> times, with white gaps.
    /// </summary>
    public static float[] Grid(SegAttackResult r, SegEpsResult e, float[] originals, int rows, int zoom, out int gh, out int gw)
    {
        int c = r.SampleShape[0], h = r.SampleShape[1], w = r.SampleShape[2], p = h * w, d = c * p;
        rows = Math.Min(rows, r.N);
        const int gap = 2, cols = 5;
        int ph = h * zoom, pw = w * zoom;
        gh = rows * ph + (rows + 1) * gap; gw = cols * pw + (cols + 1) * gap;
        var g = new float[3 * gh * gw];
        Array.Fill(g, 1f);
        var goal = r.Target ?? r.CleanPrediction;
        for (int i = 0; i < rows; i++)
        {
            var orig = originals.AsSpan(i * d, d); var adv = e.Adversarial.AsSpan(i * d, d);
            var panels = new[]
            {
                Overlay(orig, c, h, w, ReadOnlySpan<int>.Empty),
                Overlay(orig, c, h, w, r.CleanPrediction.AsSpan(i * p, p)),
                Overlay(adv, c, h, w, ReadOnlySpan<int>.Empty),
                Overlay(adv, c, h, w, e.PredictionAfter.AsSpan(i * p, p)),
                Overlay(orig, c, h, w, goal.AsSpan(i * p, p)),
            };
            for (int k = 0; k < cols; k++)
            {
                int y0 = gap + i * (ph + gap), x0 = gap + k * (pw + gap);
                for (int y = 0; y < ph; y++)
                    for (int x = 0; x < pw; x++)
                        for (int ch = 0; ch < 3; ch++)
                            g[(ch * gh + y0 + y) * gw + x0 + x] = panels[k][ch * p + (y / zoom) * w + x / zoom];
            }
        }
        return g;
    }

    /// <summary>
    /// Writes a run into <paramref name="dir"/>: originals.npy, truth/clean_prediction/target masks (.npy, uint8),
    /// per budget adversarial_&lt;tag&gt;.npy, prediction_&lt;tag&gt;.npy, results_&lt;tag&gt;.csv and overlays_&lt;tag&gt;.png
    /// (columns: original, prediction, adversarial, attacked prediction, target), and dice_vs_eps.csv.
    /// </summary>
    public static void Save(string dir, SegAttackResult r, float[] originals)
    {
        try { Directory.CreateDirectory(dir); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { throw new PerturbException($"{dir}: cannot create the output folder: {ex.Message}"); }
        int h = r.SampleShape[1], w = r.SampleShape[2];
        var shape = new[] { r.N }.Concat(r.SampleShape).ToArray();
        NpyArray Masks(int[] m) => NpyArray.FromBytes(m.Select(v => (byte)v).ToArray(), r.N, h, w);
        Npy.WriteFile(Path.Combine(dir, "originals.npy"), NpyArray.FromFloats(originals, shape));
        if (r.Truth != null) Npy.WriteFile(Path.Combine(dir, "truth.npy"), Masks(r.Truth));
        Npy.WriteFile(Path.Combine(dir, "clean_prediction.npy"), Masks(r.CleanPrediction));
        if (r.Target != null) Npy.WriteFile(Path.Combine(dir, "target.npy"), Masks(r.Target));
        var curve = new System.Text.StringBuilder("eps,success_rate,dice_target,dice_truth,count_after,mean_l2\n");
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        for (int k = 0; k < r.Results.Count; k++)
        {
            var e = r.Results[k];
            string tag = AttackOutput.Tag(e.Eps);
            Npy.WriteFile(Path.Combine(dir, $"adversarial_{tag}.npy"), NpyArray.FromFloats(e.Adversarial, shape));
            Npy.WriteFile(Path.Combine(dir, $"prediction_{tag}.npy"), Masks(e.PredictionAfter));
            AtomicFile.WriteText(Path.Combine(dir, $"results_{tag}.csv"), r.Csv(k));
            if (r.SampleShape[0] is 1 or 3)
            {
                var g = Grid(r, e, originals, 8, 3, out int gh, out int gw);
                ImageWriter.SavePng(Path.Combine(dir, $"overlays_{tag}.png"), g, 3, gh, gw);
            }
            curve.Append(string.Format(inv, "{0},{1:R},{2:R},{3:R},{4:R},{5:R}\n", e.Eps?.ToString("R", inv) ?? "", e.SuccessRate, e.MeanDiceTarget, e.MeanDiceTruth, e.MeanCountAfter, e.MeanL2));
        }
        AtomicFile.WriteText(Path.Combine(dir, "dice_vs_eps.csv"), curve.ToString());
    }
}
