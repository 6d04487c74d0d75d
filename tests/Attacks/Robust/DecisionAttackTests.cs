using Perturb.Engine;
using Perturb.Engine.Attacks;
using Perturb.Engine.Attacks.Gradient;
using Perturb.Engine.Attacks.Search;
using Xunit.Abstractions;

namespace Perturb.Tests.Attacks.Robust;

/// <summary>The label-only attacks on the shared trained LeNet: queries counted and capped, answers adversarial, distances shrinking.</summary>
[Collection("trained-lenet")]
public class DecisionAttackTests
{
    readonly TrainedLeNet _f;
    readonly ITestOutputHelper _out;
    public DecisionAttackTests(TrainedLeNet f, ITestOutputHelper o) { _f = f; _out = o; }

    const int N = 16;

    static double MedianL2(AttackResult r) => r.Results[0].MedianL2;

    /// <summary>
    /// HopSkipJump (L2) with 1,500 queries: every correctly classified image gets an adversarial within its query
    /// budget, its median L2 is at most half that of the start alone (noise and one binary search: 120 queries), and
    /// within 2x of DeepFool's white-box median (perf/ measures the 1.5x at 5,000 queries on the demo model).
    /// </summary>
    [Fact]
    public void HopSkipJumpL2ClosesInOnDeepFool()
    {
        var d = _f.Take(N);
        var hsj = new HopSkipJump { Queries = 1500, Seed = 2 }.Run(_f.Model, d, AttackGoal.Untargeted);
        var start = new HopSkipJump { Queries = 120, Seed = 2 }.Run(_f.Model, d, AttackGoal.Untargeted);
        var df = new DeepFool().Run(_f.Model, d, AttackGoal.Untargeted);
        AttackAsserts.Valid(hsj, _f.Model, d.X, null);
        var e = hsj.Results[0];
        _out.WriteLine($"hsj-1500 median L2 {MedianL2(hsj):F3} (success {e.SuccessRate:F3}, mean queries {e.MeanQueries:F0}), start {MedianL2(start):F3}, deepfool {MedianL2(df):F3}");
        Assert.Equal(1.0, e.SuccessRate);
        Assert.All(e.Queries!, q => Assert.True(q <= 1500, $"{q} queries over the budget"));
        Assert.True(MedianL2(hsj) <= 0.5 * MedianL2(start), $"median L2 {MedianL2(hsj)} vs the start's {MedianL2(start)}");
        Assert.True(MedianL2(hsj) <= 2.0 * MedianL2(df), $"median L2 {MedianL2(hsj)} vs DeepFool's {MedianL2(df)}");
    }

    /// <summary>HopSkipJump Linf: adversarial for every correct image, and its median Linf well below the start's.</summary>
    [Fact]
    public void HopSkipJumpLinfShrinksTheLinfDistance()
    {
        var d = _f.Take(N);
        var hsj = new HopSkipJump { Norm = Norm.Linf, Queries = 1500, Seed = 2 }.Run(_f.Model, d, AttackGoal.Untargeted);
        var start = new HopSkipJump { Norm = Norm.Linf, Queries = 120, Seed = 2 }.Run(_f.Model, d, AttackGoal.Untargeted);
        AttackAsserts.Valid(hsj, _f.Model, d.X, null);
        static double Med(AttackResult r) { var v = r.Results[0].Linf.Where((_, i) => r.Results[0].Success[i]).OrderBy(x => x).ToArray(); return v[v.Length / 2]; }
        _out.WriteLine($"hsj-linf median Linf {Med(hsj):F4}, start {Med(start):F4}");
        Assert.Equal(1.0, hsj.Results[0].SuccessRate);
        Assert.True(Med(hsj) <= 0.7 * Med(start), $"median Linf {Med(hsj)} vs the start's {Med(start)}");
    }

    /// <summary>Boundary attack: adversarial for every correct image, two queries a step within budget, median L2 well below the start's.</summary>
    [Fact]
    public void BoundaryWalksTowardTheOriginal()
    {
        var d = _f.Take(N);
        var b = new Boundary { Queries = 1500, Seed = 2 }.Run(_f.Model, d, AttackGoal.Untargeted);
        var start = new Boundary { Queries = 120, Seed = 2 }.Run(_f.Model, d, AttackGoal.Untargeted);
        AttackAsserts.Valid(b, _f.Model, d.X, null);
        _out.WriteLine($"boundary-1500 median L2 {MedianL2(b):F3}, start {MedianL2(start):F3}");
        Assert.Equal(1.0, b.Results[0].SuccessRate);
        Assert.All(b.Results[0].Queries!, q => Assert.True(q <= 1500));
        Assert.True(MedianL2(b) <= 0.8 * MedianL2(start), $"median L2 {MedianL2(b)} vs the start's {MedianL2(start)}");
    }
}
