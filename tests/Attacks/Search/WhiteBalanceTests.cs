using Perturb.Engine;
using Perturb.Engine.Attacks;
using Perturb.Engine.Attacks.Search;
using Perturb.Engine.Backends;
using Perturb.Engine.Data;
using Perturb.Engine.Nn;
using Perturb.Engine.Training;
using Xunit.Abstractions;

namespace Perturb.Tests.Attacks.Search;

/// <summary>A LeNet trained once on the synthetic H&amp;E histology set (3x32x32, benign/malignant).</summary>
public sealed class TrainedHistologyLeNet : IDisposable
{
    public CpuBackend Be { get; } = new();
    public Model Model { get; }
    public Dataset Test { get; }
    public double Accuracy { get; }

    public TrainedHistologyLeNet()
    {
        var data = SyntheticHistology.Create(5, trainCount: 600, testCount: 60);
        Model = Presets.Create("lenet", Be, 3, 32, 32, 2, 6);
        Trainer.Fit(Model, data.Train, null, new TrainOptions { Epochs = 5, BatchSize = 32, LearningRate = 3e-3f, Seed = 6 });
        Accuracy = Evaluator.Accuracy(Model, data.Test);
        Test = data.Test;
    }

    public void Dispose() { Model.Dispose(); Be.Dispose(); }
}

public class WhiteBalanceTests(TrainedHistologyLeNet f, ITestOutputHelper log) : IClassFixture<TrainedHistologyLeNet>
{
    [Fact]
    public void GainsFollowThePlanckianLocusAndTheReferenceIsTheIdentity()
    {
        var id = WhiteBalance.Gains(new WhiteBalanceSetting(6500, 0, 1));
        Assert.Equal((1.0, 1.0, 1.0), id);
        var warm = WhiteBalance.Gains(new WhiteBalanceSetting(3000, 0, 1));
        var cool = WhiteBalance.Gains(new WhiteBalanceSetting(9000, 0, 1));
        Assert.True(warm.R > 1.2 && warm.B < 0.7, $"3000 K gains {warm}");
        Assert.True(cool.R < 1 && cool.B > 1, $"9000 K gains {cool}");
        Assert.Equal(1.0, warm.G);
        var g = WhiteBalance.Gains(new WhiteBalanceSetting(3000, 0.1f, 0.8f));
        Assert.Equal(0.8 * warm.R, g.R, 6); Assert.Equal(0.8 * 1.1, g.G, 6); Assert.Equal(0.8 * warm.B, g.B, 6);
        // D65's chromaticity is near the 6500 K Planckian point.
        var (x, y) = WhiteBalance.PlanckianXy(6500);
        Assert.InRange(x, 0.30, 0.32); Assert.InRange(y, 0.31, 0.33);

        var img = f.Test.X.AsSpan(0, 3 * 32 * 32).ToArray();
        var dst = new float[img.Length];
        WhiteBalance.Apply(img, new WhiteBalanceSetting(6500, 0, 1), dst);
        for (int k = 0; k < img.Length; k++) Assert.Equal(img[k], dst[k], 5);
        // Exposure 2 in linear light brightens every channel (or saturates at 1).
        WhiteBalance.Apply(img, new WhiteBalanceSetting(6500, 0, 2), dst);
        for (int k = 0; k < img.Length; k++) Assert.True(dst[k] >= img[k] && dst[k] <= 1f);
    }

    [Fact]
    public void FoolsTheHistologyModelWithPlausibleSettingsThatReproduceTheImages()
    {
        var d = f.Test.Take(40);
        var a = new WhiteBalance { Population = 20, Iterations = 12, Seed = 1, QueryBatch = 50 };
        var r = a.Run(f.Model, d.X, d.Labels, AttackGoal.Untargeted);
        AttackAsserts.Valid(r, f.Model, d.X, null);
        var e = r.Results[0];
        var found = a.Found!;
        int dim = 3 * 32 * 32;
        var dst = new float[dim];
        for (int i = 0; i < r.N; i++)
        {
            if (r.PredictedBefore[i] != r.Labels[i])
            {
                Assert.Null(found[i]); Assert.Equal(0, e.Queries![i]);
                Assert.Equal(d.X.AsSpan(i * dim, dim).ToArray(), e.Adversarial.AsSpan(i * dim, dim).ToArray());
                continue;
            }
            var s = found[i]!.Value;
            Assert.InRange(s.Temperature, a.TemperatureMin, a.TemperatureMax);
            Assert.InRange(s.Tint, -a.TintMax, a.TintMax);
            Assert.InRange(s.Gain, a.GainMin, a.GainMax);
            WhiteBalance.Apply(d.X.AsSpan(i * dim, dim), s, dst);
            Assert.Equal(dst, e.Adversarial.AsSpan(i * dim, dim).ToArray());
            Assert.Equal(20L * (1 + e.Steps[i]), e.Queries![i]);
            if (!e.Success[i]) Assert.Equal(12, e.Steps[i]);
        }
        double share = AttackAsserts.SuccessOverCorrect(r);
        var won = Enumerable.Range(0, r.N).Where(i => e.Success[i] && found[i] != null).Select(i => found[i]!.Value).ToArray();
        log.WriteLine($"white-balance on histology (clean acc {f.Accuracy:P0}): success {share:P0} of correct images, mean queries {e.MeanQueries:F0}, " +
            $"mean L2 {e.MeanL2:F2}; settings of successes: " + string.Join("; ", won.Take(6).Select(s => $"{s.Temperature:F0}K tint {s.Tint:F2} gain {s.Gain:F2}")));
        Assert.True(share > 0, "no histology image fooled");
    }

    [Fact]
    public void GreyModelsAreUsageErrors()
    {
        using var be = new CpuBackend();
        using var m = Presets.Create("lenet", be, 1, 28, 28, 4, 1);
        var ex = Assert.Throws<PerturbException>(() => new WhiteBalance().Run(m, new float[2 * 784], new[] { 0, 1 }, AttackGoal.Untargeted));
        Assert.Equal(2, ex.ExitCode);
        Assert.Equal("white-balance needs RGB images; the model takes 1x28x28", ex.Message);
    }
}
