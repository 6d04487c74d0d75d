using Perturb.Engine.Data;

namespace Perturb.Engine.Attacks;

public enum GoalKind
{
    /// <summary>Any wrong class: success when the prediction differs from the true label.</summary>
    Untargeted,
    /// <summary>Given target labels, one per sample.</summary>
    Targeted,
    /// <summary>A random class other than the true one, drawn per sample from the seed and the sample's index.</summary>
    RandomTarget,
    /// <summary>The least likely class under the clean logits.</summary>
    LeastLikely,
}

/// <summary>What an attack aims at. Targeted goals resolve to one target label per sample before the attack runs.</summary>
public sealed record AttackGoal(GoalKind Kind, int[]? Targets = null, ulong Seed = 0)
{
    public static AttackGoal Untargeted { get; } = new(GoalKind.Untargeted);
    public static AttackGoal Target(params int[] targets) => new(GoalKind.Targeted, targets);
    /// <summary>Every sample aims at the same class.</summary>
    public static AttackGoal TargetAll(int label, int n) => new(GoalKind.Targeted, Enumerable.Repeat(label, n).ToArray());
    public static AttackGoal Random(ulong seed) => new(GoalKind.RandomTarget, null, seed);
    public static AttackGoal LeastLikely { get; } = new(GoalKind.LeastLikely);

    public bool IsTargeted => Kind != GoalKind.Untargeted;

    /// <summary>
    /// Parses the CLI form: null or "" or "none" = untargeted, "random", "least-likely", or a class index (every sample
    /// aims at it).
    /// </summary>
    public static AttackGoal Parse(string? s, int n, ulong seed)
    {
        if (string.IsNullOrEmpty(s) || s == "none" || s == "untargeted") return Untargeted;
        if (s == "random") return Random(seed);
        if (s == "least-likely" || s == "ll") return LeastLikely;
        if (int.TryParse(s, out int t) && t >= 0) return TargetAll(t, n);
        throw new PerturbException($"unknown target '{s}' (use random, least-likely or a class index)", 2);
    }

    /// <summary>
    /// The target class per sample (null for untargeted). <paramref name="cleanLogits"/> (host, n x outputs) is needed for
    /// least-likely; <paramref name="classes"/> is the class count (2 for one-output models).
    /// </summary>
    public int[]? Resolve(int[] labels, int classes, Func<float[][]> cleanProbabilities)
    {
        int n = labels.Length;
        switch (Kind)
        {
            case GoalKind.Untargeted: return null;
            case GoalKind.Targeted:
                if (Targets == null || Targets.Length != n) throw new PerturbException($"targeted goal needs {n} target labels, got {Targets?.Length ?? 0}", 2);
                foreach (var t in Targets) if (t < 0 || t >= classes) throw new PerturbException($"target {t} outside the model's {classes} classes", 2);
                return (int[])Targets.Clone();
            case GoalKind.RandomTarget:
            {
                var r = new int[n];
                for (int i = 0; i < n; i++)
                {
                    // Per sample, from (seed, index): independent of batching and of the other samples.
                    var g = new SplitMix64(Seed ^ (0x9E3779B97F4A7C15UL * (ulong)(i + 1)));
                    int k = g.NextInt(classes - 1);
                    r[i] = k >= labels[i] ? k + 1 : k;
                }
                return r;
            }
            case GoalKind.LeastLikely:
            {
                var p = cleanProbabilities();
                var r = new int[n];
                for (int i = 0; i < n; i++)
                {
                    int best = 0;
                    for (int k = 1; k < p[i].Length; k++) if (p[i][k] < p[i][best]) best = k;
                    r[i] = best;
                }
                return r;
            }
            default: throw new ArgumentOutOfRangeException(nameof(Kind));
        }
    }
}
