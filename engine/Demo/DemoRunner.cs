using System.Diagnostics;
using System.Text.Json.Nodes;
using Perturb.Engine.Attacks;
using Perturb.Engine.Attacks.Gradient;
using Perturb.Engine.Attacks.Search;
using Perturb.Engine.Attacks.Patch;
using Perturb.Engine.Attacks.Segmentation;
using Perturb.Engine.Data;
using Perturb.Engine.IO;
using Perturb.Engine.Nn;
using Perturb.Engine.Poison;
using Perturb.Engine.Report;
using Perturb.Engine.Training;

namespace Perturb.Engine.Demo;

/// <summary>The demo's sizes. <see cref="Full"/> is the default; <see cref="Quick"/> is the CI setting.</summary>
public sealed record DemoSettings
{
    public int TrainCount { get; init; } = 2000;
    public int TestCount { get; init; } = 500;
    public int Epochs { get; init; } = 4;
    public int BatchSize { get; init; } = 64;
    /// <summary>Test images attacked by each attack.</summary>
    public int AttackCount { get; init; } = 100;
    /// <summary>Budgets of FGSM and PGD, in 1/255 units.</summary>
    public int[] Eps255 { get; init; } = { 1, 2, 4, 8, 16 };
    public int PgdSteps { get; init; } = 10;
    public int OnePixelPixels { get; init; } = 5;
    /// <summary>Test images the one-pixel attack runs on (it is the slowest step).</summary>
    public int OnePixelCount { get; init; } = 50;
    public int OnePixelPopulation { get; init; } = 50;
    public int OnePixelIterations { get; init; } = 20;
    public int WhiteBalancePopulation { get; init; } = 20;
    public int WhiteBalanceIterations { get; init; } = 20;
    public int PatchSteps { get; init; } = 200;
    public double PatchSize { get; init; } = 0.2;
    /// <summary>How alike the two classes look (SyntheticHistology overlap); 0.9 gives a model that attacks can move.</summary>
    public double Overlap { get; init; } = 0.9;
    public double PoisonRate { get; init; } = 0.05;
    /// <summary>Example rows in each grid of the report.</summary>
    public int Examples { get; init; } = 6;
    /// <summary>Segmentation step: histology-seg tiles (training, and test tiles attacked), tile side, the U-Net preset and
    /// its epochs, untargeted seg-pgd steps, and erase steps. Erase needs the full unet and 100 steps (README): on 24 tiles
    /// at 128/255 unet-small keeps nuclei on half of them after 100 steps (45.8% erased, 200 steps 54%), and 20 sign
    /// steps of 2.5 eps / 20 fragment the prediction instead of erasing it (17.2 nuclei -> 31.1 with unet, 30.3 with
    /// unet-small; 50 steps 54%; 100 steps 95.8%, 17.2 -> 0.0).</summary>
    public int SegTrainCount { get; init; } = 600;
    public int SegAttackCount { get; init; } = 24;
    public int SegSize { get; init; } = 32;
    public string SegArch { get; init; } = "unet";
    public int SegEpochs { get; init; } = 3;
    public int SegSteps { get; init; } = 20;
    public int EraseSteps { get; init; } = 100;
    /// <summary>Budgets (1/255 units) of untargeted seg-pgd and of the erase attack (erasing nuclei needs larger ones).</summary>
    public int[] SegEps255 { get; init; } = { 8, 32, 64 };
    public int[] EraseEps255 { get; init; } = { 32, 64, 128 };

    public static DemoSettings Full => new();
    public static DemoSettings Quick => new()
    {
        TrainCount = 800, TestCount = 100, Epochs = 3, BatchSize = 32, AttackCount = 24, Eps255 = new[] { 2, 8, 16 }, PgdSteps = 5,
        OnePixelCount = 12, OnePixelPopulation = 30, OnePixelIterations = 5, WhiteBalanceIterations = 5, PatchSteps = 25, Examples = 3,
        SegTrainCount = 160, SegAttackCount = 6, SegSize = 16, SegEpochs = 3, SegSteps = 8, EraseSteps = 30, SegEps255 = new[] { 8, 64 }, EraseEps255 = new[] { 64, 128 },
    };
}

/// <summary>
/// <c>perturb demo</c>: the whole tool on the embedded synthetic histology set with no download and no GPU. Makes the
/// data, trains cnn-small, runs FGSM and PGD over a list of budgets, DeepFool, a one-pixel attack, a white-balance
/// attack, an adversarial patch,
/// a BadNets backdoor and a segmentation step (unet on histology-seg: seg-pgd untargeted and erase, with mask overlays), and writes the report (index.html, results.json, results.csv, example arrays, the model).
/// </summary>
public static class DemoRunner
{
    public const int Target = 0; // "benign": the patch and the backdoor make malignant tiles read as benign

