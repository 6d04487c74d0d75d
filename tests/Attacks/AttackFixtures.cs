using Perturb.Engine;
using Perturb.Engine.Attacks;
using Perturb.Engine.Backends;
using Perturb.Engine.Data;
using Perturb.Engine.Nn;
using Perturb.Engine.Training;

namespace Perturb.Tests.Attacks;

/// <summary>The attack test classes share one trained LeNet.</summary>
[CollectionDefinition("trained-lenet")]
public sealed class TrainedLeNetCollection : ICollectionFixture<TrainedLeNet> { }

/// <summary>A LeNet trained once on the synthetic shapes (4 classes, 28x28) for every test of a class.</summary>
public sealed class TrainedLeNet : IDisposable
{
    public CpuBackend Be { get; } = new();
    public Model Model { get; }
    public Dataset Test { get; }
    public double Accuracy { get; }

    public TrainedLeNet()
    {
        var data = SyntheticShapes.Create(11, trainCount: 800, testCount: 200);
        Model = Presets.Create("lenet", Be, 1, 28, 28, 4, 3);
        Trainer.Fit(Model, data.Train, null, new TrainOptions { Epochs = 8, BatchSize = 32, LearningRate = 3e-3f, Seed = 3 });
        Accuracy = Evaluator.Accuracy(Model, data.Test);
        Test = data.Test;
    }

    /// <summary>The first n test samples.</summary>
    public Dataset Take(int n) => Test.Take(n);

    public void Dispose() { Model.Dispose(); Be.Dispose(); }
}

/// <summary>A one-output (sigmoid) LeNet trained on two synthetic classes.</summary>
public sealed class TrainedBinaryLeNet : IDisposable
{
    public CpuBackend Be { get; } = new();
    public Model Model { get; }
    public Dataset Test { get; }
    public double Accuracy { get; }

    public TrainedBinaryLeNet()
    {
        var data = SyntheticShapes.Create(12, trainCount: 400, testCount: 100, classes: 2);
        Model = Presets.Create("lenet", Be, 1, 28, 28, 2, 4, singleOutput: true);
        Trainer.Fit(Model, data.Train, null, new TrainOptions { Epochs = 4, BatchSize = 32, LearningRate = 3e-3f, Seed = 4 });
        Accuracy = Evaluator.Accuracy(Model, data.Test);
        Test = data.Test;
    }

    public void Dispose() { Model.Dispose(); Be.Dispose(); }
}

static class AttackAsserts
{
    /// <summary>
    /// Every result: inside [0,1], within its budget (Linf &lt;= eps + 1e-6, or L2 &lt;= eps (1 + 1e-5)), the reported
    /// norms match the images, and the success flags equal a fresh forward pass on the returned images.
    /// </summary>
    public static void Valid(AttackResult r, Model m, float[] x, Norm? norm)
    {
        int n = r.N, d = x.Length / n;
        foreach (var e in r.Results)
        {
            var a = e.Adversarial;
            Assert.Equal(x.Length, a.Length);
            for (int i = 0; i < n; i++)
            {
                double sq = 0, mx = 0;
                for (int j = 0; j < d; j++)
                {
                    float v = a[i * d + j];
                    Assert.True(v >= 0f && v <= 1f, $"{r.Attack}: pixel {v} outside [0,1]");
                    double df = v - x[i * d + j]; sq += df * df; mx = Math.Max(mx, Math.Abs(df));
                }
                Assert.Equal(Math.Sqrt(sq), e.L2[i], 3);
                Assert.Equal(mx, e.Linf[i], 5);
                if (e.Eps is { } eps && norm == Norm.Linf)
                    Assert.True(mx <= eps + 1e-6, $"{r.Attack}: Linf {mx} > eps {eps}");
                if (e.Eps is { } eps2 && norm == Norm.L2)
                    Assert.True(Math.Sqrt(sq) <= eps2 * (1 + 1e-5), $"{r.Attack}: L2 {Math.Sqrt(sq)} > eps {eps2}");
            }
            // Fresh forward pass.
            using var t = m.Backend.FromArray(a, new[] { n }.Concat(m.InputShape).ToArray());
            var pred = Losses.Predict(m.Backend, m.Forward(t));
            for (int i = 0; i < n; i++)
            {
                bool s = r.Targets != null ? pred[i] == r.Targets[i] : pred[i] != r.Labels[i];
                Assert.Equal(s, e.Success[i]);
                Assert.Equal(pred[i], e.PredictedAfter[i]);
            }
        }
    }

    public static double SuccessOverCorrect(AttackResult r, int e = 0)
    {
        int c = 0, s = 0;
        for (int i = 0; i < r.N; i++)
            if (r.PredictedBefore[i] == r.Labels[i]) { c++; if (r.Results[e].Success[i]) s++; }
        return s / (double)c;
    }
}
