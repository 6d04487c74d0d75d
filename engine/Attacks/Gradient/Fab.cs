using Perturb.Engine.Nn;

namespace Perturb.Engine.Attacks.Gradient;

/// <summary>
/// FAB-T, the targeted fast adaptive boundary attack (Croce and Hein 2020), Linf or L2: a minimal-norm attack,
/// one round per target class t (the classes ranked 2nd to 1 + <see cref="TargetClasses"/> by the clean logits, as
/// APGD-T). Each iteration linearises g = z_y - z_t at x_k (w = grad g) and projects onto the hyperplane g + w.delta = 0
/// inside the box [0,1], both from x_k (delta_k) and from the original x (delta_0), then steps
/// x_{k+1} = clip((1 - a)(x_k + eta delta_k) + a (x + eta delta_0), 0, 1), a = min(|delta_k| / (|delta_k| + |delta_0|), AlphaMax).
/// A point that is misclassified is kept when its norm is the smallest so far and pulled back toward x:
/// x_{k+1} = (1 - beta) x + beta x_{k+1}. The box-constrained projection is exact (a sort of the coordinates'
/// breakpoints). The result is the smallest adversarial found when its norm is at most eps (the budget), else x.
/// One forward with input-only backward and one forward per iteration; the projection runs on the host.
/// </summary>
public sealed class FabT : Attack
{
    public override string Name => "fab-t";
    public override bool NeedsEpsilon => true;
    [Setting("norm", "the norm minimised: linf or l2")]
    public Norm Norm { get; init; } = Norm.Linf;
    [Setting("steps", "iterations per target class", Min = 1)]
    public int Steps { get; init; } = 100;
    [Setting("restarts", "starts per target class (the first at the image, the others random)", Min = 1)]
    public int Restarts { get; init; } = 1;
    [Setting("target_classes", "target classes, ranked 2nd onward by the clean logits", Min = 1)]
    public int TargetClasses { get; init; } = 9;
    [Setting("alpha_max", "largest weight of the step from the original image", Min = 0, Max = 1)]
    public double AlphaMax { get; init; } = 0.1;
    [Setting("eta", "overshoot of the projection", Min = 1)]
    public double Eta { get; init; } = 1.05;
    [Setting("beta", "pull-back toward the original after a success", Min = 0, Max = 1)]
    public double Beta { get; init; } = 0.9;

    protected override void Validate()
    {
        if (Steps < 1) throw new PerturbException($"{Name}: steps must be at least 1, got {Steps}", 2);
        if (Restarts < 1) throw new PerturbException($"{Name}: restarts must be at least 1, got {Restarts}", 2);
        if (TargetClasses < 1) throw new PerturbException($"{Name}: target classes must be at least 1, got {TargetClasses}", 2);
    }

