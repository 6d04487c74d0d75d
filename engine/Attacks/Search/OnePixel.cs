using Perturb.Engine.Data;

namespace Perturb.Engine.Attacks.Search;

/// <summary>
/// One-pixel attack (Su, Vargas, Sakurai 2019): differential evolution over K pixels, each encoded as (x, y, colour per
/// channel). DE/rand/1 without crossover: trial = p[r1] + F (p[r2] - p[r3]), r1, r2, r3 distinct and not the parent;
/// the trial replaces its parent when its fitness is no worse. Fitness (minimised): the true class's probability
/// (untargeted) or minus the target's (targeted). Initial population: positions uniform over the image, colours
/// uniform in [0,1]. An image stops as soon as any candidate meets the goal (early stop) and returns the best such
/// candidate; otherwise the fittest candidate after <see cref="Iterations"/> generations.
/// Every generation evaluates the population of every still-running image as one batch (chunks of QueryBatch).
/// Queries per image: Population for the start plus Population per generation run. Images that already meet the goal
/// before the attack (misclassified, or already the target) are left as they are with 0 queries.
/// Rendering: pixels that land on the same position move to the next free pixel (row-major), and a pixel whose colour
/// equals the original in every channel moves its first channel 1/255 toward 0.5, so exactly K pixels differ.
/// </summary>
public sealed class OnePixel : SearchAttack
{
    public override string Name => "one-pixel";
    public override bool NeedsEpsilon => false;
    public int Pixels { get; init; } = 1;
    public int Population { get; init; } = 400;
    public int Iterations { get; init; } = 100;
    public float F { get; init; } = 0.5f;

    protected override void Validate()
    {
        if (Pixels < 1) throw new PerturbException($"{Name}: pixels must be at least 1, got {Pixels}", 2);
        if (Population < 4) throw new PerturbException($"{Name}: population must be at least 4 (DE/rand/1 needs three others), got {Population}", 2);
        if (Iterations < 0) throw new PerturbException($"{Name}: iterations must be 0 or more, got {Iterations}", 2);
        if (!(F > 0)) throw new PerturbException($"{Name}: F must be positive, got {F}", 2);
        CheckQueryBatch();
    }

    sealed class State
    {
        public required int Sample;
        public required SplitMix64 Rng;
        public required float[] Pop;   // Population x genes
        public required double[] Fit;
        public float[]? Trial;
        public int Winner = -1;        // index of the successful candidate (in Pop) once done
    }

    protected override float[][] Produce(RunContext c)
    {
        var (C, H, W) = ImageShape(c.Model);
        if (Pixels > H * W) throw new PerturbException($"{Name}: {Pixels} pixels exceed the image's {H * W}", 2);
        int d = c.D, P = Population, G = 2 + C, L = Pixels * G, classes = c.Model.NumClasses;
        bool targeted = c.Targets != null;
        var adv = (float[])c.X.Clone();
        var goal = targeted ? c.Targets! : c.Labels;
        var states = new List<State>();
        for (int i = 0; i < c.N; i++)
        {
            if (Meets(c.CleanPred[i], goal[i], targeted)) continue;
            var rng = SampleRng(i);
            var pop = new float[P * L];
            for (int j = 0; j < P; j++)
                for (int p = 0; p < Pixels; p++)
                {
                    int o = j * L + p * G;
                    pop[o] = (float)(rng.NextDouble() * W);
                    pop[o + 1] = (float)(rng.NextDouble() * H);
                    for (int ch = 0; ch < C; ch++) pop[o + 2 + ch] = (float)rng.NextDouble();
                }
            states.Add(new State { Sample = i, Rng = rng, Pop = pop, Fit = new double[P] });
        }

        // Start: evaluate every initial population.
        Evaluate(c, states, s => s.Pop, (s, j, fit, ok) => { s.Fit[j] = fit; if (ok) Win(s, j, fit); }, C, H, W, goal, targeted);
        var running = states.Where(s => s.Winner < 0).ToList();
        for (int gen = 0; gen < Iterations && running.Count > 0; gen++)
        {
            foreach (var s in running)
            {
                s.Trial ??= new float[P * L];
                for (int j = 0; j < P; j++)
                {
                    int r1, r2, r3;
                    do r1 = s.Rng.NextInt(P); while (r1 == j);
                    do r2 = s.Rng.NextInt(P); while (r2 == j || r2 == r1);
                    do r3 = s.Rng.NextInt(P); while (r3 == j || r3 == r1 || r3 == r2);
                    for (int g = 0; g < L; g++)
                    {
                        float v = s.Pop[r1 * L + g] + F * (s.Pop[r2 * L + g] - s.Pop[r3 * L + g]);
                        int kind = g % G;
                        float hi = kind == 0 ? W : kind == 1 ? H : 1f;
                        s.Trial[j * L + g] = Math.Clamp(v, 0f, hi);
                    }
                }
                c.Steps[0][s.Sample]++;
            }
            // Selection: a trial replaces its parent when no worse; a successful trial ends its image.
            var best = new Dictionary<State, (int J, double Fit)>();
            Evaluate(c, running, s => s.Trial!, (s, j, fit, ok) =>
            {
                if (fit <= s.Fit[j]) { Array.Copy(s.Trial!, j * L, s.Pop, j * L, L); s.Fit[j] = fit; }
                if (ok && (!best.TryGetValue(s, out var b) || fit < b.Fit)) best[s] = (j, fit);
            }, C, H, W, goal, targeted);
            foreach (var (s, b) in best)
            {
                Array.Copy(s.Trial!, b.J * L, s.Pop, b.J * L, L);
                s.Fit[b.J] = b.Fit;
                s.Winner = b.J;
            }
            running = running.Where(s => s.Winner < 0).ToList();
        }

        foreach (var s in states)
        {
            int j = s.Winner;
            if (j < 0) { j = 0; for (int q = 1; q < P; q++) if (s.Fit[q] < s.Fit[j]) j = q; }
            Render(c.X.AsSpan(s.Sample * d, d), s.Pop.AsSpan(j * L, L), adv.AsSpan(s.Sample * d, d), C, H, W);
        }
        return new[] { adv };

        static void Win(State s, int j, double fit)
        {
            if (s.Winner < 0 || fit < s.Fit[s.Winner]) s.Winner = j;
        }
    }

