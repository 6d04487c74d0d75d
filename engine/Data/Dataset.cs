namespace Perturb.Engine.Data;

/// <summary>
/// Images as float32 NCHW in [0,1] with integer labels, held on the host. A segmentation set also carries
/// <see cref="Masks"/>: a class per pixel, [N, H, W] (see <see cref="WithMasks"/>).
/// </summary>
public sealed class Dataset
{
    public float[] X { get; }
    public int[] Labels { get; }
    public int Count { get; }
    public int Channels { get; }
    public int Height { get; }
    public int Width { get; }
    public string[] ClassNames { get; }
    public int NumClasses => ClassNames.Length;
    public int SampleSize => Channels * Height * Width;
    public string Name { get; init; } = "";
    /// <summary>Where each sample came from, for data sets read from files (image folders); null otherwise.</summary>
    public ImageSource[]? Sources { get; init; }
    /// <summary>How DICOM samples were read (window, frame), so that writing them back inverts the same mapping.</summary>
    public DicomOptions? Dicom { get; init; }

    public Dataset(float[] x, int[] labels, int c, int h, int w, string[] classNames)
    {
        if (x.Length != (long)labels.Length * c * h * w)
            throw new PerturbException($"data set of {labels.Length} samples of {c}x{h}x{w} needs {(long)labels.Length * c * h * w} values, has {x.Length}");
        foreach (var l in labels)
            if (l < 0 || l >= classNames.Length) throw new PerturbException($"label {l} outside the {classNames.Length} classes");
        X = x; Labels = labels; Count = labels.Length; Channels = c; Height = h; Width = w; ClassNames = classNames;
    }

    /// <summary>Segmentation: class per pixel, [N, H, W] row-major (null for a classification set).</summary>
    public int[]? Masks { get; private init; }
    /// <summary>Segmentation: names of the mask classes (index 0 is background).</summary>
    public string[]? MaskClassNames { get; private init; }
    /// <summary>Segmentation, optional: instance id per pixel (0 = none, 1.. = one nucleus), [N, H, W].</summary>
    public int[]? Instances { get; private init; }
    /// <summary>Mask value that marks a pixel to ignore (no class, no loss); -1 when none is used.</summary>
    public int IgnoreLabel { get; private init; } = -1;
    public bool HasMasks => Masks != null;
    public int NumMaskClasses => MaskClassNames?.Length ?? 0;
    public int PixelsPerSample => Height * Width;

    /// <summary>
    /// This set with per-pixel masks: each value a class in [0, classNames.Length) or <paramref name="ignore"/>
    /// (when not -1). Checks the lengths and values; names the first offending sample.
    /// </summary>
    public Dataset WithMasks(int[] masks, string[] classNames, int[]? instances = null, int ignore = -1)
    {
        long want = (long)Count * Height * Width;
        if (masks.Length != want)
            throw new PerturbException($"data set '{Name}': {Count} masks of {Height}x{Width} need {want} values, have {masks.Length}");
        if (instances != null && instances.Length != want)
            throw new PerturbException($"data set '{Name}': instance maps need {want} values, have {instances.Length}");
        if (classNames.Length < 2) throw new PerturbException($"data set '{Name}': a segmentation set needs at least 2 mask classes, got {classNames.Length}");
        int hw = Height * Width;
        for (int i = 0; i < masks.Length; i++)
        {
            int v = masks[i];
            if ((v < 0 || v >= classNames.Length) && v != ignore)
                throw new PerturbException($"data set '{Name}': mask of sample {i / hw} holds value {v} at pixel ({i % hw / Width}, {i % Width}), outside the {classNames.Length} classes" + (ignore >= 0 ? $" and not the ignore label {ignore}" : ""));
        }
        return new Dataset(X, Labels, Channels, Height, Width, ClassNames)
        { Name = Name, Sources = Sources, Dicom = Dicom, Masks = masks, MaskClassNames = classNames, Instances = instances, IgnoreLabel = ignore };
    }

    public ReadOnlySpan<int> Mask(int i) => Masks!.AsSpan(i * PixelsPerSample, PixelsPerSample);

    /// <summary>Gathers the masks of the given samples into one host array [n, H, W].</summary>
    public int[] GatherMasks(ReadOnlySpan<int> indices)
    {
        var b = new int[indices.Length * PixelsPerSample];
        for (int i = 0; i < indices.Length; i++) Mask(indices[i]).CopyTo(b.AsSpan(i * PixelsPerSample));
        return b;
    }

    public ReadOnlySpan<float> Sample(int i) => X.AsSpan(i * SampleSize, SampleSize);

    /// <summary>Gathers the given samples into one contiguous host batch.</summary>
    public float[] Gather(ReadOnlySpan<int> indices)
    {
        var b = new float[indices.Length * SampleSize];
        for (int i = 0; i < indices.Length; i++) Sample(indices[i]).CopyTo(b.AsSpan(i * SampleSize));
        return b;
    }

    /// <summary>The first n samples (or all).</summary>
    public Dataset Take(int n)
    {
        n = Math.Min(n, Count);
        int p = n * PixelsPerSample;
        return new Dataset(X.AsSpan(0, n * SampleSize).ToArray(), Labels.AsSpan(0, n).ToArray(), Channels, Height, Width, ClassNames)
        {
            Name = Name, Sources = Sources?[..n], Dicom = Dicom,
            Masks = Masks?.AsSpan(0, p).ToArray(), MaskClassNames = MaskClassNames,
            Instances = Instances?.AsSpan(0, p).ToArray(), IgnoreLabel = IgnoreLabel,
        };
    }

    public int[] ClassCounts()
    {
        var c = new int[NumClasses];
        foreach (var l in Labels) c[l]++;
        return c;
    }
}

/// <summary>A data set's splits. Val may be absent.</summary>
public sealed record DataSplits(string Name, Dataset Train, Dataset? Val, Dataset Test)
{
    public Dataset Get(string split) => split switch
    {
        "train" => Train,
        "val" => Val ?? throw new PerturbException($"data set '{Name}' has no val split"),
        "test" => Test,
        _ => throw new PerturbException($"unknown split '{split}' (choose train, val or test)", 2),
    };
}

/// <summary>SplitMix64: a small seeded generator for host-side shuffles and synthetic data.</summary>
public sealed class SplitMix64
{
    ulong _s;
    public SplitMix64(ulong seed) { _s = seed; }
    public ulong Next()
    {
        ulong z = _s += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
    /// <summary>Uniform in [0, 1).</summary>
    public double NextDouble() => (Next() >> 11) * (1.0 / (1UL << 53));
    public int NextInt(int n) => (int)(NextDouble() * n);
    public double Range(double lo, double hi) => lo + (hi - lo) * NextDouble();
    public double Normal() { double u1 = 1.0 - NextDouble(), u2 = NextDouble(); return Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2); }

    /// <summary>Fisher-Yates shuffle of 0..n-1.</summary>
    public int[] Permutation(int n)
    {
        var p = Enumerable.Range(0, n).ToArray();
        for (int i = n - 1; i > 0; i--) { int j = (int)(Next() % (ulong)(i + 1)); (p[i], p[j]) = (p[j], p[i]); }
        return p;
    }
}
