using Perturb.Engine.Nn;

namespace Perturb.Engine.Attacks.Gradient;

/// <summary>
/// Auto-PGD (Croce and Hein 2020), Linf or L2, on the cross-entropy (APGD-CE) or the DLR loss (APGD-DLR), maximised.
/// Start: x + eps * t / ||t|| (t uniform in [-1,1]^d scaled to touch the Linf ball, or Gaussian for L2), clamped.
/// Step size 2 eps per row. Each iteration: z = P(x_k + eta * dir(g)), x_{k+1} = P(x_k + 0.75 (z - x_k) + 0.25 (x_k - x_{k-1}))
/// (the first step without momentum; P: projection on the ball and [0,1], the reference's for L2). Checkpoints: every
/// k iterations, k starting at 0.22 N and shrinking by 0.03 N to at least 0.06 N; at a checkpoint a row halves its step
/// and restarts from its best point when its loss rose in at most 75% of the last k steps, or when its best loss did not
/// improve since the last checkpoint and its step was not halved there. A row keeps the first point that meets the
/// goal, else its highest-loss point; restarts keep the first success. <see cref="EotSamples"/> &gt; 1 averages the
/// gradient over that many passes (for randomised models: AutoAttack's rand version uses 20).
/// The per-row schedule runs on the host between the device's forward and input-only backward passes.
/// </summary>
public class Apgd : Attack
{
    public override string Name => Loss == LossKind.Dlr ? "apgd-dlr" : "apgd-ce";
    public override bool NeedsEpsilon => true;
    [Setting("norm", "the ball: linf or l2")]
    public Norm Norm { get; init; } = Norm.Linf;
    [Setting("steps", "iterations (the step-size schedule scales with them)", Min = 1)]
    public int Steps { get; init; } = 100;
    [Setting("restarts", "random restarts; a sample keeps its first success", Min = 1)]
    public int Restarts { get; init; } = 1;
    /// <summary>Cross-entropy (BCE for one output) or DLR (<see cref="ApgdDlr"/>).</summary>
    public LossKind Loss { get; init; } = LossKind.CrossEntropy;
    /// <summary>Gradient passes averaged per step (EOT), 1 for deterministic models.</summary>
    [Setting("eot_samples", "gradient passes averaged per step (EOT, for randomised models)", Min = 1)]
    public int EotSamples { get; init; } = 1;
    /// <summary>The momentum weight of the previous step (0.25 = 1 - 0.75: the paper's alpha = 0.75).</summary>
    public const double Alpha = 0.75, RhoOscillation = 0.75;

    protected override void Validate()
    {
        if (Steps < 1) throw new PerturbException($"{Name}: steps must be at least 1, got {Steps}", 2);
        if (Restarts < 1) throw new PerturbException($"{Name}: restarts must be at least 1, got {Restarts}", 2);
        if (EotSamples < 1) throw new PerturbException($"{Name}: EOT samples must be at least 1, got {EotSamples}", 2);
        if (Loss == LossKind.CwMargin) throw new PerturbException($"{Name}: the loss is cross-entropy or DLR", 2);
    }

    /// <summary>
    /// The target rounds: one untargeted round (null) by default; APGD-T gives one per target class. A round's tensor
    /// holds one target per row for the targeted DLR loss.
    /// </summary>
    protected virtual IEnumerable<float[]?> Rounds(AttackBatch b) { yield return null; }

    protected override void AttackChunk(AttackBatch b)
    {
        int rows = b.Rows, d = b.Cols;
        var x0 = b.X0.ToArray();
        var result = (float[])x0.Clone();
        var found = new bool[rows];
        var bestLoss = Enumerable.Repeat(double.NegativeInfinity, rows).ToArray();
        var steps = new int[rows];
        using var noise = b.Be.Allocate(b.Shape(rows));
        using var ones = b.Be.Allocate(rows);
        b.Be.Fill(ones, 1f);
        ulong purpose = 0;
        foreach (var targets in Rounds(b))
        {
            using var tt = targets == null ? null : b.Be.FromArray(targets, rows);
            b.DlrTargets = tt;
            for (int rs = 0; rs < Restarts; rs++)
            {
                if (found.All(v => v)) break;
                purpose++;
                Run(b, x0, result, found, bestLoss, steps, noise, ones, purpose, targets != null);
            }
            b.DlrTargets = null;
        }
        b.Be.Upload(b.Adv, result);
        b.StepsHost = steps;
    }

