using Perturb.Engine.Nn;

namespace Perturb.Engine.Attacks.Search;

/// <summary>
/// Square attack (Andriushchenko et al. 2020), Linf (the default) or L2 (<see cref="Norm"/>; see <see cref="L2Start"/>
/// and <see cref="L2Step"/>). Linf: random search with square updates at the corners of the Linf ball.
/// Start: vertical stripes, x + eps * (random sign per channel and column), clipped to [0,1] (one query). Each
/// iteration draws a square of side s = round(sqrt(p * H * W)) (at least 1, at most the image) at a random place and
/// sets it, per channel, to x + eps * (random sign), clipped; the candidate replaces the current point when it lowers
/// the margin loss (untargeted z_y - max_{j != y} z_j; targeted max_{j != t} z_j - z_t). p follows the paper's
/// schedule: PInit halved at 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of 10,000 iterations (rescaled to the
/// budget). Every iteration evaluates the candidates of all running images as one batch. An image stops when it meets
/// the goal or has spent <see cref="Queries"/> queries (the start included); images that meet it before the attack
/// are left unchanged with 0 queries. The answer is the best point found, always within eps of x and in [0,1].
/// </summary>
public sealed class Square : SearchAttack
{
    public override string Name => "square";
    public override bool NeedsEpsilon => true;
    /// <summary>Query budget per image, the start included.</summary>
    [Setting("queries", "query budget per image, the start included", Min = 1)]
    public int Queries { get; init; } = 10000;
    /// <summary>Initial fraction of pixels a square covers (the paper: 0.05 for Linf, 0.1 for L2).</summary>
    public float PInit { get => _pInit ?? (Norm == Norm.L2 ? 0.1f : 0.05f); init => _pInit = value; }
    float? _pInit;
    /// <summary>Linf (Algorithm 2) or L2 (Algorithm 3, the official update with two windows).</summary>
    [Setting("norm", "the ball: linf or l2")]
    public Norm Norm { get; init; } = Norm.Linf;

    protected override void Validate()
    {
        if (Queries < 1) throw new PerturbException($"{Name}: the query budget must be at least 1, got {Queries}", 2);
        if (!(PInit > 0 && PInit <= 1)) throw new PerturbException($"{Name}: p must be in (0, 1], got {PInit}", 2);
        CheckQueryBatch();
    }

    /// <summary>The paper's schedule of the square's area fraction at iteration <paramref name="it"/> of <paramref name="n"/>.</summary>
    public static double PSelection(double pInit, int it, int n)
    {
        int i = (int)((long)it * 10000 / Math.Max(1, n));
        int[] bounds = { 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 };
        int halvings = bounds.Count(b => i > b);
        return pInit / (1 << halvings);
    }

    sealed class State
    {
        public required int Sample;
        public required Perturb.Engine.Data.SplitMix64 Rng;
        public required float[] Best;
        public required float[] Cand;
        public double Margin;
        public bool Done;
    }

    protected override float[][] Produce(RunContext c)
    {
        var (C, H, W) = ImageShape(c.Model);
        int d = c.D, hw = H * W, classes = c.Model.NumClasses;
        bool targeted = c.Targets != null;
        var goal = targeted ? c.Targets! : c.Labels;
        var result = new float[c.Eps.Length][];
        for (int e = 0; e < c.Eps.Length; e++)
        {
            float eps = c.Eps[e];
            var adv = (float[])c.X.Clone();
            var states = new List<State>();
            for (int i = 0; i < c.N; i++)
            {
                if (Meets(c.CleanPred[i], goal[i], targeted) || !c.IsActive(i, e)) continue;
                var rng = SampleRng(i, e);
                var best = new float[d];
                var x = c.X.AsSpan(i * d, d);
                if (Norm == Norm.L2) L2Start(x, best, eps, rng, C, H, W);
                else
                for (int ch = 0; ch < C; ch++)
                    for (int col = 0; col < W; col++)
                    {
                        float sgn = rng.NextDouble() < 0.5 ? -eps : eps;
                        for (int row = 0; row < H; row++) { int k = ch * hw + row * W + col; best[k] = Math.Clamp(x[k] + sgn, 0f, 1f); }
                    }
                states.Add(new State { Sample = i, Rng = rng, Best = best, Cand = best });
            }
            // The start (one query each), then one candidate per running image per iteration.
            Evaluate(c, e, states, goal, targeted, start: true);
            var running = states.Where(s => !s.Done).ToList();
            for (int it = 1; it < Queries && running.Count > 0; it++)
            {
                double p = PSelection(PInit, it - 1, Queries);
                int side = Math.Clamp((int)Math.Round(Math.Sqrt(p * hw)), 1, Math.Min(H, W));
                foreach (var s in running)
                {
                    if (ReferenceEquals(s.Cand, s.Best)) s.Cand = new float[d];
                    Array.Copy(s.Best, s.Cand, d);
                    var x = c.X.AsSpan(s.Sample * d, d);
                    if (Norm == Norm.L2)
                    {
                        L2Step(x, s.Best, s.Cand, eps, p, s.Rng, C, H, W);
                        c.Steps[e][s.Sample]++;
                        continue;
                    }
                    int r0 = s.Rng.NextInt(H - side + 1), c0 = s.Rng.NextInt(W - side + 1);
                    // Redraw the signs (up to 10 times) while the square would not change the current point.
                    for (int tries = 0; tries < 10; tries++)
                    {
                        bool changed = false;
                        for (int ch = 0; ch < C; ch++)
                        {
                            float sgn = s.Rng.NextDouble() < 0.5 ? -eps : eps;
                            for (int rr = r0; rr < r0 + side; rr++)
                                for (int cc = c0; cc < c0 + side; cc++)
                                {
                                    int k = ch * hw + rr * W + cc;
                                    float v = Math.Clamp(x[k] + sgn, 0f, 1f);
                                    if (v != s.Best[k]) changed = true;
                                    s.Cand[k] = v;
                                }
                        }
                        if (changed) break;
                    }
                    c.Steps[e][s.Sample]++;
                }
                Evaluate(c, e, running, goal, targeted, start: false);
                running = running.Where(s => !s.Done).ToList();
            }
            foreach (var s in states) Array.Copy(s.Best, 0, adv, (long)s.Sample * d, d);
            result[e] = adv;
        }
        return result;
    }

