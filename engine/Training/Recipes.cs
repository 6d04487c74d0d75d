namespace Perturb.Engine.Training;

/// <summary>Named training recipes.</summary>
public static class Recipes
{
    public static readonly string[] Names = { "medmnist" };

    /// <summary>
    /// The MedMNIST v2 recipe (Yang et al. 2023): Adam at 1e-3, batch 128, the learning rate times 0.1 at 50% and
    /// 75% of the epochs, the best-validation checkpoint kept; inputs normalised with mean 0.5 and std 0.5 inside the
    /// model (the presets' default Normalize layer).
    /// </summary>
    public static TrainOptions Apply(string name, TrainOptions o) => name switch
    {
        "medmnist" => o with
        {
            Optimizer = "adam", LearningRate = 1e-3f, BatchSize = 128, WeightDecay = 0f,
            Milestones = new[] { o.Epochs / 2, o.Epochs * 3 / 4 }.Where(m => m > 0).Distinct().ToArray(),
            LrGamma = 0.1f, KeepBest = true,
        },
        _ => throw new PerturbException($"unknown recipe '{name}' (choose {string.Join(", ", Names)})", 2),
    };

    /// <summary>
    /// The options of a training run: the recipe's (when one is named) with every option the user gave explicitly
    /// on top (a null field of <paramref name="given"/> was not given); without a recipe, the given options over
    /// <paramref name="defaults"/>.
    /// </summary>
    public static TrainOptions Resolve(string? recipe, TrainOptions defaults, TrainOverrides given)
    {
        var o = recipe != null ? Apply(recipe, defaults) : defaults;
        return o with
        {
            BatchSize = given.BatchSize ?? o.BatchSize, LearningRate = given.LearningRate ?? o.LearningRate,
            Optimizer = given.Optimizer ?? o.Optimizer, WeightDecay = given.WeightDecay ?? o.WeightDecay,
            Milestones = given.Milestones ?? o.Milestones, KeepBest = given.KeepBest ?? o.KeepBest, Momentum = given.Momentum ?? o.Momentum,
        };
    }
}

/// <summary>Training options given explicitly (null: not given, so the recipe's or the default holds).</summary>
public sealed record TrainOverrides
{
    public int? BatchSize { get; init; }
    public float? LearningRate { get; init; }
    public string? Optimizer { get; init; }
    public float? WeightDecay { get; init; }
    public int[]? Milestones { get; init; }
    public bool? KeepBest { get; init; }
    public float? Momentum { get; init; }
}
