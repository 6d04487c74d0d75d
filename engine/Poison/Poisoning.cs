using Perturb.Engine.Data;

namespace Perturb.Engine.Poison;

/// <summary>A poisoned copy of a training set and which of its samples were changed.</summary>
public sealed record PoisonedSet(Dataset Data, int[] PoisonIndices)
{
    public bool[] Mask()
    {
        var m = new bool[Data.Count];
        foreach (var i in PoisonIndices) m[i] = true;
        return m;
    }
}

/// <summary>Training-set poisoning: BadNets (Gu et al. 2019) and label flipping.</summary>
public static class Poisoning
{
    /// <summary>
    /// BadNets: chooses round(rate * N) samples (seeded) among those whose label is not <paramref name="target"/>,
    /// stamps the trigger on each and relabels it to the target. The clean set is not changed.
    /// </summary>
    public static PoisonedSet BadNets(Dataset clean, Trigger trigger, double rate, int target, ulong seed)
    {
        CheckRate(rate);
        if (target < 0 || target >= clean.NumClasses)
            throw new PerturbException($"target {target} is outside the {clean.NumClasses} classes of '{clean.Name}'", 2);
        trigger.Validate(clean.Channels, clean.Height, clean.Width);
        var others = Enumerable.Range(0, clean.Count).Where(i => clean.Labels[i] != target).ToArray();
        int k = (int)Math.Round(rate * clean.Count);
        if (k > others.Length) throw new PerturbException($"poison rate {rate} needs {k} samples outside the target class; there are {others.Length}", 2);
        var perm = new SplitMix64(seed ^ 0xBAD_4E75UL).Permutation(others.Length);
        var chosen = perm.Take(k).Select(j => others[j]).OrderBy(i => i).ToArray();
        var x = (float[])clean.X.Clone();
        var y = (int[])clean.Labels.Clone();
        int s = clean.SampleSize;
        foreach (var i in chosen)
        {
            trigger.Apply(x.AsSpan(i * s, s), clean.Channels, clean.Height, clean.Width);
            y[i] = target;
        }
        return new PoisonedSet(new Dataset(x, y, clean.Channels, clean.Height, clean.Width, clean.ClassNames) { Name = clean.Name + "+badnets" }, chosen);
    }

    /// <summary>
    /// The test images of every class but the target, with the trigger stamped on; labels set to the target
    /// (so accuracy on this set is the attack success rate).
    /// </summary>
    public static Dataset Triggered(Dataset test, Trigger trigger, int target)
    {
        trigger.Validate(test.Channels, test.Height, test.Width);
        var idx = Enumerable.Range(0, test.Count).Where(i => test.Labels[i] != target).ToArray();
        var x = test.Gather(idx);
        int s = test.SampleSize;
        for (int i = 0; i < idx.Length; i++) trigger.Apply(x.AsSpan(i * s, s), test.Channels, test.Height, test.Width);
        return new Dataset(x, Enumerable.Repeat(target, idx.Length).ToArray(), test.Channels, test.Height, test.Width, test.ClassNames) { Name = test.Name + "+trigger" };
    }

    /// <summary>Label flipping: round(rate * N) seeded samples get a label drawn uniformly from the other classes.</summary>
    public static PoisonedSet LabelFlip(Dataset clean, double rate, ulong seed)
    {
        CheckRate(rate);
        int k = (int)Math.Round(rate * clean.Count);
        var rng = new SplitMix64(seed ^ 0xF11B_0000UL);
        var chosen = rng.Permutation(clean.Count).Take(k).OrderBy(i => i).ToArray();
        var y = (int[])clean.Labels.Clone();
        foreach (var i in chosen)
        {
            int other = rng.NextInt(clean.NumClasses - 1);
            y[i] = other >= y[i] ? other + 1 : other;
        }
        return new PoisonedSet(new Dataset(clean.X, y, clean.Channels, clean.Height, clean.Width, clean.ClassNames) { Name = clean.Name + "+label-flip" }, chosen);
    }

    static void CheckRate(double rate)
    {
        if (!(rate >= 0 && rate <= 1)) throw new PerturbException($"poison rate must be in [0, 1], got {rate}", 2);
    }
}
