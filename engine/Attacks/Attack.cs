using System.Diagnostics;
using Perturb.Engine.Data;
using Perturb.Engine.Nn;

namespace Perturb.Engine.Attacks;

public enum Norm { Linf, L2 }

/// <summary>An attack on a classifier: <c>Run(model, x, labels, goal, epsilons)</c>.</summary>
public interface IAttack
{
    /// <summary>The CLI name: fgsm, bim, pgd, mifgsm, deepfool, cw, jsma, eot-pgd, uap.</summary>
    string Name { get; }
    /// <summary>Whether the attack needs a budget (a list of epsilons); budget-free attacks take none.</summary>
    bool NeedsEpsilon { get; }
    /// <summary>
    /// Attacks the n samples of <paramref name="x"/> (host, n x C x H x W in [0,1], the model's input shape) with true
    /// <paramref name="labels"/>. Budgeted attacks run every epsilon of <paramref name="epsilons"/> (one result each);
    /// budget-free attacks take null (or an empty list) and give one result with a null epsilon.
    /// </summary>
    AttackResult Run(Model model, float[] x, int[] labels, AttackGoal goal, IReadOnlyList<float>? epsilons = null);
}

/// <summary>
/// The shared bookkeeping of every attack (the torchattacks base class): checks, the clean pass, target resolution,
/// the (sample, epsilon) rows in chunks of at most <see cref="MaxBatch"/>, the final fresh forward pass that decides
/// success, and the figures. A subclass implements <see cref="AttackChunk"/>: make <c>b.Adv</c> adversarial.
/// </summary>
public abstract class Attack : IAttack
{
    public abstract string Name { get; }
    public abstract bool NeedsEpsilon { get; }
    /// <summary>Seed of every random choice (random start, EOT transformations, random targets are the goal's).</summary>
    [Setting("seed", "seed of every random choice: random start, EOT transformations, random targets")]
    public ulong Seed { get; init; }
    /// <summary>Most rows (samples times epsilons) on the device at once.</summary>
    public int MaxBatch { get; init; } = 256;

    /// <summary>Whether the attack counts model queries per sample (search attacks); the result then carries them.</summary>
    protected virtual bool CountsQueries => false;

    /// <summary>Runs the attack on one chunk of rows: leave the adversarial images in <c>b.Adv</c>.</summary>
    protected abstract void AttackChunk(AttackBatch b);

    /// <summary>Runs <see cref="AttackChunk"/> on a batch the caller made (tests measure a chunk's memory traffic).</summary>
    internal void RunChunk(AttackBatch b) => AttackChunk(b);

    /// <summary>Runs on a data set's samples (all of them; use <see cref="Dataset.Take"/> for fewer).</summary>
    public AttackResult Run(Model model, Dataset d, AttackGoal goal, IReadOnlyList<float>? epsilons = null) =>
        Run(model, d.X, d.Labels, goal, epsilons);

