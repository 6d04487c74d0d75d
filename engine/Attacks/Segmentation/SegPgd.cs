namespace Perturb.Engine.Attacks.Segmentation;

/// <summary>
/// What segmentation PGD follows. <c>ce</c>: the mean per-pixel cross-entropy (ascended away from the clean prediction,
/// descended toward the target). <c>margin</c>: per pixel the logit margin m_j = max_{c != g_j} z_c - z_{g_j} toward the
/// goal class g_j (the target's class; untargeted, the best class other than the clean one), summed over the pixels
/// not yet past the goal by <see cref="SegPgd.Kappa"/> (m_j &gt; -kappa), as DAG does: a flipped pixel stops pulling,
/// where cross-entropy keeps growing on it and spends the budget there. <c>auto</c> (the default): margin when
/// untargeted, ce toward a target. Measured on histology-seg (README): untargeted, the margin lowers Dice with the
/// clean prediction further at 16/255 and above (about equal at 4 to 8/255); toward erase, the margin leaves the
/// pixels it has flipped with no pull, sign steps flip some back, and the prediction fragments (no tile erased at
/// 128/255 where ce, 100 steps, erases every one of 10).
/// </summary>
public enum SegPgdLoss { Auto, Ce, Margin }

/// <summary>
/// PGD on a segmentation model (Madry et al., per pixel): the <see cref="Loss"/> (per-pixel margin or cross-entropy)
/// away from the clean prediction (untargeted) or toward the target mask (erase, forge), from the image (or, with
/// <see cref="RandomStart"/>, a random point of the Linf or L2 ball), Steps fused steps (sign or L2-normalised), each projected onto the ball and clamped to [0,1].
/// Step size: <see cref="StepSize"/>, else 2.5 * eps / Steps. Each row keeps its best iterate (highest Dice with the
/// target; untargeted: lowest Dice with the clean prediction), read from the logits every gradient evaluation already
/// computes, and with <see cref="EarlyStop"/> a row that meets the goal takes no further step (sign steps of a fixed
/// size otherwise keep flipping the pixels nearest the boundary).
/// </summary>
public class SegPgd : SegAttack
{
    public override string Name => "seg-pgd";
    public override bool NeedsEpsilon => true;
    [Setting("norm", "the ball: linf or l2")]
    public Norm Norm { get; init; } = Norm.Linf;
    [Setting("steps", "gradient steps", Min = 1)]
    public int Steps { get; init; } = 20;
    [Setting("step_size", "absolute step size in pixel units (auto: 2.5 * eps / steps)", Min = 0, MinOpen = true)]
    public float? StepSize { get; init; }
    /// <summary>Off by default: toward erase it costs more than it gains (README: 50% of 10 tiles erased at 128/255 with it, 80% without, 40 steps).</summary>
    [Setting("random_start", "start at a random point of the ball (off: at the image)")]
    public bool RandomStart { get; init; }
    [Setting("early_stop", "stop an image once it meets the goal")]
    public bool EarlyStop { get; init; } = true;
    [Setting("loss", "auto (margin when untargeted, ce toward a target), margin (per-pixel logit margin on the pixels not yet past the goal by kappa) or ce (mean per-pixel cross-entropy)")]
    public SegPgdLoss Loss { get; init; } = SegPgdLoss.Auto;
    [Setting("kappa", "margin loss: a pixel stops pulling once its goal logit leads by this much", Min = 0)]
    public float Kappa { get; init; } = 2f;

    protected override void Validate()
    {
        if (Steps < 1) throw new PerturbException($"{Name}: steps must be at least 1, got {Steps}", 2);
    }

    protected virtual float StepFor(float eps) => StepSize ?? 2.5f * eps / Steps;

    protected override void AttackChunk(SegBatch b)
    {
        var be = b.Be; int rows = b.Rows;
        var sizes = b.A.Eps.Select(StepFor).ToArray();
        using var step = be.FromArray(sizes, rows);
        using var scratch = be.Allocate(b.A.Shape(rows));
        if (RandomStart) b.A.RandomStart(Norm, 1, scratch);
        using var keep = new BestIterate(b, this);
        var running = Enumerable.Repeat(true, rows).ToArray();
        bool margin = Loss == SegPgdLoss.Margin || Loss == SegPgdLoss.Auto && !b.Targeted;
        for (int t = 0; t < Steps; t++)
        {
            var g = margin ? b.MarginGradient(b.A.Adv, Kappa) : b.Gradient(b.A.Adv);
            var met = keep.Update(b.A.Logits!, scratch);
            for (int r = 0; r < rows; r++)
            {
                if (EarlyStop && met[r]) running[r] = false;
                if (running[r]) b.Steps[r]++;
            }
            if (!running.Any(v => v)) break;
            be.Upload(step, sizes.Select((v, r) => running[r] ? v : 0f).ToArray());
            b.A.Step(Norm, g, step);
        }
        keep.Update(b.A.Forward(b.A.Adv), scratch);
        keep.CopyBestTo(b.A.Adv);
    }
}

/// <summary>FGSM on a segmentation model: one step of size eps along the sign (Linf) or the normalised (L2) per-pixel loss gradient.</summary>
[OmitSettings("steps", "step_size", "random_start")]
public sealed class SegFgsm : SegPgd
{
    public override string Name => "seg-fgsm";
    public SegFgsm() { Steps = 1; RandomStart = false; }
    protected override float StepFor(float eps) => eps;
}
