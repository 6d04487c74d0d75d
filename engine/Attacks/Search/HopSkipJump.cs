namespace Perturb.Engine.Attacks.Search;

/// <summary>How HopSkipJump draws a probe in a low-frequency subspace (probe_scale f > 1).</summary>
public enum ProbeBasis { Bilinear, Dct }

/// <summary>HopSkipJump's step from the boundary point: along the estimated normal, or Tangent Attack's.</summary>
public enum HsjJump { Step, Tangent }

/// <summary>
/// HopSkipJump (Chen, Jordan and Wainwright 2020), L2 or Linf, label-only. From a boundary point x_b, each iteration t:
/// estimate the boundary's normal by Monte Carlo, n_t = min(100 sqrt(t), 10,000) probes x_b + delta u_b
/// (u_b Gaussian for L2, uniform in [-1,1]^d for Linf, unit L2 norm; delta = 0.1 at t = 1, then sqrt(d) theta dist (L2)
/// or d theta dist (Linf)), grad = sum((phi_b - mean phi) u_b) (phi = +1 adversarial, -1 not); step along grad/||grad||
/// (L2) or sign(grad) (Linf) by eps = dist / sqrt(t), halved until the point is adversarial (geometric progression);
/// then a binary search toward the original back to the boundary (L2: on the line, tolerance theta = 1/(d sqrt d);
/// Linf: the Linf box around the original, theta = 1/d^2 relative). dist is the L2 or Linf distance. With the
/// defaults this is the reference algorithm step for step; each other setting is one technique of the literature:
/// - <see cref="ProbeScale"/> f > 1, probes in a low-frequency subspace of about f^2 times fewer dimensions, so the
///   same queries estimate the normal better on natural images: <see cref="ProbeBasis"/> bilinear draws u_b on a
///   C x ceil(H/f) x ceil(W/f) grid and upsamples it (half-pixel centres; QEBA-S, Li et al. 2020), dct gives it
///   Gaussian coefficients on the lowest ceil(H/f) x ceil(W/f) orthonormal DCT-II frequencies of each channel and 0 on
///   the rest (QEBA-F; the subspace of GeoDA and SurFree).
/// - <see cref="History"/> h: grad_t = h grad_t-1 + this iteration's sum (the estimates of earlier boundary points
///   kept, decayed; as the momentum of Sign-OPT-style estimators).
/// - <see cref="DeltaScale"/>, <see cref="StepScale"/>, <see cref="ToleranceScale"/>: delta, the step search's start
///   and the bisection's tolerance, each times the factor.
/// - <see cref="FitBudget"/>: the last iteration's probes are cut to leave its step and bisection their queries
///   (without it, the probes of the iteration that reaches the budget are spent and no step follows).
/// - <see cref="Jump"/> tangent (L2; Ma et al. 2021, Tangent Attack): the step goes to the tangent point from x of the
///   sphere of radius eps around x_b (see <see cref="Tangent"/>) instead of x_b + eps u.
/// </summary>
public sealed class HopSkipJump : DecisionAttack
{
    public override string Name => "hopskipjump";
    [Setting("norm", "the distance minimised: l2 or linf")]
    public Norm Norm { get; init; } = Norm.L2;
    [Setting("initial_evals", "boundary probes at the first iteration (then times sqrt(t))", Min = 1)]
    public int InitialEvals { get; init; } = 100;
    [Setting("max_evals", "most boundary probes in one iteration", Min = 1)]
    public int MaxEvals { get; init; } = 10000;
    [Setting("probe_scale", "probes drawn at 1/probe_scale of the image's height and width (rounded up), upsampled bilinearly or as the lowest DCT frequencies; 1: full resolution (Chen et al.)", Min = 1, Max = 64)]
    public double ProbeScale { get; init; } = 1;
    [Setting("probe_basis", "how a probe at probe_scale f > 1 is made: bilinear (a coarse grid upsampled, QEBA-S) or dct (the lowest 1/f of the DCT frequencies per side, QEBA-F)")]
    public ProbeBasis ProbeBasis { get; init; } = ProbeBasis.Bilinear;
    [Setting("history", "weight of the previous iterations' probe sums in the gradient estimate (S_t = history S_t-1 + sum of this one's); 0: each estimate from its own probes (Chen et al.)", Min = 0, Max = 1, MaxOpen = true)]
    public double History { get; init; }
    [Setting("delta_scale", "the probes' radius is delta_scale times Chen et al.'s delta (sqrt(d) theta dist after the first iteration)", Min = 0, MinOpen = true)]
    public double DeltaScale { get; init; } = 1;
    [Setting("tolerance_scale", "the binary search's tolerance is tolerance_scale times Chen et al.'s theta (fewer queries on bisection, more on probes)", Min = 0, MinOpen = true)]
    public double ToleranceScale { get; init; } = 1;
    [Setting("jump", "the step from the boundary point, L2: step (along the estimated normal, Chen et al.) or tangent (to the point where a line from the original touches the sphere of the step's radius, Ma et al. 2021)")]
    public HsjJump Jump { get; init; } = HsjJump.Step;
    [Setting("fit_budget", "cut the last iteration's probes so that its step and binary search still fit in the query budget; false: the probes run out the budget without a step (Chen et al. count iterations, not queries)")]
    public bool FitBudget { get; init; }
    [Setting("step_scale", "the geometric step search starts at step_scale dist / sqrt(t); 1: Chen et al.", Min = 0, MinOpen = true)]
    public double StepScale { get; init; } = 1;

