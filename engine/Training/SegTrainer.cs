using System.Diagnostics;
using System.Text.Json.Nodes;
using Perturb.Engine.Data;
using Perturb.Engine.Nn;

namespace Perturb.Engine.Training;

/// <summary>
/// Training a segmentation model (output [K, H, W]) on a data set with masks: the same seeded shuffles, optimisers,
/// schedule and best checkpoint as <see cref="Trainer"/>, with a <see cref="PixelLoss"/> (ce, dice or ce+dice) in
/// place of the classification loss. EpochStats' TrainAccuracy is the training pixel accuracy and ValAccuracy the
/// validation foreground Dice (the figure --keep-best keeps the best of).
/// </summary>
public static class SegTrainer
{
    public static TrainResult Fit(Model model, Dataset train, Dataset? val, TrainOptions o, SegLossKind loss = SegLossKind.CeDice,
        Action<int, int, int>? progress = null, Action<EpochStats>? epochDone = null)
    {
        Trainer.CheckOptions(o);
        CheckData(model, train);
        var be = model.Backend;
        int k = model.OutputShape[0], p = train.PixelsPerSample;
        return Trainer.RunEpochs(model, train, o, (idx, opt) =>
        {
            int n = idx.Length;
            var masks = train.GatherMasks(idx);
            using var x = be.FromArray(train.Gather(idx), n, train.Channels, train.Height, train.Width);
            using var pl = new PixelLoss(be, n, k, train.Height, train.Width, masks, Enumerable.Repeat(1f / n, n).ToArray(), train.IgnoreLabel);
            var logits = model.Forward(x);
            pl.Compute(logits, loss);
            var pred = SegMetrics.Argmax(logits.ToArray(), n, k, p);
            long correct = 0, counted = 0;
            for (int j = 0; j < pred.Length; j++)
                if (masks[j] != train.IgnoreLabel) { counted++; if (pred[j] == masks[j]) correct++; }
            model.Backward(pl.Grad, BackwardMode.InputAndWeights, needInputGrad: false);
            opt.Step();
            return new Trainer.BatchOutcome(pl.Loss.ToArray().Sum(v => (double)v), correct, counted);
        },
        (correct, counted) => counted == 0 ? double.NaN : (double)correct / counted,
        () => val != null ? SegEvaluator.Evaluate(model, val, Math.Max(o.BatchSize, 64)).ForegroundDice : null,
        progress, epochDone);
    }

    internal static void CheckData(Model model, Dataset d)
    {
        if (!d.HasMasks) throw new PerturbException($"data set '{d.Name}' has no masks: segmentation needs a class per pixel (e.g. --data histology-seg)", 2);
        if (!Presets.IsSegmentation(model))
            throw new PerturbException($"the model outputs {Tensor.ShapeString(model.OutputShape)} per image; segmentation needs a model with [classes, H, W] outputs (e.g. --arch unet)", 2);
        var want = model.InputShape;
        if (want.Length != 3 || want[0] != d.Channels || want[1] != d.Height || want[2] != d.Width)
        {
            var first = model.Nodes[0].Layer;
            throw new PerturbException($"data set '{d.Name}' holds {d.Channels}x{d.Height}x{d.Width} images; layer '{first.Name}' ({first.Type}) expects {Tensor.ShapeString(want)}");
        }
        var o = model.OutputShape;
        if (o[1] != d.Height || o[2] != d.Width)
            throw new PerturbException($"the model's masks are {o[1]}x{o[2]}, the data set's {d.Height}x{d.Width}");
        if (o[0] < d.NumMaskClasses)
            throw new PerturbException($"data set '{d.Name}' has {d.NumMaskClasses} mask classes; the model outputs {o[0]}");
    }
}

