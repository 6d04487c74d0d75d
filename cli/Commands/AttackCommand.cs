using System.CommandLine;
using System.Globalization;
using Perturb.Engine;
using Perturb.Engine.Attacks;
using Perturb.Engine.Attacks.Search;
using Perturb.Engine.Data;
using Perturb.Engine.IO;

namespace Perturb.Cli;

/// <summary>
/// Command-line options built from a class's setting descriptors (<see cref="SettingAttribute"/>): one option per
/// setting, --kebab-case, parsed and range-checked by the setting itself. Nothing here names a setting.
/// </summary>
public sealed class SettingOptions
{
    readonly List<(Setting S, Option<object?> O)> _opts = new();

    public SettingOptions(IEnumerable<Setting> settings)
    {
        foreach (var s in settings)
        {
            var o = new Option<object?>(s.Option)
            {
                Description = $"{s.Help} ({s.Kind}; default {s.DefaultText})",
                CustomParser = r =>
                {
                    if (r.Tokens.Count == 0) return null;
                    try { return s.Parse(r.Tokens[^1].Value, s.Option); }
                    catch (PerturbException e) { r.AddError(e.Message); return null; }
                },
            };
            _opts.Add((s, o));
        }
    }

    public IEnumerable<Option> Options => _opts.Select(p => (Option)p.O);

    /// <summary>The option of the setting called <paramref name="name"/> (snake_case), e.g. to make it required.</summary>
    public Option<object?> this[string name] => _opts.Single(p => p.S.Name == name).O;

    /// <summary>The settings given on the command line (the rest keep the defaults).</summary>
    public Dictionary<string, object> Values(ParseResult pr)
    {
        var d = new Dictionary<string, object>();
        foreach (var (s, o) in _opts)
            if (pr.GetValue(o) is { } v) d[s.Name] = v;
        return d;
    }
}

public static class AttackCommand
{
    public static Command Build(CliIO io)
    {
        var cmd = new Command("attack", "run an adversarial attack on a model over a data set");
        foreach (var a in AttackRegistry.Attacks.Where(a => !a.IsSegmentation)) cmd.Subcommands.Add(BuildOne(a, io));
        cmd.Subcommands.Add(PatchCommand.Build(io));
        cmd.Subcommands.Add(BuildFooling(io));
        foreach (var c in SegAttackCommand.Build(io)) cmd.Subcommands.Add(c);
        return cmd;
    }

    /// <summary><c>perturb attack fooling</c>: evolved fooling images; needs no data set.</summary>
    static Command BuildFooling(CliIO io)
    {
        var model = new Option<string>("--model") { Description = "model file: .safetensors or .onnx", Required = true };
        var classes = Opt.IntList("--classes", "all, or class indices comma-separated (0,2)", ValueRange.NonNegative, allWord: "all");
        var settings = new SettingOptions(Setting.Of(typeof(FoolingImages)));
        var device = CommonOptions.Device();
        var outp = new Option<string?>("--out") { Description = "folder for fooling.npy (classes x C x H x W) and one PNG per class" };
        var json = CommonOptions.Json();
        var overwrite = Overwrite();
        var c = new Command("fooling", "evolve images the model assigns to a class with at least 99% confidence (MAP-Elites over all classes at once)");
        foreach (var o in new Option[] { model, classes }.Concat(settings.Options).Concat(new Option[] { device, outp, overwrite, json })) c.Options.Add(o);
        c.SetAction(pr =>
        {
            var list = pr.ListValue(classes);
            var dir = pr.GetValue(outp);
            if (dir != null) OutputFolder.Check(dir, pr.GetValue(overwrite));
            using var be = CliUtil.OpenDevice(pr.GetValue(device)!, io);
            var modelPath = pr.GetValue(model)!;
            using var m = CliUtil.LoadModel(modelPath, be, io);
            var f = Setting.Create<FoolingImages>(settings.Values(pr), "fooling");
            io.Err.WriteLine($"attack fooling ({Values.EnumName(f.Encoding)} encoding) on {(list == null ? "every class" : "classes " + string.Join(",", list))}, device {be.Name} ...");
            var r = f.Run(m, list);
            io.Out.WriteLine($"fooling: {r.ReachedAt.Count(g => g >= 0)}/{r.Classes.Length} classes at {r.TargetConfidence:P0}, {r.Generations} generations, {r.Queries} queries ({r.Seconds:F1}s)");
            io.Out.WriteLine($"  {"class",5} {"confidence",10} {"generation",10}");
            for (int a = 0; a < r.Classes.Length; a++)
                io.Out.WriteLine($"  {r.Classes[a],5} {r.BestConfidence[a],10:F4} {(r.ReachedAt[a] >= 0 ? r.ReachedAt[a].ToString(CultureInfo.InvariantCulture) : "-"),10}");
            var missed = r.Classes.Where((_, a) => r.ReachedAt[a] < 0).ToArray();
            if (missed.Length > 0)
                io.Out.WriteLine($"goal not reached for class{(missed.Length > 1 ? "es" : "")} {string.Join(",", missed)} within {r.Generations} generations (a result, not an error: see best confidence)");
            if (dir != null)
            {
                OutputFolder.Write(dir, pr.GetValue(overwrite), "perturb attack fooling", r.Save);
                io.Out.WriteLine($"wrote {dir}");
            }
            var jpath = pr.GetValue(json);
            if (jpath != null) { var j = r.ToJson(modelPath); j["device"] = be.Name; CliUtil.WriteJson(jpath, j); }
            // A missed goal is a result (said above and in the JSON), not a failure: exit 1 always comes with an error line.
            return 0;
        });
        return c;
    }

