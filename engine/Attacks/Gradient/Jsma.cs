using Perturb.Engine.Nn;

namespace Perturb.Engine.Attacks.Gradient;

/// <summary>
/// Jacobian-based saliency map attack (Papernot et al.), over pixel pairs. Targeted by nature: untargeted goals aim
/// at each sample's second most likely class (by the clean logits). Each iteration takes, on the logits,
/// alpha = d z_t / dx and beta = d (sum_{j != t} z_j) / dx (two input-only backward passes for the chunk), picks the
/// pair (p, q) of the search domain maximising (alpha_p + alpha_q) * |beta_p + beta_q| subject to alpha_sum &gt; 0 and
/// beta_sum &lt; 0 (signs flipped for theta &lt; 0), moves both pixels by theta (clamped to [0,1]) and removes them from
/// the domain, until the target is reached, no pair qualifies, or gamma * pixels have changed.
/// For one-output models (logits (0, z)) alpha = d (z_t - z_other)/dx and beta = -alpha.
///
/// Limits: the pair search is O(D^2) per sample and iteration and runs on the host (as do the per-iteration copies of
/// the gradients), so JSMA is meant for small images (MNIST-sized, D up to a few thousand values). No budget (eps null).
/// </summary>
public sealed class Jsma : Attack
{
    public override string Name => "jsma";
    public override bool NeedsEpsilon => false;
    /// <summary>Change per chosen pixel: +1 saturates pixels upward (default), negative values darken.</summary>
    [Setting("theta", "change per chosen feature (non-zero; negative decreases)")]
    public float Theta { get; init; } = 1f;
    /// <summary>Largest fraction of the values that may change.</summary>
    [Setting("gamma", "most features changed, as a fraction of the input", Min = 0, MinOpen = true, Max = 1)]
    public float Gamma { get; init; } = 0.1f;

    protected override void Validate()
    {
        if (Theta == 0 || !float.IsFinite(Theta)) throw new PerturbException($"{Name}: theta must be non-zero, got {Theta}", 2);
        if (!(Gamma > 0 && Gamma <= 1)) throw new PerturbException($"{Name}: gamma must be in (0, 1], got {Gamma}", 2);
    }

    protected override void AttackChunk(AttackBatch b)
    {
        var be = b.Be; int rows = b.Rows, d = b.Cols, k = b.Outputs, nc = b.Classes;
        if ((long)d * d > 100_000_000L) throw new PerturbException($"{Name}: images of {d} values are too large for the pair search (at most 10000 values)", 2);
        var adv = b.X0.ToArray();
        var target = new int[rows];
        for (int r = 0; r < rows; r++)
        {
            if (b.Targeted) { target[r] = b.LossLabels[r]; continue; }
            var z = Losses.ClassLogits(b.CleanLogits, r, k);
            target[r] = Enumerable.Range(0, nc).Where(c => c != b.TrueLabels[r]).OrderByDescending(c => z[c]).ThenBy(c => c).First();
        }
        var domain = new bool[(long)rows * d];
        for (long i = 0; i < domain.Length; i++) domain[i] = Theta > 0 ? adv[i] < 1f : adv[i] > 0f;
        var changed = new int[rows];
        var done = new bool[rows];
        var steps = new int[rows];
        int maxChanged = (int)Math.Floor(Gamma * d);
        using var dz = be.Allocate(rows, k);
        var dzHost = new float[rows * k];
        while (true)
        {
            be.Upload(b.Adv, adv);
            var logits = b.Forward(b.Adv).ToArray();
            bool any = false;
            for (int r = 0; r < rows; r++)
            {
                if (done[r]) continue;
                int pred = Losses.PredictRow(logits, r, k);
                if (pred == target[r] || changed[r] + 2 > maxChanged) done[r] = true;
                else any = true;
            }
            if (!any) break;
            float[] alpha, beta;
            if (k == 1)
            {
                be.Fill(dz, 1f);
                var g = b.Model.Backward(dz, BackwardMode.InputOnly)!.ToArray();
                b.CountGradients();
                alpha = new float[g.Length]; beta = new float[g.Length];
                for (int r = 0; r < rows; r++)
                {
                    float s = target[r] == 1 ? 1f : -1f;
                    for (int j = 0; j < d; j++) { alpha[(long)r * d + j] = s * g[(long)r * d + j]; beta[(long)r * d + j] = -s * g[(long)r * d + j]; }
                }
            }
            else
            {
                Array.Clear(dzHost);
                for (int r = 0; r < rows; r++) dzHost[r * k + target[r]] = 1f;
                be.Upload(dz, dzHost);
                alpha = b.Model.Backward(dz, BackwardMode.InputOnly)!.ToArray();
                for (int i = 0; i < dzHost.Length; i++) dzHost[i] = 1f - dzHost[i];
                be.Upload(dz, dzHost);
                beta = b.Model.Backward(dz, BackwardMode.InputOnly)!.ToArray();
                b.CountGradients(2);
            }
            Parallel.For(0, rows, r =>
            {
                if (done[r]) return;
                steps[r]++;
                long o = (long)r * d;
                float sgn = Theta > 0 ? 1f : -1f;
                double best = 0; int bp = -1, bq = -1;
                for (int p = 0; p < d; p++)
                {
                    if (!domain[o + p]) continue;
                    float ap = sgn * alpha[o + p], bpv = sgn * beta[o + p];
                    for (int q = p + 1; q < d; q++)
                    {
                        if (!domain[o + q]) continue;
                        float a = ap + sgn * alpha[o + q], bb = bpv + sgn * beta[o + q];
                        if (a <= 0 || bb >= 0) continue;
                        double sc = (double)a * -bb;
                        if (sc > best) { best = sc; bp = p; bq = q; }
                    }
                }
                if (bp < 0) { done[r] = true; return; }
                foreach (var p in new[] { bp, bq })
                {
                    adv[o + p] = Math.Clamp(adv[o + p] + Theta, 0f, 1f);
                    domain[o + p] = false;
                }
                changed[r] += 2;
            });
        }
        be.Upload(b.Adv, adv);
        b.StepsHost = steps;
    }
}