    public AttackResult Run(Model model, float[] x, int[] labels, AttackGoal goal, IReadOnlyList<float>? epsilons = null)
    {
        var sw = Stopwatch.StartNew();
        if (Presets.IsSegmentation(model))
            throw new PerturbException($"{Name} attacks classifiers; the model outputs a mask per image (use seg-fgsm, seg-pgd, dag or asma)", 2);
        int d = Layer.Product(model.InputShape), n = labels.Length;
        if (x.Length != (long)n * d)
            throw new PerturbException($"{Name}: {n} samples of {Tensor.ShapeString(model.InputShape)} need {(long)n * d} values, got {x.Length}", 2);
        if (MaxBatch <= 0) throw new PerturbException($"{Name}: batch size must be positive, got {MaxBatch}", 2);
        foreach (var l in labels)
            if (l < 0 || l >= model.NumClasses) throw new PerturbException($"{Name}: label {l} outside the model's {model.NumClasses} classes", 2);
        float[] eps;
        if (NeedsEpsilon)
        {
            if (epsilons == null || epsilons.Count == 0) throw new PerturbException($"{Name} needs at least one epsilon (--eps)", 2);
            foreach (var e in epsilons)
                if (!(e >= 0) || float.IsInfinity(e)) throw new PerturbException($"{Name}: epsilon must be a non-negative number, got {e}", 2);
            eps = epsilons.ToArray();
        }
        else
        {
            if (epsilons is { Count: > 0 }) throw new PerturbException($"{Name} has no budget; it takes no epsilon", 2);
            eps = new[] { float.NaN };
        }
        Validate();
        model.Eval();

        var (cleanPred, cleanProb, cleanLogits) = Classify(model, x, n);
        var targets = goal.Resolve(labels, model.NumClasses, () => cleanProb);
        var ctx = new RunContext(model, x, labels, targets, eps, cleanLogits, cleanPred, n, d);
        var adv = Produce(ctx);

        // Final fresh forward pass on the returned images decides success.
        var results = new List<EpsResult>();
        var correct = Enumerable.Range(0, n).Select(i => cleanPred[i] == labels[i]).ToArray();
        for (int e = 0; e < eps.Length; e++)
        {
            var (pred, prob, _) = Classify(model, adv[e], n);
            results.Add(Summarise(ctx, e, adv[e], pred, prob, correct));
        }
        sw.Stop();
        return new AttackResult
        {
            Attack = Name, N = n, SampleShape = (int[])model.InputShape.Clone(), Labels = (int[])labels.Clone(), Targets = targets,
            PredictedBefore = cleanPred,
            ConfidenceBefore = Enumerable.Range(0, n).Select(i => cleanProb[i][cleanPred[i]]).ToArray(),
            TrueConfidenceBefore = Enumerable.Range(0, n).Select(i => cleanProb[i][labels[i]]).ToArray(),
            CleanAccuracy = n == 0 ? double.NaN : correct.Count(c => c) / (double)n,
            Seed = Seed, Seconds = sw.Elapsed.TotalSeconds, Params = Setting.Params(this),
            ImagesPerSecond = (double)n * eps.Length / Math.Max(1e-9, sw.Elapsed.TotalSeconds),
            Results = results,
        };
    }

    /// <summary>Checks the attack's settings before anything runs (throw PerturbException with exit code 2).</summary>
    protected virtual void Validate() { }

    /// <summary>Runs the checks between settings (those one setting's range cannot say) without running the attack.</summary>
    public void CheckSettings() => Validate();

    /// <summary>What the attack sees of the run: inputs, labels, targets, epsilons, clean logits; and per-row outputs.</summary>
    protected internal sealed class RunContext
    {
        public Model Model { get; }
        public float[] X { get; }
        public int[] Labels { get; }
        public int[]? Targets { get; }
        public float[] Eps { get; }
        public float[] CleanLogits { get; }
        public int[] CleanPred { get; }
        public int N { get; }
        public int D { get; }
        public int[][] Steps { get; }
        public long[][] Gradients { get; }
        /// <summary>Model queries (forward evaluations of one image) the attack spent per sample, per epsilon.</summary>
        public long[][] Queries { get; }
        public RunContext(Model m, float[] x, int[] labels, int[]? targets, float[] eps, float[] cleanLogits, int[] cleanPred, int n, int d)
        {
            Model = m; X = x; Labels = labels; Targets = targets; Eps = eps; CleanLogits = cleanLogits; CleanPred = cleanPred; N = n; D = d;
            Steps = eps.Select(_ => new int[n]).ToArray();
            Gradients = eps.Select(_ => new long[n]).ToArray();
            Queries = eps.Select(_ => new long[n]).ToArray();
            Universal = new float[]?[eps.Length];
            FoolingRate = eps.Select(_ => double.NaN).ToArray();
        }
        /// <summary>Universal attacks: the perturbation and its fooling rate per epsilon.</summary>
        public float[]?[] Universal { get; }
        public double[] FoolingRate { get; }
        /// <summary>
        /// Rows to attack, [epsilon][sample] (null: all): a composite attack (AutoAttack) runs each stage on the rows
        /// still robust; rows left out keep the clean image and cost nothing.
        /// </summary>
        public bool[][]? Active { get; init; }
        public bool IsActive(int sample, int eps) => Active == null || Active[eps][sample];
        /// <summary>Composite attacks: per epsilon, the stage that broke each sample (null: none), and robust accuracy after each stage.</summary>
        public string?[][]? BrokenBy { get; set; }
        public List<(string Stage, double RobustAccuracy)>[]? Stages { get; set; }
    }

