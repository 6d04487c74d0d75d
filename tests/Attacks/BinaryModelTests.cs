using Perturb.Engine;
using Perturb.Engine.Attacks;
using Perturb.Engine.Attacks.Gradient;

namespace Perturb.Tests.Attacks;

/// <summary>A one-output (sigmoid) model is a two-class classifier for every attack.</summary>
public class BinaryModelTests : IClassFixture<TrainedBinaryLeNet>
{
    readonly TrainedBinaryLeNet _f;
    public BinaryModelTests(TrainedBinaryLeNet f) { _f = f; }

    public static IEnumerable<object[]> Attacks() => new[]
    {
        new object[] { "fgsm" }, new object[] { "pgd" }, new object[] { "pgd-l2" }, new object[] { "mifgsm" },
        new object[] { "deepfool" }, new object[] { "cw" },
    };

    [Theory]
    [MemberData(nameof(Attacks))]
    public void OneOutputModelIsAttackedAsABinaryClassifier(string name)
    {
        Assert.Equal(1, _f.Model.NumOutputs);
        Assert.True(_f.Accuracy > 0.9, $"binary accuracy {_f.Accuracy:P1}");
        var d = _f.Test.Take(30);
        (IAttack a, float[]? eps, Norm? norm) = name switch
        {
            "fgsm" => ((IAttack)new Fgsm(), new[] { 0.1f, 0.3f }, (Norm?)Norm.Linf),
            "pgd" => (new Pgd { Steps = 10, Restarts = 2 }, new[] { 0.1f, 0.3f }, Norm.Linf),
            "pgd-l2" => (new Pgd { Steps = 10, Norm = Norm.L2 }, new[] { 1f, 4f }, Norm.L2),
            "mifgsm" => (new MiFgsm { Steps = 10 }, new[] { 0.1f, 0.3f }, Norm.Linf),
            "deepfool" => (new DeepFool(), null, null),
            "cw" => (new CarliniWagner { Steps = 50, BinarySteps = 5, InitialC = 0.1f, LearningRate = 0.02f }, null, null),
            _ => throw new ArgumentException(name),
        };
        var r = a.Run(_f.Model, d.X, d.Labels, AttackGoal.Untargeted, eps);
        AttackAsserts.Valid(r, _f.Model, d.X, norm);
        Assert.All(r.ConfidenceBefore, c => Assert.InRange(c, 0.5f, 1f));
        double s = r.Results[^1].SuccessRate;
        Assert.True(s >= (name == "fgsm" ? 0.5 : 0.9), $"{name}: success {s:P0} on the binary model");
    }

    [Fact]
    public void TargetedPgdOnTheBinaryModel()
    {
        var d = _f.Test.Take(30);
        var r = new Pgd { Steps = 20 }.Run(_f.Model, d.X, d.Labels, AttackGoal.Random(2), new[] { 0.3f });
        AttackAsserts.Valid(r, _f.Model, d.X, Norm.Linf);
        // With two classes the only other class is the target.
        Assert.Equal(d.Labels.Select(l => 1 - l), r.Targets!);
        Assert.True(r.Results[0].Success.Count(s => s) >= 0.9 * d.Count);
    }
}
