namespace Perturb.Engine.Attacks.Segmentation;

/// <summary>
/// Dense Adversary Generation (Xie et al., 2017). Each pixel j has an adversarial label t_j (the target mask; when
/// untargeted, a seeded random class other than the clean prediction). Per iteration, on the pixels not yet labelled
/// t_j (the active set), the gradient r = d/dx sum_j (z_{t_j} - z_{c_j}) is taken, c_j the pixel's current class (the
/// paper's "still correct" pixels have c_j = the original class; a pixel the target leaves alone, such as background
/// under erase, joins the set only if it drifts to another class), and
/// x += gamma * r / ||r||_inf, clamped to [0,1] (and projected onto the Linf ball when a budget is given). A row
/// stops once its active set is empty, or after <see cref="Iterations"/>. The active set is read on the host each
/// iteration (one logits download per step).
/// </summary>
public sealed class Dag : SegAttack
{
    public override string Name => "dag";
    public override bool NeedsEpsilon => false;
    [Setting("iterations", "most iterations", Min = 1)]
    public int Iterations { get; init; } = 100;
    [Setting("gamma", "step: the Linf size of each iteration's perturbation, in pixel units", Min = 0, MinOpen = true)]
    public float Gamma { get; init; } = 0.5f / 255;

    protected override void Validate()
    {
        if (Iterations < 1) throw new PerturbException($"{Name}: iterations must be at least 1, got {Iterations}", 2);
    }

    protected override void AttackChunk(SegBatch b)
    {
        int rows = b.Rows, k = b.K, p = b.P;
        var adversarial = b.Targeted ? b.LossLabels : RandomOtherLabels(b);
        var running = Enumerable.Repeat(true, rows).ToArray();
        var dl = new float[(long)rows * k * p];
        using var scale = b.Be.Allocate(rows);
        using var zero = b.Be.Allocate(rows);
        for (int it = 0; it < Iterations; it++)
        {
            var pred = b.Argmax(b.Logits(b.A.Adv));
            Array.Clear(dl);
            for (int r = 0; r < rows; r++)
            {
                if (!running[r]) continue;
                int active = 0;
                for (int j = 0; j < p; j++)
                {
                    int q = r * p + j, t = adversarial[q], c = pred[q];
                    if (c == t) continue;
                    active++;
                    dl[((long)r * k + t) * p + j] += 1f;
                    dl[((long)r * k + c) * p + j] -= 1f;
                }
                if (active == 0) running[r] = false;
            }
            if (!running.Any(v => v)) break;
            var g = b.BackwardFrom(dl);
            // Per row: gamma / ||r||_inf (0 for stopped rows), then x += that * r.
            b.Be.ReduceRows(Perturb.Engine.Reduction.Linf, g, scale, rows, g.Length / rows);
            var s = scale.ToArray();
            for (int r = 0; r < rows; r++) { s[r] = running[r] && s[r] > 0 ? Gamma / s[r] : 0f; if (running[r]) b.Steps[r]++; }
            b.Be.Upload(scale, s);
            using var step = b.Be.Allocate(g.Shape);
            b.A.ScaleRows(g, scale, step);
            b.Be.Axpy(1f, step, b.A.Adv);
            if (b.A.EpsT != null) b.A.Step(Norm.Linf, step, zero); // projection onto the ball (a zero step), then [0,1]
            else b.Be.Clamp(b.A.Adv, 0f, 1f, b.A.Adv);
        }
    }

    /// <summary>Untargeted DAG labels: per pixel a class other than the clean prediction, from the row's own seeded stream.</summary>
    int[] RandomOtherLabels(SegBatch b)
    {
        var t = new int[b.Rows * b.P];
        for (int r = 0; r < b.Rows; r++)
        {
            var rng = new Perturb.Engine.Data.SplitMix64(Seed ^ b.A.StreamOffset(r, 0xDA6));
            for (int j = 0; j < b.P; j++)
            {
                int o = b.CleanPrediction[r * b.P + j];
                int c = rng.NextInt(b.K - 1);
                t[r * b.P + j] = c >= o ? c + 1 : c;
            }
        }
        return t;
    }
}
