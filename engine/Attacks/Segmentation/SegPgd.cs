using Perturb.Engine.Nn;

namespace Perturb.Engine.Attacks.Segmentation;

/// <summary>
/// What segmentation PGD follows. <c>ce</c>: the mean per-pixel cross-entropy (ascended away from the clean prediction,
/// descended toward the target). <c>margin</c>: per pixel the logit margin m_j = max_{c != g_j} z_c - z_{g_j} toward the
/// goal class g_j (the target's class; untargeted, the best class other than the clean one), summed over the pixels
/// not yet past the goal by <see cref="SegPgd.Kappa"/> (m_j &gt; -kappa), as DAG does: a flipped pixel stops pulling,
/// where cross-entropy keeps growing on it and spends the budget there. <c>dice</c>: the soft Dice loss over all
/// classes (<see cref="PixelLoss"/>) of the clean prediction (ascended) or the target (descended). <c>flip</c>
/// (untargeted only): the cross-entropy toward the inverted clean prediction (every nucleus pixel background, every
/// background pixel nucleus class 1), descended. <c>auto</c> (the default): margin when untargeted, ce toward a target.
/// Measured on histology-seg (README): untargeted, the soft Dice loss lowers Dice with the clean prediction the most
/// at 8/255 (its gradient keeps pulling every pixel in proportion to what it adds to the overlap), the margin at 16/255
/// and above, where whole nuclei flip; toward erase, the margin leaves the pixels it has flipped with no pull, sign steps
/// flip some back, and the prediction fragments (no tile erased at 128/255 where ce, 100 steps, erases every one of 10).
/// </summary>
public enum SegPgdLoss { Auto, Ce, Margin, Dice, Flip }

/// <summary>
/// The step size of segmentation PGD. <c>fixed</c>: sign (or L2-normalised) steps of <see cref="SegPgd.StepSize"/>,
/// else 2.5 * eps / steps. <c>apgd</c>: Auto-PGD's schedule (Croce and Hein 2020): steps of 2 eps with momentum 0.75,
/// halved per image at checkpoints where its loss stalled (see <see cref="StepHalving"/>), going back to its
/// highest-loss point.
/// </summary>
public enum SegPgdSchedule { Fixed, Apgd }

/// <summary>
/// PGD on a segmentation model (Madry et al., per pixel): the <see cref="Loss"/> (per-pixel margin, cross-entropy, soft
/// Dice, or cross-entropy toward the inverted mask) away from the clean prediction (untargeted) or toward the target
/// mask (erase, forge), from the image (or, with <see cref="RandomStart"/>, a random point of the Linf or L2 ball),
/// Steps steps (sign or L2-normalised) on the <see cref="Schedule"/>, each projected onto the ball and clamped to
/// [0,1]; <see cref="Restarts"/> &gt; 1 runs again from random points of the ball. Each row keeps its best iterate
/// over every run (highest Dice with the target; untargeted: lowest Dice with the clean prediction), read from the
/// logits every gradient evaluation already computes, and with <see cref="EarlyStop"/> a row that meets the goal takes
/// no further step (sign steps of a fixed size otherwise keep flipping the pixels nearest the boundary).
/// </summary>
public class SegPgd : SegAttack
{
    public override string Name => "seg-pgd";
    public override bool NeedsEpsilon => true;
    [Setting("norm", "the ball: linf or l2")]
    public Norm Norm { get; init; } = Norm.Linf;
    [Setting("steps", "gradient steps per run", Min = 1)]
    public int Steps { get; init; } = 20;
    [Setting("step_size", "fixed schedule: absolute step size in pixel units (auto: 2.5 * eps / steps)", Min = 0, MinOpen = true)]
    public float? StepSize { get; init; }
    [Setting("schedule", "step size: fixed (step_size, else 2.5 * eps / steps) or apgd (2 eps, momentum 0.75, halved where the loss stalls)")]
    public SegPgdSchedule Schedule { get; init; } = SegPgdSchedule.Fixed;
    /// <summary>Off by default: toward erase it costs more than it gains (README: 50% of 10 tiles erased at 128/255 with it, 80% without, 40 steps).</summary>
    [Setting("random_start", "start at a random point of the ball (off: at the image)")]
    public bool RandomStart { get; init; }
    [Setting("restarts", "runs per image; after the first, each starts at a random point of the ball; the best iterate of all is kept", Min = 1)]
    public int Restarts { get; init; } = 1;
    [Setting("early_stop", "stop an image once it meets the goal")]
    public bool EarlyStop { get; init; } = true;
    [Setting("loss", "auto (margin when untargeted, ce toward a target), margin (per-pixel logit margin on the pixels not yet past the goal by kappa), ce (mean per-pixel cross-entropy), dice (soft Dice) or flip (untargeted: ce toward the inverted clean prediction)")]
    public SegPgdLoss Loss { get; init; } = SegPgdLoss.Auto;
    [Setting("kappa", "margin loss: a pixel stops pulling once its goal logit leads by this much", Min = 0)]
    public float Kappa { get; init; } = 2f;

