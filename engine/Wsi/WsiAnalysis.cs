using System.Diagnostics;
using Perturb.Engine.Attacks;
using Perturb.Engine.Attacks.Segmentation;
using Perturb.Engine.Data;
using Perturb.Engine.Nn;

namespace Perturb.Engine.Wsi;

/// <summary>Settings of a whole-slide run.</summary>
public sealed record WsiOptions
{
    /// <summary>Pyramid level to tile (0 = full resolution).</summary>
    public int Level { get; init; }
    /// <summary>Tile side in pixels of that level; tiles do not overlap, partial tiles at the right and bottom edges are dropped.</summary>
    public int Tile { get; init; } = 224;
    /// <summary>Background rule: a tile is background when its mean brightness exceeds this (see <see cref="Tiling.IsBackground"/>).</summary>
    public double BackgroundBrightness { get; init; } = 0.85;
    /// <summary>Background rule: a tile is background when its mean HSV saturation is below this.</summary>
    public double MinSaturation { get; init; } = 0.05;
    /// <summary>Tissue tiles per batch (reading, classifying and attacking).</summary>
    public int BatchSize { get; init; } = 64;
    /// <summary>Process at most this many tissue tiles (row-major order; 0: all). Later tissue tiles are marked unprocessed.</summary>
    public int MaxTiles { get; init; }
    /// <summary>Attack budget (null for budget-free attacks such as deepfool or cw).</summary>
    public float? Epsilon { get; init; }
}

/// <summary>One tile of the grid. X, Y are level-0 pixel coordinates of its top-left corner.</summary>
public sealed record TileRecord(int Row, int Col, long X, long Y, bool Background, bool Processed, double Brightness, double Saturation)
{
    public int PredBefore { get; set; } = -1;
    public int PredAfter { get; set; } = -1;
    /// <summary>Heat-map value before/after (see <see cref="WsiResult.HeatClass"/>), NaN when not classified.</summary>
    public float HeatBefore { get; set; } = float.NaN;
    public float HeatAfter { get; set; } = float.NaN;
    /// <summary>Probability of the predicted class before and after.</summary>
    public float ConfBefore { get; set; } = float.NaN;
    public float ConfAfter { get; set; } = float.NaN;
    /// <summary>The attack changed the prediction (segmentation: the attack met its goal).</summary>
    public bool Success { get; set; }
    /// <summary>Segmentation: predicted nuclei (8-connected components) before/after, -1 when not processed.</summary>
    public int CountBefore { get; set; } = -1;
    public int CountAfter { get; set; } = -1;
    /// <summary>Segmentation: fraction of the tile's pixels predicted nucleus before/after, NaN when not processed.</summary>
    public float AreaBefore { get; set; } = float.NaN;
    public float AreaAfter { get; set; } = float.NaN;
}

public sealed class WsiResult
{
    public required string SlidePath { get; init; }
    public required string Vendor { get; init; }
    public int Level { get; init; }
    public int LevelCount { get; init; }
    public long LevelWidth { get; init; }
    public long LevelHeight { get; init; }
    public long Width0 { get; init; }
    public long Height0 { get; init; }
    public double Downsample { get; init; }
    public int Tile { get; init; }
    public int Rows { get; init; }
    public int Cols { get; init; }
    public int NumClasses { get; init; }
    /// <summary>
    /// "class1" for two-class models (heat = P(class 1)); "predicted" for more classes (heat = probability of the clean
    /// prediction's class, before and after); "nuclei" for segmentation models (heat = predicted nuclei per tile).
    /// </summary>
    public required string HeatClass { get; init; }
    public bool IsSegmentation => HeatClass == "nuclei";
    /// <summary>The heat value drawn red (the colour map spans 0 to this): 1 for probabilities; for nucleus counts the most of any tile, before or after (at least 1), so both maps share one scale.</summary>
    public float HeatMax { get; init; } = 1;
    /// <summary>Segmentation: the attack's goal (untargeted, erase, forge...).</summary>
    public string? Goal { get; init; }
    public required string Attack { get; init; }
    public float? Epsilon { get; init; }
    public required TileRecord[] Tiles { get; init; }
    public int Background => Tiles.Count(t => t.Background);
    public int Tissue => Tiles.Count(t => !t.Background);
    public int Processed => Tiles.Count(t => t.Processed);
    /// <summary>Fraction of processed tissue tiles predicted class 1 before / after the attack.</summary>
    public double CleanPositiveFraction => Frac(t => t.PredBefore == 1);
    public double AfterPositiveFraction => Frac(t => t.PredAfter == 1);
    /// <summary>Fraction of processed tissue tiles whose prediction the attack changed.</summary>
    public double SuccessRate => Frac(t => t.Success);
    /// <summary>Segmentation: mean predicted nuclei and nucleus area fraction per processed tile, before / after.</summary>
    public double MeanCountBefore => Mean(t => t.CountBefore);
    public double MeanCountAfter => Mean(t => t.CountAfter);
    public double MeanAreaBefore => Mean(t => t.AreaBefore);
    public double MeanAreaAfter => Mean(t => t.AreaAfter);
    public double Seconds { get; init; }

