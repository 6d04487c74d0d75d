using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Perturb.Engine;
using Perturb.Engine.Attacks;
using Perturb.Engine.IO;
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
        var attackOpt = new Option<string>("--attack") { Description = $"attack per tile: {string.Join(", ", AttackRegistry.Names)}", DefaultValueFactory = _ => "pgd" };
        attackOpt.AcceptOnlyFromAmong(AttackRegistry.Names.ToArray());
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
        foreach (var o in new Option[] { slideOpt, model, tile, level, attackOpt, eps, steps, bg, maxTiles, batch, seed, device, outp, overwrite, json }) cmd.Options.Add(o);
        cmd.SetAction(pr =>
        {
            var epsList = pr.ListValue(eps)?.Select(v => (float)v).ToArray();
            if (epsList is { Length: > 1 }) throw new PerturbException($"--eps: give one budget for wsi, got {epsList.Length}", 2);
            double bgT = pr.GetValue(bg);
            if (!(bgT > 0 && bgT <= 1)) throw new PerturbException($"--background must be in (0, 1], got {bgT}", 2);
            int bs = pr.GetValue(batch);
            var name = pr.GetValue(attackOpt)!;
            var values = new Dictionary<string, object> { ["seed"] = pr.GetValue(seed) };
            if (pr.GetValue(steps) is { } st) values["steps"] = st;
            var attack = AttackRegistry.Create(name, values, bs);
            if (attack.NeedsEpsilon && epsList == null) throw new PerturbException($"attack {name} needs --eps (e.g. --eps 4/255)", 2);
            if (!attack.NeedsEpsilon && epsList != null) throw new PerturbException($"attack {name} has no budget; leave out --eps", 2);
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
            io.Err.WriteLine($"wsi {slidePath} ({slide.Vendor}, {slide.LevelCount} levels): level {o.Level} {lw}x{lh} (downsample {slide.Downsample(o.Level):G4}), " +
                $"{lh / o.Tile}x{lw / o.Tile} tiles of {o.Tile}, attack {name}" + (o.Epsilon is { } e ? $" eps {e.ToString("G4", CultureInfo.InvariantCulture)}" : "") + $", device {be.Name}");
            var bar = new ProgressBar(io.Err, "tiles");
            int lastLine = -1;
            bool tty = ReferenceEquals(io.Err, Console.Error) && !Console.IsErrorRedirected;
            var r = WsiAnalysis.Run(slide, m, attack, o, (done, total) =>
            {
                bar.Update(done, total);
                // Plain logs: one line per tenth of the grid.
                int tenth = total == 0 ? 10 : done * 10 / total;
                if (!tty && tenth != lastLine && done < total) { lastLine = tenth; io.Err.WriteLine($"tiles {done}/{total}"); }
            }, modelPath);
            bar.Done($"{r.Tiles.Length}/{r.Tiles.Length} tiles: {r.Background} background skipped, {r.Processed} tissue tiles classified and attacked");
            var extra = new JsonObject { ["model"] = modelPath, ["device"] = be.Name, ["seed"] = pr.GetValue(seed), ["background_threshold"] = bgT, ["min_saturation"] = o.MinSaturation };
            OutputFolder.Write(dir, pr.GetValue(overwrite), "perturb wsi", tmp => WsiOutput.Save(tmp, r, slide, extra));
            io.Out.WriteLine($"wsi: {r.Rows}x{r.Cols} tiles, {r.Background} background (skipped), {r.Tissue} tissue, {r.Processed} processed");
            io.Out.WriteLine($"  positive (class 1) before {r.CleanPositiveFraction:P1}, after {r.AfterPositiveFraction:P1}; attack changed {r.SuccessRate:P1} of tiles ({r.Seconds:F1}s)");
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
}