    // ------------------------------------------------------------------ L2 (Algorithm 3, the official square_attack_l2)

    /// <summary>
    /// The L2 start: tiles of side s = H/5 (from (H - 5s)/2, W alike) each get the meta pseudo-Gaussian bump times a random
    /// sign per channel; the whole perturbation is scaled to L2 norm eps and x + delta clipped to [0,1].
    /// </summary>
    internal static void L2Start(ReadOnlySpan<float> x, Span<float> best, float eps, Perturb.Engine.Data.SplitMix64 rng, int C, int H, int W)
    {
        int hw = H * W, d = C * hw;
        var delta = new double[d];
        int s = Math.Max(1, H / 5);
        int h0 = Math.Max(0, (H - 5 * s) / 2), w0 = Math.Max(0, (W - 5 * s) / 2);
        for (int th = 0; th < H / s; th++)
            for (int tw = 0; tw < W / Math.Max(1, s); tw++)
            {
                var bump = MetaPseudoGaussian(s, rng);
                for (int ch = 0; ch < C; ch++)
                {
                    double sgn = rng.NextDouble() < 0.5 ? -1 : 1;
                    for (int a = 0; a < s; a++)
                        for (int b = 0; b < s; b++)
                        {
                            int rr = h0 + th * s + a, cc = w0 + tw * s + b;
                            if (rr < H && cc < W) delta[ch * hw + rr * W + cc] += sgn * bump[a * s + b];
                        }
                }
            }
        Project(x, delta, best, eps);
    }

    /// <summary>
    /// One L2 candidate: window 1 (side s from the schedule, at least 3, odd) gets a fresh signed meta pseudo-Gaussian
    /// per channel plus the current perturbation's normalised window, rescaled per channel so the freed mass (window 2
    /// set to zero, plus any slack eps^2 - ||delta||^2 spread over the channels) moves there; then the whole
    /// perturbation is scaled to norm eps and x + delta clipped to [0,1].
    /// </summary>
    internal static void L2Step(ReadOnlySpan<float> x, float[] best, float[] cand, float eps, double p, Perturb.Engine.Data.SplitMix64 rng, int C, int H, int W)
    {
        int hw = H * W, d = C * hw;
        int s = Math.Max((int)Math.Round(Math.Sqrt(p * hw)), 3);
        if (s % 2 == 0) s++;
        s = Math.Max(1, Math.Min(s, Math.Min(H, W) - 1));
        int h1 = rng.NextInt(H - s), w1 = rng.NextInt(W - s), h2 = rng.NextInt(H - s), w2 = rng.NextInt(W - s);
        var delta = new double[d];
        double imageSq = 0;
        for (int k = 0; k < d; k++) { delta[k] = best[k] - x[k]; imageSq += delta[k] * delta[k]; }
        bool In1(int r, int q) => r >= h1 && r < h1 + s && q >= w1 && q < w1 + s;
        bool In2(int r, int q) => r >= h2 && r < h2 + s && q >= w2 && q < w2 + s;
        var bump = MetaPseudoGaussian(s, rng);
        var upd = new double[s * s];
        for (int ch = 0; ch < C; ch++)
        {
            double win1 = 0, both = 0;
            for (int r = 0; r < H; r++)
                for (int q = 0; q < W; q++)
                {
                    double v = delta[ch * hw + r * W + q];
                    if (In1(r, q)) win1 += v * v;
                    if (In1(r, q) || In2(r, q)) both += v * v;
                }
            win1 = Math.Sqrt(win1);
            double sgn = rng.NextDouble() < 0.5 ? -1 : 1, un = 0;
            for (int a = 0; a < s; a++)
                for (int b = 0; b < s; b++)
                {
                    double v = sgn * bump[a * s + b] + delta[ch * hw + (h1 + a) * W + w1 + b] / (1e-10 + win1);
                    upd[a * s + b] = v; un += v * v;
                }
            double target = Math.Sqrt(Math.Max((double)eps * eps - imageSq, 0) / C + both);
            double scale = un > 0 ? target / Math.Sqrt(un) : 0;
            for (int a = 0; a < s; a++)
                for (int b = 0; b < s; b++) delta[ch * hw + (h2 + a) * W + w2 + b] = 0;
            for (int a = 0; a < s; a++)
                for (int b = 0; b < s; b++) delta[ch * hw + (h1 + a) * W + w1 + b] = upd[a * s + b] * scale;
        }
        Project(x, delta, cand, eps);
    }

