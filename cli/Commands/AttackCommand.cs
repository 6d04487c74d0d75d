using System.CommandLine;
using System.Globalization;
using Perturb.Engine;
using Perturb.Engine.Attacks;
using Perturb.Engine.Data;
using Perturb.Engine.IO;

namespace Perturb.Cli;

public static class AttackCommand
{
    public static Command Build(CliIO io)
    {
        var cmd = new Command("attack", "run an adversarial attack on a model over a data set");
        foreach (var name in AttackRegistry.AllNames) cmd.Subcommands.Add(BuildOne(name, io));
        cmd.Subcommands.Add(PatchCommand.Build(io));
        cmd.Subcommands.Add(BuildFooling(io));
        return cmd;
    }

    /// <summary><c>perturb attack fooling</c>: evolved fooling images; needs no data set.</summary>
    static Command BuildFooling(CliIO io)
    {
        var model = new Option<string>("--model") { Description = "model file: .safetensors or .onnx", Required = true };
        var classes = new Option<string>("--classes") { Description = "all, or class indices comma-separated (0,2)", DefaultValueFactory = _ => "all" };
        var population = new Option<int?>("--population") { Description = "offspring per generation (default 100)" };
        var iterations = new Option<int?>("--iterations") { Description = "most generations (default 200)" };
        var encoding = new Option<string>("--encoding") { Description = "direct (one gene per pixel) or cppn (CPPN genomes, simplified NEAT)", DefaultValueFactory = _ => "direct" };
        encoding.AcceptOnlyFromAmong("direct", "cppn");
        var seed = CommonOptions.Seed();
        var device = CommonOptions.Device();
        var outp = new Option<string?>("--out") { Description = "folder for fooling.npy (classes x C x H x W) and one PNG per class" };
        var json = CommonOptions.Json();
        var c = new Command("fooling", "evolve images the model assigns to a class with at least 99% confidence (MAP-Elites over all classes at once)");
        foreach (var o in new Option[] { model, classes, population, iterations, encoding, seed, device, outp, json }) c.Options.Add(o);
        c.SetAction(pr =>
        {
            var cs = pr.GetValue(classes)!;
            int[]? list = null;
            if (cs != "all")
                list = cs.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                    .Select(v => int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int k) && k >= 0 ? k
                        : throw new PerturbException($"--classes: '{v}' is not a class index (use all or a list like 0,2)", 2)).ToArray();
            using var be = CliUtil.OpenDevice(pr.GetValue(device)!, io);
            var modelPath = pr.GetValue(model)!;
            using var m = CliUtil.LoadModel(modelPath, be, io);
            var d = new Engine.Attacks.Search.FoolingImages();
            var f = new Engine.Attacks.Search.FoolingImages
            {
                Population = pr.GetValue(population) ?? d.Population, Generations = pr.GetValue(iterations) ?? d.Generations, Seed = pr.GetValue(seed),
                Encoding = pr.GetValue(encoding) == "cppn" ? Engine.Attacks.Search.FoolingEncoding.Cppn : Engine.Attacks.Search.FoolingEncoding.Direct,
            };
            io.Err.WriteLine($"attack fooling ({pr.GetValue(encoding)} encoding) on {(list == null ? "every class" : "classes " + string.Join(",", list))}, device {be.Name} ...");
            var r = f.Run(m, list);
            io.Out.WriteLine($"fooling: {r.ReachedAt.Count(g => g >= 0)}/{r.Classes.Length} classes at {r.TargetConfidence:P0}, {r.Generations} generations, {r.Queries} queries ({r.Seconds:F1}s)");
            io.Out.WriteLine($"  {"class",5} {"confidence",10} {"generation",10}");
            for (int a = 0; a < r.Classes.Length; a++)
                io.Out.WriteLine($"  {r.Classes[a],5} {r.BestConfidence[a],10:F4} {(r.ReachedAt[a] >= 0 ? r.ReachedAt[a].ToString(CultureInfo.InvariantCulture) : "-"),10}");
            var dir = pr.GetValue(outp);
            if (dir != null)
            {
                Directory.CreateDirectory(dir);
                Npy.WriteFile(Path.Combine(dir, "fooling.npy"), NpyArray.FromFloats(r.Images.SelectMany(v => v).ToArray(), new[] { r.Classes.Length }.Concat(r.SampleShape).ToArray()));
                var s = r.SampleShape;
                if (s.Length == 3 && (s[0] == 1 || s[0] == 3))
                    for (int a = 0; a < r.Classes.Length; a++)
                        ImageWriter.SavePng(Path.Combine(dir, $"fooling_class{r.Classes[a]}_conf{r.BestConfidence[a]:F4}.png"), r.Images[a], s[0], s[1], s[2]);
                io.Out.WriteLine($"wrote {dir}");
            }
            var jpath = pr.GetValue(json);
            if (jpath != null) { var j = r.ToJson(modelPath); j["device"] = be.Name; CliUtil.WriteJson(jpath, j); }
            return r.ReachedAt.All(g => g >= 0) ? 0 : 1;
        });
        return c;
    }

    static Command BuildOne(string name, CliIO io)
    {
        var model = new Option<string>("--model") { Description = "model file: .safetensors or .onnx", Required = true };
        var data = CommonOptions.Data();
        var dataSeed = CommonOptions.DataSeed();
        var split = new Option<string>("--split") { Description = "train, val or test", DefaultValueFactory = _ => "test" };
        split.AcceptOnlyFromAmong("train", "val", "test");
        var n = new Option<int>("--n") { Description = "attack the first N images of the split (0: all)", DefaultValueFactory = _ => 100 };
        var eps = new Option<string?>("--eps") { Description = "budgets in pixel units, comma-separated, fractions allowed: 1/255,2/255,4/255,8/255 (one batched run)" };
        var norm = new Option<string?>("--norm") { Description = "linf or l2" };
        norm.AcceptOnlyFromAmong("linf", "l2");
        var steps = new Option<int?>("--steps") { Description = "iterations (DeepFool, C&W: the most iterations)" };
        var stepSize = new Option<string?>("--step-size") { Description = "step size in pixel units (fractions allowed, e.g. 1/255)" };
        var restarts = new Option<int?>("--restarts") { Description = "random restarts, keeping the best per sample (PGD)" };
        var targeted = new Option<string?>("--targeted") { Description = "random, least-likely, or a class index (default: untargeted)" };
        var kappa = new Option<float?>("--kappa") { Description = "confidence margin (C&W)" };
        var pixels = new Option<int?>("--pixels") { Description = "pixels to change (one-pixel: 1, 3, 5)" };
        var population = new Option<int?>("--population") { Description = "candidates per image and generation (search attacks)" };
        var iterations = new Option<int?>("--iterations") { Description = "generations or iterations (search attacks)" };
        var queries = new Option<int?>("--queries") { Description = "query budget per image (Square)" };
        var candidates = new Option<int?>("--candidates") { Description = "pixel-saliency: the most salient positions a pixel may take (default max(64, 5% of pixels))" };
        var seed = CommonOptions.Seed();
        var device = CommonOptions.Device();
        var batch = CommonOptions.BatchSize(256);
        var outp = new Option<string?>("--out") { Description = "folder for .npy arrays, PNGs and per-sample CSVs" };
        var json = CommonOptions.Json();
        var c = new Command(name, $"the {name} attack");
        foreach (var o in new Option[] { model, data, dataSeed, split, n, eps, norm, steps, stepSize, restarts, targeted, kappa, pixels, population, iterations, queries, candidates, seed, device, batch, outp, json }) c.Options.Add(o);
        c.SetAction(pr =>
        {
            var epsList = ParseList(pr.GetValue(eps), "--eps");
            var settings = new AttackSettings
            {
                Norm = pr.GetValue(norm) switch { "l2" => Norm.L2, "linf" => Norm.Linf, _ => null },
                Steps = pr.GetValue(steps), Restarts = pr.GetValue(restarts), Kappa = pr.GetValue(kappa),
                StepSize = ParseList(pr.GetValue(stepSize), "--step-size")?.Single(),
                Seed = pr.GetValue(seed), MaxBatch = Math.Max(1, pr.GetValue(batch)),
                Pixels = pr.GetValue(pixels), Population = pr.GetValue(population), Iterations = pr.GetValue(iterations), Queries = pr.GetValue(queries),
                Candidates = pr.GetValue(candidates),
            };
            var attack = AttackRegistry.Create(name, settings);
            if (attack.NeedsEpsilon && epsList == null)
                throw new PerturbException($"attack {name} needs --eps (e.g. --eps 1/255,2/255,4/255,8/255)", 2);
            if (!attack.NeedsEpsilon && epsList != null)
                throw new PerturbException($"attack {name} has no budget; leave out --eps", 2);
            var d = DataSources.LoadSplit(pr.GetValue(data)!, pr.GetValue(split)!, pr.GetValue(dataSeed));
            int count = pr.GetValue(n);
            if (count < 0) throw new PerturbException($"--n must be 0 or positive, got {count}", 2);
            if (count > 0) d = d.Take(count);
            using var be = CliUtil.OpenDevice(pr.GetValue(device)!, io);
            var modelPath = pr.GetValue(model)!;
            using var m = CliUtil.LoadModel(modelPath, be, io);
            m.Eval();
            var goal = AttackGoal.Parse(pr.GetValue(targeted), d.Count, pr.GetValue(seed));
            io.Err.WriteLine($"attack {name} on {d.Count} {pr.GetValue(split)} images of {d.Name}" +
                (epsList != null ? $", eps {string.Join(", ", epsList.Select(v => v.ToString("G4", CultureInfo.InvariantCulture)))}" : "") + $", device {be.Name} ...");
            ProgressBar? bar = null;
            if (attack is Engine.Attacks.Search.Moea mp) { var b = bar = new ProgressBar(io.Err, "moea generations"); mp.Progress = (g, total) => b.Update(g, total); }
            var r = attack.Run(m, d.X, d.Labels, goal, epsList);
            bar?.Done("done");
            io.Out.WriteLine($"{name}: clean accuracy {r.CleanAccuracy:P1} on {r.N} images, {r.ImagesPerSecond:F1} images/s ({r.Seconds:F1}s)");
            bool q = r.Results.Any(e => e.Queries != null);
            io.Out.WriteLine($"  {"eps",-9} {"robust acc",10} {"success",8} {"mean L2",8} {"median L2",9} {"max Linf",8} {"PSNR",6} {"SSIM",6}" + (q ? $" {"mean queries",12}" : ""));
            foreach (var e in r.Results)
                io.Out.WriteLine($"  {(e.Eps.HasValue ? e.Eps.Value.ToString("0.0####", CultureInfo.InvariantCulture) : "-"),-9} {e.RobustAccuracy,10:P1} {e.SuccessRate,8:P1} {e.MeanL2,8:F4} {e.MedianL2,9:F4} {e.MaxLinf,8:F4} {e.MeanPsnr,6:F1} {e.MeanSsim,6:F3}"
                    + (q ? $" {e.MeanQueries,12:F1}" : ""));
            var dir = pr.GetValue(outp);
            var wb = (attack as Engine.Attacks.Search.WhiteBalance)?.Found;
            if (dir != null)
            {
                AttackOutput.Save(dir, r, d.X);
                if (attack is Engine.Attacks.Search.Moea mo) Engine.Attacks.Search.Moea.WriteParetoCsv(Path.Combine(dir, "pareto_front.csv"), mo.ParetoFronts);
                if (wb != null) AtomicFile.WriteText(Path.Combine(dir, "white_balance.csv"), Engine.Attacks.Search.WhiteBalance.SettingsCsv(wb, r.Results[0].Success));
                io.Out.WriteLine($"wrote {dir}");
            }
            var jpath = pr.GetValue(json);
            if (jpath != null)
            {
                var j = r.ToJson(modelPath);
                j["data"] = pr.GetValue(data); j["split"] = pr.GetValue(split); j["device"] = be.Name;
                if (wb != null) j["white_balance"] = Engine.Attacks.Search.WhiteBalance.SettingsJson(wb);
                CliUtil.WriteJson(jpath, j);
            }
            return 0;
        });
        return c;
    }

    /// <summary>Parses "1/255,2/255,0.03" into floats; null for null input.</summary>
    internal static float[]? ParseList(string? s, string opt)
    {
        if (string.IsNullOrWhiteSpace(s)) return null;
        return s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(p =>
        {
            var parts = p.Split('/');
            if (parts.Length <= 2 && parts.All(x => double.TryParse(x, NumberStyles.Float, CultureInfo.InvariantCulture, out _)))
            {
                double v = double.Parse(parts[0], CultureInfo.InvariantCulture);
                if (parts.Length == 2) v /= double.Parse(parts[1], CultureInfo.InvariantCulture);
                if (double.IsFinite(v) && v >= 0) return (float)v;
            }
            throw new PerturbException($"{opt}: '{p}' is not a non-negative number or fraction", 2);
        }).ToArray();
    }
}