    protected override void AttackChunk(AttackBatch b)
    {
        int rows = b.Rows, d = b.Cols, k = b.Outputs;
        var x0 = b.X0.ToArray();
        var best = (float[])x0.Clone();
        var bestNorm = Enumerable.Repeat(double.PositiveInfinity, rows).ToArray();
        var steps = new int[rows];
        using var dz = b.Be.Allocate(rows, k);
        using var noise = b.Be.Allocate(b.Shape(rows));
        var y = b.TrueLabels;
        // Rows misclassified to begin with are their own answer (norm 0).
        var z0 = ClassLogits(b.CleanLogits, k, rows);
        for (int r = 0; r < rows; r++) if (Pred(z0, r, b.Classes) != y[r]) bestNorm[r] = 0;
        ulong purpose = 0;
        foreach (var t in ApgdT.TargetRounds(b, TargetClasses, Name))
        {
            // dLogits of g = z_y - z_t: +1 at y, -1 at t (the pair (0, z) of a one-output model: +-1 on z).
            var oh = new float[rows * k];
            for (int r = 0; r < rows; r++)
            {
                if (k == 1) oh[r] = y[r] == 1 ? 1f : -1f;
                else { oh[r * k + y[r]] = 1f; oh[r * k + t[r]] = -1f; }
            }
            b.Be.Upload(dz, oh);
            for (int rs = 0; rs < Restarts; rs++)
            {
                var x = (float[])x0.Clone();
                if (rs > 0) RandomStart(b, x, x0, bestNorm, noise, ++purpose);
                for (int it = 0; it < Steps; it++)
                {
                    b.Be.Upload(b.Adv, x);
                    var z = ClassLogits(b.Forward(b.Adv).ToArray(), k, rows);
                    var w = b.Model.Backward(dz, BackwardMode.InputOnly)!.ToArray();
                    b.CountGradients();
                    var xn = new float[x.Length];
                    Parallel.For(0, rows, r =>
                    {
                        if (bestNorm[r] == 0) { Array.Copy(x, (long)r * d, xn, (long)r * d, d); return; }
                        steps[r]++;
                        Step(r, d, b.Classes, x, x0, w, z, y[r], t[r], xn);
                    });
                    b.Be.Upload(b.Adv, xn);
                    var zn = ClassLogits(b.Forward(b.Adv).ToArray(), k, rows);
                    b.CountGradients();
                    for (int r = 0; r < rows; r++)
                    {
                        long o = (long)r * d;
                        if (bestNorm[r] > 0 && Pred(zn, r, b.Classes) != y[r])
                        {
                            double nn = Distance(xn, x0, o, d);
                            if (nn < bestNorm[r]) { bestNorm[r] = nn; Array.Copy(xn, o, best, o, d); }
                            for (int j = 0; j < d; j++) xn[o + j] = (float)((1 - Beta) * x0[o + j] + Beta * xn[o + j]);
                        }
                    }
                    x = xn;
                }
            }
        }
        // Within budget, or the clean image.
        var result = (float[])x0.Clone();
        for (int r = 0; r < rows; r++)
            if (bestNorm[r] > 0 && bestNorm[r] <= b.Eps[r] * (1 + 1e-6)) Array.Copy(best, (long)r * d, result, (long)r * d, d);
        b.Be.Upload(b.Adv, result);
        b.StepsHost = steps;
    }

    /// <summary>One FAB step of row r from x into xn.</summary>
    void Step(int r, int d, int nc, float[] x, float[] x0, float[] w, float[] z, int y, int t, float[] xn)
    {
        long o = (long)r * d;
        double g = (double)z[r * nc + y] - z[r * nc + t];
        var wr = new double[d]; var lo = new double[d]; var hi = new double[d]; var lo0 = new double[d]; var hi0 = new double[d];
        double wShift = 0;
        for (int j = 0; j < d; j++)
        {
            wr[j] = w[o + j];
            lo[j] = -x[o + j]; hi[j] = 1 - x[o + j];
            lo0[j] = -x0[o + j]; hi0[j] = 1 - x0[o + j];
            wShift += wr[j] * ((double)x0[o + j] - x[o + j]);
        }
        var dk = BoxHyperplaneProjection(wr, -g, lo, hi, Norm);
        var d0 = BoxHyperplaneProjection(wr, -g - wShift, lo0, hi0, Norm);
        double nk = NormOf(dk), n0 = NormOf(d0);
        double a = nk + n0 > 0 ? Math.Min(nk / (nk + n0), AlphaMax) : 0;
        for (int j = 0; j < d; j++)
            xn[o + j] = (float)Math.Clamp((1 - a) * (x[o + j] + Eta * dk[j]) + a * (x0[o + j] + Eta * d0[j]), 0, 1);
    }

    double NormOf(double[] v)
    {
        double s = 0;
        foreach (var e in v) s = Norm == Norm.Linf ? Math.Max(s, Math.Abs(e)) : s + e * e;
        return Norm == Norm.Linf ? s : Math.Sqrt(s);
    }