    double Frac(Func<TileRecord, bool> f) => Mean(t => f(t) ? 1 : 0);

    double Mean(Func<TileRecord, double> f)
    {
        var p = Tiles.Where(t => t.Processed).ToArray();
        return p.Length == 0 ? double.NaN : p.Average(f);
    }

    /// <summary>Rows×cols heat map, row-major, NaN where a tile was not classified.</summary>
    public float[] Heat(bool after)
    {
        var h = new float[Rows * Cols];
        foreach (var t in Tiles) h[t.Row * Cols + t.Col] = after ? t.HeatAfter : t.HeatBefore;
        return h;
    }
}

/// <summary>Tile statistics and the background rule.</summary>
public static class Tiling
{
    /// <summary>
    /// Mean brightness (mean of R, G, B over the tile) and mean HSV saturation ((max - min) / max per pixel, 0 for
    /// black) of 3×h×w planes in [0,1].
    /// </summary>
    public static (double Brightness, double Saturation) Stats(float[] rgb, int hw)
    {
        double b = 0, s = 0;
        for (int i = 0; i < hw; i++)
        {
            float r = rgb[i], g = rgb[hw + i], bl = rgb[2 * hw + i];
            float mx = Math.Max(r, Math.Max(g, bl)), mn = Math.Min(r, Math.Min(g, bl));
            b += (r + g + bl) / 3.0;
            if (mx > 0) s += (mx - mn) / mx;
        }
        return (b / hw, s / hw);
    }

    /// <summary>
    /// The background rule: a tile is background when its mean brightness is above <paramref name="maxBrightness"/>
    /// (glass, white paper) or its mean saturation is below <paramref name="minSaturation"/> (unstained grey areas:
    /// H&amp;E tissue is coloured).
    /// </summary>
    public static bool IsBackground(double brightness, double saturation, double maxBrightness, double minSaturation) =>
        brightness > maxBrightness || saturation < minSaturation;
}

/// <summary>
/// Tiles one level of a slide, skips background, classifies each tissue tile (resized to the model's input with the
/// antialiased bilinear resize of <see cref="ImageFile.Resize"/>) and attacks it, untargeted, with the clean prediction
/// as the label: success means the attack changed the tile's prediction.
/// </summary>
public static class WsiAnalysis
{
    public static WsiResult Run(Slide slide, Model model, IAttack attack, WsiOptions o, Action<int, int>? progress = null, string modelPath = "model")
    {
        if (attack.NeedsEpsilon && o.Epsilon == null) throw new PerturbException($"attack {attack.Name} needs an epsilon (--eps)", 2);
        if (!attack.NeedsEpsilon && o.Epsilon != null) throw new PerturbException($"attack {attack.Name} has no budget; leave out --eps", 2);
        return Scan(slide, model, o, progress, modelPath, (tiles, pending, x, n) =>
        {
            var (pb, probB) = Classify(model, x, n, o.BatchSize);
            var r = attack.Run(model, x, pb, AttackGoal.Untargeted, o.Epsilon is { } e ? new[] { e } : null);
            var res = r.Results[0];
            var (pa, probA) = Classify(model, res.Adversarial, n, o.BatchSize);
            for (int i = 0; i < n; i++)
            {
                var rec = tiles[pending[i]];
                rec.PredBefore = pb[i]; rec.PredAfter = pa[i];
                rec.ConfBefore = probB[i][pb[i]]; rec.ConfAfter = probA[i][pa[i]];
                int hc = model.NumClasses == 2 ? 1 : pb[i];
                rec.HeatBefore = probB[i][hc]; rec.HeatAfter = probA[i][hc];
                rec.Success = pa[i] != pb[i];
            }
        }, tiles => new WsiResult
        {
            SlidePath = slide.Path, Vendor = slide.Vendor, Tiles = tiles, NumClasses = model.NumClasses,
            HeatClass = model.NumClasses == 2 ? "class1" : "predicted", Attack = attack.Name, Epsilon = o.Epsilon,
        });
    }

