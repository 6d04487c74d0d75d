using System.Diagnostics;
using Perturb.Engine.Nn;
using Perturb.Engine.Training;

namespace Perturb.Engine.Attacks.Segmentation;

/// <summary>
/// The shared bookkeeping of every segmentation attack (the segmentation twin of <see cref="Attack"/>): checks, the
/// clean prediction, the target masks, the (image, epsilon) rows in chunks of at most <see cref="MaxBatch"/> on one
/// <see cref="AttackBatch"/> each, the final fresh forward pass that decides success, and the per-image figures.
/// A subclass implements <see cref="AttackChunk"/>: leave the adversarial images in <c>b.A.Adv</c>.
///
/// "Dice" is the foreground (nucleus: every class but background) Dice, 1 when both masks are empty. Success:
/// untargeted, Dice with the clean prediction below <see cref="UntargetedDice"/>; targeted, Dice with the target at
/// least <see cref="TargetDice"/> (for erase: no nucleus pixel left).
/// </summary>
public abstract class SegAttack
{
    public abstract string Name { get; }
    /// <summary>Whether the attack needs a list of budgets; budget-optional attacks (DAG, ASMA) take one or none.</summary>
    public abstract bool NeedsEpsilon { get; }
    [Setting("seed", "seed of every random choice (random start, untargeted DAG labels)")]
    public ulong Seed { get; init; }
    /// <summary>Most rows (images times epsilons) on the device at once.</summary>
    public int MaxBatch { get; init; } = 64;
    [Setting("success_dice", "targeted success: Dice with the target at least this", Min = 0, Max = 1)]
    public double TargetDice { get; init; } = 0.9;
    [Setting("untargeted_dice", "untargeted success: Dice with the clean prediction below this", Min = 0, Max = 1)]
    public double UntargetedDice { get; init; } = 0.2;

    protected virtual void Validate() { }

    /// <summary>Whether a Dice score (with the target, or with the clean prediction when untargeted) meets the goal.</summary>
    public bool Meets(bool targeted, double dice) => targeted ? dice >= TargetDice : dice < UntargetedDice;

    /// <summary>Checks the settings before anything runs (exit code 2 on a bad one).</summary>
    public void CheckSettings() => Validate();

    protected abstract void AttackChunk(SegBatch b);

    /// <summary>
    /// Attacks n images <paramref name="x"/> (host, n x C x H x W in [0,1]) of a segmentation model with their true
    /// masks <paramref name="truth"/> (n x H x W, may be null: then no figures against the truth, and no forge from
    /// another image) toward <paramref name="goal"/>, at every epsilon (one result each; none for budget-free runs).
    /// </summary>
    public SegAttackResult Run(Model model, float[] x, int[]? truth, SegGoal goal, IReadOnlyList<float>? epsilons = null)
    {
        var sw = Stopwatch.StartNew();
        if (!Presets.IsSegmentation(model))
            throw new PerturbException($"{Name}: the model outputs {Tensor.ShapeString(model.OutputShape)} per image, not class logits per pixel [classes, H, W]", 2);
        int d = Layer.Product(model.InputShape), k = model.OutputShape[0], h = model.OutputShape[1], w = model.OutputShape[2], p = h * w;
        if (x.Length % d != 0) throw new PerturbException($"{Name}: {x.Length} values are not whole images of {Tensor.ShapeString(model.InputShape)}", 2);
        int n = x.Length / d;
        if (truth != null && truth.Length != (long)n * p) throw new PerturbException($"{Name}: {n} true masks of {h}x{w} need {(long)n * p} values, got {truth.Length}", 2);
        if (MaxBatch <= 0) throw new PerturbException($"{Name}: batch size must be positive, got {MaxBatch}", 2);
        float[] eps;
        if (epsilons is { Count: > 0 })
        {
            foreach (var e in epsilons)
                if (!(e >= 0) || float.IsInfinity(e)) throw new PerturbException($"{Name}: epsilon must be a non-negative number, got {e}", 2);
            eps = epsilons.ToArray();
        }
        else if (NeedsEpsilon) throw new PerturbException($"{Name} needs at least one epsilon (--eps)", 2);
        else eps = new[] { float.NaN };
        Validate();
        model.Eval();
        var clean = SegMetrics.Predict(model, x, n, MaxBatch);
        var target = goal.Resolve(clean, truth, n, h, w, k);
        var lossLabels = target ?? clean;
        int E = eps.Length;
        var adv = Enumerable.Range(0, E).Select(_ => new float[(long)n * d]).ToArray();
        var steps = Enumerable.Range(0, E).Select(_ => new int[n]).ToArray();
        BatchGuard.Run((long)n * E, MaxBatch, (start, rows) =>
        {
            var si = new int[rows]; var ei = new int[rows]; var ev = new float[rows];
            var x0 = new float[(long)rows * d]; var tl = new int[(long)rows * p]; var cp = new int[(long)rows * p];
            for (int r = 0; r < rows; r++)
            {
                long j = start + r;
                int i = (int)(j / E), e = (int)(j % E);
                si[r] = i; ei[r] = e; ev[r] = eps[e];
                Array.Copy(x, (long)i * d, x0, (long)r * d, d);
                Array.Copy(lossLabels, (long)i * p, tl, (long)r * p, p);
                Array.Copy(clean, (long)i * p, cp, (long)r * p, p);
            }
            using var b = new SegBatch(model, si, ei, ev, x0, tl, cp, goal.Targeted, Seed);
            AttackChunk(b);
            var a = b.A.Adv.ToArray();
            for (int r = 0; r < rows; r++)
            {
                Array.Copy(a, (long)r * d, adv[ei[r]], (long)si[r] * d, d);
                steps[ei[r]][si[r]] = b.Steps[r];
            }
        }, cleanup: model.ReleaseActivations, what: Name);

        var results = new List<SegEpsResult>();
        for (int e = 0; e < E; e++)
        {
            var pred = SegMetrics.Predict(model, adv[e], n, MaxBatch);
            results.Add(SegEpsResult.Of(float.IsNaN(eps[e]) ? null : eps[e], x, adv[e], pred, clean, target, truth, n, d, h, w, steps[e],
                v => Meets(goal.Targeted, v)));
        }
        return new SegAttackResult
        {
            Attack = Name, Goal = goal.ToString(), N = n, SampleShape = (int[])model.InputShape.Clone(), Classes = k,
            Truth = truth, CleanPrediction = clean, Target = target,
            CleanDiceTruth = truth == null ? null : Enumerable.Range(0, n).Select(i => SegMetrics.ForegroundDice(clean.AsSpan(i * p, p), truth.AsSpan(i * p, p))).ToArray(),
            CountBefore = Enumerable.Range(0, n).Select(i => SegMetrics.CountComponents(clean.AsSpan(i * p, p), h, w)).ToArray(),
            TargetCount = target == null ? null : Enumerable.Range(0, n).Select(i => SegMetrics.CountComponents(target.AsSpan(i * p, p), h, w)).ToArray(),
            Seed = Seed, Seconds = sw.Elapsed.TotalSeconds, Results = results,
        };
    }
}

