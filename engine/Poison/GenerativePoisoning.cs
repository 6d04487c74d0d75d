using System.Text.Json.Nodes;
using Perturb.Engine.Attacks;
using Perturb.Engine.Data;
using Perturb.Engine.Nn;
using Perturb.Engine.Training;

namespace Perturb.Engine.Poison;

/// <summary>Generative poisoning's settings (and the training of its victims, from <see cref="PoisonTraining"/>), each described once.</summary>
public sealed record GenerativePoisonOptions : PoisonTraining
{
    /// <summary>Poison budget: poisoned samples added, as a fraction of the clean training set.</summary>
    [Setting("rate", "poison budget: poisoned samples added, as a fraction of the training set", Min = 0, MinOpen = true, Max = 1)]
    public double Rate { get; init; } = 0.1;
    /// <summary>Linf budget of the generator's change to a source image (pixel units).</summary>
    [Setting("eps", "Linf budget of the generator's change to a source image, in pixel units", Min = 0, MinOpen = true, Max = 1)]
    public float Eps { get; init; } = 0.3f;
    /// <summary>Rounds of <see cref="GeneratorSteps"/> generator steps against the victim (trained on the clean set first); between rounds the victim trains one epoch on clean + current poison.</summary>
    [Setting("rounds", "alternating rounds (generator steps, then one victim epoch on clean + poison)", Min = 1)]
    public int Rounds { get; init; } = 3;
    [Setting("generator_steps", "generator steps per round", Min = 1)]
    public int GeneratorSteps { get; init; } = 30;
    [Setting("generator_lr", "the generator's learning rate (Adam)", Min = 0, MinOpen = true)]
    public float GeneratorLr { get; init; } = 1e-3f;
    [Setting("hidden", "channels of the generator's hidden layers", Min = 1)]
    public int Hidden { get; init; } = 16;
}

/// <summary>
/// Test accuracy of three victims trained with the same seed: on clean + poison, on the clean set alone, and on clean +
/// a random-noise control (the same sources, each pixel moved by ±eps at random, so the same budget and the same
/// number of added samples). <see cref="AccuracyDrop"/> is clean minus poisoned; <see cref="DropVersusControl"/> is
/// control minus poisoned, the part of the drop that the generator's perturbation, not the extra samples or any noise of
/// that size, causes.
/// </summary>
/// <see cref="PoisonTargetRate"/> and <see cref="ControlTargetRate"/>: how often the victim the poison was crafted
/// against (after the last round) puts the poison, and the control, in the generator's target class.
public sealed record GenerativePoisonReport(double PoisonedAccuracy, double CleanAccuracy, double ControlAccuracy, double PoisonedAuc, double CleanAuc,
    int PoisonCount, int TrainCount, double MaxLinf, double PoisonTargetRate, double ControlTargetRate)
{
    public double AccuracyDrop => CleanAccuracy - PoisonedAccuracy;
    public double DropVersusControl => ControlAccuracy - PoisonedAccuracy;

    /// <summary>The result as `perturb poison generative --json` writes it: <paramref name="head"/> (the run's model, data, device...) first, then the settings and the figures.</summary>
    public JsonObject ToJson(GenerativePoisonOptions g, JsonObject? head = null)
    {
        var j = head == null ? new JsonObject() : (JsonObject)head.DeepClone();
        j["attack"] = "generative";
        j["rate"] = g.Rate; j["eps"] = g.Eps; j["rounds"] = g.Rounds; j["generator_steps"] = g.GeneratorSteps; j["generator_lr"] = g.GeneratorLr;
        j["n_poison"] = PoisonCount; j["n_train"] = TrainCount;
        j["clean_accuracy"] = PoisonedAccuracy; j["baseline_clean_accuracy"] = CleanAccuracy; j["control_clean_accuracy"] = ControlAccuracy;
        j["accuracy_drop"] = AccuracyDrop; j["drop_versus_control"] = DropVersusControl;
        j["auc"] = PoisonJson.N(PoisonedAuc); j["baseline_auc"] = PoisonJson.N(CleanAuc); j["max_linf"] = MaxLinf;
        j["poison_target_rate"] = PoisonTargetRate; j["control_target_rate"] = ControlTargetRate;
        return j;
    }

    /// <summary>Writes generative.json into <paramref name="dir"/>.</summary>
    public void Save(string dir, GenerativePoisonOptions g, JsonObject? head = null) => PoisonJson.Save(dir, "generative.json", ToJson(g, head));
}

