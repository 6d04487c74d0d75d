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
}