    /// <summary>dst = clip(x + delta * eps / ||delta||_2, 0, 1) (x itself when delta is zero); its L2 distance to x is at most eps.</summary>
    static void Project(ReadOnlySpan<float> x, double[] delta, Span<float> dst, float eps)
    {
        double n = 0;
        foreach (var v in delta) n += v * v;
        n = Math.Sqrt(n);
        // Scale a hair under eps so float rounding of x + delta cannot push the norm past eps.
        double f = n > 0 ? eps * (1 - 1e-6) / n : 0;
        for (int k = 0; k < delta.Length; k++) dst[k] = Math.Clamp((float)(x[k] + delta[k] * f), 0f, 1f);
    }

    /// <summary>
    /// The official meta pseudo-Gaussian perturbation of side s: the top s/2 rows a centred pseudo-Gaussian rectangle,
    /// the rest its negative, normalised to unit L2 norm, transposed with probability 1/2.
    /// </summary>
    internal static double[] MetaPseudoGaussian(int s, Perturb.Engine.Data.SplitMix64 rng)
    {
        var m = new double[s * s];
        var top = PseudoGaussianRectangle(s / 2, s);
        var bottom = PseudoGaussianRectangle(s - s / 2, s);
        for (int i = 0; i < top.Length; i++) m[i] = top[i];
        for (int i = 0; i < bottom.Length; i++) m[top.Length + i] = -bottom[i];
        double n = Math.Sqrt(m.Sum(v => v * v));
        if (n > 0) for (int i = 0; i < m.Length; i++) m[i] /= n;
        if (rng.NextDouble() > 0.5)
        {
            var t = new double[s * s];
            for (int a = 0; a < s; a++) for (int b = 0; b < s; b++) t[b * s + a] = m[a * s + b];
            m = t;
        }
        return m;
    }

    /// <summary>The official pseudo_gaussian_pert_rectangles(x, y): nested boxes around the centre weighted 1/(k+1)^2, unit norm.</summary>
    static double[] PseudoGaussianRectangle(int x, int y)
    {
        var d = new double[x * y];
        if (x == 0) return d;
        int xc = x / 2 + 1, yc = y / 2 + 1, c0 = xc - 1, c1 = yc - 1;
        for (int k = 0; k < Math.Max(xc, yc); k++)
        {
            for (int a = Math.Max(c0, 0); a < Math.Min(c0 + 2 * k + 1, x); a++)
                for (int b = Math.Max(c1, 0); b < Math.Min(c1 + 2 * k + 1, y); b++) d[a * y + b] += 1.0 / ((k + 1) * (k + 1));
            c0--; c1--;
        }
        double n = Math.Sqrt(d.Sum(v => v * v));
        for (int i = 0; i < d.Length; i++) d[i] /= n;
        return d;
    }

    /// <summary>One query per state: its candidate (the start point when <paramref name="start"/>); keeps improvements.</summary>
    void Evaluate(RunContext c, int e, List<State> states, int[] goal, bool targeted, bool start)
    {
        if (states.Count == 0) return;
        int d = c.D, classes = c.Model.NumClasses;
        var z = EvaluateLogits(c.Model, states.Count, QueryBatch, (q, dst) => states[q].Cand.AsSpan().CopyTo(dst));
        for (int q = 0; q < states.Count; q++)
        {
            var s = states[q];
            var row = z.AsSpan(q * classes, classes);
            int t = goal[s.Sample];
            float other = Losses.MaxOther(row, t);
            double margin = targeted ? other - row[t] : row[t] - other;
            c.Queries[e][s.Sample]++;
            bool ok = Meets(Losses.Argmax(row), t, targeted);
            if (start || margin < s.Margin || ok)
            {
                if (!start) Array.Copy(s.Cand, s.Best, d);
                s.Margin = margin;
            }
            if (ok) s.Done = true;
        }
    }
}
