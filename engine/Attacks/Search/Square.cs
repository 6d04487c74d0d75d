namespace Perturb.Engine.Attacks.Search;

/// <summary>
/// Square attack, Linf (Andriushchenko et al. 2020): random search with square updates at the corners of the Linf ball.
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
    public int Queries { get; init; } = 10000;
    /// <summary>Initial fraction of pixels a square covers.</summary>
    public float PInit { get; init; } = 0.05f;

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
                if (Meets(c.CleanPred[i], goal[i], targeted)) continue;
                var rng = SampleRng(i, e);
                var best = new float[d];
                var x = c.X.AsSpan(i * d, d);
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
            float other = float.NegativeInfinity;
            for (int j = 0; j < classes; j++) if (j != t) other = Math.Max(other, row[j]);
            double margin = targeted ? other - row[t] : row[t] - other;
            c.Queries[e][s.Sample]++;
            bool ok = Meets(Argmax(row), t, targeted);
            if (start || margin < s.Margin || ok)
            {
                if (!start) Array.Copy(s.Cand, s.Best, d);
                s.Margin = margin;
            }
            if (ok) s.Done = true;
        }
    }
}