    internal static Option<bool> Overwrite() => new("--overwrite") { Description = "replace an --out folder that holds other files (a folder written by perturb is always replaced whole)" };

    static Command BuildOne(AttackInfo info, CliIO io)
    {
        string name = info.Name;
        var model = new Option<string>("--model") { Description = "model file: .safetensors or .onnx", Required = true };
        var data = CommonOptions.Data();
        var dataSeed = CommonOptions.DataSeed();
        var split = new Option<string>("--split") { Description = "train, val or test", DefaultValueFactory = _ => "test" };
        split.AcceptOnlyFromAmong("train", "val", "test");
        var n = Opt.Int("--n", "attack the first N images of the split (0: all)", 100, ValueRange.NonNegative);
        var eps = Opt.NumberList("--eps", info.NeedsEpsilon
            ? "budgets in pixel units, comma-separated, fractions allowed: 1/255,2/255,4/255,8/255 (one batched run)"
            : "none: this attack has no budget", ValueRange.NonNegative);
        var targeted = new Option<string?>("--targeted") { Description = "random, least-likely, or a class index (default: untargeted)" };
        var settings = new SettingOptions(info.Settings);
        var device = CommonOptions.Device();
        var batch = CommonOptions.BatchSize(256);
        var outp = new Option<string?>("--out") { Description = "folder for .npy arrays, PNGs and per-sample CSVs (written whole: into a temporary folder renamed when complete)" };
        var pngBits = new Option<int?>("--png-bits") { Description = "with --out: every adversarial image as an 8- or 16-bit PNG, re-read and classified again (success after rounding in --json)" };
        pngBits.AcceptOnlyFromAmong("8", "16");
        var dicom = new Option<bool>("--dicom") { Description = "with --out: every adversarial image as a DICOM file beside its source's metadata, at the source's bit depth, re-read and classified again" };
        var window = CommonOptions.Window();
        var frame = CommonOptions.Frame();
        var json = CommonOptions.Json();
        var overwrite = Overwrite();
        var c = new Command(name, $"the {name} attack");
        var opts = new List<Option> { model, data, dataSeed, split, n, eps, targeted };
        opts.AddRange(settings.Options);
        opts.AddRange(new Option[] { device, batch, outp, pngBits, dicom, window, frame, overwrite, json });
        foreach (var o in opts) c.Options.Add(o);
        c.SetAction(pr =>
        {
            var epsList = pr.ListValue(eps)?.Select(v => (float)v).ToArray();
            var values = settings.Values(pr);
            var attack = info.Create(values, pr.GetValue(batch));
            (attack as Attack)?.CheckSettings();
            if (attack.NeedsEpsilon && epsList == null)
                throw new PerturbException($"attack {name} needs --eps (e.g. --eps 1/255,2/255,4/255,8/255)", 2);
            if (!attack.NeedsEpsilon && epsList != null)
                throw new PerturbException($"attack {name} has no budget; leave out --eps", 2);
            var dir = pr.GetValue(outp);
            if (dir != null) OutputFolder.Check(dir, pr.GetValue(overwrite));
            var quant = new QuantizedOutputOptions { PngBits = pr.GetValue(pngBits), Dicom = pr.GetValue(dicom), MaxBatch = Math.Max(1, pr.GetValue(batch)) };
            if ((quant.PngBits != null || quant.Dicom) && dir == null) throw new PerturbException("--png-bits and --dicom write files: give --out DIR", 2);
            var d = DataSources.LoadSplit(pr.GetValue(data)!, pr.GetValue(split)!, pr.GetValue(dataSeed), CommonOptions.Dicom(pr.GetValue(window), pr.GetValue(frame)));
            int count = pr.GetValue(n);
            if (count > 0) d = d.Take(count);
            using var be = CliUtil.OpenDevice(pr.GetValue(device)!, io);
            var modelPath = pr.GetValue(model)!;
            using var m = CliUtil.LoadModel(modelPath, be, io);
            m.Eval();
            ulong seed = values.TryGetValue("seed", out var sv) ? (ulong)sv : 0;
            var goal = AttackGoal.Parse(pr.GetValue(targeted), d.Count, seed);
            io.Err.WriteLine($"attack {name} on {d.Count} {pr.GetValue(split)} images of {d.Name}" +
                (epsList != null ? $", eps {string.Join(", ", epsList.Select(v => v.ToString("G4", CultureInfo.InvariantCulture)))}" : "") + $", device {be.Name} ...");
            ProgressBar? bar = null;
            if (attack is IReportsProgress rp) { var b = bar = new ProgressBar(io.Err, rp.ProgressUnit); rp.Progress = (g, total) => b.Update(g, total); }
            var r = attack.Run(m, d.X, d.Labels, goal, epsList);
            bar?.Done("done");
            io.Out.WriteLine($"{name}: clean accuracy {r.CleanAccuracy:P1} on {r.N} images, {r.ImagesPerSecond:F1} images/s ({r.Seconds:F1}s)");
            bool q = r.Results.Any(e => e.Queries != null);
            io.Out.WriteLine($"  {"eps",-9} {"robust acc",10} {"success",8} {"mean L2",8} {"median L2",9} {"max Linf",8} {"PSNR",6} {"SSIM",6}" + (q ? $" {"mean queries",12}" : ""));
            foreach (var e in r.Results)
                io.Out.WriteLine($"  {(e.Eps.HasValue ? e.Eps.Value.ToString("0.0####", CultureInfo.InvariantCulture) : "-"),-9} {e.RobustAccuracy,10:P1} {e.SuccessRate,8:P1} {e.MeanL2,8:F4} {e.MedianL2,9:F4} {e.MaxLinf,8:F4} {e.MeanPsnr,6:F1} {e.MeanSsim,6:F3}"
                    + (q ? $" {e.MeanQueries,12:F1}" : ""));
            foreach (var e in r.Results.Where(e => e.Stages != null))
                io.Out.WriteLine($"  eps {e.Eps?.ToString("0.0####", CultureInfo.InvariantCulture)}: " + string.Join(" -> ", e.Stages!.Select(st => $"{st.Stage} {st.RobustAccuracy:P1}")));
            var checks = new List<QuantizedCheck>();
            if (dir != null)
            {
                OutputFolder.Write(dir, pr.GetValue(overwrite), $"perturb attack {name}", tmp =>
                {
                    AttackOutput.Save(tmp, r, d.X, attack);
                    checks = QuantizedOutput.Save(tmp, r, d, m, name, quant);
                });
                foreach (var qc in checks)
                    io.Out.WriteLine($"  {qc.Kind,-6} eps {(qc.Eps.HasValue ? qc.Eps.Value.ToString("0.0####", CultureInfo.InvariantCulture) : "-")}: success {qc.SuccessRate:P1} after writing and re-reading {qc.Files} files (max error {qc.MaxErrorLevels:F2} grey levels)");
                io.Out.WriteLine($"wrote {dir}");
            }
            var jpath = pr.GetValue(json);
            if (jpath != null)
            {
                var j = AttackOutput.Summary(r, attack, modelPath);
                j["data"] = pr.GetValue(data); j["split"] = pr.GetValue(split); j["device"] = be.Name;
                QuantizedOutput.AddTo(j, r.Results, checks);
                CliUtil.WriteJson(jpath, j);
            }
            return 0;
        });
        return c;
    }
}
