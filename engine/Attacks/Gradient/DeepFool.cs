using Perturb.Engine.Nn;

namespace Perturb.Engine.Attacks.Gradient;

/// <summary>
/// DeepFool (Moosavi-Dezfooli et al.), L2 or Linf: at each iteration, linearise the model around the current point and
/// step to the nearest linearised decision boundary among the top-k classes (by the clean logits):
/// w_k = grad z_k - grad z_s, f_k = z_k - z_s (s = the true class, or for targeted goals the current prediction with
/// k = the target only), pert_k = |f_k| / ||w_k||_q (q = 2 for L2, 1 for Linf), then
/// r += (pert + 1e-4) w/||w||_2 (L2) or (pert + 1e-4) sign(w) (Linf), and x' = clamp(x + (1 + overshoot) r, 0, 1),
/// until the goal is met or <see cref="MaxIterations"/>.
///
/// Per-class gradients: one forward, then one input-only backward per candidate class with one-hot dLogits for the
/// whole chunk. The small per-sample linear algebra runs on the host between iterations: DeepFool is iterative by
/// nature, with a data-dependent choice of class per sample, so each iteration copies the logits and the candidate
/// gradients (rows x k x C x H x W floats) to the host. It has no budget (one result, eps null).
/// </summary>
public sealed class DeepFool : Attack
{
    public override string Name => "deepfool";
    public override bool NeedsEpsilon => false;
    [Setting("norm", "the distance: l2 or linf")]
    public Norm Norm { get; init; } = Norm.L2;
    [Setting("steps", "most iterations", Min = 1)]
    public int MaxIterations { get; init; } = 50;
    [Setting("overshoot", "relative overshoot past the linearised boundary", Min = 0)]
    public float Overshoot { get; init; } = 0.02f;
    /// <summary>Candidate classes: the k most likely under the clean logits (the class moved away from included).</summary>
    [Setting("top_k", "candidate classes: the k most likely under the clean logits", Min = 2)]
    public int TopK { get; init; } = 10;

    protected override void Validate()
    {
        if (MaxIterations < 1) throw new PerturbException($"{Name}: iterations must be at least 1, got {MaxIterations}", 2);
        if (TopK < 2) throw new PerturbException($"{Name}: top-k must be at least 2, got {TopK}", 2);
        if (!(Overshoot >= 0)) throw new PerturbException($"{Name}: overshoot must be non-negative, got {Overshoot}", 2);
    }

    protected override void AttackChunk(AttackBatch b)
    {
        var be = b.Be; int rows = b.Rows, d = b.Cols, k = b.Outputs, nc = b.Classes;
        var x0 = b.X0.ToArray();
        var adv = (float[])x0.Clone();
        var rTot = new double[(long)rows * d];
        var steps = new int[rows];
        // Candidate classes per row: the top-k of the clean class logits (pairs (0, z) for one-output models).
        int kk = Math.Min(TopK, nc);
        var cands = new int[rows][];
        for (int r = 0; r < rows; r++)
        {
            var z = Losses.ClassLogits(b.CleanLogits, r, k);
            cands[r] = b.Targeted ? new[] { b.LossLabels[r] }
                : Enumerable.Range(0, nc).OrderByDescending(c => z[c]).ThenBy(c => c).Take(kk).Where(c => c != b.TrueLabels[r]).ToArray();
        }
        using var dz = be.Allocate(rows, k);
        var oneHot = new float[rows * k];
        var grads = new float[nc][];
        for (int it = 0; it < MaxIterations; it++)
        {
            be.Upload(b.Adv, adv);
            var logits = b.Forward(b.Adv).ToArray();
            var active = new bool[rows];
            var src = new int[rows];
            bool any = false;
            for (int r = 0; r < rows; r++)
            {
                var z = Losses.ClassLogits(logits, r, k);
                int pred = Losses.Argmax(z);
                active[r] = b.Targeted ? pred != b.LossLabels[r] : pred == b.TrueLabels[r];
                src[r] = b.Targeted ? pred : b.TrueLabels[r];
                any |= active[r];
            }
            if (!any) break;
            // Gradients of each needed class logit, for the whole chunk.
            var need = new HashSet<int>();
            for (int r = 0; r < rows; r++) if (active[r]) { need.Add(src[r]); foreach (var c in cands[r]) need.Add(c); }
            Array.Clear(grads);
            if (k == 1)
            {
                // z' = (0, z): grad z'_1 = grad z, grad z'_0 = 0.
                be.Fill(dz, 1f);
                grads[1] = b.Model.Backward(dz, BackwardMode.InputOnly)!.ToArray();
                grads[0] = new float[grads[1].Length];
                b.CountGradients();
            }
            else
                foreach (var c in need.OrderBy(c => c))
                {
                    Array.Clear(oneHot);
                    for (int r = 0; r < rows; r++) oneHot[r * k + c] = 1f;
                    be.Upload(dz, oneHot);
                    grads[c] = b.Model.Backward(dz, BackwardMode.InputOnly)!.ToArray();
                    b.CountGradients();
                }
            Parallel.For(0, rows, r =>
            {
                if (!active[r]) return;
                steps[r]++;
                var z = Losses.ClassLogits(logits, r, k);
                int s = src[r];
                long o = (long)r * d;
                double bestPert = double.PositiveInfinity; int bestK = -1; double bestNorm = 0;
                foreach (var c in cands[r])
                {
                    if (c == s) continue;
                    double f = z[c] - z[s], n = 0;
                    for (int j = 0; j < d; j++)
                    {
                        double w = grads[c][o + j] - grads[s][o + j];
                        n += Norm == Norm.L2 ? w * w : Math.Abs(w);
                    }
                    if (Norm == Norm.L2) n = Math.Sqrt(n);
                    double pert = Math.Abs(f) / (n + 1e-8);
                    if (pert < bestPert) { bestPert = pert; bestK = c; bestNorm = n; }
                }
                if (bestK < 0) return;
                for (int j = 0; j < d; j++)
                {
                    double w = grads[bestK][o + j] - grads[s][o + j];
                    rTot[o + j] += Norm == Norm.L2 ? (bestPert + 1e-4) * w / (bestNorm + 1e-8) : (bestPert + 1e-4) * Math.Sign(w);
                    adv[o + j] = (float)Math.Clamp(x0[o + j] + (1 + Overshoot) * rTot[o + j], 0, 1);
                }
            });
        }
        be.Upload(b.Adv, adv);
        b.StepsHost = steps;
    }

}
