using System.Diagnostics;
using Perturb.Engine.Data;
using Perturb.Engine.Nn;

namespace Perturb.Engine.Training;

public sealed record TrainOptions
{
    public int Epochs { get; init; } = 10;
    public int BatchSize { get; init; } = 128;
    public float LearningRate { get; init; } = 1e-3f;
    /// <summary>"sgd" or "adam".</summary>
    public string Optimizer { get; init; } = "adam";
    public float Momentum { get; init; } = 0.9f;
    public float WeightDecay { get; init; } = 0f;
    /// <summary>Epoch indices (0-based) at which the rate is multiplied by <see cref="LrGamma"/>.</summary>
    public int[] Milestones { get; init; } = Array.Empty<int>();
    public float LrGamma { get; init; } = 0.1f;
    public ulong Seed { get; init; } = 0;
    /// <summary>Keep the parameters of the epoch with the best validation accuracy (needs a validation set).</summary>
    public bool KeepBest { get; init; } = false;
}

public sealed record EpochStats(int Epoch, double TrainLoss, double TrainAccuracy, double? ValAccuracy, float LearningRate, double Seconds);

public sealed record TrainResult(IReadOnlyList<EpochStats> Epochs, double Seconds, int BestEpoch);

/// <summary>
/// The keep-best checkpoint of both trainers (classification and segmentation): a host copy of the parameters of the
/// epoch with the best validation figure, uploaded back when training ends. Does nothing unless enabled.
/// </summary>
internal sealed class BestCheckpoint(Model model, bool enabled)
{
    Dictionary<Parameter, float[]>? _best;
    double _score = double.NegativeInfinity;

    /// <summary>The epoch (1-based) whose parameters are kept; -1 before any.</summary>
    public int Epoch { get; private set; } = -1;

    /// <summary>Keeps the parameters as they are after <paramref name="epoch"/> if <paramref name="score"/> beats every earlier one.</summary>
    public void Offer(int epoch, double? score)
    {
        if (!enabled || score is not { } s || !(s > _score)) return;
        _score = s; Epoch = epoch;
        _best = model.NamedParameters().ToDictionary(p => p.P, p => p.P.Value.ToArray());
    }

    /// <summary>Puts the kept parameters back into the model (nothing if none were kept).</summary>
    public void Restore()
    {
        if (_best == null) return;
        foreach (var (p, data) in _best) model.Backend.Upload(p.Value, data);
        model.MarkParametersChanged();
    }
}

/// <summary>Mini-batch training with shuffled batches from a seed, train/eval modes, and an optional best-checkpoint.</summary>
public static class Trainer
{
    /// <summary>
    /// Trains <paramref name="model"/> in place. <paramref name="progress"/> receives (epoch, batchesDone, batchesTotal)
    /// after each batch; <paramref name="epochDone"/> gets each epoch's figures.
    /// </summary>
    /// <param name="batchInput">
    /// Optional: makes the tensor the model trains on from each batch (x, labels, batch number), for example
    /// adversarial examples; the trainer disposes it after the step. The model is in train mode again afterwards.
    /// </param>
    public static TrainResult Fit(Model model, Dataset train, Dataset? val, TrainOptions o,
        Action<int, int, int>? progress = null, Action<EpochStats>? epochDone = null, Func<Tensor, Tensor, ulong, Tensor>? batchInput = null)
    {
        CheckOptions(o);
        CheckData(model, train);
        var be = model.Backend;
        ulong batchNo = 0;
        return RunEpochs(model, train, o, (idx, opt) =>
        {
            int n = idx.Length;
            using var x = be.FromArray(train.Gather(idx), n, train.Channels, train.Height, train.Width);
            var lab = new float[n];
            for (int i = 0; i < n; i++) lab[i] = train.Labels[idx[i]];
            using var y = be.FromArray(lab, n);
            using var made = batchInput?.Invoke(x, y, batchNo++);
            model.Train();
            var logits = model.Forward(made ?? x);
            using var loss = Losses.CrossEntropy(be, logits, y, 1f / n);
            var pred = Losses.Predict(be, logits);
            long correct = 0;
            for (int i = 0; i < n; i++) if (pred[i] == (int)lab[i]) correct++;
            model.Backward(loss.Grad!, BackwardMode.InputAndWeights, needInputGrad: false);
            opt.Step();
            return new BatchOutcome(loss.Mean() * n, correct, n);
        },
        (correct, _) => (double)correct / train.Count,
        () => val != null ? Evaluator.Accuracy(model, val, Math.Max(o.BatchSize, 256)) : null,
        progress, epochDone);
    }

