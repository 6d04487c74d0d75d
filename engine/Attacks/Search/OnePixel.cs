using Perturb.Engine.Data;

namespace Perturb.Engine.Attacks.Search;

/// <summary>
/// One-pixel attack (Su, Vargas, Sakurai 2019): differential evolution over K pixels, each encoded as (x, y, colour per
/// channel). DE/rand/1 without crossover: trial = p[r1] + F (p[r2] - p[r3]), r1, r2, r3 distinct and not the parent;
/// the trial replaces its parent when its fitness is no worse. Fitness (minimised): the true class's probability
/// (untargeted) or minus the target's (targeted). Initial population: positions uniform over the image, colours
/// uniform in [0,1]. An image stops as soon as any candidate meets the goal (early stop) and returns the best such
/// candidate; otherwise the fittest candidate after <see cref="Iterations"/> generations.
/// Every generation evaluates the population of every still-running image as one batch (chunks of QueryBatch); the
/// candidates are rendered on the device from each image's K*C edits (<see cref="EditedCandidates"/>).
/// Queries per image: Population for the start plus Population per generation run. Images that already meet the goal
/// before the attack (misclassified, or already the target) are left as they are with 0 queries.
/// Rendering: pixels that land on the same position move to the next free pixel (row-major), and a pixel whose colour
/// equals the original in every channel moves its first channel 1/255 toward 0.5, so exactly K pixels differ.
/// </summary>
public sealed class OnePixel : SearchAttack
{
    public override string Name => "one-pixel";
    public override bool NeedsEpsilon => false;
    [Setting("pixels", "pixels changed per image", Min = 1)]
    public int Pixels { get; init; } = 1;
    [Setting("population", "candidates per image and generation", Min = 4)]
    public int Population { get; init; } = 400;
    [Setting("iterations", "most generations", Min = 0)]
    public int Iterations { get; init; } = 100;
    [Setting("f", "differential evolution scale factor", Min = 0, MinOpen = true)]
    public float F { get; init; } = 0.5f;

    protected override void Validate()
    {
        if (Pixels < 1) throw new PerturbException($"{Name}: pixels must be at least 1, got {Pixels}", 2);
        DifferentialEvolution.CheckSettings(Name, Population, Iterations, F);
        CheckQueryBatch();
    }

    protected override float[][] Produce(RunContext c)
    {
        var (C, H, W) = ImageShape(c.Model);
        if (Pixels > H * W) throw new PerturbException($"{Name}: {Pixels} pixels exceed the image's {H * W}", 2);
        int d = c.D, G = 2 + C, L = Pixels * G;
        var goal = c.Targets ?? c.Labels;
        var hi = new float[L];
        for (int g = 0; g < L; g++) hi[g] = (g % G) switch { 0 => W, 1 => H, _ => 1f };
        var samples = Enumerable.Range(0, c.N).Where(i => !Meets(c.CleanPred[i], goal[i], c.Targets != null)).Select(i => (i, SampleRng(i))).ToList();
        var de = new DifferentialEvolution { Population = Population, Iterations = Iterations, F = F, QueryBatch = QueryBatch, Lo = new float[L], Hi = hi };
        var chosen = de.Run(c, 0, samples, (_, rng, genes) =>
        {
            // Positions uniform over the image, colours uniform in [0,1].
            for (int p = 0; p < Pixels; p++)
            {
                genes[p * G] = (float)(rng.NextDouble() * W);
                genes[p * G + 1] = (float)(rng.NextDouble() * H);
                for (int ch = 0; ch < C; ch++) genes[p * G + 2 + ch] = (float)rng.NextDouble();
            }
        }, (i, genes, dst) => Render(c.X.AsSpan(i * d, d), genes, dst, C, H, W),
            RenderOnHost ? null : (Pixels * C, (i, genes, idx, val) => Edits(c.X.AsSpan(i * d, d), genes, idx, val, C, H, W)));
        var adv = (float[])c.X.Clone();
        for (int k = 0; k < samples.Count; k++)
            Render(c.X.AsSpan(samples[k].Item1 * d, d), chosen[k], adv.AsSpan(samples[k].Item1 * d, d), C, H, W);
        return new[] { adv };
    }

    /// <summary>Writes the original with the K encoded pixels set (see the class comment for collisions and no-ops).</summary>
    internal static void Render(ReadOnlySpan<float> x, ReadOnlySpan<float> genes, Span<float> dst, int C, int H, int W)
    {
        x.CopyTo(dst);
        int n = genes.Length / (2 + C) * C;
        Span<float> idx = n <= 1024 ? stackalloc float[n] : new float[n];
        Span<float> val = n <= 1024 ? stackalloc float[n] : new float[n];
        Edits(x, genes, idx, val, C, H, W);
        for (int j = 0; j < n; j++) dst[(int)idx[j]] = val[j];
    }

    /// <summary>
    /// The K encoded pixels as K*C edits of x: (index into the C*H*W values, value), pixel by pixel, channel by channel.
    /// Collisions and no-ops as in the class comment, so the K positions are distinct and each differs from x.
    /// </summary>
    internal static void Edits(ReadOnlySpan<float> x, ReadOnlySpan<float> genes, Span<float> idx, Span<float> val, int C, int H, int W)
    {
        int G = 2 + C, K = genes.Length / G, hw = H * W;
        Span<int> u = K <= 256 ? stackalloc int[K] : new int[K];
        for (int p = 0; p < K; p++)
        {
            var g = genes.Slice(p * G, G);
            int px = Math.Min((int)g[0], W - 1), py = Math.Min((int)g[1], H - 1);
            int at = py * W + px;
            while (u[..p].Contains(at)) at = (at + 1) % hw;
            u[p] = at;
            bool same = true;
            for (int ch = 0; ch < C; ch++)
            {
                float v = Math.Clamp(g[2 + ch], 0f, 1f);
                idx[p * C + ch] = ch * hw + at;
                val[p * C + ch] = v;
                if (v != x[ch * hw + at]) same = false;
            }
            if (same) val[p * C] = x[at] < 0.5f ? x[at] + 1 / 255f : x[at] - 1 / 255f;
        }
    }
}