    /// <summary>One APGD run from a random start; updates the rows not yet <paramref name="found"/>.</summary>
    void Run(AttackBatch b, float[] x0, float[] result, bool[] found, double[] keptLoss, int[] steps, Tensor noise, Tensor ones, ulong purpose, bool ownTargets)
    {
        int rows = b.Rows, d = b.Cols, n = Steps;
        var eps = b.Eps;
        // Start.
        b.UniformRows(noise, 0xA9D0UL + purpose);
        var t = noise.ToArray();
        var adv = new float[t.Length];
        Parallel.For(0, rows, r =>
        {
            long o = (long)r * d;
            double norm = 0;
            for (int j = 0; j < d; j++)
            {
                double v = 2 * t[o + j] - 1; t[o + j] = (float)v;
                norm = Norm == Norm.Linf ? Math.Max(norm, Math.Abs(v)) : norm + v * v;
            }
            if (Norm == Norm.L2) norm = Math.Sqrt(norm);
            double f = norm > 0 ? eps[r] / (norm + 1e-12) : 0;
            for (int j = 0; j < d; j++) adv[o + j] = (float)Math.Clamp(x0[o + j] + f * t[o + j], 0, 1);
        });
        var old = (float[])adv.Clone();
        var (grad, loss, ok) = Evaluate(b, adv, ones, ownTargets);
        var step = eps.Select(e => 2.0 * e).ToArray();
        var xBest = (float[])adv.Clone(); var gradBest = (float[])grad.Clone();
        var lossBest = (double[])loss.Clone();
        var lossSteps = new double[n + 1, rows];   // row 0: the loss before the first step (the reference's zeros)
        var lossLastCheck = (double[])lossBest.Clone();
        var reducedLastCheck = new bool[rows];
        for (int r = 0; r < rows; r++) if (!found[r] && ok[r]) Keep(r);
        int k = Math.Max((int)(0.22 * n), 1), sizeDecr = Math.Max((int)(0.03 * n), 1), kMin = Math.Max((int)(0.06 * n), 1), counter = 0;

        void Keep(int r)
        {
            found[r] = true;
            Array.Copy(adv, (long)r * d, result, (long)r * d, d);
        }

        for (int i = 0; i < n; i++)
        {
            double a = i == 0 ? 1 : Alpha;
            Parallel.For(0, rows, r =>
            {
                if (found[r]) return;
                steps[r]++;
                long o = (long)r * d;
                double gn = 0;
                if (Norm == Norm.L2) { for (int j = 0; j < d; j++) gn += (double)grad[o + j] * grad[o + j]; gn = Math.Sqrt(gn) + 1e-12; }
                var z = new double[d];
                for (int j = 0; j < d; j++)
                    z[j] = adv[o + j] + step[r] * (Norm == Norm.Linf ? Math.Sign(grad[o + j]) : grad[o + j] / gn);
                Project(z, x0, o, eps[r]);
                for (int j = 0; j < d; j++) z[j] = adv[o + j] + a * (z[j] - adv[o + j]) + (1 - a) * (adv[o + j] - old[o + j]);
                Project(z, x0, o, eps[r]);
                for (int j = 0; j < d; j++) { old[o + j] = adv[o + j]; adv[o + j] = (float)z[j]; }
            });
            (grad, loss, ok) = Evaluate(b, adv, ones, ownTargets);
            for (int r = 0; r < rows; r++)
            {
                if (found[r]) continue;
                if (ok[r]) { Keep(r); continue; }
                lossSteps[i + 1, r] = loss[r];
                if (loss[r] > lossBest[r])
                {
                    lossBest[r] = loss[r];
                    Array.Copy(adv, (long)r * d, xBest, (long)r * d, d);
                    Array.Copy(grad, (long)r * d, gradBest, (long)r * d, d);
                }
            }
            if (++counter == k)
            {
                for (int r = 0; r < rows; r++)
                {
                    if (found[r]) continue;
                    // The loss rose in at most rho * k of the last k steps (the reference's check_oscillation).
                    int rose = 0;
                    for (int c = 0; c < k; c++) { int s = i + 1 - c; if (s >= 1 && lossSteps[s, r] > lossSteps[s - 1, r]) rose++; }
                    bool halve = rose <= k * RhoOscillation || (!reducedLastCheck[r] && lossLastCheck[r] >= lossBest[r]);
                    reducedLastCheck[r] = halve;
                    lossLastCheck[r] = lossBest[r];
                    if (!halve) continue;
                    step[r] /= 2;
                    Array.Copy(xBest, (long)r * d, adv, (long)r * d, d);
                    Array.Copy(gradBest, (long)r * d, grad, (long)r * d, d);
                }
                counter = 0;
                k = Math.Max(k - sizeDecr, kMin);
            }
            if (found.All(v => v)) break;
        }
        // Rows without success keep their highest-loss point over the restarts.
        for (int r = 0; r < rows; r++)
            if (!found[r] && lossBest[r] > keptLoss[r])
            {
                keptLoss[r] = lossBest[r];
                Array.Copy(xBest, (long)r * d, result, (long)r * d, d);
            }
    }