    /// <summary>One batch's figures for <see cref="RunEpochs"/>: its summed loss (checked for divergence), and its
    /// correct and counted predictions.</summary>
    internal readonly record struct BatchOutcome(double LossSum, long Correct, long Counted);

    /// <summary>Trains on the samples <paramref name="idx"/> of one batch (forward, loss, backward,
    /// <c>opt.Step()</c>).</summary>
    internal delegate BatchOutcome BatchStep(ReadOnlySpan<int> idx, Optimizer opt);

    /// <summary>The epoch loop every trainer (classification, segmentation) runs: the optimiser and learning-rate
    /// schedule from the options, one seeded shuffle per epoch, batches of at least two samples, the stop on a
    /// non-finite loss, the epoch figures, and the keep-best checkpoint; <paramref name="step"/> is the batch's work,
    /// <paramref name="accuracy"/> turns the epoch's (correct, counted) into its accuracy, <paramref name="validate"/>
    /// gives the figure keep-best follows.</summary>
    internal static TrainResult RunEpochs(Model model, Dataset train, TrainOptions o, BatchStep step,
        Func<long, long, double> accuracy, Func<double?> validate, Action<int, int, int>? progress, Action<EpochStats>? epochDone)
    {
        using var opt = Optimizer.Create(o.Optimizer, model, o.LearningRate, o.WeightDecay, o.Momentum);
        var sched = new MultiStepLr(o.LearningRate, o.Milestones, o.LrGamma);
        var rng = new SplitMix64(o.Seed ^ 0xA5A5_1234_5678_9ABCUL);
        model.SetDropoutStream(o.Seed ^ 0xD20F_0000UL);
        var stats = new List<EpochStats>();
        var total = Stopwatch.StartNew();
        int batches = (train.Count + o.BatchSize - 1) / o.BatchSize;
        var best = new BestCheckpoint(model, o.KeepBest);
        for (int ep = 0; ep < o.Epochs; ep++)
        {
            var sw = Stopwatch.StartNew();
            opt.LearningRate = sched.RateAt(ep);
            model.Train();
            var perm = rng.Permutation(train.Count);
            double lossSum = 0; long correct = 0, counted = 0;
            for (int b = 0; b < batches; b++)
            {
                int start = b * o.BatchSize, n = Math.Min(o.BatchSize, train.Count - start);
                if (n < 2 && batches > 1) { progress?.Invoke(ep, b + 1, batches); continue; } // a batch of one breaks BatchNorm statistics
                var r = step(perm.AsSpan(start, n), opt);
                CheckFiniteLoss(r.LossSum, ep, b, batches);
                lossSum += r.LossSum; correct += r.Correct; counted += r.Counted;
                progress?.Invoke(ep, b + 1, batches);
            }
            model.ReleaseActivations();
            double? valFigure = validate();
            var es = new EpochStats(ep + 1, lossSum / train.Count, accuracy(correct, counted), valFigure, opt.LearningRate, sw.Elapsed.TotalSeconds);
            stats.Add(es);
            epochDone?.Invoke(es);
            best.Offer(ep + 1, valFigure);
        }
        best.Restore();
        model.Eval();
        return new TrainResult(stats, total.Elapsed.TotalSeconds, o.KeepBest ? best.Epoch : o.Epochs);
    }

    /// <summary>The training options every trainer (classification, segmentation) refuses, with one usage line each.</summary>
    internal static void CheckOptions(TrainOptions o)
    {
        if (o.Epochs <= 0) throw new PerturbException($"epochs must be positive, got {o.Epochs}", 2);
        if (o.BatchSize <= 0) throw new PerturbException($"batch size must be positive, got {o.BatchSize}", 2);
        if (!(o.LearningRate > 0) || !float.IsFinite(o.LearningRate)) throw new PerturbException($"learning rate must be a positive finite number, got {o.LearningRate}", 2);
        if (!(o.Momentum >= 0 && o.Momentum < 1)) throw new PerturbException($"momentum must be in [0, 1), got {o.Momentum}", 2);
        if (!(o.WeightDecay >= 0) || !float.IsFinite(o.WeightDecay)) throw new PerturbException($"weight decay must be 0 or a positive finite number, got {o.WeightDecay}", 2);
        if (!(o.LrGamma > 0) || !float.IsFinite(o.LrGamma)) throw new PerturbException($"learning-rate factor must be a positive finite number, got {o.LrGamma}", 2);
        if (o.Milestones.Any(m => m < 0)) throw new PerturbException($"milestones must be epoch numbers (0 or more), got {string.Join(",", o.Milestones)}", 2);
    }

