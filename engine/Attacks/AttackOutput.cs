using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Perturb.Engine.Data;
using Perturb.Engine.IO;

namespace Perturb.Engine.Attacks;

/// <summary>An attack whose run leaves more than <see cref="AttackResult"/> holds (MOEA's Pareto fronts, white-balance's settings).</summary>
public interface IAttackExtras
{
    /// <summary>Writes the extra files of the last run into <paramref name="dir"/> (called by <see cref="AttackOutput.Save"/>).</summary>
    void SaveExtras(string dir, AttackResult r);
    /// <summary>Adds the extra fields of the last run to the --json summary.</summary>
    void AddJson(JsonObject summary, AttackResult r);
}

/// <summary>An attack that reports its progress (done, total) while it runs, and what it counts.</summary>
public interface IReportsProgress
{
    string ProgressUnit { get; }
    Action<int, int>? Progress { get; set; }
}

/// <summary>
/// Writes an attack run to a folder: originals.npy and labels.npy, per epsilon adversarial_&lt;tag&gt;.npy (float32
/// N x C x H x W) and results_&lt;tag&gt;.csv (per sample), and PNGs of the first 16 originals, adversarials and
/// perturbations amplified to fill [0,1] (0.5 + delta * 0.5 / max|delta| of that image).
/// </summary>
public static class AttackOutput
{
    public const int PngCount = 16;

    /// <summary>The file-name tag of an epsilon: "eps0.0157" (4 decimals), or "noeps" for budget-free attacks.</summary>
    public static string Tag(float? eps) => eps.HasValue ? "eps" + eps.Value.ToString("0.0###", CultureInfo.InvariantCulture) : "noeps";

    /// <summary>Writes the run; <paramref name="attack"/>'s extra files too when it has some (<see cref="IAttackExtras"/>).</summary>
    public static void Save(string dir, AttackResult r, float[] originals, IAttack? attack = null)
    {
        try { Directory.CreateDirectory(dir); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new PerturbException($"{dir}: cannot create the output folder: {e.Message}"); }
        var shape = new[] { r.N }.Concat(r.SampleShape).ToArray();
        int c = r.SampleShape[0], h = r.SampleShape.Length > 1 ? r.SampleShape[1] : 1, w = r.SampleShape.Length > 2 ? r.SampleShape[2] : 1;
        int size = c * h * w;
        Npy.WriteFile(Path.Combine(dir, "originals.npy"), NpyArray.FromFloats(originals, shape));
        var lab = new byte[r.N * 8];
        for (int i = 0; i < r.N; i++) BitConverter.TryWriteBytes(lab.AsSpan(i * 8), (long)r.Labels[i]);
        Npy.WriteFile(Path.Combine(dir, "labels.npy"), new NpyArray(NpyType.Int64, new[] { r.N }, lab));
        int pngs = Math.Min(PngCount, r.N);
        bool image = r.SampleShape.Length == 3 && (c == 1 || c == 3);
        if (image)
            for (int i = 0; i < pngs; i++)
                ImageWriter.SavePng(Path.Combine(dir, $"original_{i:D3}_label{r.Labels[i]}.png"), originals.AsSpan(i * size, size), c, h, w);
        foreach (var e in r.Results)
        {
            string tag = Tag(e.Eps);
            Npy.WriteFile(Path.Combine(dir, $"adversarial_{tag}.npy"), NpyArray.FromFloats(e.Adversarial, shape));
            AtomicFile.WriteText(Path.Combine(dir, $"results_{tag}.csv"), r.ToCsv(r.Results.ToList().IndexOf(e)));
            if (!image) continue;
            var delta = new float[size];
            for (int i = 0; i < pngs; i++)
            {
                var adv = e.Adversarial.AsSpan(i * size, size);
                ImageWriter.SavePng(Path.Combine(dir, $"adversarial_{tag}_{i:D3}_pred{e.PredictedAfter[i]}.png"), adv, c, h, w);
                float m = 0;
                for (int k = 0; k < size; k++) { delta[k] = adv[k] - originals[i * size + k]; m = Math.Max(m, Math.Abs(delta[k])); }
                for (int k = 0; k < size; k++) delta[k] = m > 0 ? 0.5f + 0.5f * delta[k] / m : 0.5f;
                ImageWriter.SavePng(Path.Combine(dir, $"perturbation_{tag}_{i:D3}.png"), delta, c, h, w);
            }
            if (e.UniversalPerturbation is { } u && u.Length == size)
            {
                Npy.WriteFile(Path.Combine(dir, $"universal_{tag}.npy"), NpyArray.FromFloats(u, r.SampleShape));
                float m = u.Max(v => Math.Abs(v));
                ImageWriter.SavePng(Path.Combine(dir, $"universal_{tag}.png"), u.Select(v => m > 0 ? 0.5f + 0.5f * v / m : 0.5f).ToArray(), c, h, w);
            }
        }
        (attack as IAttackExtras)?.SaveExtras(dir, r);
    }

    /// <summary>The --json summary of a run: <see cref="AttackResult.ToJson"/> plus the attack's extra fields.</summary>
    public static JsonObject Summary(AttackResult r, IAttack attack, string? model)
    {
        var j = r.ToJson(model);
        (attack as IAttackExtras)?.AddJson(j, r);
        return j;
    }
}