    /// <summary>
    /// The segmentation run: each tissue tile is segmented (nucleus mask, resized to the model's input), attacked toward
    /// <paramref name="goal"/> (success as the attack defines it), and segmented again; the heat maps are the predicted
    /// nuclei per tile (8-connected components of the foreground) before and after, on one colour scale.
    /// </summary>
    public static WsiResult RunSegmentation(Slide slide, Model model, SegAttack attack, SegGoal goal, WsiOptions o, Action<int, int>? progress = null,
        string modelPath = "model")
    {
        if (!Presets.IsSegmentation(model))
            throw new PerturbException($"{modelPath}: the model outputs {Tensor.ShapeString(model.OutputShape)} per image, not class logits per pixel; --task segmentation needs a segmentation model (e.g. unet)", 2);
        if (goal.Kind == SegGoalKind.ForgeOther) throw new PerturbException("--target forge takes another image's true mask; a slide has none (use erase or forge:Y0,X0,Y1,X1)", 2);
        if (attack.NeedsEpsilon && o.Epsilon == null) throw new PerturbException($"attack {attack.Name} needs an epsilon (--eps)", 2);
        int h = model.OutputShape[1], w = model.OutputShape[2], p = h * w;
        return Scan(slide, model, o, progress, modelPath, (tiles, pending, x, n) =>
        {
            var res = attack.Run(model, x, null, goal, o.Epsilon is { } e ? new[] { e } : null);
            var after = res.Results[0];
            for (int i = 0; i < n; i++)
            {
                var rec = tiles[pending[i]];
                rec.CountBefore = res.CountBefore[i]; rec.CountAfter = after.CountAfter[i];
                rec.AreaBefore = res.CleanPrediction.AsSpan(i * p, p).ToArray().Count(v => v > 0) / (float)p;
                rec.AreaAfter = after.PredictionAfter.AsSpan(i * p, p).ToArray().Count(v => v > 0) / (float)p;
                rec.HeatBefore = rec.CountBefore; rec.HeatAfter = rec.CountAfter;
                rec.Success = after.Success[i];
            }
        }, tiles => new WsiResult
        {
            SlidePath = slide.Path, Vendor = slide.Vendor, Tiles = tiles, NumClasses = model.OutputShape[0], HeatClass = "nuclei",
            Attack = attack.Name, Epsilon = o.Epsilon, Goal = goal.ToString(),
        });
    }