/// <summary>
/// One chunk of segmentation attack rows: an <see cref="AttackBatch"/> (clean and adversarial images, budgets, the
/// fused steps, per-row random streams) plus the per-pixel labels each row's loss uses (the target mask, or the clean
/// prediction for untargeted rows) in a <see cref="PixelLoss"/> whose row scale is +1 (ascend, away from the clean
/// prediction) or -1 (descend, toward the target).
/// </summary>
public sealed class SegBatch : IDisposable
{
    public AttackBatch A { get; }
    public PixelLoss Loss { get; }
    public Model Model { get; }
    public IBackend Be { get; }
    public int Rows { get; }
    public int K { get; }
    public int H { get; }
    public int W { get; }
    public int P => H * W;
    public bool Targeted { get; }
    /// <summary>Per-row pixel labels the loss uses [Rows*P] (target, or clean prediction when untargeted).</summary>
    public int[] LossLabels { get; }
    /// <summary>Per-row clean prediction [Rows*P].</summary>
    public int[] CleanPrediction { get; }
    /// <summary>Per-row steps taken (attacks set them).</summary>
    public int[] Steps { get; }
    readonly Tensor _dlogits;

    internal SegBatch(Model model, int[] sampleIndex, int[] epsIndex, float[] eps, float[] x0, int[] lossLabels, int[] cleanPred, bool targeted, ulong seed)
    {
        Model = model; Be = model.Backend; Rows = sampleIndex.Length; Targeted = targeted;
        K = model.OutputShape[0]; H = model.OutputShape[1]; W = model.OutputShape[2];
        A = new AttackBatch(model, sampleIndex, epsIndex, eps, new int[Rows], null, x0, Array.Empty<float>(), seed);
        LossLabels = lossLabels; CleanPrediction = cleanPred;
        Loss = new PixelLoss(Be, Rows, K, H, W, lossLabels, Enumerable.Repeat(targeted ? -1f : 1f, Rows).ToArray());
        Steps = new int[Rows];
        _dlogits = Be.Allocate(Rows, K, H, W);
    }

    /// <summary>
    /// Forward at x, a per-pixel loss (by default the batch's own: ascending when untargeted, descending toward the
    /// target; per-pixel cross-entropy unless <paramref name="kind"/> says otherwise), input-only backward.
    /// </summary>
    public Tensor Gradient(Tensor x, SegLossKind kind = SegLossKind.CrossEntropy, PixelLoss? loss = null)
    {
        loss ??= Loss;
        var z = A.Forward(x);
        loss.Compute(z, kind);
        A.CountGradients();
        return Model.Backward(loss.Grad, BackwardMode.InputOnly)!;
    }