    protected override void Validate()
    {
        if (Steps < 1) throw new PerturbException($"{Name}: steps must be at least 1, got {Steps}", 2);
        if (Restarts < 1) throw new PerturbException($"{Name}: restarts must be at least 1, got {Restarts}", 2);
    }

    protected virtual float StepFor(float eps) => StepSize ?? 2.5f * eps / Steps;

    protected override void AttackChunk(SegBatch b)
    {
        var be = b.Be; int rows = b.Rows;
        if (Loss == SegPgdLoss.Flip && b.Targeted) throw new PerturbException($"{Name}: --loss flip is untargeted (it inverts the clean prediction); toward a target use ce, dice or margin", 2);
        var loss = Loss != SegPgdLoss.Auto ? Loss : b.Targeted ? SegPgdLoss.Ce : SegPgdLoss.Margin;
        using var objective = new SegObjective(b, loss, Kappa);
        using var scratch = be.Allocate(b.A.Shape(rows));
        using var keep = new BestIterate(b, this);
        var running = Enumerable.Repeat(true, rows).ToArray();
        for (int run = 0; run < Restarts && running.Any(v => v); run++)
        {
            if (run > 0 || RandomStart) b.A.RandomStart(Norm, (ulong)run + 1, scratch);
            else be.Copy(b.A.X0, b.A.Adv);
            if (Schedule == SegPgdSchedule.Apgd) RunApgd(b, objective, keep, running, scratch);
            else RunFixed(b, objective, keep, running, scratch);
            // The run's last step is scored before the next run's start replaces it.
            var met = keep.Update(b.A.Forward(b.A.Adv), scratch);
            for (int r = 0; r < rows; r++) if (EarlyStop && met[r]) running[r] = false;
        }
        keep.CopyBestTo(b.A.Adv);
    }

    /// <summary>Scores the gradient evaluation's logits; a row that meets the goal stops (early stop); counts the steps of the rows still running.</summary>
    bool Track(SegBatch b, BestIterate keep, bool[] running, Tensor scratch)
    {
        var met = keep.Update(b.A.Logits!, scratch);
        for (int r = 0; r < b.Rows; r++)
        {
            if (EarlyStop && met[r]) running[r] = false;
            if (running[r]) b.Steps[r]++;
        }
        return running.Any(v => v);
    }

    void RunFixed(SegBatch b, SegObjective objective, BestIterate keep, bool[] running, Tensor scratch)
    {
        var sizes = b.A.Eps.Select(StepFor).ToArray();
        using var step = b.Be.Allocate(b.Rows);
        for (int t = 0; t < Steps; t++)
        {
            var g = objective.Gradient(b.A.Adv);
            if (!Track(b, keep, running, scratch)) break;
            b.Be.Upload(step, sizes.Select((v, r) => running[r] ? v : 0f).ToArray());
            b.A.Step(Norm, g, step);
        }
    }

