using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Perturb.Engine;
using Perturb.Engine.Attacks;
using Perturb.Engine.Attacks.Segmentation;
using Perturb.Engine.IO;
using Perturb.Engine.Nn;
using Perturb.Engine.Wsi;

namespace Perturb.Cli;

/// <summary><c>perturb wsi</c>: tile a whole-slide image (OpenSlide), classify and attack every tissue tile, write heat maps.</summary>
public static class WsiCommand
{
    public static Command Build(CliIO io)
    {
        var slideOpt = new Option<string>("--slide") { Description = "whole-slide image OpenSlide can read (pyramidal tiled TIFF, SVS, NDPI, MRXS, ...)", Required = true };
        var model = new Option<string>("--model") { Description = "model file (.safetensors or .onnx) taking RGB tiles", Required = true };
        var tile = Opt.Int("--tile", "tile side in pixels of the chosen level (tiles are resized to the model's input)", 224, ValueRange.AtLeast(1));
        var level = Opt.Int("--level", "pyramid level to tile (0: full resolution)", 0, ValueRange.NonNegative);
        var segNames = AttackRegistry.Segmentation.Select(a => a.Name).ToArray();
        var attackOpt = new Option<string>("--attack")
        {
            Description = $"attack per tile: {string.Join(", ", AttackRegistry.Names)}; for segmentation {string.Join(", ", segNames)} (default: pgd, or seg-pgd for segmentation)",
        };
        attackOpt.AcceptOnlyFromAmong(AttackRegistry.Names.Concat(segNames).ToArray());
        var task = new Option<string?>("--task") { Description = "classification (heat: class probability per tile) or segmentation (heat: predicted nuclei per tile); default: from the model's output" };
        task.AcceptOnlyFromAmong("classification", "segmentation");
        var target = new Option<string?>("--target") { Description = "segmentation goal: " + SegGoal.Help.Replace("forge (each image gets the next image's true mask), ", "") };
        var eps = Opt.NumberList("--eps", "budget in pixel units, fractions allowed (e.g. 4/255); budget-free attacks take none", ValueRange.NonNegative);
        var steps = Opt.OptionalInt("--steps", "attack iterations (default: the attack's)", ValueRange.AtLeast(1));
        var bg = Opt.Number("--background", "background rule: a tile is background when its mean brightness (0..1) is above this, or its mean saturation is below 0.05", 0.85, new ValueRange(0, 1, MinOpen: true));
        var maxTiles = Opt.Int("--max-tiles", "process at most N tissue tiles, row-major (0: all)", 0, ValueRange.NonNegative);
        var batch = CommonOptions.BatchSize(64);
        var seed = CommonOptions.Seed();
        var device = CommonOptions.Device();
        var outp = new Option<string>("--out") { Description = "folder for heat maps, tiles.csv, thumbnail.png and wsi.json", Required = true };
        var json = CommonOptions.Json();
        var overwrite = AttackCommand.Overwrite();
        var cmd = new Command("wsi", "whole-slide image: tile a pyramid level, skip background, classify and attack each tissue tile, write before/after heat maps");
        foreach (var o in new Option[] { slideOpt, model, tile, level, task, attackOpt, target, eps, steps, bg, maxTiles, batch, seed, device, outp, overwrite, json }) cmd.Options.Add(o);
        cmd.SetAction(pr =>
        {
            var epsList = pr.ListValue(eps)?.Select(v => (float)v).ToArray();
            if (epsList is { Length: > 1 }) throw new PerturbException($"--eps: give one budget for wsi, got {epsList.Length}", 2);
            double bgT = pr.GetValue(bg);
            if (!(bgT > 0 && bgT <= 1)) throw new PerturbException($"--background must be in (0, 1], got {bgT}", 2);
            int bs = pr.GetValue(batch);
            // An explicit --task (or a segmentation --attack or --target) decides now; otherwise the model does, once loaded.
            bool? segAsked = pr.GetValue(task) is { } tk ? tk == "segmentation"
                : pr.GetValue(attackOpt) is { } an ? segNames.Contains(an) : pr.GetValue(target) != null ? true : null;
            (object Attack, SegGoal? Goal, string Name) Make(bool seg) => WsiAttack(pr.GetValue(attackOpt), seg, pr.GetValue(target), pr.GetValue(steps), pr.GetValue(seed), bs, epsList);
            if (segAsked is { } sa) Make(sa); // usage errors before any file is opened
            var dir = pr.GetValue(outp)!;
            OutputFolder.Check(dir, pr.GetValue(overwrite));
            var slidePath = pr.GetValue(slideOpt)!;
            var modelPath = pr.GetValue(model)!;
            using var slide = Slide.Open(slidePath);
            var o = new WsiOptions
            {
                Level = pr.GetValue(level), Tile = pr.GetValue(tile), BackgroundBrightness = bgT, BatchSize = bs, MaxTiles = pr.GetValue(maxTiles),
                Epsilon = epsList?[0],
            };
            slide.CheckLevel(o.Level);
            var (lw, lh) = slide.Dimensions(o.Level);
            if (o.Tile <= 0) throw new PerturbException($"--tile must be positive, got {o.Tile}", 2);
            if (o.Tile > lw || o.Tile > lh) throw new PerturbException($"{slidePath}: tile {o.Tile} is larger than level {o.Level} ({lw}x{lh})", 2);
            if (!File.Exists(modelPath)) throw new PerturbException($"{modelPath}: no such file");
            using var be = CliUtil.OpenDevice(pr.GetValue(device)!, io);
            using var m = CliUtil.LoadModel(modelPath, be, io);
            WsiAnalysis.CheckModel(m, modelPath);
            bool seg = Presets.IsSegmentation(m);
            if (segAsked is { } asked && asked != seg)
                throw new PerturbException($"{modelPath}: the model {(seg ? "segments (class logits per pixel)" : "classifies")}, but the run asks for {(asked ? "segmentation" : "classification")}", 2);
            var (attack, goal, name) = Make(seg);
            io.Err.WriteLine($"wsi {slidePath} ({slide.Vendor}, {slide.LevelCount} levels): level {o.Level} {lw}x{lh} (downsample {slide.Downsample(o.Level):G4}), " +
                $"{lh / o.Tile}x{lw / o.Tile} tiles of {o.Tile}, attack {name}" + (goal != null ? $" ({goal})" : "") + (o.Epsilon is { } e ? $" eps {e.ToString("G4", CultureInfo.InvariantCulture)}" : "") + $", device {be.Name}");
            var bar = new ProgressBar(io.Err, "tiles");
            int lastLine = -1;
            bool tty = ReferenceEquals(io.Err, Console.Error) && !Console.IsErrorRedirected;
            void Progress(int done, int total)
            {
                bar.Update(done, total);
                // Plain logs: one line per tenth of the grid.
                int tenth = total == 0 ? 10 : done * 10 / total;
                if (!tty && tenth != lastLine && done < total) { lastLine = tenth; io.Err.WriteLine($"tiles {done}/{total}"); }
            }
            var r = seg ? WsiAnalysis.RunSegmentation(slide, m, (SegAttack)attack, goal!, o, Progress, modelPath) : WsiAnalysis.Run(slide, m, (IAttack)attack, o, Progress, modelPath);
            bar.Done($"{r.Tiles.Length}/{r.Tiles.Length} tiles: {r.Background} background skipped, {r.Processed} tissue tiles {(seg ? "segmented" : "classified")} and attacked");
            var extra = new JsonObject { ["model"] = modelPath, ["device"] = be.Name, ["seed"] = pr.GetValue(seed), ["background_threshold"] = bgT, ["min_saturation"] = o.MinSaturation };
            OutputFolder.Write(dir, pr.GetValue(overwrite), "perturb wsi", tmp => WsiOutput.Save(tmp, r, slide, extra));
            io.Out.WriteLine($"wsi: {r.Rows}x{r.Cols} tiles, {r.Background} background (skipped), {r.Tissue} tissue, {r.Processed} processed");
            io.Out.WriteLine(seg
                ? $"  predicted nuclei per tile before {r.MeanCountBefore:F1}, after {r.MeanCountAfter:F1}; nucleus area {r.MeanAreaBefore:P1} -> {r.MeanAreaAfter:P1}; attack ({r.Goal}) met its goal on {r.SuccessRate:P1} of tiles ({r.Seconds:F1}s)"
                : $"  positive (class 1) before {r.CleanPositiveFraction:P1}, after {r.AfterPositiveFraction:P1}; attack changed {r.SuccessRate:P1} of tiles ({r.Seconds:F1}s)");
            io.Out.WriteLine($"wrote {dir}");
            var jp = pr.GetValue(json);
            if (jp != null)
            {
                var j = WsiOutput.Json(r);
                foreach (var kv in extra) j[kv.Key] = kv.Value?.DeepClone();
                CliUtil.WriteJson(jp, j);
            }
            return 0;
        });
        return cmd;
    }

