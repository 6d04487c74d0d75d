using Perturb.Engine.Data;
using Perturb.Engine.Nn;
using Perturb.Engine.Training;

namespace Perturb.Engine.Poison;

public sealed record GenerativePoisonOptions
{
    /// <summary>Poison budget: poisoned samples added, as a fraction of the clean training set.</summary>
    public double Rate { get; init; } = 0.1;
    /// <summary>Linf budget of the generator's change to a source image (pixel units).</summary>
    public float Eps { get; init; } = 0.3f;
    /// <summary>Alternating rounds: one victim epoch on clean + current poison, then <see cref="GeneratorSteps"/> generator steps.</summary>
    public int Rounds { get; init; } = 3;
    public int GeneratorSteps { get; init; } = 30;
    public float GeneratorLr { get; init; } = 1e-3f;
    public int Hidden { get; init; } = 16;
    public ulong Seed { get; init; }
}

public sealed record GenerativePoisonReport(double PoisonedAccuracy, double CleanAccuracy, double AccuracyDrop, double PoisonedAuc, double CleanAuc,
    int PoisonCount, int TrainCount, double MaxLinf);

/// <summary>
/// Generative poisoning after Yang et al. 2017: a small convolutional auto-encoder G makes a poison from a source
/// training image, x_p = clamp(x + eps * tanh(G(x)), 0, 1), keeping the source's label. Rounds alternate between
/// training the victim one epoch on clean + current poison and updating G by gradient ascent on the victim's loss on
/// the poison (input gradients of the victim, back-propagated through G). The final poison is added to the clean set,
/// a fresh victim trained on it, and its clean test accuracy compared with a victim trained on the clean set alone
/// (same seed).
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
        var poison = Generate(gen, srcSet, g.Eps);
        for (int r = 0; r < g.Rounds; r++)
        {
            Trainer.Fit(victim, Concat(tr, poison), null, o with { Epochs = 1, Seed = o.Seed + (ulong)r });
            victim.Eval();
            double lossSum = 0;
            for (int s = 0; s < g.GeneratorSteps; s++)
            {
                int n = Math.Min(o.BatchSize, k);
                var idx = Enumerable.Range(0, n).Select(_ => rng.NextInt(k)).ToArray();
                using var x = be.FromArray(srcSet.Gather(idx), n, tr.Channels, tr.Height, tr.Width);
                using var y = be.FromArray(idx.Select(i => (float)srcSet.Labels[i]).ToArray(), n);
                gen.Train();
                var t = gen.Forward(x);
                using var xp = be.Allocate(x.Shape);
                be.Scale(g.Eps, t, xp); be.Add(x, xp, xp); be.Clamp(xp, 0f, 1f, xp);
                var logits = victim.Forward(xp);
                // Scale -1/n: the victim's input gradient is -dCE/dx_p, so the generator's descent step ascends the CE.
                using var loss = Losses.CrossEntropy(be, logits, y, -1f / n);
                lossSum -= loss.Mean();
                var dxp = victim.Backward(loss.Grad!, BackwardMode.InputOnly)!;
                using var dt = be.Allocate(x.Shape);
                be.Scale(g.Eps, dxp, dt); // straight through the clamp
                gen.Backward(dt, BackwardMode.InputAndWeights, needInputGrad: false);
                opt.Step();
            }
            victim.ReleaseActivations(); gen.ReleaseActivations();
            poison = Generate(gen, srcSet, g.Eps);
            log?.Invoke($"round {r + 1}/{g.Rounds}: victim loss on the poison {-lossSum / g.GeneratorSteps:F3}");
        }
        double linf = 0;
        for (int i = 0; i < poison.X.Length; i++) linf = Math.Max(linf, Math.Abs(poison.X[i] - srcSet.X[i]));
        EvalResult pe, ce;
        using (var v = makeVictim()) { Trainer.Fit(v, Concat(tr, poison), null, o); pe = Evaluator.Evaluate(v, data.Test); }
        using (var v = makeVictim()) { Trainer.Fit(v, tr, null, o); ce = Evaluator.Evaluate(v, data.Test); }
        log?.Invoke($"victim trained with {k} poisons: accuracy {pe.Accuracy:P2}; clean victim {ce.Accuracy:P2}");
        return new GenerativePoisonReport(pe.Accuracy, ce.Accuracy, ce.Accuracy - pe.Accuracy, pe.Auc, ce.Auc, k, tr.Count, linf);
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

    static Dataset Concat(Dataset a, Dataset b) =>
        new(a.X.Concat(b.X).ToArray(), a.Labels.Concat(b.Labels).ToArray(), a.Channels, a.Height, a.Width, a.ClassNames) { Name = a.Name + "+poison" };
}
