using System.Diagnostics;
using System.Text.Json.Nodes;
using Perturb.Engine.Data;
using Perturb.Engine.Nn;

namespace Perturb.Engine.Attacks.Search;

public enum FoolingEncoding { Direct, Cppn }

/// <summary>
/// Evolved fooling images (Nguyen, Yosinski, Clune 2015), searched with MAP-Elites, the archive holding one elite per
/// requested class (the image the model gives that class the highest probability so far). Two encodings
/// (<see cref="Encoding"/>): Direct, one gene per pixel value in [0,1], start uniform random, mutation polynomial
/// (Deb; index <see cref="Eta"/>) on each gene with probability <see cref="MutationRate"/>; Cppn, a CPPN genome per
/// image (<see cref="CppnGenome"/>, simplified NEAT mutations of <see cref="Cppn"/>) rendered on the host.
/// Start: <see cref="Population"/> random genomes. Each generation makes Population offspring, each a mutated copy of
/// the elite of a uniformly drawn requested class, evaluates them as one batch, and lets every offspring replace the
/// elite of every requested class it beats. The run stops when every requested class has an elite at
/// <see cref="TargetConfidence"/> or after <see cref="Generations"/>. One class is a one-entry archive.
/// Every random choice comes from one SplitMix64 stream of <see cref="Seed"/>, so a run reproduces itself.
/// </summary>
public sealed class FoolingImages
{
    [Setting("population", "offspring per generation", Min = 1)]
    public int Population { get; init; } = 100;
    [Setting("iterations", "most generations", Min = 0)]
    public int Generations { get; init; } = 200;
    [Setting("mutation_rate", "probability of mutating each gene (direct encoding)", Min = 0, MinOpen = true, Max = 1)]
    public double MutationRate { get; init; } = 0.1;
    [Setting("eta", "distribution index of the polynomial mutation (direct encoding)", Min = 0)]
    public double Eta { get; init; } = 20;
    [Setting("target_confidence", "confidence at which a class counts as fooled", Min = 0, MinOpen = true, Max = 1)]
    public double TargetConfidence { get; init; } = 0.99;
    [Setting("seed", "seed of every random choice")]
    public ulong Seed { get; init; }
    [Setting("query_batch", "most candidate images per forward pass", Min = 1)]
    public int QueryBatch { get; init; } = 4096;
    [Setting("encoding", "direct (one gene per pixel) or cppn (CPPN genomes, simplified NEAT)")]
    public FoolingEncoding Encoding { get; init; } = FoolingEncoding.Direct;
    /// <summary>The CPPN mutation settings (Cppn encoding).</summary>
    public CppnEncoding Cppn { get; init; } = new();

    /// <summary>Evolves fooling images for <paramref name="classes"/> (null: every class of the model).</summary>
    public FoolingResult Run(Model model, int[]? classes = null)
    {
        if (Population < 1) throw new PerturbException($"fooling: population must be at least 1, got {Population}", 2);
        if (Generations < 0) throw new PerturbException($"fooling: generations must be 0 or more, got {Generations}", 2);
        if (!(MutationRate > 0 && MutationRate <= 1)) throw new PerturbException($"fooling: mutation rate must be in (0, 1], got {MutationRate}", 2);
        if (QueryBatch <= 0) throw new PerturbException($"fooling: query batch must be positive, got {QueryBatch}", 2);
        int d = Layer.Product(model.InputShape);
        if (Encoding == FoolingEncoding.Direct)
            return Evolve(model, classes, rng => { var g = new float[d]; for (int j = 0; j < d; j++) g[j] = (float)rng.NextDouble(); return g; },
                MutateDirect, (g, dst) => g.CopyTo(dst));
        var s = model.InputShape;
        if (s.Length != 3) throw new PerturbException($"fooling: the CPPN encoding needs image inputs (C x H x W), the model takes {Tensor.ShapeString(s)}", 2);
        return Evolve(model, classes, rng => Cppn.Random(s[0], rng), Cppn.Mutate, (g, dst) => g.Render(dst, s[1], s[2]));
    }

    float[] MutateDirect(float[] parent, SplitMix64 rng)
    {
        double pow = 1 / (Eta + 1);
        var child = new float[parent.Length];
        for (int j = 0; j < parent.Length; j++)
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
        return child;
    }