    /// <summary>Runs this attack's <see cref="Produce"/> on another run's context (a composite attack's stage).</summary>
    internal float[][] ProduceFor(RunContext c) { Validate(); return Produce(c); }

    /// <summary>
    /// Makes the adversarial images, one host array (n x C x H x W) per epsilon. The default runs the (sample, epsilon)
    /// rows, sample-major, in chunks of <see cref="MaxBatch"/> through <see cref="AttackChunk"/>.
    /// </summary>
    protected virtual float[][] Produce(RunContext c)
    {
        int n = c.N, d = c.D, E = c.Eps.Length, k = c.Model.NumOutputs;
        var adv = Enumerable.Range(0, E).Select(_ => new float[(long)n * d]).ToArray();
        for (int e = 0; e < E; e++) Array.Copy(c.X, adv[e], c.X.Length);
        // The (sample, epsilon) rows to run, sample-major (all of them unless the context restricts them).
        var list = new List<long>();
        for (long j = 0; j < (long)n * E; j++) if (c.IsActive((int)(j / E), (int)(j % E))) list.Add(j);
        long total = list.Count;
        // Chunks of MaxBatch rows; an out-of-memory halves the chunk and retries it (rows are independent, so the
        // result is the same at any chunk size).
        BatchGuard.Run(total, MaxBatch, (start, rows) =>
        {
            var si = new int[rows]; var ei = new int[rows]; var ev = new float[rows]; var tl = new int[rows];
            int[]? tg = c.Targets == null ? null : new int[rows];
            var x0 = new float[(long)rows * d]; var zl = new float[rows * k];
            for (int r = 0; r < rows; r++)
            {
                long j = list[(int)(start + r)];
                int i = (int)(j / E), e = (int)(j % E);
                si[r] = i; ei[r] = e; ev[r] = c.Eps[e]; tl[r] = c.Labels[i];
                if (tg != null) tg[r] = c.Targets![i];
                Array.Copy(c.X, (long)i * d, x0, (long)r * d, d);
                Array.Copy(c.CleanLogits, (long)i * k, zl, (long)r * k, k);
            }
            using var b = new AttackBatch(c.Model, si, ei, ev, tl, tg, x0, zl, Seed);
            AttackChunk(b);
            var a = b.Adv.ToArray();
            var steps = b.StepsHost ?? b.StepCount.ToArray().Select(v => (int)v).ToArray();
            for (int r = 0; r < rows; r++)
            {
                Array.Copy(a, (long)r * d, adv[ei[r]], (long)si[r] * d, d);
                c.Steps[ei[r]][si[r]] = steps[r];
                c.Gradients[ei[r]][si[r]] = b.Gradients[r];
            }
        }, cleanup: c.Model.ReleaseActivations, what: Name);
        return adv;
    }