    protected override void Validate()
    {
        base.Validate();
        if (InitialEvals < 1 || MaxEvals < InitialEvals) throw new PerturbException($"{Name}: evaluations must satisfy 1 <= initial <= max, got {InitialEvals}, {MaxEvals}", 2);
        if (!(ProbeScale >= 1 && ProbeScale <= 64)) throw new PerturbException($"{Name}: probe scale must be in 1..64, got {ProbeScale}", 2);
    }

    protected override double Distance(float[] a, float[] x)
    {
        if (Norm == Norm.L2) return base.Distance(a, x);
        double m = 0;
        for (int j = 0; j < a.Length; j++) m = Math.Max(m, Math.Abs(a[j] - x[j]));
        return m;
    }

    protected override IEnumerable<Probe> Attack(Image s)
    {
        int d = s.X.Length;
        double theta = Norm == Norm.L2 ? 1.0 / (Math.Sqrt(d) * d) : 1.0 / ((double)d * d);
        double tol = ToleranceScale * theta;
        // The start's point is on the line's boundary; bring it to this attack's boundary first.
        var xb = s.Best!;
        foreach (var p in BinarySearch(s, xb, tol, b => xb = b)) yield return p;
        double dist = Distance(xb, s.X);
        var sum = new double[d]; // the probes' weighted outcomes, accumulated over iterations with weight History
        for (int t = 1; s.Left > 0; t++)
        {
            s.Steps++;
            double delta = DeltaScale * (t == 1 ? 0.1 : (Norm == Norm.L2 ? Math.Sqrt(d) : d) * theta * dist);
            int evals = (int)Math.Min(InitialEvals * Math.Sqrt(t), MaxEvals);
            if (FitBudget)
            {
                // Leave the step (2 tries) and the bisection (log2(1/tol) halvings) their queries, or stop.
                long reserve = 2 + (long)Math.Ceiling(Math.Log2((Norm == Norm.L2 ? 1 : dist) / Math.Max(tol * (Norm == Norm.L2 ? 1 : Math.Min(dist, 1)), 1e-300)));
                evals = (int)Math.Min(evals, s.Left - reserve);
                if (evals < Math.Min(InitialEvals, 10)) yield break;
            }
            // Monte Carlo estimate of the boundary normal.
            var us = new double[evals][];
            var probe = new Probe();
            for (int b = 0; b < evals; b++)
            {
                var u = DrawProbe(s);
                double n = 0;
                for (int j = 0; j < d; j++) n += u[j] * u[j];
                n = Math.Sqrt(n);
                var c = new float[d];
                for (int j = 0; j < d; j++) { c[j] = (float)Math.Clamp(xb[j] + delta * u[j] / n, 0, 1); u[j] = (c[j] - xb[j]) / delta; }
                us[b] = u;
                probe.Add(c);
            }
            yield return probe;
            int m = probe.Adversarial.Length;
            if (m < evals) yield break;
            double mean = probe.Adversarial.Average(a => a ? 1.0 : -1.0);
            var grad = sum;
            for (int j = 0; j < d; j++) grad[j] *= History;
            for (int b = 0; b < m; b++)
            {
                double f = Math.Abs(mean) == 1 ? mean : (probe.Adversarial[b] ? 1.0 : -1.0) - mean;
                for (int j = 0; j < d; j++) grad[j] += f * us[b][j];
            }
            double gn = Math.Sqrt(grad.Sum(v => v * v));
            if (!(gn > 0)) yield break;
            var update = grad.Select(v => Norm == Norm.L2 ? v / gn : Math.Sign(v)).ToArray();
            // Geometric progression of the step, from dist / sqrt(t).
            double eps = StepScale * dist / Math.Sqrt(t);
            float[]? moved = null;
            for (int h = 0; h < 30 && s.Left > 0; h++, eps /= 2)
            {
                var dir = Jump == HsjJump.Tangent && Norm == Norm.L2 ? Tangent(xb, s.X, update, eps / dist) : update;
                var c = new float[d];
                for (int j = 0; j < d; j++) c[j] = (float)Math.Clamp(xb[j] + eps * dir[j], 0, 1);
                var p = new Probe().Add(c);
                yield return p;
                if (p.Adversarial.Length == 0) yield break;
                if (p.Adversarial[0]) { moved = c; break; }
            }
            if (moved == null) yield break;
            Offer(s, moved);
            foreach (var p in BinarySearch(s, moved, tol, b => xb = b)) yield return p;
            dist = Distance(xb, s.X);
        }
    }

