using System.CommandLine;
using System.Text.Json.Nodes;
using Perturb.Engine;
using Perturb.Engine.Attacks;
using Perturb.Engine.Attacks.Patch;
using Perturb.Engine.Data;
using Perturb.Engine.IO;
using Perturb.Engine.Training;

namespace Perturb.Cli;

/// <summary><c>perturb attack patch</c>: learn a universal adversarial patch for a target class and evaluate it against a natural control.</summary>
public static class PatchCommand
{
    public static Command Build(CliIO io)
    {
        var model = new Option<string>("--model") { Description = "model file: .safetensors or .onnx", Required = true };
        var data = CommonOptions.Data();
        var dataSeed = CommonOptions.DataSeed();
        var settings = new SettingOptions(Setting.Of(typeof(PatchOptions)));
        settings["target"].Required = true;
        var trainN = Opt.Int("--train-n", "learn on the first N training images (0: all)", 0, ValueRange.NonNegative);
        var testN = Opt.Int("--n", "evaluate on the first N test images (0: all)", 0, ValueRange.NonNegative);
        var device = CommonOptions.Device();
        var outp = new Option<string?>("--out") { Description = "folder for patch.png, control.png and patched examples" };
        var json = CommonOptions.Json();
        var cmd = new Command("patch", "adversarial patch (Brown et al. 2017): a universal targeted patch learned over the training split, evaluated on the test split against a natural control patch");
        var overwrite = AttackCommand.Overwrite();
        foreach (var o in new Option[] { model, data, dataSeed }.Concat(settings.Options).Concat(new Option[] { trainN, testN, device, outp, overwrite, json })) cmd.Options.Add(o);
        cmd.SetAction(pr =>
        {
            var o = Setting.Create<PatchOptions>(settings.Values(pr), "patch");
            o.Check();
            if (pr.GetValue(outp) is { } early) OutputFolder.Check(early, pr.GetValue(overwrite));
            var splits = DataSources.Load(pr.GetValue(data)!, pr.GetValue(dataSeed));
            var tr = pr.GetValue(trainN) > 0 ? splits.Train.Take(pr.GetValue(trainN)) : splits.Train;
            var te = pr.GetValue(testN) > 0 ? splits.Test.Take(pr.GetValue(testN)) : splits.Test;
            using var be = CliUtil.OpenDevice(pr.GetValue(device)!, io);
            var modelPath = pr.GetValue(model)!;
            using var m = CliUtil.LoadModel(modelPath, be, io);
            io.Err.WriteLine($"patch for class {o.Target} covering {o.SizeFraction:P0} of the image, learned on {tr.Count} training images, evaluated on {te.Count} test images, device {be.Name}");
            ProgressBar? bar = null;
            var r = AdversarialPatch.Run(m, tr, te, o, (t, total, loss) =>
            {
                bar ??= new ProgressBar(io.Err, "patch");
                bar.Update(t, total, $"loss {loss:F3}");
                if (t == total) bar.Done($"loss {loss:F3}");
            });
            io.Out.WriteLine($"patch {r.Side}x{r.Side} ({o.Shape.ToString().ToLowerInvariant()}), target {o.Target}: targeted success {r.Learned.TargetedSuccess:P2}, accuracy {r.Learned.Accuracy:P2}, AUC {r.Learned.Auc:F3}");
            io.Out.WriteLine($"natural control: targeted success {r.Control.TargetedSuccess:P2}, accuracy {r.Control.Accuracy:P2}, AUC {r.Control.Auc:F3}; no patch: accuracy {r.Clean.Accuracy:P2}");
            var od = pr.GetValue(outp);
            if (od != null)
            {
                OutputFolder.Write(od, pr.GetValue(overwrite), "perturb attack patch", dir =>
                {
                    int c = te.Channels;
                    if (c == 1 || c == 3)
                    {
                        ImageWriter.SavePng(Path.Combine(dir, "patch.png"), r.Patch, c, r.Side, r.Side);
                        ImageWriter.SavePng(Path.Combine(dir, "control.png"), r.ControlPatch, c, r.Side, r.Side);
                        var ren = new PatchRenderer(c, r.Side, o.Shape);
                        var ex = AdversarialPatch.Patched(te.Take(8), ren, r.Patch, o);
                        for (int i = 0; i < ex.Count; i++) ImageWriter.SavePng(Path.Combine(dir, $"example_{i}.png"), ex.Sample(i), c, te.Height, te.Width);
                    }
                });
                io.Out.WriteLine($"saved the patch and examples in {od}");
            }
            var jp = pr.GetValue(json);
            if (jp != null)
            {
                JsonObject E(PatchEval e) => new()
                {
                    ["targeted_success"] = N(e.TargetedSuccess), ["accuracy"] = e.Accuracy, ["auc"] = N(e.Auc), ["n"] = e.N, ["n_not_target"] = e.NonTarget,
                };
                CliUtil.WriteJson(jp, new JsonObject
                {
                    ["attack"] = "patch", ["model"] = modelPath, ["data"] = splits.Name, ["device"] = be.Name, ["seed"] = o.Seed, ["target"] = o.Target,
                    ["patch_size"] = o.SizeFraction, ["patch_side"] = r.Side, ["shape"] = o.Shape.ToString().ToLowerInvariant(), ["steps"] = o.Steps,
                    ["scale_min"] = o.ScaleMin, ["scale_max"] = o.ScaleMax, ["rotation"] = o.MaxRotationDegrees, ["n_train"] = tr.Count,
                    ["patch"] = E(r.Learned), ["control"] = E(r.Control), ["clean"] = E(r.Clean), ["seconds"] = r.Seconds,
                });
            }
            return 0;
        });
        return cmd;
    }

    static double? N(double v) => double.IsFinite(v) ? v : null;
}