    /// <summary>
    /// Runs the demo into <paramref name="outDir"/>, written whole through <see cref="OutputFolder"/>: the files go into
    /// a temporary folder beside it, renamed to <paramref name="outDir"/> only when the report is complete, so a demo
    /// that fails or is killed leaves no partial folder (and an earlier demo's folder untouched). A non-empty folder
    /// not written by perturb is refused unless <paramref name="overwrite"/>. <paramref name="log"/> gets one line per
    /// step (progress).
    /// </summary>
    public static List<ResultRow> Run(IBackend be, string outDir, DemoSettings s, ulong seed, Action<string> log, bool overwrite = false)
    {
        var total = Stopwatch.StartNew();
        List<ResultRow> rows = new();
        OutputFolder.Write(outDir, overwrite, "perturb demo", tmp => rows = RunInto(be, tmp, s, seed, log, total));
        log($"done in {total.Elapsed.TotalSeconds:F1}s: {Path.Combine(outDir, "index.html")}");
        return rows;
    }

    static List<ResultRow> RunInto(IBackend be, string outDir, DemoSettings s, ulong seed, Action<string> log, Stopwatch total)
    {
        Directory.CreateDirectory(Path.Combine(outDir, "examples"));
        const int steps = 11;
        int step = 0;
        void Step(string what) => log($"[{++step}/{steps}] {what}");

        Step($"making the synthetic histology set ({s.TrainCount} training and {s.TestCount} test tiles, 3x32x32, seed {seed})");
        var data = SyntheticHistology.Create(seed, s.TrainCount, s.TestCount, 32, s.Overlap);
        var classes = data.Train.ClassNames;
        string dataName = $"histology:train={s.TrainCount},test={s.TestCount},overlap={s.Overlap:0.##}";

        Step($"training cnn-small for {s.Epochs} epochs on {be.Name}");
        var opts = new TrainOptions { Epochs = s.Epochs, BatchSize = s.BatchSize, LearningRate = 1e-3f, Optimizer = "adam", Seed = seed };
        using var model = Presets.Create("cnn-small", be, 3, 32, 32, 2, seed);
        var tr = Trainer.Fit(model, data.Train, null, opts, null, es => log($"    epoch {es.Epoch}/{s.Epochs}: loss {es.TrainLoss:F4}, train accuracy {es.TrainAccuracy:P1} ({es.Seconds:F1}s)"));
        var ev = Evaluator.Evaluate(model, data.Test);
        log($"    test accuracy {ev.Accuracy:P2}, AUC {ev.Auc:F3} on {ev.N} tiles ({tr.Seconds:F1}s)");
        model.Info["test_accuracy"] = ev.Accuracy.ToString("R");
        ModelFile.Save(model, Path.Combine(outDir, "model.safetensors"));

        var rows = new List<ResultRow>();
        var atk = data.Test.Take(Math.Min(s.AttackCount, data.Test.Count));
        var eps = s.Eps255.Select(e => e / 255f).ToArray();
        const string modelName = "cnn-small";

        void AddAttack(IAttack a, IReadOnlyList<float>? budgets, string? norm, int exampleEps, int count = int.MaxValue)
        {
            var set = count < atk.Count ? atk.Take(count) : atk;
            var r = a.Run(model, set.X, set.Labels, AttackGoal.Parse(null, set.Count, seed), budgets);
            var rs = ResultRow.FromAttack(r, modelName, dataName, "test", be.Name, norm: norm).ToList();
            string file = $"examples/{a.Name}.npz";
            ExampleSet.FromAttack(r, exampleEps, set.X, s.Examples, a.Name, classes).Save(Path.Combine(outDir, file));
            rs[exampleEps] = rs[exampleEps] with { Examples = file };
            rows.AddRange(rs);
            foreach (var x in rs)
                log($"    {a.Name}{(x.Eps is { } e ? $" eps {e * 255:0.#}/255" : "")}: robust accuracy {x.RobustAccuracy:P1}, success {x.SuccessRate:P1}" +
                    (double.IsFinite(x.MedianL2) ? $", median L2 {x.MedianL2:F3}" : "") + (double.IsFinite(x.MeanQueries) ? $", mean queries {x.MeanQueries:F0}" : ""));
            log($"    ({r.Seconds:F1}s)");
        }
        int mid = Array.FindIndex(s.Eps255, e => e >= 8) is var k and >= 0 ? k : s.Eps255.Length - 1;

        Step($"FGSM (Linf) on {atk.Count} test tiles, eps {string.Join(", ", s.Eps255.Select(e => e + "/255"))}");
        AddAttack(new Fgsm { Seed = seed }, eps, null, mid);

        Step($"PGD-{s.PgdSteps} (Linf) on the same tiles and budgets");
        AddAttack(new Pgd { Steps = s.PgdSteps, Seed = seed }, eps, null, mid);

        Step("DeepFool (L2, minimal perturbation)");
        AddAttack(new DeepFool { Seed = seed }, null, null, 0);

        Step($"one-pixel attack on the first {Math.Min(s.OnePixelCount, atk.Count)} tiles: {s.OnePixelPixels} pixels, population {s.OnePixelPopulation}, {s.OnePixelIterations} generations");
        AddAttack(new OnePixel { Pixels = s.OnePixelPixels, Population = s.OnePixelPopulation, Iterations = s.OnePixelIterations, Seed = seed },
            null, "l0", 0, s.OnePixelCount);

        Step($"white-balance attack: colour temperature 2500-10000 K, tint and exposure, population {s.WhiteBalancePopulation}, {s.WhiteBalanceIterations} generations");
        AddAttack(new WhiteBalance { Population = s.WhiteBalancePopulation, Iterations = s.WhiteBalanceIterations, Seed = seed }, null, null, 0);

        Step($"adversarial patch ({s.PatchSize:P0} of the tile, target '{classes[Target]}', {s.PatchSteps} steps)");
        rows.AddRange(Patch(model, data, atk, s, seed, be.Name, dataName, classes, outDir, log));

        Step($"BadNets backdoor: {s.PoisonRate:P0} of the training set poisoned with a 4x4 checkerboard, target '{classes[Target]}'");
        rows.Add(Backdoor(be, data, atk, s, seed, opts, dataName, classes, outDir, log));

        Step($"segmentation: {s.SegArch} on {s.SegTrainCount} histology-seg tiles ({s.SegSize}x{s.SegSize}), seg-pgd untargeted and erase on {s.SegAttackCount} test tiles");
        rows.AddRange(Segmentation(be, s, seed, outDir, log));

        var meta = new JsonObject
        {
            ["title"] = "Perturb demo: attacks on a histology classifier",
            ["subtitle"] = "Synthetic H&E tiles (generated from a seed, no patient data), benign against malignant; cnn-small trained here.",
            ["classes"] = new JsonArray(classes.Select(c => (JsonNode)c).ToArray()),
            ["facts"] = new JsonObject
            {
                ["data"] = $"synthetic histology, {s.TrainCount} training and {s.TestCount} test tiles, 3x32x32, class overlap {s.Overlap:0.##}, seed {seed}",
                ["model"] = $"cnn-small, {model.ParameterCount:N0} parameters, {s.Epochs} epochs of Adam (lr 1e-3, batch {s.BatchSize})",
                ["clean test accuracy"] = $"{ev.Accuracy:P2} (AUC {ev.Auc:F3}) on {ev.N} tiles",
                ["attacked images"] = $"the first {atk.Count} test tiles",
                ["device"] = be.Name,
                ["seed"] = seed.ToString(),
                ["total time"] = $"{total.Elapsed.TotalSeconds:F1} s",
            },
            ["notes"] = new JsonArray(
                "Budgets are in pixel units of images in [0,1]: eps 8/255 lets every pixel move by 8 grey levels.",
                "Success rate counts the tiles the model classified correctly before the attack; robust accuracy counts all attacked tiles.",
                "The patch row: clean accuracy without a patch, robust accuracy with the learned patch, success = share of non-target tiles now called the target. The patch-control row pastes a natural patch of the same size.",
                "The white-balance row changes only the camera's colour settings (temperature, tint, exposure): its large L2 is a global colour shift, not noise.",
                "The badnets row: clean accuracy of the poisoned model, success = attack success rate on triggered test tiles of the other class; its params hold the clean twin's figures.",
                $"The segmentation rows attack a {s.SegArch} nucleus segmenter on synthetic histology-seg tiles: untargeted seg-pgd, {s.SegSteps} steps (success: Dice with the clean prediction below 0.2), and erase, {s.EraseSteps} steps (every nucleus becomes background; success: Dice with the empty target at least 0.9)."),
            ["seconds"] = total.Elapsed.TotalSeconds,
        };
        Step("writing the report");
        HtmlReport.WriteAll(outDir, rows, meta);
        return rows;
    }

    /// <summary>
    /// The terminal table of a demo's rows: classification rows under "clean acc / robust acc", then the segmentation
    /// rows under their own header, whose columns are nucleus Dice against the truth (clean and attacked prediction)
    /// and, for the goal, Dice with the clean prediction (untargeted) or with the target (erase).
    /// </summary>
    public static IEnumerable<string> SummaryTable(IReadOnlyList<ResultRow> rows)
    {
        static string Pct(double v) => double.IsFinite(v) ? $"{100 * v:0.0}%" : "-";
        static string F(double v) => double.IsFinite(v) ? v.ToString("0.000", System.Globalization.CultureInfo.InvariantCulture) : "-";
        static string Eps(ResultRow r) => r.Eps is { } e ? $"{e * 255:0.#}/255" : "-";
        var cls = rows.Where(r => !r.IsSegmentation).ToList();
        var seg = rows.Where(r => r.IsSegmentation).ToList();
        if (cls.Count > 0)
        {
            yield return $"{"attack",-14} {"eps",7} {"clean acc",9} {"robust acc",10} {"success",8}";
            foreach (var r in cls) yield return $"{r.Attack,-14} {Eps(r),7} {Pct(r.CleanAccuracy),9} {Pct(r.RobustAccuracy),10} {Pct(r.SuccessRate),8}";
        }
        if (seg.Count > 0)
        {
            yield return $"{"segmentation",-14} {"eps",7} {"goal",-10} {"clean Dice",10} {"attacked Dice",13} {"Dice w/ goal",12} {"nuclei",13} {"success",8}";
            foreach (var r in seg)
            {
                string goal = r.Params?["goal"]?.ToString() ?? "-";
                yield return $"{r.Attack,-14} {Eps(r),7} {goal,-10} {F(r.CleanAccuracy),10} {F(r.RobustAccuracy),13} {F(r.Param("dice_target")),12} " +
                    $"{$"{r.Param("count_before"):0.0} -> {r.Param("count_after"):0.0}",13} {Pct(r.SuccessRate),8}";
            }
        }
    }

    /// <summary>The segmentation step: trains the U-Net preset (unet) on histology-seg, runs seg-pgd untargeted and erase, writes the overlays under seg/.</summary>
    static List<ResultRow> Segmentation(IBackend be, DemoSettings s, ulong seed, string outDir, Action<string> log)
    {
        var data = SyntheticHistology.CreateSegmentation(seed, s.SegTrainCount, s.SegAttackCount, s.SegSize);
        string dataName = $"histology-seg:train={s.SegTrainCount},test={s.SegAttackCount},size={s.SegSize}";
        using var model = Presets.Create(s.SegArch, be, 3, s.SegSize, s.SegSize, 2, seed);
        var opts = new TrainOptions { Epochs = s.SegEpochs, BatchSize = 16, LearningRate = 5e-3f, Optimizer = "adam", Seed = seed };
        var tr = SegTrainer.Fit(model, data.Train, null, opts, epochDone: es => log($"    epoch {es.Epoch}/{s.SegEpochs}: loss {es.TrainLoss:F4} ({es.Seconds:F1}s)"));
        var ev = SegEvaluator.Evaluate(model, data.Test);
        log($"    nucleus Dice {ev.ForegroundDice:F3}, pixel accuracy {ev.PixelAccuracy:P1} on {ev.N} test tiles ({tr.Seconds:F1}s)");
        var rows = new List<ResultRow>();
        foreach (var (goal, eps255, dir) in new[] { (SegGoal.Untargeted, s.SegEps255, "seg/seg-pgd"), (SegGoal.Erase, s.EraseEps255, "seg/seg-pgd-erase") })
        {
            var a = new SegPgd { Steps = goal.Targeted ? s.EraseSteps : s.SegSteps, Seed = seed };
            var r = a.Run(model, data.Test.X, data.Test.Masks, goal, eps255.Select(e => e / 255f).ToArray());
            MaskOverlay.Save(Path.Combine(outDir, dir), r, data.Test.X);
            var rs = ResultRow.FromSegAttack(r, a, s.SegArch, dataName, "test", be.Name, overlayDir: dir).ToList();
            foreach (var x in rs)
                log($"    seg-pgd {goal} eps {x.Eps * 255:0.#}/255: success {x.SuccessRate:P1}, Dice with {(goal.Targeted ? "target" : "clean prediction")} {x.Param("dice_target"):F3}, " +
                    $"with truth {x.RobustAccuracy:F3}, nuclei {x.Param("count_before"):F1} -> {x.Param("count_after"):F1}");
            log($"    ({r.Seconds:F1}s)");
            rows.AddRange(rs);
        }
        return rows;
    }

    static List<ResultRow> Patch(Model model, DataSplits data, Dataset atk, DemoSettings s, ulong seed, string device, string dataName,
        string[] classes, string outDir, Action<string> log)
    {
        var o = new PatchOptions { Target = Target, SizeFraction = s.PatchSize, Steps = s.PatchSteps, Seed = seed };
        var r = AdversarialPatch.Run(model, data.Train, atk, o);
        log($"    patch {r.Side}x{r.Side}: targeted success {r.Learned.TargetedSuccess:P1} (natural control {r.Control.TargetedSuccess:P1}), accuracy {r.Clean.Accuracy:P1} -> {r.Learned.Accuracy:P1} ({r.Seconds:F1}s)");
        ImageWriter.SavePng(Path.Combine(outDir, "examples", "patch.png"), r.Patch, 3, r.Side, r.Side);
        // Examples: non-target tiles with the patch at its evaluation placement.
        var ren = new PatchRenderer(3, r.Side, o.Shape);
        var sub = NonTargetExamples(atk, s.Examples);
        var patched = AdversarialPatch.Patched(sub, ren, r.Patch, o);
        Examples(model, sub, patched, "patch", "patched", outDir, classes);
        var rows = ResultRow.FromPatch(r, o, "cnn-small", dataName, "test", device).ToList();
        rows[0].Params!["example_kind"] = "patched";
        rows[0] = rows[0] with { Examples = "examples/patch.npz" };
        return rows;
    }

    static ResultRow Backdoor(IBackend be, DataSplits data, Dataset atk, DemoSettings s, ulong seed, TrainOptions opts, string dataName,
        string[] classes, string outDir, Action<string> log)
    {
        var bs = new BadNetsSettings { Rate = s.PoisonRate, Target = Target, Epochs = opts.Epochs, BatchSize = opts.BatchSize, LearningRate = opts.LearningRate, Seed = seed };
        var trigger = bs.MakeTrigger(3);
        var sw = Stopwatch.StartNew();
        BadNetsReport? rep = null;
        Model? poisoned = null;
        try
        {
            rep = PoisonExperiments.BadNets(() => Presets.Create("cnn-small", be, 3, 32, 32, 2, seed), data, trigger, bs.Rate, bs.Target, bs.Training,
                m => log("    " + m), (m, _) => poisoned = m);
            var sub = NonTargetExamples(atk, s.Examples);
            var trig = (float[])sub.X.Clone();
            for (int i = 0; i < sub.Count; i++) trigger.Apply(trig.AsSpan(i * sub.SampleSize, sub.SampleSize), 3, 32, 32);
            Examples(poisoned!, sub, new Dataset(trig, sub.Labels, 3, 32, 32, sub.ClassNames), "badnets", "triggered", outDir, classes);
        }
        finally { poisoned?.Dispose(); }
        var row = ResultRow.FromBadNets(rep, bs, "cnn-small", dataName, "test", be.Name, sw.Elapsed.TotalSeconds) with { Examples = "examples/badnets.npz" };
        row.Params!["example_kind"] = "triggered";
        return row;
    }

    /// <summary>The first <paramref name="k"/> samples not of the target class: the images a patch or trigger should flip.</summary>
    static Dataset NonTargetExamples(Dataset d, int k)
    {
        var idx = Enumerable.Range(0, d.Count).Where(i => d.Labels[i] != Target).Take(k).ToArray();
        var x = idx.SelectMany(i => d.Sample(i).ToArray()).ToArray();
        return new Dataset(x, idx.Select(i => d.Labels[i]).ToArray(), d.Channels, d.Height, d.Width, d.ClassNames);
    }

    /// <summary>Classifies the clean and modified images and saves them as an example set.</summary>
    static void Examples(Model m, Dataset clean, Dataset modified, string name, string kind, string outDir, string[] classes)
    {
        var (pb, cb) = Classify(m, clean);
        var (pa, caf) = Classify(m, modified);
        new ExampleSet
        {
            Title = name, Kind = kind, SampleShape = new[] { clean.Channels, clean.Height, clean.Width }, ClassNames = classes,
            Originals = clean.X, Modified = modified.X, Labels = clean.Labels, PredBefore = pb, PredAfter = pa, ConfBefore = cb, ConfAfter = caf,
        }.Save(Path.Combine(outDir, "examples", name + ".npz"));
    }

    static (int[] Pred, float[] Conf) Classify(Model m, Dataset d)
    {
        var ev = Evaluator.Evaluate(m, d);
        return (ev.Predictions, ev.Probabilities.Select((p, i) => p[ev.Predictions[i]]).ToArray());
    }
}