    /// <summary>
    /// Tangent Attack's jump direction (Ma et al. 2021): in the plane of the estimated normal u and a = x - x_b, the unit
    /// v from x_b to the point where a line from the original x touches the sphere of radius r = rel ||a|| around x_b
    /// (v = cos(al) a/||a|| + sin(al) w, cos(al) = rel, w the unit part of u orthogonal to a), so that the line's
    /// crossing of the linearised boundary is the nearest one through the hemisphere v.u >= 0; u itself (HopSkipJump's
    /// step) where x lies inside the sphere (rel >= 1) or the tangent point is on the other half (v.u &lt; 0).
    /// </summary>
    static double[] Tangent(float[] xb, float[] x, double[] u, double rel)
    {
        int d = u.Length;
        if (!(rel < 1)) return u;
        var a = new double[d]; double an = 0, ua = 0;
        for (int j = 0; j < d; j++) { a[j] = x[j] - xb[j]; an += a[j] * a[j]; }
        an = Math.Sqrt(an);
        if (!(an > 0)) return u;
        for (int j = 0; j < d; j++) { a[j] /= an; ua += u[j] * a[j]; }
        var w = new double[d]; double wn = 0;
        for (int j = 0; j < d; j++) { w[j] = u[j] - ua * a[j]; wn += w[j] * w[j]; }
        wn = Math.Sqrt(wn);
        if (!(wn > 1e-12)) return u;
        double cos = rel, sin = Math.Sqrt(1 - rel * rel);
        if (cos * ua + sin * wn < 0) return u; // v.u = cos (a.u) + sin (w.u), w.u = ||w||
        var v = new double[d];
        for (int j = 0; j < d; j++) v[j] = cos * a[j] + sin * w[j] / wn;
        return v;
    }

    /// <summary>
    /// One probe direction before normalisation: Gaussian (L2) or uniform in [-1, 1] (Linf), drawn per value at full
    /// resolution, or on the coarse grid of <see cref="ProbeScale"/> and upsampled.
    /// </summary>
    double[] DrawProbe(Image s)
    {
        Func<double> draw = Norm == Norm.L2 ? s.Rng.Normal : () => 2 * s.Rng.NextDouble() - 1;
        int d = s.X.Length;
        var (ch, h, w) = s.Shape;
        if (ProbeScale == 1)
        {
            var full = new double[d];
            for (int j = 0; j < d; j++) full[j] = draw();
            return full;
        }
        if (h == 1) throw new PerturbException($"{Name}: probe_scale {ProbeScale} needs image inputs (C x H x W), the model takes {d} values", 2);
        int hs = Math.Min(h, (int)Math.Ceiling(h / ProbeScale - 1e-9)), ws = Math.Min(w, (int)Math.Ceiling(w / ProbeScale - 1e-9));
        var low = new double[ch * hs * ws];
        for (int j = 0; j < low.Length; j++) low[j] = draw();
        return ProbeBasis == ProbeBasis.Dct ? InverseDct(low, ch, hs, ws, h, w) : Upsample(low, ch, hs, ws, h, w);
    }

