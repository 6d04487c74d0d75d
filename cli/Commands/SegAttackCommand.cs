using System.CommandLine;
using System.Globalization;
using Perturb.Engine;
using Perturb.Engine.Attacks;
using Perturb.Engine.Attacks.Segmentation;
using Perturb.Engine.Data;
using Perturb.Engine.IO;
using Perturb.Engine.Report;

namespace Perturb.Cli;

/// <summary><c>perturb attack seg-fgsm|seg-pgd|dag|asma</c>: attacks on segmentation models (output [classes, H, W]).</summary>
public static class SegAttackCommand
{
    public static IEnumerable<Command> Build(CliIO io) => AttackRegistry.Segmentation.Select(a => BuildOne(a, io));

    static Command BuildOne(AttackInfo info, CliIO io)
    {
        var type = info.Type;
        var fresh = (SegAttack)Activator.CreateInstance(type)!;
        string name = fresh.Name;
        var model = new Option<string>("--model") { Description = "segmentation model file (.safetensors), e.g. from train --data histology-seg", Required = true };
        var data = CommonOptions.Data();
        var dataSeed = CommonOptions.DataSeed();
        var split = new Option<string>("--split") { Description = "train, val or test", DefaultValueFactory = _ => "test" };
        split.AcceptOnlyFromAmong("train", "val", "test");
        var n = Opt.Int("--n", "attack the first N images of the split (0: all)", 100, ValueRange.NonNegative);
        var eps = Opt.NumberList("--eps", fresh.NeedsEpsilon
            ? "budgets in pixel units, comma-separated, fractions allowed: 2/255,4/255,8/255 (one batched run)"
            : "optional Linf budgets (none: unbounded, only clamped to [0,1])", ValueRange.NonNegative);
        var target = new Option<string?>("--target") { Description = SegGoal.Help };
        var settings = new SettingOptions(Setting.Of(type));
        var device = CommonOptions.Device();
        var batch = CommonOptions.BatchSize(64);
        var outp = new Option<string?>("--out") { Description = "folder for .npy arrays, per-image CSVs, overlay PNGs and dice_vs_eps.csv" };
        var json = CommonOptions.Json();
        var c = new Command(name, $"the {name} attack on a segmentation model");
        foreach (var o in new Option[] { model, data, dataSeed, split, n, eps, target }.Concat(settings.Options).Concat(new Option[] { device, batch, outp, json }))
            c.Options.Add(o);
        c.SetAction(pr =>
        {
            var attack = info.CreateSegmentation(settings.Values(pr), pr.GetValue(batch));
            attack.CheckSettings();
            var epsList = pr.ListValue(eps)?.Select(v => (float)v).ToArray();
            if (attack.NeedsEpsilon && epsList == null) throw new PerturbException($"attack {name} needs --eps (e.g. --eps 2/255,4/255,8/255)", 2);
            var goal = SegGoal.Parse(pr.GetValue(target));
            var d = DataSources.LoadSplit(pr.GetValue(data)!, pr.GetValue(split)!, pr.GetValue(dataSeed));
            int count = pr.GetValue(n);
            if (count > 0) d = d.Take(count);
            using var be = CliUtil.OpenDevice(pr.GetValue(device)!, io);
            var modelPath = pr.GetValue(model)!;
            using var m = ModelFile.Load(modelPath, be);
            io.Err.WriteLine($"attack {name} ({goal}) on {d.Count} {pr.GetValue(split)} images of {d.Name}" +
                (epsList != null ? $", eps {string.Join(", ", epsList.Select(v => v.ToString("G4", CultureInfo.InvariantCulture)))}" : "") + $", device {be.Name} ...");
            var r = attack.Run(m, d.X, d.Masks, goal, epsList);
            io.Out.WriteLine($"{name} ({r.Goal}): clean nucleus Dice {r.MeanCleanDiceTruth:F3}, {r.MeanCountBefore:F1} nuclei per image before" +
                (r.TargetCount != null ? $", {r.TargetCount.Average():F1} in the target" : "") + $" on {r.N} images ({r.Seconds:F1}s)");
            io.Out.WriteLine($"  {"eps",-9} {"success",8} {(goal.Targeted ? "Dice target" : "Dice clean"),11} {"Dice truth",10} {"pixel acc",9} {"nuclei",7} {"mean L2",8} {"max Linf",8}");
            foreach (var e in r.Results)
                io.Out.WriteLine($"  {(e.Eps.HasValue ? e.Eps.Value.ToString("0.0####", CultureInfo.InvariantCulture) : "-"),-9} {e.SuccessRate,8:P1} {e.MeanDiceTarget,11:F3} {e.MeanDiceTruth,10:F3} {e.MeanPixelAccuracy,9:P1} {e.MeanCountAfter,7:F1} {e.MeanL2,8:F4} {e.MaxLinf,8:F4}");
            if (pr.GetValue(outp) is { } dir) { MaskOverlay.Save(dir, r, d.X); io.Out.WriteLine($"wrote {dir}"); }
            if (pr.GetValue(json) is { } jpath)
            {
                var j = r.ToJson(attack);
                j["model"] = modelPath; j["data"] = pr.GetValue(data); j["split"] = pr.GetValue(split); j["device"] = be.Name;
                CliUtil.WriteJson(jpath, j);
            }
            return 0;
        });
        return c;
    }
}