/// <summary>
/// Segmentation evaluation. Per-class Dice and IoU are over the whole split (intersections and sizes summed over every
/// image); <see cref="ForegroundDice"/> merges every non-background class ("any nucleus"), and
/// <see cref="MeanImageDice"/> is its mean over the images. Nucleus counts are 8-connected components of the predicted
/// foreground, against the true count: the instances of the instance map when the set has one, else the components of
/// the true mask.
/// </summary>
public sealed record SegEvalResult(int N, double PixelAccuracy, string[] ClassNames, double[] Dice, double[] Iou, double ForegroundDice,
    double ForegroundIou, double MeanImageDice, double MeanTrueCount, double MeanPredictedCount, double MeanAbsCountError, int[] Predictions,
    double MeanTrueComponents)
{
    static JsonNode? J(double v) => double.IsFinite(v) ? v : null;

    public JsonObject ToJson() => new()
    {
        ["task"] = "segmentation", ["n"] = N, ["pixel_accuracy"] = J(PixelAccuracy),
        ["classes"] = new JsonArray(ClassNames.Select(c => (JsonNode)c).ToArray()),
        ["dice"] = new JsonArray(Dice.Select(J).ToArray()),
        ["iou"] = new JsonArray(Iou.Select(J).ToArray()),
        ["foreground_dice"] = ForegroundDice, ["foreground_iou"] = ForegroundIou, ["mean_image_dice"] = MeanImageDice,
        ["mean_true_count"] = MeanTrueCount, ["mean_predicted_count"] = MeanPredictedCount, ["mean_abs_count_error"] = MeanAbsCountError,
        ["mean_true_components"] = MeanTrueComponents,
    };

    public string Summary() =>
        $"pixel accuracy {PixelAccuracy:P2}, nucleus Dice {ForegroundDice:F3} (IoU {ForegroundIou:F3}, mean per image {MeanImageDice:F3}); " +
        string.Join(", ", ClassNames.Select((c, i) => $"{c}: Dice {Dice[i]:F3} IoU {Iou[i]:F3}")) +
        $"; nuclei per image: {MeanPredictedCount:F1} found, {MeanTrueCount:F1} true (mean |error| {MeanAbsCountError:F1}; the true mask has {MeanTrueComponents:F1} connected components, touching nuclei merge) on {N} images";
}

public static class SegEvaluator
{
    public static SegEvalResult Evaluate(Model model, Dataset d, int batchSize = 64)
    {
        SegTrainer.CheckData(model, d);
        int p = d.PixelsPerSample, k = model.OutputShape[0], kc = Math.Max(k, d.NumMaskClasses);
        var pred = SegMetrics.Predict(model, d.X, d.Count, batchSize);
        var inter = new long[kc]; var ps = new long[kc]; var ts = new long[kc];
        long ok = 0, tot = 0;
        double imgDice = 0, trueCount = 0, predCount = 0, absErr = 0, trueComp = 0;
        int fi = 0, fa = 0, fb = 0, fu = 0;
        for (int i = 0; i < d.Count; i++)
        {
            var pm = pred.AsSpan(i * p, p); var tm = d.Mask(i);
            for (int j = 0; j < p; j++)
            {
                int t = tm[j]; if (t == d.IgnoreLabel) continue;
                int q = pm[j];
                tot++; ps[q]++; ts[t]++;
                if (q == t) { ok++; inter[t]++; }
                bool pf = q > 0, tf = t > 0;
                if (pf) fa++;
                if (tf) fb++;
                if (pf && tf) fi++;
                if (pf || tf) fu++;
            }
            imgDice += SegMetrics.ForegroundDice(pm, tm, d.IgnoreLabel);
            int tcc = SegMetrics.CountComponents(tm, d.Height, d.Width);
            int tc = d.Instances != null ? SegMetrics.CountInstances(d.Instances.AsSpan(i * p, p)) : tcc;
            trueComp += tcc;
            int pc = SegMetrics.CountComponents(pm, d.Height, d.Width);
            trueCount += tc; predCount += pc; absErr += Math.Abs(pc - tc);
        }
        var names = Enumerable.Range(0, kc).Select(c => c < d.NumMaskClasses ? d.MaskClassNames![c] : $"class {c}").ToArray();
        var dice = Enumerable.Range(0, kc).Select(c => ps[c] + ts[c] == 0 ? double.NaN : 2.0 * inter[c] / (ps[c] + ts[c])).ToArray();
        var iou = Enumerable.Range(0, kc).Select(c => ps[c] + ts[c] - inter[c] == 0 ? double.NaN : (double)inter[c] / (ps[c] + ts[c] - inter[c])).ToArray();
        int n = Math.Max(1, d.Count);
        return new SegEvalResult(d.Count, tot == 0 ? double.NaN : (double)ok / tot, names, dice, iou,
            fa + fb == 0 ? 1 : 2.0 * fi / (fa + fb), fu == 0 ? 1 : (double)fi / fu, imgDice / n, trueCount / n, predCount / n, absErr / n, pred, trueComp / n);
    }
}