    /// <summary>
    /// z = P(z): Linf, clamp to [x0 - eps, x0 + eps] and [0,1]; L2, the reference's x0 + (z - x0) min(eps, ||z - x0||) / ||z - x0||,
    /// then [0,1].
    /// </summary>
    void Project(double[] z, float[] x0, long o, double eps)
    {
        int d = z.Length;
        if (Norm == Norm.Linf)
        {
            for (int j = 0; j < d; j++) z[j] = Math.Clamp(Math.Clamp(z[j], x0[o + j] - eps, x0[o + j] + eps), 0, 1);
            return;
        }
        double n = 0;
        for (int j = 0; j < d; j++) { double v = z[j] - x0[o + j]; n += v * v; }
        n = Math.Sqrt(n);
        double f = n > eps ? eps / (n + 1e-12) : 1;
        for (int j = 0; j < d; j++) z[j] = Math.Clamp(x0[o + j] + (z[j] - x0[o + j]) * f, 0, 1);
    }

    /// <summary>
    /// The gradient of the maximised loss at <paramref name="adv"/> (averaged over <see cref="EotSamples"/> passes), the
    /// per-row loss, and whether each row meets the goal (untargeted or APGD-T's own targets: misclassified; targeted
    /// goal: the target).
    /// </summary>
    (float[] Grad, double[] Loss, bool[] Ok) Evaluate(AttackBatch b, float[] adv, Tensor ones, bool ownTargets)
    {
        int rows = b.Rows;
        b.Be.Upload(b.Adv, adv);
        float[]? sum = null;
        var loss = new double[rows];
        var ok = new bool[rows];
        var dir = b.Targeted && Loss == LossKind.CrossEntropy ? -1.0 : 1.0;
        for (int s = 0; s < EotSamples; s++)
        {
            var g = b.Gradient(b.Adv, Loss, Loss == LossKind.CrossEntropy ? b.Direction : ones, 0f).ToArray();
            if (sum == null) sum = g;
            else for (int j = 0; j < g.Length; j++) sum[j] += g[j];
            var l = b.Loss.ToArray();
            for (int r = 0; r < rows; r++) loss[r] += dir * l[r] / EotSamples;
            if (s == 0)
            {
                var z = b.Logits!.ToArray();
                int k = b.Outputs;
                for (int r = 0; r < rows; r++)
                {
                    int pred = k == 1 ? (z[r] > 0 ? 1 : 0) : Losses.Argmax(z.AsSpan(r * k, k));
                    ok[r] = b.Targeted && !ownTargets ? pred == b.LossLabels[r] : pred != b.TrueLabels[r];
                }
            }
        }
        if (EotSamples > 1) for (int j = 0; j < sum!.Length; j++) sum[j] /= EotSamples;
        return (sum!, loss, ok);
    }
}

/// <summary>APGD-DLR: APGD on the DLR loss (the plain margin for two-class models; see <see cref="IBackend.DlrLoss"/>).</summary>
public sealed class ApgdDlr : Apgd
{
    public ApgdDlr() { Loss = LossKind.Dlr; }
}

/// <summary>
/// APGD-T: APGD on the targeted DLR loss, one round per target class, the classes ranked 2nd to (1 + <see cref="TargetClasses"/>)
/// by each sample's clean logits (9 by default, fewer when the model has fewer classes: 1 for a two-class model);
/// a row stops at its first success. Untargeted goal only (it picks its own targets).
/// </summary>
public sealed class ApgdT : Apgd
{
    public override string Name => "apgd-t";
    [Setting("target_classes", "target classes, ranked 2nd onward by the clean logits (fewer when the model has fewer)", Min = 1)]
    public int TargetClasses { get; init; } = 9;

    public ApgdT() { Loss = LossKind.Dlr; }

    protected override void Validate()
    {
        base.Validate();
        if (TargetClasses < 1) throw new PerturbException($"{Name}: target classes must be at least 1, got {TargetClasses}", 2);
    }

    protected override IEnumerable<float[]?> Rounds(AttackBatch b) =>
        TargetRounds(b, TargetClasses, Name).Select(t => (float[]?)t.Select(v => (float)v).ToArray());

    /// <summary>
    /// The target of each row per round: the classes ranked 2nd, 3rd, ... by the row's clean logits, at most
    /// <paramref name="count"/> rounds and one fewer than the classes (first index wins ties). Untargeted goals only.
    /// </summary>
    internal static IEnumerable<int[]> TargetRounds(AttackBatch b, int count, string name)
    {
        if (b.Targeted) throw new PerturbException($"{name} picks its own targets; run it untargeted", 2);
        int k = b.Outputs, nc = b.Classes;
        var order = new int[b.Rows][];
        for (int r = 0; r < b.Rows; r++)
        {
            var z = k == 1 ? new[] { 0f, b.CleanLogits[r] } : b.CleanLogits.AsSpan(r * k, k).ToArray();
            order[r] = Enumerable.Range(0, nc).OrderByDescending(c => z[c]).ThenBy(c => c).ToArray();
        }
        for (int rank = 1; rank <= Math.Min(count, nc - 1); rank++)
            yield return order.Select(o => o[rank]).ToArray();
    }
}