    /// <summary>
    /// Tiles the level, skips background, resizes each tissue tile to the model's input and hands them to
    /// <paramref name="process"/> in batches (tile records, their indices, the batch's pixels, its count), then fills
    /// the grid figures into the result <paramref name="make"/> gives.
    /// </summary>
    static WsiResult Scan(Slide slide, Model model, WsiOptions o, Action<int, int>? progress, string modelPath,
        Action<TileRecord[], int[], float[], int> process, Func<TileRecord[], WsiResult> make)
    {
        var sw = Stopwatch.StartNew();
        slide.CheckLevel(o.Level);
        if (o.Tile <= 0) throw new PerturbException($"tile size must be positive, got {o.Tile}", 2);
        if (o.BatchSize <= 0) throw new PerturbException($"batch size must be positive, got {o.BatchSize}", 2);
        if (o.MaxTiles < 0) throw new PerturbException($"max tiles must be 0 or positive, got {o.MaxTiles}", 2);
        var (lw, lh) = slide.Dimensions(o.Level);
        if (o.Tile > lw || o.Tile > lh)
            throw new PerturbException($"{slide.Path}: tile {o.Tile} is larger than level {o.Level} ({lw}x{lh})", 2);
        CheckModel(model, modelPath);
        var s = model.InputShape;
        int c = s[0], mh = s[1], mw = s[2], d = c * mh * mw, t = o.Tile;
        // A slide's header may claim any size: the tile count is checked in 64 bits before the tile table is made.
        Limits.Check($"{slide.Path}: level {o.Level} ({lw}x{lh}) in {t}x{t} tiles: tiles", Limits.Product(new[] { lh / t, lw / t }), Limits.MaxTensorElements, "PERTURB_MAX_TENSOR_ELEMENTS");
        int rows = (int)(lh / t), cols = (int)(lw / t), total = rows * cols;
        double ds = slide.Downsample(o.Level);
        model.Eval();

        var tiles = new TileRecord[total];
        var pending = new List<(int Index, float[] X)>();
        int tissueSeen = 0, visited = 0;
        void Flush()
        {
            if (pending.Count == 0) return;
            int n = pending.Count;
            var x = new float[(long)n * d];
            for (int i = 0; i < n; i++) pending[i].X.CopyTo(x, (long)i * d);
            process(tiles, pending.Select(q => q.Index).ToArray(), x, n);
            pending.Clear();
            progress?.Invoke(visited, total);
        }

        for (int row = 0; row < rows; row++)
            for (int col = 0; col < cols; col++)
            {
                long x0 = (long)Math.Round((double)col * t * ds), y0 = (long)Math.Round((double)row * t * ds);
                var px = slide.ReadRegion(o.Level, x0, y0, t, t);
                var (b, sat) = Tiling.Stats(px, t * t);
                bool bg = Tiling.IsBackground(b, sat, o.BackgroundBrightness, o.MinSaturation);
                bool proc = !bg && (o.MaxTiles == 0 || tissueSeen < o.MaxTiles);
                if (!bg) tissueSeen++;
                int idx = row * cols + col;
                tiles[idx] = new TileRecord(row, col, x0, y0, bg, proc, b, sat);
                visited++;
                if (proc)
                {
                    pending.Add((idx, ImageFile.Resize(px, 3, t, t, mh, mw)));
                    if (pending.Count == o.BatchSize) Flush();
                }
                if (col == cols - 1) progress?.Invoke(visited - pending.Count, total); // tiles finished so far, also on rows of background only
            }
        Flush();
        progress?.Invoke(total, total);
        sw.Stop();
        var r = make(tiles);
        return new WsiResult
        {
            SlidePath = r.SlidePath, Vendor = r.Vendor, Level = o.Level, LevelCount = slide.LevelCount, LevelWidth = lw, LevelHeight = lh,
            Width0 = slide.Dimensions(0).Width, Height0 = slide.Dimensions(0).Height, Downsample = ds, Tile = t, Rows = rows, Cols = cols,
            NumClasses = r.NumClasses, HeatClass = r.HeatClass, Attack = r.Attack, Epsilon = r.Epsilon, Goal = r.Goal,
            HeatMax = r.IsSegmentation ? Math.Max(1, tiles.Where(q => q.Processed).Select(q => (float)Math.Max(q.CountBefore, q.CountAfter)).DefaultIfEmpty(1).Max()) : 1,
            Tiles = tiles, Seconds = sw.Elapsed.TotalSeconds,
        };
    }

    /// <summary>Throws a usage error (exit 2) naming the model file unless it takes RGB images (3 x H x W).</summary>
    public static void CheckModel(Model model, string modelPath)
    {
        var s = model.InputShape;
        if (s.Length != 3) throw new PerturbException($"{modelPath}: the model takes {Tensor.ShapeString(s)} inputs, not images (C x H x W)", 2);
        if (s[0] != 3)
            throw new PerturbException($"{modelPath}: the model takes {s[0]}-channel images but slides are RGB (3 channels); use a model trained on colour tiles", 2);
    }

    /// <summary>Predictions and class probabilities of n host samples, in chunks.</summary>
    public static (int[] Pred, float[][] Prob) Classify(Model model, float[] x, int n, int batch)
    {
        var be = model.Backend;
        int d = Layer.Product(model.InputShape);
        var pred = new int[n]; var prob = new float[n][];
        for (int st = 0; st < n; st += batch)
        {
            int m = Math.Min(batch, n - st);
            using var tt = be.FromArray(x.AsSpan((int)((long)st * d), m * d), new[] { m }.Concat(model.InputShape).ToArray());
            var z = model.Infer(tt);
            Losses.Predict(be, z).CopyTo(pred, st);
            Losses.Probabilities(model, z).CopyTo(prob, st);
        }
        model.ReleaseActivations();
        return (pred, prob);
    }
}