/// <summary>
/// Generative poisoning after Yang et al. 2017: a small convolutional auto-encoder G makes a poison from a source
/// training image, x_p = clamp(x + eps * tanh(G(x)), 0, 1), keeping the source's label. The victim is first trained on
/// the clean set; rounds then alternate between updating G so that the victim classifies the poison as
/// the next class, (y + 1) mod C (for one output, the other class), by gradient descent on the victim's cross-entropy
/// towards that class (input gradients of the victim back-propagated through G), and training the victim one more
/// epoch on clean + current poison. The poison is thus class-targeted
/// adversarial features under the source's label (the "adversarial poisoning" objective of Fowl et al. 2021). Ascent on
/// the loss of the true label, the earlier objective, only made correctly labelled adversarial examples, which train
/// like data augmentation: at the test's setting that victim scored 73.0% against 70.5% for the clean one. The final
/// poison is added to the clean set, a fresh victim trained on it, and its test accuracy compared with a victim trained
/// on the clean set alone and one trained on clean + a random ±eps control (same seed for all three).
/// </summary>
public static class GenerativePoisoning
{
    public static Model Generator(IBackend be, int c, int h, int w, int hidden, ulong seed)
    {
        var g = new GraphBuilder(c, h, w);
        g.Add("enc1", new Conv2d(c, hidden, 3, padding: 1), GraphBuilder.Input); g.Add("relu1", new ActivationLayer(Activation.Relu));
        g.Add("enc2", new Conv2d(hidden, hidden, 3, padding: 1)); g.Add("relu2", new ActivationLayer(Activation.Relu));
        g.Add("dec", new Conv2d(hidden, c, 3, padding: 1)); g.Add("tanh", new ActivationLayer(Activation.Tanh));
        return g.Build(be, seed);
    }

    public static GenerativePoisonReport Run(Func<Model> makeVictim, DataSplits data, GenerativePoisonOptions g, TrainOptions o, Action<string>? log = null)
    {
        if (!(g.Rate > 0 && g.Rate <= 1)) throw new PerturbException($"poison budget must be in (0, 1], got {g.Rate}", 2);
        if (!(g.Eps > 0 && g.Eps <= 1)) throw new PerturbException($"generator eps must be in (0, 1], got {g.Eps}", 2);
        if (g.Rounds < 1 || g.GeneratorSteps < 1) throw new PerturbException("rounds and generator steps must be positive", 2);
        var tr = data.Train;
        int k = Math.Max(1, (int)Math.Round(g.Rate * tr.Count));
        var src = new SplitMix64(g.Seed ^ 0x6E4E_0000UL).Permutation(tr.Count).Take(k).OrderBy(i => i).ToArray();
        var srcSet = new Dataset(tr.Gather(src), src.Select(i => tr.Labels[i]).ToArray(), tr.Channels, tr.Height, tr.Width, tr.ClassNames);
        using var victim = makeVictim();
        var be = victim.Backend;
        using var gen = Generator(be, tr.Channels, tr.Height, tr.Width, g.Hidden, g.Seed ^ 0x6E4UL);
        using var opt = Optimizer.Create("adam", gen, g.GeneratorLr, 0f);
        var rng = new SplitMix64(g.Seed ^ 0x6E4E_1111UL);
        int classes = tr.NumClasses;
        var target = srcSet.Labels.Select(l => classes <= 2 ? 1 - l : (l + 1) % classes).ToArray();
        // The poison is crafted against a victim trained on the clean set (which is also the clean baseline): a victim
        // trained for one epoch is close to chance, and steering its prediction teaches the generator nothing.
        Trainer.Fit(victim, tr, null, o);
        var ce = Evaluator.Evaluate(victim, data.Test);
        Dataset poison = srcSet;
        for (int r = 0; r < g.Rounds; r++)
        {
            if (r > 0) Trainer.Fit(victim, Concat(tr, poison), null, o with { Epochs = 1, Seed = o.Seed + (ulong)r });
            victim.Eval();
            double lossSum = 0;
            for (int s = 0; s < g.GeneratorSteps; s++)
            {
                int n = Math.Min(o.BatchSize, k);
                var idx = Enumerable.Range(0, n).Select(_ => rng.NextInt(k)).ToArray();
                using var x = be.FromArray(srcSet.Gather(idx), n, tr.Channels, tr.Height, tr.Width);
                using var y = be.FromArray(idx.Select(i => (float)target[i]).ToArray(), n);
                gen.Train();
                var t = gen.Forward(x);
                using var xp = be.Allocate(x.Shape);
                be.Scale(g.Eps, t, xp); be.Add(x, xp, xp); be.Clamp(xp, 0f, 1f, xp);
                var logits = victim.Forward(xp);
                // Descent on the CE towards the target class (scale 1/n: the batch mean).
                using var loss = Losses.CrossEntropy(be, logits, y, 1f / n);
                lossSum += loss.Mean();
                var dxp = victim.Backward(loss.Grad!, BackwardMode.InputOnly)!;
                using var dt = be.Allocate(x.Shape);
                be.Scale(g.Eps, dxp, dt); // straight through the clamp
                gen.Backward(dt, BackwardMode.InputAndWeights, needInputGrad: false);
                opt.Step();
            }
            victim.ReleaseActivations(); gen.ReleaseActivations();
            poison = Generate(gen, srcSet, g.Eps);
            log?.Invoke($"round {r + 1}/{g.Rounds}: victim loss on the poison towards the next class {lossSum / g.GeneratorSteps:F3}");
        }
        double linf = 0;
        for (int i = 0; i < poison.X.Length; i++) linf = Math.Max(linf, Math.Abs(poison.X[i] - srcSet.X[i]));
        var noise = RandomControl(srcSet, g.Eps, g.Seed ^ 0x6E4E_2222UL);
        Dataset AsTarget(Dataset d) => new(d.X, target, d.Channels, d.Height, d.Width, d.ClassNames);
        double poisonHit = Evaluator.Evaluate(victim, AsTarget(poison)).Accuracy, noiseHit = Evaluator.Evaluate(victim, AsTarget(noise)).Accuracy;
        log?.Invoke($"crafting victim puts {poisonHit:P1} of the poison and {noiseHit:P1} of the random control in the target class");
        EvalResult pe, ne;
        using (var v = makeVictim()) { Trainer.Fit(v, Concat(tr, poison), null, o); pe = Evaluator.Evaluate(v, data.Test); }
        using (var v = makeVictim()) { Trainer.Fit(v, Concat(tr, noise), null, o); ne = Evaluator.Evaluate(v, data.Test); }
        log?.Invoke($"victim trained with {k} poisons: accuracy {pe.Accuracy:P2}; clean victim {ce.Accuracy:P2}; random ±eps control {ne.Accuracy:P2}");
        return new GenerativePoisonReport(pe.Accuracy, ce.Accuracy, ne.Accuracy, pe.Auc, ce.Auc, k, tr.Count, linf, poisonHit, noiseHit);
    }