    /// <summary>A NaN or infinite loss poisons every weight it reaches: stop, and let the caller save nothing.</summary>
    internal static void CheckFiniteLoss(double batchLoss, int ep, int b, int batches)
    {
        if (!double.IsFinite(batchLoss))
            throw new PerturbException($"training stopped at epoch {ep + 1}, batch {b + 1} of {batches}: the loss became {batchLoss} (diverged; try a lower --lr, or check the data for NaN); no model was saved");
    }

    internal static void CheckData(Model model, Dataset d)
    {
        if (Presets.IsSegmentation(model))
            throw new PerturbException($"the model outputs a mask per image ({Tensor.ShapeString(model.OutputShape)}): a segmentation model trains and evaluates on a data set with masks (train --task segmentation, e.g. --data histology-seg)", 2);
        var want = model.InputShape;
        if (want.Length != 3 || want[0] != d.Channels || want[1] != d.Height || want[2] != d.Width)
        {
            var first = model.Nodes[0].Layer;
            throw new PerturbException($"data set '{d.Name}' holds {d.Channels}x{d.Height}x{d.Width} images; layer '{first.Name}' ({first.Type}) expects {Tensor.ShapeString(want)}");
        }
        if (model.NumClasses < d.NumClasses)
            throw new PerturbException($"data set '{d.Name}' has {d.NumClasses} classes; the model outputs {model.NumClasses}");
    }
}

public sealed record EvalResult(int N, double Accuracy, int[] Predictions, float[][] Probabilities, int[,] Confusion, double[] PerClassAccuracy,
    double Auc, double[] PerClassAuc);

/// <summary>Batched evaluation in eval mode.</summary>
public static class Evaluator
{
    public static double Accuracy(Model model, Dataset d, int batchSize = 256) => Evaluate(model, d, batchSize).Accuracy;

    public static EvalResult Evaluate(Model model, Dataset d, int batchSize = 256, Action<int, int>? progress = null)
    {
        Trainer.CheckData(model, d);
        bool wasTraining = model.Training;
        model.Eval();
        var be = model.Backend;
        var preds = new int[d.Count];
        var probs = new float[d.Count][];
        int k = model.NumClasses;
        for (int start = 0; start < d.Count; start += batchSize)
        {
            int n = Math.Min(batchSize, d.Count - start);
            using var x = be.FromArray(d.X.AsSpan(start * d.SampleSize, n * d.SampleSize), n, d.Channels, d.Height, d.Width);
            var logits = model.Infer(x);
            var p = Losses.Probabilities(model, logits);
            for (int i = 0; i < n; i++)
            {
                probs[start + i] = p[i];
                int arg = 0;
                for (int j = 1; j < p[i].Length; j++) if (p[i][j] > p[i][arg]) arg = j;
                preds[start + i] = arg;
            }
            progress?.Invoke(Math.Min(start + n, d.Count), d.Count);
        }
        model.ReleaseActivations();
        model.Train(wasTraining);
        var conf = new int[d.NumClasses, k];
        int correct = 0;
        for (int i = 0; i < d.Count; i++) { conf[d.Labels[i], preds[i]]++; if (preds[i] == d.Labels[i]) correct++; }
        var per = new double[d.NumClasses];
        for (int c = 0; c < d.NumClasses; c++)
        {
            int tot = 0; for (int j = 0; j < k; j++) tot += conf[c, j];
            per[c] = tot == 0 ? double.NaN : (double)conf[c, c] / tot;
        }
        var (auc, perAuc) = Metrics.Auc(probs, d.Labels, d.NumClasses);
        return new EvalResult(d.Count, d.Count == 0 ? 0 : (double)correct / d.Count, preds, probs, conf, per, auc, perAuc);
    }
}
