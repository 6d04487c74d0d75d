namespace Perturb.Engine.Attacks.Segmentation;

/// <summary>
/// Adaptive Segmentation Mask Attack (Ozbulak et al., MICCAI 2019), targeted. Per iteration n the image moves along
/// the gradient of sum_c sum_j z_cj [target_j = c] [pred_j != c] - ||x - x0||_2^2 (the target class's logit, only on
/// the pixels not yet at their target, with an L2 pull back to the original), scaled by the adaptive multiplier
/// tau_n = beta * IoU_n + tau, IoU_n the foreground IoU of the current prediction with the target: no sign, no
/// normalisation, so the step shrinks where the gradient does. Clamped to [0,1] (and projected onto the Linf ball
/// when a budget is given). A row stops once its prediction equals the target. Masks are read on the host each iteration.
/// </summary>
public sealed class Asma : SegAttack
{
    public override string Name => "asma";
    public override bool NeedsEpsilon => false;
    [Setting("iterations", "most iterations", Min = 1)]
    public int Iterations { get; init; } = 100;
    [Setting("tau", "base perturbation multiplier", Min = 0, MinOpen = true)]
    public float Tau { get; init; } = 2e-3f;
    [Setting("beta", "adaptive part of the multiplier: tau_n = beta * IoU + tau", Min = 0)]
    public float Beta { get; init; } = 4e-3f;

    protected override void Validate()
    {
        if (Iterations < 1) throw new PerturbException($"{Name}: iterations must be at least 1, got {Iterations}", 2);
    }

    protected override void AttackChunk(SegBatch b)
    {
        if (!b.Targeted) throw new PerturbException("asma is a targeted attack: give --target erase or forge", 2);
        int rows = b.Rows, k = b.K, p = b.P;
        var target = b.LossLabels;
        var running = Enumerable.Repeat(true, rows).ToArray();
        var dl = new float[(long)rows * k * p];
        var mul = new float[rows];
        using var scale = b.Be.Allocate(rows);
        using var zero = b.Be.Allocate(rows);
        using var pull = b.Be.Allocate(b.A.Adv.Shape);
        for (int it = 0; it < Iterations; it++)
        {
            var pred = b.Argmax(b.Logits(b.A.Adv));
            Array.Clear(dl);
            for (int r = 0; r < rows; r++)
            {
                if (!running[r]) continue;
                int wrong = 0;
                for (int j = 0; j < p; j++)
                {
                    int q = r * p + j;
                    if (pred[q] == target[q]) continue;
                    wrong++;
                    dl[((long)r * k + target[q]) * p + j] = 1f;
                }
                if (wrong == 0) { running[r] = false; continue; }
                double iou = Training.SegMetrics.ForegroundIou(pred.AsSpan(r * p, p), target.AsSpan(r * p, p));
                mul[r] = (float)(Beta * iou + Tau);
                b.Steps[r]++;
            }
            if (!running.Any(v => v)) break;
            var g = b.BackwardFrom(dl);
            // Ascent direction: g - 2 (x - x0), scaled per row by tau_n (0 for stopped rows).
            b.Be.Copy(b.A.Adv, pull);
            b.Be.Axpy(-1f, b.A.X0, pull);
            b.Be.Axpy(-2f, pull, g);
            b.Be.Upload(scale, running.Select((on, r) => on ? mul[r] : 0f).ToArray());
            b.A.ScaleRows(g, scale, pull);
            b.Be.Axpy(1f, pull, b.A.Adv);
            if (b.A.EpsT != null) b.A.Step(Norm.Linf, pull, zero);
            else b.Be.Clamp(b.A.Adv, 0f, 1f, b.A.Adv);
        }
    }
}