    double Distance(float[] a, float[] x0, long o, int d)
    {
        double s = 0;
        for (int j = 0; j < d; j++) { double v = a[o + j] - x0[o + j]; s = Norm == Norm.Linf ? Math.Max(s, Math.Abs(v)) : s + v * v; }
        return Norm == Norm.Linf ? s : Math.Sqrt(s);
    }

    /// <summary>
    /// The smallest delta (Linf or L2) with w.delta = c and lo &lt;= delta &lt;= hi (lo &lt;= 0 &lt;= hi), exactly; when the
    /// box cannot reach c, the box corner that comes closest. Each coordinate moves toward sign(c w_j) by
    /// min(a_j tau, cap_j) (a_j = 1 for Linf, |w_j| for L2, cap_j the room in that direction); h(tau) = sum |w_j| min(a_j tau, cap_j)
    /// is piecewise linear and increasing, so sorting the breakpoints cap_j / a_j gives the tau with h(tau) = |c|.
    /// </summary>
    public static double[] BoxHyperplaneProjection(double[] w, double c, double[] lo, double[] hi, Norm norm)
    {
        int d = w.Length;
        var delta = new double[d];
        if (c == 0) return delta;
        double target = Math.Abs(c);
        var idx = new List<int>(d);
        var bp = new double[d]; var aj = new double[d]; var cap = new double[d];
        for (int j = 0; j < d; j++)
        {
            if (w[j] == 0) continue;
            bool up = Math.Sign(w[j]) == Math.Sign(c);
            cap[j] = up ? hi[j] : -lo[j];
            aj[j] = norm == Norm.Linf ? 1 : Math.Abs(w[j]);
            bp[j] = cap[j] / aj[j];
            idx.Add(j);
        }
        idx.Sort((p, q) => bp[p].CompareTo(bp[q]));
        // h(tau) = A + tau * B on the segment before breakpoint i: A from the capped coordinates, B from the others.
        double A = 0, B = 0;
        foreach (var j in idx) B += Math.Abs(w[j]) * aj[j];
        double tau = double.NaN;
        foreach (var j in idx)
        {
            if (B > 0)
            {
                double cand = (target - A) / B;
                if (cand <= bp[j]) { tau = Math.Max(cand, 0); break; }
            }
            A += Math.Abs(w[j]) * cap[j];
            B -= Math.Abs(w[j]) * aj[j];
        }
        for (int j = 0; j < d; j++)
        {
            if (w[j] == 0) continue;
            double m = double.IsNaN(tau) ? cap[j] : Math.Min(aj[j] * tau, cap[j]);
            delta[j] = Math.Sign(w[j]) == Math.Sign(c) ? m : -m;
        }
        return delta;
    }

    void RandomStart(AttackBatch b, float[] x, float[] x0, double[] bestNorm, Tensor noise, ulong purpose)
    {
        int d = b.Cols;
        b.UniformRows(noise, 0xFAB0UL + purpose);
        var t = noise.ToArray();
        for (int r = 0; r < b.Rows; r++)
        {
            long o = (long)r * d;
            double n = 0;
            for (int j = 0; j < d; j++) { double v = 2 * t[o + j] - 1; t[o + j] = (float)v; n = Norm == Norm.Linf ? Math.Max(n, Math.Abs(v)) : n + v * v; }
            if (Norm == Norm.L2) n = Math.Sqrt(n);
            double f = 0.5 * Math.Min(bestNorm[r], b.Eps[r]) / (n + 1e-12);
            for (int j = 0; j < d; j++) x[o + j] = (float)Math.Clamp(x0[o + j] + f * t[o + j], 0, 1);
        }
    }

    static float[] ClassLogits(float[] z, int k, int rows)
    {
        if (k != 1) return z;
        var p = new float[rows * 2];
        for (int r = 0; r < rows; r++) p[r * 2 + 1] = z[r];
        return p;
    }

    static int Pred(float[] z, int r, int nc) => Losses.Argmax(z.AsSpan(r * nc, nc));
}
