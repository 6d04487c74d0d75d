using Perturb.Engine.Nn;

namespace Perturb.Engine.Attacks.Search;

/// <summary>
/// Saliency-guided pixel attack (after Kügler et al., physical attacks in dermoscopy, and saliency-restricted one-pixel
/// attacks): one input gradient per image gives a saliency map, |dL/dx| summed over channels, where L is the
/// cross-entropy of the true class (untargeted) or of the target (targeted); the <see cref="Candidates"/> most salient
/// positions (ties: row-major order) are the only places a pixel may go. Then the same differential evolution as
/// <see cref="OnePixel"/> over K pixels, each encoded as (candidate rank in [0, M), colour per channel), colours free
/// in [0,1]; rendering, early stop and selection are OnePixel's (a collision moves a pixel to the next free position
/// row-major, which may lie outside the candidates; exactly K pixels differ).
/// Queries per image: 1 for the gradient pass (a forward plus an input-only backward, counted as one query and one
/// gradient), then Population for the start and Population per generation run. Images that already meet the goal
/// before the attack are left as they are with 0 queries. The gradients run in chunks of MaxBatch images.
/// </summary>
public sealed class PixelSaliency : SearchAttack
{
    public override string Name => "pixel-saliency";
    public override bool NeedsEpsilon => false;
    [Setting("pixels", "pixels changed per image", Min = 1)]
    public int Pixels { get; init; } = 1;
    [Setting("population", "candidates per image and generation", Min = 4)]
    public int Population { get; init; } = 400;
    [Setting("iterations", "most generations", Min = 0)]
    public int Iterations { get; init; } = 100;
    [Setting("f", "differential evolution scale factor", Min = 0, MinOpen = true)]
    public float F { get; init; } = 0.5f;
    /// <summary>Candidate positions M; 0 (the default) takes max(64, 5% of the pixels), at most all of them.</summary>
    [Setting("candidates", "the most salient positions a pixel may take (0: max(64, 5% of the pixels))", Min = 0)]
    public int Candidates { get; init; }

    protected override void Validate()
    {
        if (Pixels < 1) throw new PerturbException($"{Name}: pixels must be at least 1, got {Pixels}", 2);
        DifferentialEvolution.CheckSettings(Name, Population, Iterations, F);
        if (Candidates < 0) throw new PerturbException($"{Name}: candidates must be 0 (automatic) or positive, got {Candidates}", 2);
        if (Candidates > 0 && Candidates < Pixels) throw new PerturbException($"{Name}: {Candidates} candidates cannot hold {Pixels} pixels", 2);
        CheckQueryBatch();
    }

    /// <summary>The candidate count used for an image of <paramref name="hw"/> pixels.</summary>
    public int CandidatesFor(int hw) => Math.Min(hw, Candidates > 0 ? Candidates : Math.Max(64, (int)Math.Ceiling(0.05 * hw)));

    /// <summary>
    /// Saliency maps (H*W per sample, |dL/dx| summed over channels) of the given samples, one gradient each, in chunks
    /// of MaxBatch; counts one query and one gradient per sample.
    /// </summary>
    internal float[][] Saliency(RunContext c, IReadOnlyList<int> samples, int C, int hw)
    {
        var m = c.Model;
        int d = c.D, k = m.NumOutputs;
        var maps = new float[samples.Count][];
        for (int s = 0; s < samples.Count; s += MaxBatch)
        {
            int rows = Math.Min(MaxBatch, samples.Count - s);
            var idx = samples.Skip(s).Take(rows).ToArray();
            var x0 = new float[(long)rows * d]; var zl = new float[rows * k];
            for (int r = 0; r < rows; r++)
            {
                Array.Copy(c.X, (long)idx[r] * d, x0, (long)r * d, d);
                Array.Copy(c.CleanLogits, (long)idx[r] * k, zl, (long)r * k, k);
            }
            using var b = new AttackBatch(m, idx, new int[rows], Enumerable.Repeat(float.NaN, rows).ToArray(),
                idx.Select(i => c.Labels[i]).ToArray(), c.Targets == null ? null : idx.Select(i => c.Targets[i]).ToArray(), x0, zl, Seed);
            var g = b.Gradient(b.X0, LossKind.CrossEntropy, b.Direction).ToArray();
            m.ReleaseActivations();
            for (int r = 0; r < rows; r++)
            {
                var map = new float[hw];
                for (int ch = 0; ch < C; ch++)
                    for (int p = 0; p < hw; p++) map[p] += Math.Abs(g[(long)r * d + ch * hw + p]);
                maps[s + r] = map;
                c.Queries[0][idx[r]]++;
                c.Gradients[0][idx[r]]++;
            }
        }
        return maps;
    }

