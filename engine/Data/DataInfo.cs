namespace Perturb.Engine.Data;

/// <summary>
/// One split as <c>perturb data info</c> reports it. <see cref="ClassCounts"/> holds samples per class, or for a
/// multi-label set the number of samples positive for each label. <see cref="Missing"/> says why a split is absent.
/// </summary>
public sealed record SplitInfo(string Split, int Count, int Channels, int Height, int Width, long[] ClassCounts, string? Missing = null)
{
    public static SplitInfo Absent(string split, string why) => new(split, 0, 0, 0, 0, Array.Empty<long>(), why);

    public static SplitInfo Of(string split, Dataset d) =>
        new(split, d.Count, d.Channels, d.Height, d.Width, d.ClassCounts().Select(c => (long)c).ToArray());
}

/// <summary>What a data set holds: its kind, classes and splits.</summary>
public sealed record DataInfo(string Name, string Kind, string Source, string[] ClassNames, bool MultiLabel, IReadOnlyList<SplitInfo> Splits)
{
    public static DataInfo Of(DataSplits s, string kind, string source) => new(s.Name, kind, source, s.Train.ClassNames, false,
        new[] { SplitInfo.Of("train", s.Train) }
            .Concat(s.Val != null ? new[] { SplitInfo.Of("val", s.Val) } : new[] { SplitInfo.Absent("val", "not part of this data set") })
            .Append(SplitInfo.Of("test", s.Test)).ToList());
}