    /// <summary>The poison made from each source image by the generator (eval mode).</summary>
    public static Dataset Generate(Model gen, Dataset src, float eps, int batch = 256)
    {
        var be = gen.Backend;
        var outp = new float[src.X.Length];
        gen.Eval();
        for (int s = 0; s < src.Count; s += batch)
        {
            int n = Math.Min(batch, src.Count - s);
            using var x = be.FromArray(src.X.AsSpan(s * src.SampleSize, n * src.SampleSize), n, src.Channels, src.Height, src.Width);
            var t = gen.Forward(x).ToArray();
            for (int i = 0; i < t.Length; i++) outp[s * src.SampleSize + i] = Math.Clamp(src.X[s * src.SampleSize + i] + eps * t[i], 0f, 1f);
        }
        gen.ReleaseActivations();
        return new Dataset(outp, src.Labels, src.Channels, src.Height, src.Width, src.ClassNames) { Name = src.Name + "+generated" };
    }

    /// <summary>The control: each source pixel moved by +eps or -eps at random (clamped to [0, 1]), labels kept.</summary>
    public static Dataset RandomControl(Dataset src, float eps, ulong seed)
    {
        var rng = new SplitMix64(seed);
        var x = new float[src.X.Length];
        for (int i = 0; i < x.Length; i++) x[i] = Math.Clamp(src.X[i] + (rng.Next() >> 63 == 0 ? eps : -eps), 0f, 1f);
        return new Dataset(x, src.Labels, src.Channels, src.Height, src.Width, src.ClassNames) { Name = src.Name + "+noise" };
    }

    static Dataset Concat(Dataset a, Dataset b) =>
        new(a.X.Concat(b.X).ToArray(), a.Labels.Concat(b.Labels).ToArray(), a.Channels, a.Height, a.Width, a.ClassNames) { Name = a.Name + "+poison" };
}
