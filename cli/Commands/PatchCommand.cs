using System.CommandLine;
using System.Text.Json.Nodes;
using Perturb.Engine;
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
        var target = Opt.Int("--target", "the class the patch pushes images to", 0, ValueRange.NonNegative);
        target.Required = true;
        var size = Opt.Number("--patch-size", "fraction of the image area the patch covers", 0.2, new ValueRange(0, 1, MinOpen: true));
        var shape = new Option<string>("--shape") { Description = "square or round", DefaultValueFactory = _ => "square" };
        shape.AcceptOnlyFromAmong("square", "round");
        var steps = Opt.Int("--steps", "optimisation steps (one batch of training images each)", 500, ValueRange.AtLeast(1));
        var lr = Opt.Float("--lr", "Adam learning rate in pixel units", 0.05f, ValueRange.Positive);
        var scaleMin = Opt.Number("--scale-min", "smallest patch scale during training", 0.1, new ValueRange(0, 1, MinOpen: true));
        var scaleMax = Opt.Number("--scale-max", "largest patch scale during training", 1.0, new ValueRange(0, 1, MinOpen: true));
        var rot = Opt.Number("--rotation", "largest rotation in degrees (both ways)", 22.5, new ValueRange(0, 180));
        var printable = Opt.NumberList("--printable", "keep the patch printable: every value in MIN,MAX (e.g. 0.1,0.9), clipped at each step (default: the full [0,1])", ValueRange.Fraction, distinct: false);
        var trainN = Opt.Int("--train-n", "learn on the first N training images (0: all)", 0, ValueRange.NonNegative);
        var testN = Opt.Int("--n", "evaluate on the first N test images (0: all)", 0, ValueRange.NonNegative);
        var batch = CommonOptions.BatchSize(32);
        var seed = CommonOptions.Seed();
        var device = CommonOptions.Device();
        var outp = new Option<string?>("--out") { Description = "folder for patch.png, control.png and patched examples" };
        var json = CommonOptions.Json();
        var cmd = new Command("patch", "adversarial patch (Brown et al. 2017): a universal targeted patch learned over the training split, evaluated on the test split against a natural control patch");
        var overwrite = AttackCommand.Overwrite();
        foreach (var o in new Option[] { model, data, dataSeed, target, size, shape, steps, lr, scaleMin, scaleMax, rot, printable, trainN, testN, batch, seed, device, outp, overwrite, json }) cmd.Options.Add(o);
        cmd.SetAction(pr =>
        {
            if (pr.GetValue(outp) is { } early) OutputFolder.Check(early, pr.GetValue(overwrite));
            var splits = DataSources.Load(pr.GetValue(data)!, pr.GetValue(dataSeed));
            var tr = pr.GetValue(trainN) > 0 ? splits.Train.Take(pr.GetValue(trainN)) : splits.Train;
            var te = pr.GetValue(testN) > 0 ? splits.Test.Take(pr.GetValue(testN)) : splits.Test;
            using var be = CliUtil.OpenDevice(pr.GetValue(device)!, io);
            var modelPath = pr.GetValue(model)!;
            using var m = CliUtil.LoadModel(modelPath, be, io);
            var o = new PatchOptions
            {
                Target = pr.GetValue(target), SizeFraction = pr.GetValue(size), Shape = pr.GetValue(shape) == "round" ? PatchShape.Round : PatchShape.Square,
                Steps = pr.GetValue(steps), BatchSize = pr.GetValue(batch), LearningRate = pr.GetValue(lr), ScaleMin = pr.GetValue(scaleMin), ScaleMax = pr.GetValue(scaleMax),
                MaxRotationDegrees = pr.GetValue(rot), Seed = pr.GetValue(seed),
            };
            if (pr.ListValue(printable) is { } pl)
            {
                if (pl.Length != 2 || !(pl[0] < pl[1])) throw new PerturbException($"--printable: expected MIN,MAX with MIN < MAX such as 0.1,0.9, got {string.Join(",", pl)}", 2);
                o = o with { PrintMin = (float)pl[0], PrintMax = (float)pl[1] };
            }
            if (!(o.LearningRate > 0)) throw new PerturbException($"--lr must be positive, got {o.LearningRate}", 2);
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
