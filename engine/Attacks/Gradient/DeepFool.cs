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
/// Per-class gradients: one forward, then per candidate slot one input-only backward of the whole chunk with
/// dLogits = e_k - e_s (so the backward returns w_k itself, and f_k = z . (e_k - e_s)); untargeted these rows are
/// fixed for the chunk and uploaded once; targeted (k = the target, s = the current prediction) they are the CW
/// margin's gradient at the current logits. Everything else runs on the device too: the norms, the per-row choice of
/// the nearest boundary (a keep-best select over the slots) and the step. Per iteration the host reads one number,
/// how many rows still run, to stop when none does. It has no budget (one result, eps null).
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
        // Candidate classes per row: the top-k of the clean class logits (pairs (0, z) for one-output models).
        int kk = Math.Min(TopK, nc);
        var cands = new int[rows][];
        for (int r = 0; r < rows; r++)
        {
            var z = Losses.ClassLogits(b.CleanLogits, r, k);
            cands[r] = b.Targeted ? new[] { b.LossLabels[r] }
                : Enumerable.Range(0, nc).OrderByDescending(c => z[c]).ThenBy(c => c).Take(kk).Where(c => c != b.TrueLabels[r]).ToArray();
        }
        int slots = cands.Max(c => c.Length);
        // Targeted on a multi-class model the source class is the current prediction: dLogits come from the CW margin.
        bool fromMargin = b.Targeted && k > 1;
        var dl = new Tensor[fromMargin ? 1 : slots];
        var valid = new Tensor?[slots];
        using var dMargin = fromMargin ? be.Allocate(rows, k) : null;
        if (fromMargin) dl[0] = dMargin!;
        else
            for (int j = 0; j < slots; j++)
            {
                // e_c - e_s over the class logits, as a gradient of the model's outputs: for a one-output model the
                // pair (0, z) has d z'_1 / dz = 1 and d z'_0 / dz = 0. Targeted one-output rows move from the other class.
                var h = new float[rows * k];
                var ok = new float[rows];
                for (int r = 0; r < rows; r++)
                {
                    if (j >= cands[r].Length) continue;
                    int c = cands[r][j], src = b.Targeted ? 1 - c : b.TrueLabels[r];
                    ok[r] = 1f;
                    if (k == 1) h[r] = (c == 1 ? 1f : 0f) - (src == 1 ? 1f : 0f);
                    else { h[r * k + c] += 1f; h[r * k + src] -= 1f; }
                }
                dl[j] = be.FromArray(h, rows, k);
                if (ok.Any(v => v == 0f)) valid[j] = be.FromArray(ok, rows);
            }
        using var minusOne = be.Allocate(rows); be.Fill(minusOne, -1f);
        using var loss = be.Allocate(rows);
        using var zd = be.Allocate(rows, k);
        using var f = be.Allocate(rows);
        using var n = be.Allocate(rows);
        using var pert = be.Allocate(rows);
        using var far = be.Allocate(rows); be.Fill(far, 1e30f);
        using var better = be.Allocate(rows);
        using var bestPert = be.Allocate(rows);
        using var bestNorm = be.Allocate(rows);
        using var active = be.Allocate(rows);
        using var coef = be.Allocate(rows);
        using var running = be.Allocate(1);
        using var bestW = be.Allocate(b.Shape(rows));
        using var tmp = be.Allocate(b.Shape(rows));
        using var rTot = be.Allocate(b.Shape(rows));
        be.Copy(b.X0, b.Adv);
        try
        {
            for (int it = 0; it < MaxIterations; it++)
            {
                var z = b.Forward(b.Adv);
                b.SuccessMask(z, active);
                b.Affine(active, -1f, 1f, active);
                be.ReduceRows(Reduction.Sum, active, running, 1, rows);
                if (running.ToArray()[0] == 0f) break;
                be.Add(b.StepCount, active, b.StepCount);
                if (fromMargin) Losses.CwMarginInto(be, z, b.Labels, loss, dMargin, minusOne, true, 0f, rows, k, null, null);
                be.Fill(bestPert, 1e30f);
                for (int j = 0; j < slots; j++)
                {
                    var dz = dl[fromMargin ? 0 : j];
                    // f = |z . dz|, w = the backward of dz, pert = f / ||w||_q (q = 2 for L2, 1 for Linf)
                    be.Mul(z, dz, zd);
                    be.ReduceRows(Reduction.Sum, zd, f, rows, k);
                    be.Abs(f, f);
                    var w = b.Model.Backward(dz, BackwardMode.InputOnly)!;
                    b.CountGradients();
                    if (Norm == Norm.L2) be.ReduceRows(Reduction.L2, w, n, rows, d);
                    else { be.Abs(w, tmp); be.ReduceRows(Reduction.Sum, tmp, n, rows, d); }
                    b.Affine(n, 1f, 1e-8f, pert);
                    be.Div(f, pert, pert);
                    if (valid[j] is { } v) be.Where(v, pert, far, pert, rows, 1);
                    // keep the nearest boundary (the first on ties)
                    be.Greater(bestPert, pert, better);
                    b.SelectRows(bestPert, pert, better);
                    b.SelectRows(bestNorm, n, better);
                    b.SelectRows(bestW, w, better);
                }
                // r += (pert + 1e-4) w / ||w||_2 (L2) or (pert + 1e-4) sign(w) (Linf), on running rows only
                b.Affine(bestPert, 1f, 1e-4f, coef);
                be.Mul(coef, active, coef);
                if (Norm == Norm.L2)
                {
                    b.Affine(bestNorm, 1f, 1e-8f, n);
                    be.Div(coef, n, coef);
                    b.ScaleRows(bestW, coef, tmp);
                }
                else { be.Sign(bestW, tmp); b.ScaleRows(tmp, coef, tmp); }
                be.Axpy(1f, tmp, rTot);
                // x' = clamp(x + (1 + overshoot) r, 0, 1)
                be.Copy(b.X0, b.Adv);
                be.Axpy(1f + Overshoot, rTot, b.Adv);
                be.Clamp(b.Adv, 0f, 1f, b.Adv);
            }
        }
        finally
        {
            if (!fromMargin) foreach (var t in dl) t.Dispose();
            foreach (var t in valid) t?.Dispose();
        }
    }
}
