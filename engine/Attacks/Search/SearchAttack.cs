using Perturb.Engine.Data;
using Perturb.Engine.Nn;

namespace Perturb.Engine.Attacks.Search;

/// <summary>
/// Base of the score-based black-box attacks: they read only the model's outputs, run the whole run in
/// <see cref="Attack.Produce"/> (every generation of every still-running image as one batch of candidates, in chunks of
/// at most <see cref="QueryBatch"/> images per forward pass) and count every query per sample.
/// </summary>
public abstract class SearchAttack : Attack
{
    /// <summary>Most candidate images in one forward pass.</summary>
    [Setting("query_batch", "most candidate images per forward pass", Min = 1)]
    public int QueryBatch { get; init; } = 4096;

    protected override bool CountsQueries => true;

    /// <summary>
    /// Render every candidate image on the host and upload it (the path before candidates were rendered on the device,
    /// <see cref="EditedCandidates"/>): kept as the reference the device path is tested against, bit for bit.
    /// </summary>
    internal bool RenderOnHost { get; init; }

    /// <summary>Search attacks do not use gradient chunks; everything happens in <see cref="Attack.Produce"/>.</summary>
    protected sealed override void AttackChunk(AttackBatch b) =>
        throw new InvalidOperationException($"{Name} runs whole populations in Produce, not in gradient chunks");

    protected void CheckQueryBatch()
    {
        if (QueryBatch <= 0) throw new PerturbException($"{Name}: query batch must be positive, got {QueryBatch}", 2);
    }

    /// <summary>Sample shape as (C, H, W); search attacks need image inputs.</summary>
    protected (int C, int H, int W) ImageShape(Model m)
    {
        var s = m.InputShape;
        if (s.Length != 3) throw new PerturbException($"{Name} needs image inputs (C x H x W), the model takes {Tensor.ShapeString(s)}", 2);
        return (s[0], s[1], s[2]);
    }

    /// <summary>
    /// Evaluates <paramref name="count"/> candidate images: <paramref name="fill"/>(j, dst) writes candidate j into dst
    /// (C*H*W values). Returns the logits on the host, count x classes; a one-output model gives the pair (0, z), so
    /// softmax and first-maximum argmax agree with <see cref="Losses.Probabilities"/> and <see cref="Losses.Predict"/>.
    /// </summary>
    public static float[] EvaluateLogits(Model m, int count, int queryBatch, Action<int, Span<float>> fill)
    {
        var be = m.Backend;
        int d = Layer.Product(m.InputShape), k = m.NumOutputs, classes = m.NumClasses;
        queryBatch = Math.Min(queryBatch, ForwardRows(m));
        var outp = new float[(long)count * classes];
        var buf = new float[(long)Math.Min(queryBatch, Math.Max(count, 1)) * d];
        // An out-of-memory halves the chunk and retries it; each query's logits do not depend on the chunk.
        BatchGuard.Run(count, queryBatch, (s0, rows) =>
        {
            int s = (int)s0;
            for (int r = 0; r < rows; r++) fill(s + r, buf.AsSpan(r * d, d));
            using var t = be.FromArray(buf.AsSpan(0, rows * d), new[] { rows }.Concat(m.InputShape).ToArray());
            var z = m.Infer(t).ToArray();
            for (int r = 0; r < rows; r++) Losses.ClassLogits(z, r, k, outp.AsSpan((int)((long)(s + r) * classes), classes));
        }, cleanup: m.ReleaseActivations, what: "query batch");
        m.ReleaseActivations();
        return outp;
    }

    /// <summary>Bytes of activations one forward chunk may hold (see <see cref="ForwardRows"/>).</summary>
    public const long ForwardChunkBytes = 256L << 20;

    /// <summary>
    /// Most images per forward pass so that the activations an inference pass holds at its peak
    /// (<see cref="Model.InferValuesPerSample"/>, 4 bytes a value) stay under <see cref="ForwardChunkBytes"/>, at least
    /// 16: a population of 40,000 28x28 candidates in chunks of 4096 held over 12 GB at once; a smaller chunk is as
    /// fast and keeps the memory flat. (Sizing by every layer's output instead gave a ResNet-18 chunks of 42, where its
    /// forward is well below its batch-128 rate.)
    /// </summary>
    public static int ForwardRows(Model m)
    {
        return (int)Math.Clamp(ForwardChunkBytes / (4 * Math.Max(1, m.InferValuesPerSample)), 16, int.MaxValue);
    }

    /// <summary>Softmax probability of class <paramref name="c"/> of a logit row (max-subtracted, in double).</summary>
    public static double Probability(ReadOnlySpan<float> z, int c)
    {
        float mx = z[0];
        for (int j = 1; j < z.Length; j++) mx = Math.Max(mx, z[j]);
        double s = 0;
        for (int j = 0; j < z.Length; j++) s += Math.Exp(z[j] - mx);
        return Math.Exp(z[c] - mx) / s;
    }

    /// <summary>Whether a prediction meets the goal: untargeted, any class but the label; targeted, the target.</summary>
    protected static bool Meets(int pred, int goalClass, bool targeted) => targeted ? pred == goalClass : pred != goalClass;

    /// <summary>The random stream of one sample (and epsilon): a function of (seed, index) only, so batching never changes it.</summary>
    protected SplitMix64 SampleRng(int sample, int eps = 0) =>
        new(Seed ^ (0x9E3779B97F4A7C15UL * (ulong)(sample + 1)) ^ (0xD1B54A32D192ED03UL * (ulong)(eps + 1)));
}