    /// <summary>
    /// Per channel, the image whose orthonormal 2-D DCT-II coefficients are <paramref name="low"/> (hs x ws, the lowest
    /// frequencies) and 0 elsewhere: o[y, x] = sum_{u < hs, v < ws} c_u(y) c_v(x) low[u, v], c_u(y) = a_u cos(pi (y + 1/2) u / h),
    /// a_0 = sqrt(1/h), a_u = sqrt(2/h).
    /// </summary>
    internal static double[] InverseDct(double[] low, int ch, int hs, int ws, int h, int w)
    {
        var cy = DctBasis(hs, h); var cx = DctBasis(ws, w);
        var o = new double[ch * h * w];
        var row = new double[hs * w]; // low[c] times the x basis: row[u, x] = sum_v low[u, v] cx[v, x]
        for (int c = 0; c < ch; c++)
        {
            Array.Clear(row);
            for (int u = 0; u < hs; u++)
                for (int v = 0; v < ws; v++)
                {
                    double z = low[(c * hs + u) * ws + v];
                    for (int x = 0; x < w; x++) row[u * w + x] += z * cx[v * w + x];
                }
            for (int u = 0; u < hs; u++)
                for (int y = 0; y < h; y++)
                {
                    double b = cy[u * h + y];
                    for (int x = 0; x < w; x++) o[(c * h + y) * w + x] += b * row[u * w + x];
                }
        }
        return o;
    }

    /// <summary>The first <paramref name="k"/> orthonormal DCT-II basis vectors of length <paramref name="n"/>, k x n.</summary>
    static double[] DctBasis(int k, int n)
    {
        var b = new double[k * n];
        for (int u = 0; u < k; u++)
            for (int y = 0; y < n; y++) b[u * n + y] = Math.Sqrt((u == 0 ? 1.0 : 2.0) / n) * Math.Cos(Math.PI * (y + 0.5) * u / n);
        return b;
    }

    /// <summary>Bilinear upsampling of C x hs x ws to C x h x w, half-pixel centres, edges clamped (PyTorch's align_corners=False).</summary>
    internal static double[] Upsample(double[] low, int ch, int hs, int ws, int h, int w)
    {
        var o = new double[ch * h * w];
        for (int y = 0; y < h; y++)
        {
            double sy = Math.Max(0, (y + 0.5) * hs / h - 0.5);
            int y0 = Math.Min((int)sy, hs - 1), y1 = Math.Min(y0 + 1, hs - 1); double fy = sy - y0;
            for (int x = 0; x < w; x++)
            {
                double sx = Math.Max(0, (x + 0.5) * ws / w - 0.5);
                int x0 = Math.Min((int)sx, ws - 1), x1 = Math.Min(x0 + 1, ws - 1); double fx = sx - x0;
                for (int c = 0; c < ch; c++)
                {
                    int b = c * hs * ws;
                    double top = low[b + y0 * ws + x0] * (1 - fx) + low[b + y0 * ws + x1] * fx;
                    double bot = low[b + y1 * ws + x0] * (1 - fx) + low[b + y1 * ws + x1] * fx;
                    o[(c * h + y) * w + x] = top * (1 - fy) + bot * fy;
                }
            }
        }
        return o;
    }

    /// <summary>
    /// Binary search between the original and an adversarial point <paramref name="adv"/> for the boundary: L2 on the
    /// line (1 - a) x + a adv, a in [0, 1], to tolerance theta; Linf clipping adv to the box of radius a around x,
    /// a in [0, ||adv - x||_inf], to tolerance min(theta ||adv - x||_inf, theta). Hands the adversarial end to
    /// <paramref name="done"/> (the next boundary point) and offers it as the image's best.
    /// </summary>
    IEnumerable<Probe> BinarySearch(Image s, float[] adv, double theta, Action<float[]> done)
    {
        double hi = Norm == Norm.L2 ? 1 : Distance(adv, s.X), lo = 0;
        double tol = Norm == Norm.L2 ? theta : Math.Min(hi * theta, theta);
        float[] best = adv;
        while ((hi - lo) > tol && s.Left > 0)
        {
            double mid = 0.5 * (lo + hi);
            var c = Project(s.X, adv, mid);
            var p = new Probe().Add(c);
            yield return p;
            if (p.Adversarial.Length == 0) break;
            if (p.Adversarial[0]) { hi = mid; best = c; } else lo = mid;
        }
        Offer(s, best);
        done(best);
    }

    float[] Project(float[] x, float[] adv, double a)
    {
        if (Norm == Norm.L2) return Blend(x, adv, a);
        var o = new float[x.Length];
        for (int j = 0; j < x.Length; j++) o[j] = (float)Math.Clamp(adv[j], x[j] - a, x[j] + a);
        return o;
    }
}