    /// <summary>
    /// Evaluates all Population candidates of every state in one batch (chunks of QueryBatch), counts the queries, and
    /// calls <paramref name="take"/>(state, candidate, fitness, meets goal) for each.
    /// </summary>
    void Evaluate(RunContext c, List<State> states, Func<State, float[]> genes, Action<State, int, double, bool> take,
        int C, int H, int W, int[] goal, bool targeted)
    {
        if (states.Count == 0) return;
        int d = c.D, P = Population, L = Pixels * (2 + C), classes = c.Model.NumClasses;
        int count = states.Count * P;
        var z = EvaluateLogits(c.Model, count, QueryBatch, (q, dst) =>
        {
            var s = states[q / P]; int j = q % P;
            Render(c.X.AsSpan(s.Sample * d, d), genes(s).AsSpan(j * L, L), dst, C, H, W);
        });
        for (int q = 0; q < count; q++)
        {
            var s = states[q / P];
            var row = z.AsSpan(q * classes, classes);
            int t = goal[s.Sample];
            double p = Probability(row, t);
            take(s, q % P, targeted ? -p : p, Meets(Argmax(row), t, targeted));
            c.Queries[0][s.Sample]++;
        }
    }

    /// <summary>Writes the original with the K encoded pixels set (see the class comment for collisions and no-ops).</summary>
    internal static void Render(ReadOnlySpan<float> x, ReadOnlySpan<float> genes, Span<float> dst, int C, int H, int W)
    {
        x.CopyTo(dst);
        int G = 2 + C, K = genes.Length / G, hw = H * W;
        Span<int> used = stackalloc int[Math.Min(K, 256)];
        var usedArr = K > 256 ? new int[K] : null;
        var u = usedArr != null ? usedArr.AsSpan() : used[..K];
        for (int p = 0; p < K; p++)
        {
            var g = genes.Slice(p * G, G);
            int px = Math.Min((int)g[0], W - 1), py = Math.Min((int)g[1], H - 1);
            int idx = py * W + px;
            while (u[..p].Contains(idx)) idx = (idx + 1) % hw;
            u[p] = idx;
            bool same = true;
            for (int ch = 0; ch < C; ch++)
            {
                float v = Math.Clamp(g[2 + ch], 0f, 1f);
                dst[ch * hw + idx] = v;
                if (v != x[ch * hw + idx]) same = false;
            }
            if (same) dst[idx] = x[idx] < 0.5f ? x[idx] + 1 / 255f : x[idx] - 1 / 255f;
        }
    }
}
