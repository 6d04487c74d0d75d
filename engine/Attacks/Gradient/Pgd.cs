using Perturb.Engine.Nn;

namespace Perturb.Engine.Attacks.Gradient;

/// <summary>
/// Projected gradient descent (Madry et al.) in the Linf or L2 ball: a random start in the ball, then Steps fused
/// steps x' = Proj_{B(x, eps)}(x' + a * dir(dL/dx')) clamped to [0,1] (dir = sign for Linf, g/||g||_2 for L2).
/// Restarts keep, per sample, the best end point: successful first, then the highest loss (on the device).
/// Early stop (per sample, on the device): a sample whose current point already meets the goal takes no further step;
/// its step size is multiplied by a "still running" mask built from the sign of the CW margin.
/// Step size: <see cref="StepSize"/> (absolute), else <see cref="RelStepSize"/> * eps (default 2.5 / Steps, as Madry).
/// </summary>
public class Pgd : Attack
{
    public override string Name => "pgd";
    public override bool NeedsEpsilon => true;
    [Setting("norm", "the ball: linf or l2")]
    public Norm Norm { get; init; } = Norm.Linf;
    [Setting("steps", "gradient steps", Min = 1)]
    public int Steps { get; init; } = 10;
    /// <summary>Absolute step size (pixel units); overrides <see cref="RelStepSize"/>.</summary>
    [Setting("step_size", "absolute step size in pixel units (fractions allowed, e.g. 1/255); overrides rel_step_size", Min = 0, MinOpen = true)]
    public float? StepSize { get; init; }
    /// <summary>Step size as a fraction of eps (default 2.5 / Steps).</summary>
    [Setting("rel_step_size", "step size as a fraction of eps (auto: 2.5 / steps)", Min = 0, MinOpen = true)]
    public float? RelStepSize { get; init; }
    [Setting("random_start", "start at a random point of the ball")]
    public bool RandomStart { get; init; } = true;
    [Setting("restarts", "random restarts, keeping the best end point per sample", Min = 1)]
    public int Restarts { get; init; } = 1;
    [Setting("early_stop", "stop a sample once it meets the goal")]
    public bool EarlyStop { get; init; } = true;
    /// <summary>Cross-entropy (default) or the CW margin loss (with <see cref="Kappa"/>).</summary>
    [Setting("loss", "the loss ascended: cross-entropy or the CW margin (with kappa)")]
    public LossKind Loss { get; init; } = LossKind.CrossEntropy;
    [Setting("kappa", "confidence margin of the CW margin loss", Min = 0)]
    public float Kappa { get; init; }

    protected override void Validate()
    {
        if (Steps < 1) throw new PerturbException($"{Name}: steps must be at least 1, got {Steps}", 2);
        if (Restarts < 1) throw new PerturbException($"{Name}: restarts must be at least 1, got {Restarts}", 2);
        if (StepSize is { } s && !(s > 0)) throw new PerturbException($"{Name}: step size must be positive, got {s}", 2);
        if (RelStepSize is { } r && !(r > 0)) throw new PerturbException($"{Name}: relative step size must be positive, got {r}", 2);
    }

    /// <summary>Per-row step sizes.</summary>
    protected float[] StepSizes(AttackBatch b) => b.Eps.Select(e => StepSize ?? (RelStepSize ?? 2.5f / Steps) * e).ToArray();

    /// <summary>The gradient the step follows at b.Adv (plain PGD: the loss gradient; EOT-PGD: its average over transformations).</summary>
    protected virtual Tensor StepGradient(AttackBatch b, Tensor gradScale, int restart, int step) => b.Gradient(b.Adv, Loss, gradScale, Kappa);

    /// <summary>Whether early stop may read b.Logits after <see cref="StepGradient"/> (they must be the logits of b.Adv itself).</summary>
    protected virtual bool LogitsAreOfAdv => true;

    protected override void AttackChunk(AttackBatch b)
    {
        var be = b.Be; int rows = b.Rows;
        using var step = be.FromArray(StepSizes(b), rows);
        using var stepEff = be.Allocate(rows);
        using var running = be.Allocate(rows);
        using var mask = be.Allocate(rows);
        using var noise = be.Allocate(b.Shape(rows));
        // CE: +1 ascends the true class's loss, -1 descends toward the target. The CW margin is minimised: scale -1 turns
        // its gradient into an ascent direction for the (ascending) step.
        using var marginScale = be.Allocate(rows);
        be.Fill(marginScale, -1f);
        var scale = Loss == LossKind.CrossEntropy ? b.Direction : marginScale;
        bool early = EarlyStop && LogitsAreOfAdv;
        using var best = Restarts > 1 ? be.Allocate(b.Shape(rows)) : null;
        using var bestScore = Restarts > 1 ? be.Allocate(rows) : null;
        using var score = Restarts > 1 ? be.Allocate(rows) : null;
        for (int r = 0; r < Restarts; r++)
        {
            if (RandomStart) b.RandomStart(Norm, (ulong)r + 1, noise);
            else be.Copy(b.X0, b.Adv);
            be.Fill(running, 1f);
            for (int t = 0; t < Steps; t++)
            {
                var g = StepGradient(b, scale, r, t);
                b.Step(Norm, g, b.RunningStep(early, step, running, mask, stepEff));
            }
            if (Restarts > 1)
            {
                // score = direction * CE + 1e4 * success: successful first, then the highest attack loss.
                var z = b.Forward(b.Adv);
                b.CountGradients();
                b.SuccessMask(z, mask);
                b.CrossEntropyLoss(z, score!);
                be.Mul(score!, b.Direction, score!);
                be.Axpy(1e4f, mask, score!);
                if (r == 0) { be.Copy(b.Adv, best!); be.Copy(score!, bestScore!); }
                else
                {
                    be.Greater(score!, bestScore!, mask);
                    b.SelectRows(best!, b.Adv, mask);
                    b.SelectRows(bestScore!, score!, mask);
                }
            }
        }
        if (Restarts > 1) be.Copy(best!, b.Adv);
    }
}
