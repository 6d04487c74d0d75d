using System.Diagnostics;
using System.Text.Json.Nodes;
using Perturb.Engine.Data;
using Perturb.Engine.Nn;

namespace Perturb.Engine.Attacks.Search;

/// <summary>
/// Evolved fooling images (Nguyen, Yosinski, Clune 2015), direct encoding: one gene per pixel value in [0,1], searched
/// with MAP-Elites, the archive holding one elite per requested class (the image the model gives that class the highest
/// probability so far). Start: <see cref="Population"/> uniform random images. Each generation makes Population
/// offspring, each a copy of the elite of a uniformly drawn requested class with polynomial mutation (Deb; index
/// <see cref="Eta"/>) on each gene with probability <see cref="MutationRate"/>, evaluates them as one batch, and lets
/// every offspring replace the elite of every requested class it beats. The run stops when every requested class has an
/// elite at <see cref="TargetConfidence"/> or after <see cref="Generations"/>. One class is a one-entry archive.
/// Every random choice comes from one SplitMix64 stream of <see cref="Seed"/>, so a run reproduces itself.
/// </summary>
public sealed class FoolingImages
{
    public int Population { get; init; } = 100;
    public int Generations { get; init; } = 200;
    public double MutationRate { get; init; } = 0.1;
    public double Eta { get; init; } = 20;
    public double TargetConfidence { get; init; } = 0.99;
    public ulong Seed { get; init; }
    public int QueryBatch { get; init; } = 4096;

    /// <summary>Evolves fooling images for <paramref name="classes"/> (null: every class of the model).</summary>
    public FoolingResult Run(Model model, int[]? classes = null)
    {
        var sw = Stopwatch.StartNew();
        if (Population < 1) throw new PerturbException($"fooling: population must be at least 1, got {Population}", 2);
        if (Generations < 0) throw new PerturbException($"fooling: generations must be 0 or more, got {Generations}", 2);
        if (!(MutationRate > 0 && MutationRate <= 1)) throw new PerturbException($"fooling: mutation rate must be in (0, 1], got {MutationRate}", 2);
        if (QueryBatch <= 0) throw new PerturbException($"fooling: query batch must be positive, got {QueryBatch}", 2);
        int K = model.NumClasses, d = Layer.Product(model.InputShape);
        var cls = classes ?? Enumerable.Range(0, K).ToArray();
        if (cls.Length == 0) throw new PerturbException("fooling: no classes given", 2);
        foreach (var c in cls) if (c < 0 || c >= K) throw new PerturbException($"fooling: class {c} outside the model's {K} classes", 2);
        cls = cls.Distinct().ToArray();
        model.Eval();
        var rng = new SplitMix64(Seed);
        var elite = cls.Select(_ => new float[d]).ToArray();
        var conf = cls.Select(_ => -1.0).ToArray();
        var reached = cls.Select(_ => -1).ToArray();
        long queries = 0;
        var kids = new float[(long)Population * d];
        for (int i = 0; i < kids.Length; i++) kids[i] = (float)rng.NextDouble();
        int gen = 0;
        while (true)
        {
            var z = SearchAttack.EvaluateLogits(model, Population, QueryBatch, (q, dst) => kids.AsSpan(q * d, d).CopyTo(dst));
            queries += Population;
            for (int q = 0; q < Population; q++)
                for (int a = 0; a < cls.Length; a++)
                {
                    double p = SearchAttack.Probability(z.AsSpan(q * K, K), cls[a]);
                    if (p > conf[a]) { conf[a] = p; Array.Copy(kids, (long)q * d, elite[a], 0, d); }
                }
            for (int a = 0; a < cls.Length; a++) if (reached[a] < 0 && conf[a] >= TargetConfidence) reached[a] = gen;
            if (gen == Generations || reached.All(r => r >= 0)) break;
            gen++;
            double pow = 1 / (Eta + 1);
            for (int q = 0; q < Population; q++)
            {
                var parent = elite[rng.NextInt(cls.Length)];
                var child = kids.AsSpan(q * d, d);
                for (int j = 0; j < d; j++)
                {
                    float x = parent[j];
                    if (rng.NextDouble() < MutationRate)
                    {
                        double u = rng.NextDouble();
                        double delta = u < 0.5 ? Math.Pow(2 * u, pow) - 1 : 1 - Math.Pow(2 * (1 - u), pow);
                        x = Math.Clamp((float)(x + delta), 0f, 1f);
                    }
                    child[j] = x;
                }
            }
        }
        sw.Stop();
        return new FoolingResult
        {
            Classes = cls, BestConfidence = conf, Images = elite, ReachedAt = reached, Generations = gen, Queries = queries,
            SampleShape = (int[])model.InputShape.Clone(), TargetConfidence = TargetConfidence, Seed = Seed, Seconds = sw.Elapsed.TotalSeconds,
        };
    }
}

/// <summary>The archive of a fooling-image run: per class, the best confidence reached and its image.</summary>
public sealed class FoolingResult
{
    public required int[] Classes { get; init; }
    public required double[] BestConfidence { get; init; }
    /// <summary>The elite image per class (C x H x W in [0,1]).</summary>
    public required float[][] Images { get; init; }
    /// <summary>The generation at which the class first reached the target confidence (0: the random start), or -1.</summary>
    public required int[] ReachedAt { get; init; }
    /// <summary>Generations run after the random start.</summary>
    public int Generations { get; init; }
    /// <summary>Model queries in all (images evaluated).</summary>
    public long Queries { get; init; }
    public required int[] SampleShape { get; init; }
    public double TargetConfidence { get; init; }
    public ulong Seed { get; init; }
    public double Seconds { get; init; }

    public JsonObject ToJson(string? model = null)
    {
        var arr = new JsonArray();
        for (int a = 0; a < Classes.Length; a++)
            arr.Add(new JsonObject
            {
                ["class"] = Classes[a], ["best_confidence"] = BestConfidence[a],
                ["reached"] = ReachedAt[a] >= 0, ["generation"] = ReachedAt[a] >= 0 ? ReachedAt[a] : null,
            });
        return new JsonObject
        {
            ["attack"] = "fooling", ["model"] = model, ["seed"] = Seed, ["target_confidence"] = TargetConfidence,
            ["generations"] = Generations, ["queries"] = Queries, ["seconds"] = Seconds,
            ["classes_reached"] = ReachedAt.Count(r => r >= 0), ["classes"] = arr,
        };
    }
}