    /// <summary>
    /// Auto-PGD's iteration on the host (the images are small): z = P(x_k + eta dir(g)), x_{k+1} = P(x_k + 0.75 (z - x_k)
    /// + 0.25 (x_k - x_{k-1})) (the first step without momentum), P the projection onto the ball and [0,1]; eta starts at
    /// 2 eps and <see cref="StepHalving"/> halves it per row.
    /// </summary>
    void RunApgd(SegBatch b, SegObjective objective, BestIterate keep, bool[] running, Tensor scratch)
    {
        int rows = b.Rows, d = b.A.Cols;
        var eps = b.A.Eps;
        var x0 = b.A.X0.ToArray();
        var adv = b.A.Adv.ToArray();
        var old = (float[])adv.Clone();
        var grad = objective.Gradient(b.A.Adv).ToArray();
        if (!Track(b, keep, running, scratch)) return;
        var schedule = new StepHalving(Steps, eps.Select(e => 2.0 * e).ToArray(), objective.RowLoss);
        var xBest = (float[])adv.Clone(); var gBest = (float[])grad.Clone();
        for (int i = 0; i < Steps; i++)
        {
            double a = i == 0 ? 1 : 0.75;
            Parallel.For(0, rows, r =>
            {
                if (!running[r]) return;
                long o = (long)r * d;
                double gn = 1;
                if (Norm == Norm.L2) { gn = 0; for (int j = 0; j < d; j++) gn += (double)grad[o + j] * grad[o + j]; gn = Math.Sqrt(gn) + 1e-12; }
                var z = new double[d];
                for (int j = 0; j < d; j++)
                    z[j] = adv[o + j] + schedule.Step[r] * (Norm == Norm.Linf ? Math.Sign(grad[o + j]) : grad[o + j] / gn);
                Project(z, x0, o, eps[r]);
                for (int j = 0; j < d; j++) z[j] = adv[o + j] + a * (z[j] - adv[o + j]) + (1 - a) * (adv[o + j] - old[o + j]);
                Project(z, x0, o, eps[r]);
                for (int j = 0; j < d; j++) { old[o + j] = adv[o + j]; adv[o + j] = (float)z[j]; }
            });
            b.Be.Upload(b.A.Adv, adv);
            grad = objective.Gradient(b.A.Adv).ToArray();
            bool any = Track(b, keep, running, scratch);
            for (int r = 0; r < rows; r++)
                if (running[r] && schedule.Record(r, objective.RowLoss[r]))
                {
                    Array.Copy(adv, (long)r * d, xBest, (long)r * d, d);
                    Array.Copy(grad, (long)r * d, gBest, (long)r * d, d);
                }
            if (!any) break;
            foreach (int r in schedule.Checkpoint())
            {
                Array.Copy(xBest, (long)r * d, adv, (long)r * d, d);
                Array.Copy(gBest, (long)r * d, grad, (long)r * d, d);
            }
        }
        b.Be.Upload(b.A.Adv, adv);
    }

    /// <summary>z = P(z): Linf, clamp to [x0 - eps, x0 + eps]; L2, scale z - x0 to at most eps; then [0,1].</summary>
    void Project(double[] z, float[] x0, long o, double eps)
    {
        int d = z.Length;
        double f = 1;
        if (Norm == Norm.L2)
        {
            double n = 0;
            for (int j = 0; j < d; j++) { double v = z[j] - x0[o + j]; n += v * v; }
            n = Math.Sqrt(n);
            if (n > eps) f = eps / (n + 1e-12);
        }
        for (int j = 0; j < d; j++)
        {
            double v = (z[j] - x0[o + j]) * f;
            if (Norm == Norm.Linf) v = Math.Clamp(v, -eps, eps);
            z[j] = Math.Clamp(x0[o + j] + v, 0, 1);
        }
    }
}

/// <summary>FGSM on a segmentation model: one step of size eps along the sign (Linf) or the normalised (L2) per-pixel loss gradient.</summary>
[OmitSettings("steps", "step_size", "random_start", "restarts", "schedule")]
public sealed class SegFgsm : SegPgd
{
    public override string Name => "seg-fgsm";
    public SegFgsm() { Steps = 1; RandomStart = false; }
    protected override float StepFor(float eps) => eps;
}