    /// <summary>The MAP-Elites loop over genomes of type <typeparamref name="T"/>, rendered to images by <paramref name="render"/>.</summary>
    FoolingResult Evolve<T>(Model model, int[]? classes, Func<SplitMix64, T> random, Func<T, SplitMix64, T> mutate, Action<T, Span<float>> render)
    {
        var sw = Stopwatch.StartNew();
        int K = model.NumClasses, d = Layer.Product(model.InputShape);
        var cls = classes ?? Enumerable.Range(0, K).ToArray();
        if (cls.Length == 0) throw new PerturbException("fooling: no classes given", 2);
        foreach (var c in cls) if (c < 0 || c >= K) throw new PerturbException($"fooling: class {c} outside the model's {K} classes", 2);
        cls = cls.Distinct().ToArray();
        model.Eval();
        var rng = new SplitMix64(Seed);
        var elite = cls.Select(_ => new float[d]).ToArray();
        var eliteGenome = new T[cls.Length];
        var conf = cls.Select(_ => -1.0).ToArray();
        var reached = cls.Select(_ => -1).ToArray();
        long queries = 0;
        var kids = new T[Population];
        var images = new float[(long)Population * d];
        for (int q = 0; q < Population; q++) kids[q] = random(rng);
        int gen = 0;
        while (true)
        {
            for (int q = 0; q < Population; q++) render(kids[q], images.AsSpan(q * d, d));
            var z = SearchAttack.EvaluateLogits(model, Population, QueryBatch, (q, dst) => images.AsSpan(q * d, d).CopyTo(dst));
            queries += Population;
            for (int q = 0; q < Population; q++)
                for (int a = 0; a < cls.Length; a++)
                {
                    double p = SearchAttack.Probability(z.AsSpan(q * K, K), cls[a]);
                    if (p > conf[a]) { conf[a] = p; eliteGenome[a] = kids[q]; Array.Copy(images, (long)q * d, elite[a], 0, d); }
                }
            for (int a = 0; a < cls.Length; a++) if (reached[a] < 0 && conf[a] >= TargetConfidence) reached[a] = gen;
            if (gen == Generations || reached.All(r => r >= 0)) break;
            gen++;
            for (int q = 0; q < Population; q++) kids[q] = mutate(eliteGenome[rng.NextInt(cls.Length)], rng);
        }
        sw.Stop();
        return new FoolingResult
        {
            Classes = cls, BestConfidence = conf, Images = elite, ReachedAt = reached, Generations = gen, Queries = queries,
            SampleShape = (int[])model.InputShape.Clone(), TargetConfidence = TargetConfidence, Seed = Seed, Seconds = sw.Elapsed.TotalSeconds,
            Encoding = Encoding == FoolingEncoding.Cppn ? "cppn" : "direct",
            Genomes = Encoding == FoolingEncoding.Cppn ? eliteGenome.Cast<CppnGenome>().ToArray() : null,
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
    /// <summary>"direct" or "cppn".</summary>
    public string Encoding { get; init; } = "direct";
    /// <summary>The elite CPPN genome per class (Cppn encoding), else null.</summary>
    public CppnGenome[]? Genomes { get; init; }

    /// <summary>Writes fooling.npy (classes x C x H x W) and, for image shapes, one PNG per class into <paramref name="dir"/>.</summary>
    public void Save(string dir)
    {
        Data.Npy.WriteFile(Path.Combine(dir, "fooling.npy"), Data.NpyArray.FromFloats(Images.SelectMany(v => v).ToArray(), new[] { Classes.Length }.Concat(SampleShape).ToArray()));
        var s = SampleShape;
        if (s.Length == 3 && (s[0] == 1 || s[0] == 3))
            for (int a = 0; a < Classes.Length; a++)
                IO.ImageWriter.SavePng(Path.Combine(dir, $"fooling_class{Classes[a]}_conf{BestConfidence[a].ToString("F4", System.Globalization.CultureInfo.InvariantCulture)}.png"), Images[a], s[0], s[1], s[2]);
    }

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
            ["attack"] = "fooling", ["encoding"] = Encoding, ["model"] = model, ["seed"] = Seed, ["target_confidence"] = TargetConfidence,
            ["generations"] = Generations, ["queries"] = Queries, ["seconds"] = Seconds,
            ["classes_reached"] = ReachedAt.Count(r => r >= 0), ["all_reached"] = ReachedAt.All(r => r >= 0),
            ["classes_not_reached"] = new JsonArray(Classes.Where((_, a) => ReachedAt[a] < 0).Select(c => (JsonNode)c).ToArray()), ["classes"] = arr,
        };
    }
}
