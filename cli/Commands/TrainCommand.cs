using System.CommandLine;
using System.Text.Json.Nodes;
using Perturb.Engine;
using Perturb.Engine.Data;
using Perturb.Engine.IO;
using Perturb.Engine.Nn;
using Perturb.Engine.Training;

namespace Perturb.Cli;

public static class TrainCommand
{
    public static Command Build(CliIO io)
    {
        var arch = new Option<string>("--arch") { Description = $"architecture preset: {string.Join(", ", Presets.Names)}", DefaultValueFactory = _ => "cnn-small" };
        var data = CommonOptions.Data();
        var dataSeed = CommonOptions.DataSeed();
        var epochs = Opt.Int("--epochs", "training epochs", 5, ValueRange.AtLeast(1));
        var batch = CommonOptions.BatchSize(64);
        var lr = Opt.Float("--lr", "learning rate", 1e-3f, ValueRange.Positive);
        var optim = new Option<string>("--optimizer") { Description = "sgd or adam", DefaultValueFactory = _ => "adam" };
        optim.AcceptOnlyFromAmong("sgd", "adam");
        var momentum = Opt.Float("--momentum", "SGD momentum", 0.9f, new ValueRange(0, 1, MaxOpen: true));
        var wd = Opt.Float("--weight-decay", "L2 weight decay (not on biases and norm parameters)", 0f, ValueRange.NonNegative);
        var milestones = Opt.IntList("--milestones", "epochs (comma-separated, 0-based) where the learning rate is multiplied by 0.1", ValueRange.NonNegative, Array.Empty<int>());
        var seed = CommonOptions.Seed();
        var device = CommonOptions.Device();
        var recipe = new Option<string?>("--recipe") { Description = "a training recipe: medmnist (Adam 1e-3, batch 128, lr x0.1 at 50% and 75% of the epochs, best-validation checkpoint); options given explicitly override it" };
        var keepBest = new Option<bool>("--keep-best") { Description = "keep the parameters of the epoch with the best validation accuracy" };
        var outp = new Option<string?>("--out") { Description = "where to save the trained model: .safetensors, or .onnx (ONNX opset 17)" };
        var json = CommonOptions.Json();
        var adversarial = new Option<string?>("--adversarial") { Description = "adversarial training: pgd (Madry et al.: each batch replaced by Linf PGD adversarials against the current model); also trains a standard model with the same seed and reports both" };
        adversarial.AcceptOnlyFromAmong("pgd");
        var advEps = Opt.Float("--eps", "adversarial training: Linf budget in pixel units, fractions allowed (4/255)", 8f / 255, ValueRange.Positive);
        var advSteps = Opt.Int("--steps", "adversarial training: PGD steps per batch (evaluation uses twice as many)", 7, ValueRange.AtLeast(1));
        var task = new Option<string?>("--task") { Description = "classification or segmentation (default: segmentation when the data set has masks, e.g. histology-seg)" };
        task.AcceptOnlyFromAmong("classification", "segmentation");
        var segLoss = new Option<string>("--loss") { Description = "segmentation loss: " + SegLossKinds.Help, DefaultValueFactory = _ => "ce+dice" };
        var cmd = new Command("train", "train a classifier (or a segmentation model) on a data set and save it as .safetensors");
        foreach (var o in new Option[] { task, segLoss }) cmd.Options.Add(o);
        foreach (var o in new Option[] { arch, data, dataSeed, epochs, batch, lr, optim, momentum, wd, milestones, recipe, keepBest, seed, device, outp, json, adversarial, advEps, advSteps }) cmd.Options.Add(o);
        cmd.SetAction(pr =>
        {
            var outPath = pr.GetValue(outp);
            if (outPath != null && !outPath.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) && !outPath.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase))
                throw new PerturbException($"--out {outPath}: model files end in .safetensors (or .onnx to export)", 2);
            int[] ms = pr.GetValue(milestones)!;
            var splits = DataSources.Load(pr.GetValue(data)!, pr.GetValue(dataSeed));
            using var be = CliUtil.OpenDevice(pr.GetValue(device)!, io);
            var tr = splits.Train;
            ulong s = pr.GetValue(seed);
            bool seg = pr.GetValue(task) is { } tk ? tk == "segmentation" : tr.HasMasks;
            if (seg)
            {
                if (pr.GetValue(adversarial) != null) throw new PerturbException("--adversarial trains classifiers only", 2);
                var so = new TrainOptions
                {
                    Epochs = pr.GetValue(epochs), Seed = s, BatchSize = pr.GetValue(batch), LearningRate = pr.GetValue(lr), Optimizer = pr.GetValue(optim)!,
                    WeightDecay = pr.GetValue(wd), Milestones = ms, KeepBest = pr.GetValue(keepBest), Momentum = pr.GetValue(momentum),
                };
                return SegTrain(io, pr.GetResult(arch) is { Implicit: false } ? pr.GetValue(arch)! : "unet", splits, be, so,
                    SegLossKinds.Parse(pr.GetValue(segLoss)!), outPath, pr.GetValue(json), pr.GetValue(dataSeed));
            }
            using var model = Presets.Create(pr.GetValue(arch)!, be, tr.Channels, tr.Height, tr.Width, tr.NumClasses, s);
            model.ClassNames = tr.ClassNames;
            model.Info["data"] = splits.Name;
            io.Err.WriteLine($"training {pr.GetValue(arch)} ({model.ParameterCount:N0} parameters) on {splits.Name}: {tr.Count} train, {splits.Test.Count} test, {tr.Channels}x{tr.Height}x{tr.Width}, {tr.NumClasses} classes, device {be.Name} ({be.DeviceName})");
            // Without a recipe every option holds (its default when not given); with one, only those given override it.
            var recipeName = pr.GetValue(recipe);
            T? G<T>(Option<T> o) where T : struct => recipeName == null || pr.GetResult(o) is { Implicit: false } ? pr.GetValue(o) : null;
            var opts = Recipes.Resolve(recipeName, new TrainOptions { Epochs = pr.GetValue(epochs), Seed = s }, new TrainOverrides
            {
                BatchSize = G(batch), LearningRate = G(lr), WeightDecay = G(wd), KeepBest = G(keepBest), Momentum = pr.GetValue(momentum),
                Optimizer = recipeName == null || pr.GetResult(optim) is { Implicit: false } ? pr.GetValue(optim) : null,
                Milestones = recipeName == null || pr.GetResult(milestones) is { Implicit: false } ? ms : null,
            });
            if (opts.KeepBest && splits.Val == null) throw new PerturbException($"--keep-best needs a validation split; data set '{splits.Name}' has none", 2);
            var advName = pr.GetValue(adversarial);
            var advOpts = new AdversarialOptions { Eps = pr.GetValue(advEps), Steps = pr.GetValue(advSteps) };
            if (advName != null) advOpts.Validate();
            if (advName != null && opts.KeepBest) throw new PerturbException("--adversarial does not keep a best-validation checkpoint; leave out --keep-best (or the recipe's)", 2);
            ProgressBar? bar = null;
            Action<int, int, int> progress = (ep, done, total) =>
                {
                    bar ??= new ProgressBar(io.Err, $"epoch {ep + 1}/{opts.Epochs}");
                    bar.Update(done, total);
                };
            Action<EpochStats> epochDone = es =>
                {
                    (bar ?? new ProgressBar(io.Err, $"epoch {es.Epoch}/{opts.Epochs}")).Done(
                        $"loss {es.TrainLoss:F4} train acc {es.TrainAccuracy:P1}" + (es.ValAccuracy.HasValue ? $" val acc {es.ValAccuracy:P1}" : "") + $" lr {es.LearningRate:G3}");
                    bar = null;
                };
            var result = advName != null
                ? AdversarialTraining.Fit(model, tr, splits.Val, opts, advOpts, progress, epochDone)
                : Trainer.Fit(model, tr, splits.Val, opts, progress, epochDone);
            var test = Evaluator.Evaluate(model, splits.Test);
            var last = result.Epochs[^1];
            io.Out.WriteLine($"train loss {last.TrainLoss:F4}, test accuracy {test.Accuracy:P2}, AUC {test.Auc:F3} on {test.N} images" +
                (opts.KeepBest ? $" (best validation epoch {result.BestEpoch})" : "") + $", {result.Seconds:F1}s on {be.Name}");
            AdversarialComparison? cmp = null;
            if (advName != null)
            {
                // The same architecture, data and seed, trained without adversarials: the baseline.
                cmp = AdversarialTraining.CompareWithStandard(model, () => Presets.Create(pr.GetValue(arch)!, be, tr.Channels, tr.Height, tr.Width, tr.NumClasses, s),
                    splits, opts, advOpts, io.Err.WriteLine);
                io.Out.WriteLine(cmp.Summary);
                model.Info["adversarial"] = $"pgd eps={advOpts.Eps:R} steps={advOpts.Steps}";
            }
            if (outPath != null)
            {
                model.Info["test_accuracy"] = test.Accuracy.ToString("R");
                ModelFile.Save(model, outPath);
                io.Out.WriteLine($"saved {outPath}");
            }
            var jpath = pr.GetValue(json);
            if (jpath != null)
            {
                var report = new TrainReport(result, test, opts, model.ParameterCount, tr.Count, cmp);
                CliUtil.WriteJson(jpath, report.ToJson(new JsonObject
                {
                    ["arch"] = pr.GetValue(arch), ["data"] = splits.Name, ["device"] = be.Name, ["device_name"] = be.DeviceName,
                    ["recipe"] = recipeName, ["model"] = outPath, ["data_seed"] = pr.GetValue(dataSeed),
                }));
            }
            return 0;
        });
        return cmd;
    }

    /// <summary>train --task segmentation: a U-Net on a data set with masks; prints and saves the evaluation on the test split.</summary>
    static int SegTrain(CliIO io, string arch, DataSplits splits, IBackend be, TrainOptions o, SegLossKind loss, string? outPath, string? json, ulong dataSeed)
    {
        var tr = splits.Train;
        if (!tr.HasMasks) throw new PerturbException($"--task segmentation: data set '{splits.Name}' has no masks (try --data histology-seg)", 2);
        if (o.KeepBest && splits.Val == null) throw new PerturbException($"--keep-best needs a validation split; data set '{splits.Name}' has none", 2);
        using var model = Presets.Create(arch, be, tr.Channels, tr.Height, tr.Width, tr.NumMaskClasses, o.Seed);
        if (!Presets.IsSegmentation(model)) throw new PerturbException($"--arch {arch} is a classifier; segmentation needs unet or unet-small", 2);
        model.ClassNames = tr.MaskClassNames;
        model.Info["data"] = splits.Name;
        model.Info["task"] = "segmentation";
        io.Err.WriteLine($"training {arch} ({model.ParameterCount:N0} parameters) on {splits.Name} for segmentation ({SegLossKinds.Name(loss)} loss): {tr.Count} train, {splits.Test.Count} test, {tr.Channels}x{tr.Height}x{tr.Width}, {tr.NumMaskClasses} mask classes, device {be.Name} ({be.DeviceName})");
        ProgressBar? bar = null;
        var result = SegTrainer.Fit(model, tr, splits.Val, o, loss,
            (ep, done, total) => { bar ??= new ProgressBar(io.Err, $"epoch {ep + 1}/{o.Epochs}"); bar.Update(done, total); },
            es =>
            {
                (bar ?? new ProgressBar(io.Err, $"epoch {es.Epoch}/{o.Epochs}")).Done(
                    $"loss {es.TrainLoss:F4} pixel acc {es.TrainAccuracy:P1}" + (es.ValAccuracy.HasValue ? $" val nucleus Dice {es.ValAccuracy:F3}" : "") + $" lr {es.LearningRate:G3}");
                bar = null;
            });
        var test = SegEvaluator.Evaluate(model, splits.Test);
        io.Out.WriteLine($"test: {test.Summary()}; {result.Seconds:F1}s on {be.Name}");
        if (outPath != null)
        {
            model.Info["test_foreground_dice"] = test.ForegroundDice.ToString("R");
            ModelFile.Save(model, outPath);
            io.Out.WriteLine($"saved {outPath}");
        }
        if (json != null)
        {
            var jo = test.ToJson();
            jo["arch"] = arch; jo["data"] = splits.Name; jo["device"] = be.Name; jo["loss"] = SegLossKinds.Name(loss);
            jo["epochs"] = o.Epochs; jo["batch_size"] = o.BatchSize; jo["lr"] = o.LearningRate; jo["optimizer"] = o.Optimizer;
            jo["seed"] = o.Seed; jo["data_seed"] = dataSeed; jo["parameters"] = model.ParameterCount; jo["seconds"] = result.Seconds; jo["model"] = outPath;
            jo["best_epoch"] = result.BestEpoch;
            jo["history"] = new JsonArray(result.Epochs.Select(e => (JsonNode)new JsonObject
            {
                ["epoch"] = e.Epoch, ["train_loss"] = e.TrainLoss, ["train_pixel_accuracy"] = e.TrainAccuracy, ["val_foreground_dice"] = e.ValAccuracy, ["seconds"] = e.Seconds,
            }).ToArray());
            CliUtil.WriteJson(json, jo);
        }
        return 0;
    }
}
