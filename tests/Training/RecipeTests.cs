using Perturb.Engine;
using Perturb.Engine.Training;

namespace Perturb.Tests.Training;

public class RecipeTests
{
    [Fact]
    public void GivenOptionsOverrideTheRecipeAndTheRestComeFromIt()
    {
        var baseOpts = new TrainOptions { Epochs = 20, Seed = 3, LearningRate = 0.5f, BatchSize = 7 };
        var o = Recipes.Resolve("medmnist", baseOpts, new TrainOverrides { LearningRate = 0.01f });
        Assert.Equal(0.01f, o.LearningRate);
        Assert.Equal(128, o.BatchSize);
        Assert.Equal(new[] { 10, 15 }, o.Milestones);
        Assert.True(o.KeepBest);
        Assert.Equal((20, 3UL), (o.Epochs, o.Seed));
        // Without a recipe the defaults hold where nothing is given.
        var p = Recipes.Resolve(null, baseOpts, new TrainOverrides { Optimizer = "sgd" });
        Assert.Equal(("sgd", 0.5f, 7, false), (p.Optimizer, p.LearningRate, p.BatchSize, p.KeepBest));
        Assert.Throws<PerturbException>(() => Recipes.Resolve("nope", baseOpts, new TrainOverrides()));
    }

    [Theory]
    [InlineData(float.NaN, 0.9f, 0f)]
    [InlineData(1e-3f, float.NaN, 0f)]
    [InlineData(1e-3f, 1f, 0f)]
    [InlineData(1e-3f, 0.9f, -1f)]
    [InlineData(1e-3f, 0.9f, float.PositiveInfinity)]
    public void TrainerRefusesNonFiniteAndOutOfRangeOptionsBeforeTraining(float lr, float momentum, float wd)
    {
        using var be = new Perturb.Engine.Backends.CpuBackend();
        using var m = Perturb.Engine.Nn.Presets.Create("lenet", be, 1, 28, 28, 4, 1);
        var d = Perturb.Engine.Data.SyntheticShapes.Create(1, trainCount: 8, testCount: 4).Train;
        var e = Assert.Throws<PerturbException>(() => Trainer.Fit(m, d, null, new TrainOptions { Epochs = 1, LearningRate = lr, Momentum = momentum, WeightDecay = wd, Optimizer = "sgd" }));
        Assert.Equal(2, e.ExitCode);
    }
}