    /// <summary>
    /// Forward at x, then the input gradient of -sum_j max(m_j, -kappa), m_j = max_{c != g_j} z_cj - z_{g_j j}: per
    /// pixel the goal class g_j is the target's (targeted) or the best class other than the clean prediction
    /// (untargeted, so m_j = z_clean - z_best-other); pixels past the goal by kappa add nothing. Ascending it moves
    /// every pixel not yet at its goal toward it (see <see cref="SegPgdLoss.Margin"/>). <paramref name="rowLoss"/>, when
    /// given, gets each row's ascended value sum_j min(-m_j, kappa).
    /// </summary>
    public Tensor MarginGradient(Tensor x, float kappa, double[]? rowLoss = null)
    {
        var z = Logits(x);
        var dl = new float[z.Length];
        Parallel.For(0, Rows, r =>
        {
            double sum = 0;
            for (int j = 0; j < P; j++)
            {
                long o = (long)r * K * P + j;
                int q = r * P + j;
                int goal, rival;
                if (Targeted)
                {
                    goal = LossLabels[q]; rival = -1;
                    for (int c = 0; c < K; c++) if (c != goal && (rival < 0 || z[o + (long)c * P] > z[o + (long)rival * P])) rival = c;
                }
                else
                {
                    rival = CleanPrediction[q]; goal = -1;
                    for (int c = 0; c < K; c++) if (c != rival && (goal < 0 || z[o + (long)c * P] > z[o + (long)goal * P])) goal = c;
                }
                float lead = z[o + (long)goal * P] - z[o + (long)rival * P];
                sum += Math.Min(lead, kappa);
                if (lead >= kappa) continue;
                dl[o + (long)goal * P] = 1f;
                dl[o + (long)rival * P] = -1f;
            }
            if (rowLoss != null) rowLoss[r] = sum;
        });
        return BackwardFrom(dl);
    }

    /// <summary>The logits of a forward pass at x, on the host [Rows, K, P].</summary>
    public float[] Logits(Tensor x) => A.Forward(x).ToArray();

    /// <summary>Input gradient of sum(dlogits * logits) of the last <see cref="Logits"/> pass: the backward of a host-built logit gradient.</summary>
    public Tensor BackwardFrom(float[] dlogits)
    {
        Be.Upload(_dlogits, dlogits);
        A.CountGradients();
        return Model.Backward(_dlogits, BackwardMode.InputOnly)!;
    }

    /// <summary>Per row, the Dice of a predicted mask [Rows*P] with the row's goal mask (the target, or the clean prediction).</summary>
    public double[] DiceWithGoal(int[] pred) =>
        Enumerable.Range(0, Rows).Select(r => SegMetrics.ForegroundDice(pred.AsSpan(r * P, P), LossLabels.AsSpan(r * P, P))).ToArray();

    /// <summary>Class per pixel of host logits [Rows, K, P].</summary>
    public int[] Argmax(float[] logits) => SegMetrics.Argmax(logits, Rows, K, P);

    public void Dispose() { A.Dispose(); Loss.Dispose(); _dlogits.Dispose(); }
}

/// <summary>
/// Keeps each row's best adversarial image so far on the device: the highest Dice with the target (targeted), or the
/// lowest Dice with the clean prediction (untargeted), ties broken by the fraction of pixels agreeing with that mask
/// (erase's Dice is 0 until the last nucleus pixel goes), judged from the logits of the image then in Adv.
/// </summary>
public sealed class BestIterate : IDisposable
{
    readonly SegBatch _b;
    readonly SegAttack _a;
    readonly Tensor _best, _mask;
    readonly double[] _score;

    public BestIterate(SegBatch b, SegAttack a)
    {
        _b = b; _a = a;
        _best = b.Be.Allocate(b.A.Shape(b.Rows));
        b.Be.Copy(b.A.Adv, _best);
        _mask = b.Be.Allocate(b.Rows);
        _score = Enumerable.Repeat(double.NegativeInfinity, b.Rows).ToArray();
    }

    /// <summary>Scores Adv by <paramref name="logits"/> (of Adv itself), keeps the better rows; returns which rows meet the goal now.</summary>
    public bool[] Update(Tensor logits, Tensor scratch)
    {
        var pred = _b.Argmax(logits.ToArray());
        var dice = _b.DiceWithGoal(pred);
        var better = new float[_b.Rows];
        int p = _b.P;
        for (int r = 0; r < _b.Rows; r++)
        {
            double agree = SegMetrics.PixelAccuracy(pred.AsSpan(r * p, p), _b.LossLabels.AsSpan(r * p, p));
            double s = _b.Targeted ? dice[r] + 1e-3 * agree : -dice[r] - 1e-3 * agree;
            if (s > _score[r]) { _score[r] = s; better[r] = 1f; }
        }
        _b.Be.Upload(_mask, better);
        _b.A.SelectRows(_best, _b.A.Adv, _mask);
        return dice.Select(d => _a.Meets(_b.Targeted, d)).ToArray();
    }

    public void CopyBestTo(Tensor adv) => _b.Be.Copy(_best, adv);

    public void Dispose() { _best.Dispose(); _mask.Dispose(); }
}