    /// <summary>Predictions, probabilities (pairs for one-output models) and raw logits of n host samples, in chunks.</summary>
    protected (int[] Pred, float[][] Prob, float[] Logits) Classify(Model model, float[] x, int n)
    {
        var be = model.Backend;
        int d = Layer.Product(model.InputShape), k = model.NumOutputs;
        var pred = new int[n]; var prob = new float[n][]; var logits = new float[(long)n * k];
        for (int s = 0; s < n; s += MaxBatch)
        {
            int m = Math.Min(MaxBatch, n - s);
            using var t = be.FromArray(x.AsSpan((int)((long)s * d), m * d), new[] { m }.Concat(model.InputShape).ToArray());
            var z = model.Infer(t);
            Losses.Predict(be, z).CopyTo(pred, s);
            Losses.Probabilities(model, z).CopyTo(prob, s);
            z.ToArray().CopyTo(logits, (long)s * k);
        }
        model.ReleaseActivations();
        return (pred, prob, logits);
    }

    EpsResult Summarise(RunContext c, int e, float[] adv, int[] pred, float[][] prob, bool[] correct)
    {
        int n = c.N, d = c.D;
        var s = c.Model.InputShape;
        int ch = s.Length == 3 ? s[0] : 1, h = s.Length == 3 ? s[1] : 1, w = s.Length == 3 ? s[2] : d;
        var l0 = new float[n]; var l2 = new float[n]; var linf = new float[n];
        var success = new bool[n];
        double psnr = 0, ssim = 0; int changed = 0;
        for (int i = 0; i < n; i++)
        {
            var a = adv.AsSpan((int)((long)i * d), d);
            var o = c.X.AsSpan((int)((long)i * d), d);
            double sq = 0; float mx = 0; int nz = 0;
            for (int j = 0; j < d; j++)
            {
                float v = a[j] - o[j];
                if (v != 0) nz++;
                sq += (double)v * v;
                mx = Math.Max(mx, Math.Abs(v));
            }
            l0[i] = nz; l2[i] = (float)Math.Sqrt(sq); linf[i] = mx;
            success[i] = c.Targets != null ? pred[i] == c.Targets[i] : pred[i] != c.Labels[i];
            if (nz > 0)
            {
                changed++;
                psnr += ImageMetrics.Psnr(o, a);
                ssim += ImageMetrics.Ssim(o, a, ch, h, w);
            }
        }
        var succL2 = Enumerable.Range(0, n).Where(i => correct[i] && success[i]).Select(i => (double)l2[i]).OrderBy(v => v).ToArray();
        int nCorrect = correct.Count(v => v);
        return new EpsResult
        {
            Eps = float.IsNaN(c.Eps[e]) ? null : c.Eps[e],
            Adversarial = adv, Success = success, PredictedAfter = pred, L0 = l0, L2 = l2, Linf = linf,
            ConfidenceAfter = Enumerable.Range(0, n).Select(i => prob[i][pred[i]]).ToArray(),
            TrueConfidenceAfter = Enumerable.Range(0, n).Select(i => prob[i][c.Labels[i]]).ToArray(),
            TargetConfidenceAfter = c.Targets == null ? null : Enumerable.Range(0, n).Select(i => prob[i][c.Targets[i]]).ToArray(),
            Steps = c.Steps[e], Gradients = c.Gradients[e], Queries = CountsQueries ? c.Queries[e] : null,
            UniversalPerturbation = c.Universal[e], FoolingRate = c.FoolingRate[e],
            BrokenBy = c.BrokenBy?[e], Stages = c.Stages?[e],
            RobustAccuracy = n == 0 ? double.NaN : Enumerable.Range(0, n).Count(i => pred[i] == c.Labels[i]) / (double)n,
            SuccessRate = nCorrect == 0 ? double.NaN : Enumerable.Range(0, n).Count(i => correct[i] && success[i]) / (double)nCorrect,
            MeanL2 = succL2.Length == 0 ? double.NaN : succL2.Average(),
            MedianL2 = Median(succL2),
            MaxLinf = n == 0 ? double.NaN : linf.Max(),
            MeanPsnr = changed == 0 ? double.NaN : psnr / changed,
            MeanSsim = changed == 0 ? double.NaN : ssim / changed,
        };
    }

    static double Median(double[] sorted) => sorted.Length == 0 ? double.NaN
        : sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : 0.5 * (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]);
}
