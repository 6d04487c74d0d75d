using Perturb.Engine.Nn;

namespace Perturb.Engine.Attacks.Gradient;

/// <summary>
/// Momentum iterative FGSM (Dong et al.): g = mu * g + grad / ||grad||_1, then a fused step along g (sign for Linf,
/// L2-normalised for L2), projected and clamped. Starts at x; step size eps / Steps unless given. The per-sample L1 norm
/// is ReduceRows(Sum) of Abs(grad), and grad / ||grad||_1 a per-row division on the device. Early stop per sample as PGD.
/// </summary>
public sealed class MiFgsm : Attack
{
    public override string Name => "mifgsm";
    public override bool NeedsEpsilon => true;
    [Setting("norm", "the ball: linf or l2")]
    public Norm Norm { get; init; } = Norm.Linf;
    [Setting("steps", "gradient steps", Min = 1)]
    public int Steps { get; init; } = 10;
    [Setting("momentum", "decay factor of the accumulated gradient", Min = 0)]
    public float Momentum { get; init; } = 1.0f;
    [Setting("step_size", "absolute step size in pixel units (auto: eps / steps)", Min = 0, MinOpen = true)]
    public float? StepSize { get; init; }
    [Setting("early_stop", "stop a sample once it meets the goal")]
    public bool EarlyStop { get; init; } = true;

    protected override void Validate()
    {
        if (Steps < 1) throw new PerturbException($"{Name}: steps must be at least 1, got {Steps}", 2);
        if (!(Momentum >= 0)) throw new PerturbException($"{Name}: momentum must be non-negative, got {Momentum}", 2);
        if (StepSize is { } s && !(s > 0)) throw new PerturbException($"{Name}: step size must be positive, got {s}", 2);
    }

    protected override void AttackChunk(AttackBatch b)
    {
        var be = b.Be; int rows = b.Rows;
        using var step = be.FromArray(b.Eps.Select(e => StepSize ?? e / Steps).ToArray(), rows);
        using var stepEff = be.Allocate(rows);
        using var running = be.Allocate(rows);
        using var mask = be.Allocate(rows);
        using var l1 = be.Allocate(rows);
        using var inv = be.Allocate(rows);
        using var mom = be.Allocate(b.Shape(rows));
        using var abs = be.Allocate(b.Shape(rows));
        be.Fill(running, 1f);
        for (int t = 0; t < Steps; t++)
        {
            var g = b.Gradient(b.Adv, LossKind.CrossEntropy, b.Direction);
            be.Abs(g, abs);
            be.ReduceRows(Reduction.Sum, abs, l1, rows, b.Cols);
            b.Affine(l1, 1f, 1e-12f, l1);
            be.Div(b.Ones, l1, inv);
            // mom = mu * mom + g / ||g||_1
            be.Scale(Momentum, mom, mom);
            b.ScaleRows(g, inv, abs);
            be.Axpy(1f, abs, mom);
            b.Step(Norm, mom, b.RunningStep(EarlyStop, step, running, mask, stepEff));
        }
    }
}