    /// <summary>The attack (an IAttack, or a SegAttack and its goal) the options name for the task, or a usage error.</summary>
    static (object Attack, SegGoal? Goal, string Name) WsiAttack(string? asked, bool seg, string? target, int? steps, ulong seed, int batch, float[]? eps)
    {
        var name = asked ?? (seg ? "seg-pgd" : "pgd");
        var info = AttackRegistry.Get(name);
        if (info.IsSegmentation != seg)
            throw new PerturbException($"--attack {name}: " + (seg ? "a segmentation model takes " + string.Join(", ", AttackRegistry.Segmentation.Select(a => a.Name)) : "a segmentation attack needs a segmentation model"), 2);
        if (!seg && target != null) throw new PerturbException("--target is a segmentation goal; the model classifies", 2);
        var values = new Dictionary<string, object> { ["seed"] = seed };
        if (steps is { } st) values[info.Find("steps") != null ? "steps" : "iterations"] = st;
        if (info.NeedsEpsilon && eps == null) throw new PerturbException($"attack {name} needs --eps (e.g. --eps 4/255)", 2);
        if (!info.NeedsEpsilon && eps != null && !seg) throw new PerturbException($"attack {name} has no budget; leave out --eps", 2);
        return seg ? (info.CreateSegmentation(values, batch), SegGoal.Parse(target), name) : (info.Create(values, batch), null, name);
    }
}