    /// <summary>The <paramref name="m"/> positions of largest saliency, most salient first (ties: lower index first).</summary>
    public static int[] TopPositions(float[] map, int m) =>
        Enumerable.Range(0, map.Length).OrderByDescending(p => map[p]).ThenBy(p => p).Take(m).ToArray();

    protected override float[][] Produce(RunContext c)
    {
        var (C, H, W) = ImageShape(c.Model);
        int hw = H * W, d = c.D, M = CandidatesFor(hw);
        if (Pixels > M) throw new PerturbException($"{Name}: {Pixels} pixels exceed the {M} candidate positions", 2);
        int G = 1 + C, L = Pixels * G;
        var goal = c.Targets ?? c.Labels;
        var run = Enumerable.Range(0, c.N).Where(i => !Meets(c.CleanPred[i], goal[i], c.Targets != null)).ToList();
        var maps = Saliency(c, run, C, hw);
        var cand = new Dictionary<int, int[]>();
        for (int r = 0; r < run.Count; r++) cand[run[r]] = TopPositions(maps[r], M);

        var hi = new float[L];
        for (int g = 0; g < L; g++) hi[g] = g % G == 0 ? M : 1f;
        var de = new DifferentialEvolution { Population = Population, Iterations = Iterations, F = F, QueryBatch = QueryBatch, Lo = new float[L], Hi = hi };
        var samples = run.Select(i => (i, SampleRng(i))).ToList();
        var chosen = de.Run(c, 0, samples, (_, rng, genes) =>
        {
            for (int p = 0; p < Pixels; p++)
            {
                genes[p * G] = (float)(rng.NextDouble() * M);
                for (int ch = 0; ch < C; ch++) genes[p * G + 1 + ch] = (float)rng.NextDouble();
            }
        }, (i, genes, dst) => Render(c.X.AsSpan(i * d, d), cand[i], genes, dst, C, H, W),
            RenderOnHost ? null : (Pixels * C, (i, genes, idx, val) => Edits(c.X.AsSpan(i * d, d), cand[i], genes, idx, val, C, H, W)));
        var adv = (float[])c.X.Clone();
        for (int k = 0; k < run.Count; k++)
            Render(c.X.AsSpan(run[k] * d, d), cand[run[k]], chosen[k], adv.AsSpan(run[k] * d, d), C, H, W);
        return new[] { adv };
    }

    /// <summary>Maps (rank, colours) genes onto positions and renders them with <see cref="OnePixel.Render"/>.</summary>
    internal static void Render(ReadOnlySpan<float> x, int[] candidates, ReadOnlySpan<float> genes, Span<float> dst, int C, int H, int W)
    {
        Span<float> full = (genes.Length / (1 + C)) * (2 + C) <= 1024 ? stackalloc float[genes.Length / (1 + C) * (2 + C)] : new float[genes.Length / (1 + C) * (2 + C)];
        OnePixel.Render(x, Positions(candidates, genes, full, C, W), dst, C, H, W);
    }

    /// <summary>The same pixels as <see cref="Render"/>, as edits (<see cref="OnePixel.Edits"/>).</summary>
    internal static void Edits(ReadOnlySpan<float> x, int[] candidates, ReadOnlySpan<float> genes, Span<float> idx, Span<float> val, int C, int H, int W)
    {
        Span<float> full = (genes.Length / (1 + C)) * (2 + C) <= 1024 ? stackalloc float[genes.Length / (1 + C) * (2 + C)] : new float[genes.Length / (1 + C) * (2 + C)];
        OnePixel.Edits(x, Positions(candidates, genes, full, C, W), idx, val, C, H, W);
    }

    /// <summary>(rank, colours) genes as one-pixel's (x, y, colours) genes, written into <paramref name="full"/>.</summary>
    static Span<float> Positions(int[] candidates, ReadOnlySpan<float> genes, Span<float> full, int C, int W)
    {
        int G = 1 + C, K = genes.Length / G;
        for (int p = 0; p < K; p++)
        {
            int pos = candidates[Math.Min((int)genes[p * G], candidates.Length - 1)];
            full[p * (2 + C)] = pos % W;
            full[p * (2 + C) + 1] = pos / W;
            for (int ch = 0; ch < C; ch++) full[p * (2 + C) + 2 + ch] = genes[p * G + 1 + ch];
        }
        return full;
    }
}
