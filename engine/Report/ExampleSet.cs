using System.Buffers.Binary;
using Perturb.Engine.Attacks;
using Perturb.Engine.Data;

namespace Perturb.Engine.Report;

/// <summary>
/// A few example images of one attack for the report's grid: each original, its attacked version (adversarial,
/// patched or triggered image), the labels, and the model's prediction and confidence before and after. Saved as an
/// .npz (originals, modified: float32 K x C x H x W; labels, pred_before, pred_after: int32; conf_before, conf_after:
/// float32) so <c>perturb report</c> can rebuild the page from files alone.
/// </summary>
public sealed class ExampleSet
{
    public required string Title { get; init; }
    /// <summary>What the second column shows: "adversarial", "patched" or "triggered".</summary>
    public string Kind { get; init; } = "adversarial";
    public required int[] SampleShape { get; init; }
    public required float[] Originals { get; init; }
    public required float[] Modified { get; init; }
    public required int[] Labels { get; init; }
    public required int[] PredBefore { get; init; }
    public required int[] PredAfter { get; init; }
    public required float[] ConfBefore { get; init; }
    public required float[] ConfAfter { get; init; }
    public string[]? ClassNames { get; init; }

    public int Count => Labels.Length;
    public int SampleSize => SampleShape.Aggregate(1, (a, b) => a * b);

    /// <summary>
    /// Up to <paramref name="k"/> samples of one budget of an attack result: first the successes among the samples that
    /// were classified correctly, then the failures, so the grid shows both.
    /// </summary>
    public static ExampleSet FromAttack(AttackResult r, int epsIndex, float[] originals, int k, string title, string[]? classNames = null)
    {
        var e = r.Results[epsIndex];
        var correct = Enumerable.Range(0, r.N).Where(i => r.PredictedBefore[i] == r.Labels[i]).ToList();
        var pick = correct.Where(i => e.Success[i]).Take(k).ToList();
        pick.AddRange(correct.Where(i => !e.Success[i]).Take(k - pick.Count));
        if (pick.Count < k) pick.AddRange(Enumerable.Range(0, r.N).Except(pick).Take(k - pick.Count));
        int d = r.SampleShape.Aggregate(1, (a, b) => a * b);
        return new ExampleSet
        {
            Title = title, SampleShape = r.SampleShape, ClassNames = classNames,
            Originals = pick.SelectMany(i => originals.AsSpan(i * d, d).ToArray()).ToArray(),
            Modified = pick.SelectMany(i => e.Adversarial.AsSpan(i * d, d).ToArray()).ToArray(),
            Labels = pick.Select(i => r.Labels[i]).ToArray(), PredBefore = pick.Select(i => r.PredictedBefore[i]).ToArray(),
            PredAfter = pick.Select(i => e.PredictedAfter[i]).ToArray(), ConfBefore = pick.Select(i => r.ConfidenceBefore[i]).ToArray(),
            ConfAfter = pick.Select(i => e.ConfidenceAfter[i]).ToArray(),
        };
    }

    public void Save(string path)
    {
        int k = Count;
        var shape = new[] { k }.Concat(SampleShape).ToArray();
        Npy.WriteNpz(path, new (string, NpyArray)[]
        {
            ("originals", NpyArray.FromFloats(Originals, shape)), ("modified", NpyArray.FromFloats(Modified, shape)),
            ("labels", Ints(Labels)), ("pred_before", Ints(PredBefore)), ("pred_after", Ints(PredAfter)),
            ("conf_before", NpyArray.FromFloats(ConfBefore, k)), ("conf_after", NpyArray.FromFloats(ConfAfter, k)),
        });
    }

    static NpyArray Ints(int[] v)
    {
        var b = new byte[v.Length * 4];
        for (int i = 0; i < v.Length; i++) BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(i * 4), v[i]);
        return new NpyArray(NpyType.Int32, new[] { v.Length }, b);
    }

    /// <summary>Reads an example file; a missing member or inconsistent shapes give one error naming the file.</summary>
    public static ExampleSet Load(string path, string title, string kind = "adversarial", string[]? classNames = null)
    {
        if (!File.Exists(path)) throw new PerturbException($"{path}: example file not found");
        using var z = new NpzFile(path);
        var o = z.Read("originals");
        var m = z.Read("modified");
        if (o.Shape.Length < 2 || !o.Shape.SequenceEqual(m.Shape))
            throw new PerturbException($"{path}: 'originals' {Shape(o.Shape)} and 'modified' {Shape(m.Shape)} must have one shape K x C x H x W");
        int k = o.Shape[0];
        int[] I(string n)
        {
            var a = z.Read(n);
            if (a.Count != k) throw new PerturbException($"{path}: '{n}' has {a.Count} values for {k} examples");
            return Enumerable.Range(0, k).Select(i => (int)a[i]).ToArray();
        }
        float[] F(string n)
        {
            var a = z.Read(n);
            if (a.Count != k) throw new PerturbException($"{path}: '{n}' has {a.Count} values for {k} examples");
            return a.ToFloat32();
        }
        return new ExampleSet
        {
            Title = title, Kind = kind, ClassNames = classNames, SampleShape = o.Shape[1..], Originals = o.ToFloat32(), Modified = m.ToFloat32(),
            Labels = I("labels"), PredBefore = I("pred_before"), PredAfter = I("pred_after"), ConfBefore = F("conf_before"), ConfAfter = F("conf_after"),
        };
    }

    /// <summary>
    /// The full path of a row's "examples" file, which must lie inside the results file's own folder: a row saying
    /// "../../secret" or "/etc/passwd" is refused, so a report never embeds a file from outside its results.
    /// </summary>
    public static string ResolveInside(string folder, string examples, string where, string key = "examples")
    {
        var root = Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder));
        var full = Path.GetFullPath(Path.Combine(root, examples));
        if (!full.StartsWith(root + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            throw new PerturbException($"{where}: \"{key}\": '{examples}' leaves the results folder {root}; example files must lie inside it");
        return full;
    }

    static string Shape(int[] s) => "(" + string.Join(", ", s) + ")";
}
