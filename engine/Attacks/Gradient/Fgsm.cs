using Perturb.Engine.Nn;

namespace Perturb.Engine.Attacks.Gradient;

/// <summary>
/// Fast gradient sign method (Goodfellow et al.): x' = clamp(x + eps * sign(dL/dx), 0, 1) for Linf; for L2 the fast
/// gradient method x' = x + eps * g/||g||_2. One gradient per sample; untargeted ascends the cross-entropy of the true
/// class, targeted descends the cross-entropy of the target.
/// </summary>
public sealed class Fgsm : Attack
{
    public override string Name => "fgsm";
    public override bool NeedsEpsilon => true;
    [Setting("norm", "the ball: linf (sign of the gradient) or l2 (the normalised gradient)")]
    public Norm Norm { get; init; } = Norm.Linf;

    protected override void AttackChunk(AttackBatch b)
    {
        var g = b.Gradient(b.X0, LossKind.CrossEntropy, b.Direction);
        b.Step(Norm, g, b.EpsT!);
        b.Be.Fill(b.StepCount, 1f);
    }
}
