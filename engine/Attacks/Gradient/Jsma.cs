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
/// Every iteration runs on the device: the forward pass, the stop test (prediction = target, or too many changed),
/// both gradients (two input-only backward passes of constant one-hot rows, uploaded once per chunk), and the pair
/// search and move (<see cref="IBackend.JsmaStep"/>); 4 bytes come back per iteration (how many rows still run).
/// Limits: the pair search is O(D^2) per sample and iteration (one thread per row on ILGPU), so JSMA is meant for
/// small images (MNIST-sized, D up to a few thousand values). No budget (eps null).
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
        var target = new float[rows];
        for (int r = 0; r < rows; r++)
        {
            if (b.Targeted) { target[r] = b.LossLabels[r]; continue; }
            var z = Losses.ClassLogits(b.CleanLogits, r, k);
            target[r] = Enumerable.Range(0, nc).Where(c => c != b.TrueLabels[r]).OrderByDescending(c => z[c]).ThenBy(c => c).First();
        }
        // Set once per chunk: the search domain, the targets, the stop limit and the one-hot rows of both gradients.
        var x0 = b.X0.ToArray();
        using var domain = be.FromArray(x0.Select(v => (Theta > 0 ? v < 1f : v > 0f) ? 1f : 0f).ToArray(), rows, d);
        using var tgt = be.FromArray(target, rows);
        using var limit = be.Allocate(rows);
        be.Fill(limit, (float)Math.Floor(Gamma * d) - 1.5f); // running while changed + 2 <= the most changes
        using var changed = be.Allocate(rows);
        using var running = be.Allocate(rows); be.Fill(running, 1f);
        using var pred = be.Allocate(rows); using var t1 = be.Allocate(rows); using var t2 = be.Allocate(rows);
        using var count = be.Allocate(1);
        using var alpha = be.Allocate(rows, d); using var beta = be.Allocate(rows, d);
        // One-output models (logits (0, z)): alpha = s dz/dx with s = +1 toward class 1, beta = -alpha.
        using var dzA = be.FromArray(k == 1 ? Enumerable.Repeat(1f, rows).ToArray() : OneHot(target, k, 1f), rows, k);
        using var dzB = k == 1 ? be.FromArray(target.Select(t => t == 1 ? 1f : -1f).ToArray(), rows) : be.FromArray(OneHot(target, k, 0f), rows, k);
        using var zero = be.Allocate(rows);
        be.Copy(b.X0, b.Adv);
        while (true)
        {
            var logits = b.Forward(b.Adv);
            if (k == 1) be.Greater(logits, zero, pred); else be.ArgmaxRows(logits, pred, rows, k);
            // running *= (pred != target) * (changed + 2 <= most changes)
            be.Greater(pred, tgt, t1); be.Greater(tgt, pred, t2); be.Add(t1, t2, t1); be.Mul(running, t1, running);
            be.Greater(limit, changed, t1); be.Mul(running, t1, running);
            be.ReduceRows(Reduction.Sum, running, count, 1, rows);
            if (count.ToArray()[0] == 0f) break;
            if (k == 1)
            {
                var g = b.Model.Backward(dzA, BackwardMode.InputOnly)!;
                b.CountGradients();
                be.MulRows(g, dzB, alpha, rows, d);
                be.Scale(-1f, alpha, beta);
            }
            else
            {
                be.Copy(b.Model.Backward(dzA, BackwardMode.InputOnly)!, alpha);
                be.Copy(b.Model.Backward(dzB, BackwardMode.InputOnly)!, beta);
                b.CountGradients(2);
            }
            be.Add(b.StepCount, running, b.StepCount);
            be.JsmaStep(alpha, beta, domain, running, b.Adv, changed, Theta, rows, d);
        }
    }

    /// <summary>Rows of k values: <paramref name="on"/> at the target's column, 1 - on elsewhere.</summary>
    static float[] OneHot(float[] target, int k, float on)
    {
        var h = new float[target.Length * k];
        for (int r = 0; r < target.Length; r++)
            for (int j = 0; j < k; j++) h[r * k + j] = j == (int)target[r] ? on : 1f - on;
        return h;
    }
}
