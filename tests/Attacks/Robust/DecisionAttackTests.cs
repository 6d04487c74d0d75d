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

    /// <summary>HopSkipJump's probe upsampling is PyTorch's bilinear interpolation (align_corners=False): 2 x 2x3 to 2 x 5x7, values from torch 1.13.</summary>
    [Fact]
    public void HopSkipJumpUpsampleIsBilinearWithHalfPixelCentres()
    {
        double[] low = { 1, 2, -3, 0.5, 4, 2, 7, -1, 0, 2, 2, 3 };
        double[] torch =
        {
            1.0, 1.142857, 1.571429, 2.0, -0.142857, -2.285714, -3.0, 0.95, 1.128572, 1.664286, 2.2, 0.185714, -1.828571, -2.5,
            0.75, 1.071429, 2.035714, 3.0, 1.5, 0.0, -0.5, 0.55, 1.014286, 2.407143, 3.8, 2.814286, 1.828571, 1.5,
            0.5, 1.0, 2.5, 4.0, 3.142857, 2.285714, 2.0, 7.0, 5.857143, 2.428571, -1.0, -0.571429, -0.142857, 0.0,
            6.5, 5.471428, 2.385714, -0.7, -0.271428, 0.157143, 0.3, 4.5, 3.928571, 2.214286, 0.5, 0.928571, 1.357143, 1.5,
            2.5, 2.385714, 2.042857, 1.7, 2.128572, 2.557143, 2.7, 2.0, 2.0, 2.0, 2.0, 2.428571, 2.857143, 3.0,
        };
        var up = HopSkipJump.Upsample(low, 2, 2, 3, 5, 7);
        Assert.Equal(torch.Length, up.Length);
        for (int j = 0; j < up.Length; j++) Assert.True(Math.Abs(up[j] - torch[j]) < 2e-6, $"value {j}: {up[j]} vs torch {torch[j]}");
    }

    /// <summary>
    /// The DCT probe basis (QEBA-F): InverseDct of the lowest 3 x 4 frequencies of a 2 x 7 x 9 image equals the sum of
    /// the orthonormal DCT-II basis images written out here in double; at full size it is an orthonormal transform (it
    /// keeps the L2 norm of random coefficients, and two unit coefficients give orthogonal images).
    /// </summary>
    [Fact]
    public void HopSkipJumpDctProbesAreTheOrthonormalLowFrequencyBasis()
    {
        var rng = new Perturb.Engine.Data.SplitMix64(5);
        int ch = 2, h = 7, w = 9, hs = 3, ws = 4;
        var low = Enumerable.Range(0, ch * hs * ws).Select(_ => rng.Normal()).ToArray();
        var o = HopSkipJump.InverseDct(low, ch, hs, ws, h, w);
        static double A(int u, int n) => Math.Sqrt((u == 0 ? 1.0 : 2.0) / n);
        for (int c = 0; c < ch; c++)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                {
                    double want = 0;
                    for (int u = 0; u < hs; u++)
                        for (int v = 0; v < ws; v++)
                            want += low[(c * hs + u) * ws + v] * A(u, h) * Math.Cos(Math.PI * (y + 0.5) * u / h) * A(v, w) * Math.Cos(Math.PI * (x + 0.5) * v / w);
                    Assert.True(Math.Abs(o[(c * h + y) * w + x] - want) < 1e-12, $"({c},{y},{x}): {o[(c * h + y) * w + x]} vs {want}");
                }
        var full = Enumerable.Range(0, ch * h * w).Select(_ => rng.Normal()).ToArray();
        var img = HopSkipJump.InverseDct(full, ch, h, w, h, w);
        Assert.Equal(Math.Sqrt(full.Sum(v => v * v)), Math.Sqrt(img.Sum(v => v * v)), 10);
        var e1 = new double[ch * h * w]; e1[3] = 1; var e2 = new double[ch * h * w]; e2[h * w + 5] = 1; var e3 = new double[ch * h * w]; e3[10] = 1;
        var b1 = HopSkipJump.InverseDct(e1, ch, h, w, h, w); var b3 = HopSkipJump.InverseDct(e3, ch, h, w, h, w);
        Assert.Equal(0.0, b1.Zip(b3, (p, q) => p * q).Sum(), 10);
        Assert.Equal(0.0, b1.Zip(HopSkipJump.InverseDct(e2, ch, h, w, h, w), (p, q) => p * q).Sum(), 10);
    }

    /// <summary>
    /// Low-frequency probes (probe_scale 2: 14x14 noise upsampled to 28x28) are a different search with the same
    /// seed (the setting changes the answers), the same search again with it (seeded), and still adversarial for
    /// every correct image (re-checked by a fresh forward pass) within the capped query budget.
    /// </summary>
    [Fact]
    public void HopSkipJumpLowFrequencyProbesAreSeededValidAndCapped()
    {
        var d = _f.Take(8);
        var full = new HopSkipJump { Queries = 600, Seed = 3 }.Run(_f.Model, d, AttackGoal.Untargeted);
        var low = new HopSkipJump { Queries = 600, Seed = 3, ProbeScale = 2 }.Run(_f.Model, d, AttackGoal.Untargeted);
        var again = new HopSkipJump { Queries = 600, Seed = 3, ProbeScale = 2 }.Run(_f.Model, d, AttackGoal.Untargeted);
        AttackAsserts.Valid(low, _f.Model, d.X, null);
        var e = low.Results[0];
        _out.WriteLine($"hsj-600 median L2: full-resolution probes {MedianL2(full):F3}, probe_scale 2 {MedianL2(low):F3}");
        Assert.Equal(1.0, e.SuccessRate);
        Assert.All(e.Queries!, q => Assert.True(q <= 600, $"{q} queries over the budget"));
        Assert.Equal(e.Adversarial, again.Results[0].Adversarial);
        Assert.NotEqual(full.Results[0].Adversarial, e.Adversarial);
    }

    /// <summary>
    /// Each setting beyond Chen et al.'s (DCT probes, history, probe radius, step start, bisection tolerance, the tangent jump, fitting the last step in the budget) is a
    /// different search on the same seed (some answer changes), and keeps the contract: every correctly classified
    /// image gets an adversarial in [0,1] that a fresh forward pass confirms, and spends exactly its budget of 400 (with fit_budget, at most 400 and no fewer than the reserve of its last step allows).
    /// </summary>
    [Theory]
    [InlineData("dct")]
    [InlineData("history")]
    [InlineData("delta")]
    [InlineData("step")]
    [InlineData("tolerance")]
    [InlineData("tangent")]
    [InlineData("fit")]
    public void HopSkipJumpSettingsChangeTheSearchAndSpendTheBudgetExactly(string which)
    {
        var d = _f.Take(8);
        HopSkipJump Make() => which switch
        {
            "dct" => new HopSkipJump { Queries = 400, Seed = 3, ProbeScale = 2, ProbeBasis = ProbeBasis.Dct },
            "history" => new HopSkipJump { Queries = 400, Seed = 3, History = 0.5 },
            "delta" => new HopSkipJump { Queries = 400, Seed = 3, DeltaScale = 30 },
            "step" => new HopSkipJump { Queries = 400, Seed = 3, StepScale = 2 },
            "tangent" => new HopSkipJump { Queries = 400, Seed = 3, Jump = HsjJump.Tangent },
            "fit" => new HopSkipJump { Queries = 400, Seed = 3, FitBudget = true },
            _ => new HopSkipJump { Queries = 400, Seed = 3, ToleranceScale = 1000 },
        };
        var paper = new HopSkipJump { Queries = 400, Seed = 3 }.Run(_f.Model, d, AttackGoal.Untargeted);
        var r = Make().Run(_f.Model, d, AttackGoal.Untargeted);
        AttackAsserts.Valid(r, _f.Model, d.X, null);
        var e = r.Results[0];
        _out.WriteLine($"hsj-400 {which}: median L2 {MedianL2(r):F3}, Chen et al. {MedianL2(paper):F3}");
        Assert.NotEqual(paper.Results[0].Adversarial, e.Adversarial);
        for (int i = 0; i < d.Count; i++)
        {
            if (r.PredictedBefore[i] != r.Labels[i]) { Assert.Equal(0L, (long)e.Queries![i]); continue; }
            Assert.True(e.Success[i], $"image {i}: no adversarial");
            // fit_budget stops when the bisection's reserve (17 queries at d = 784) and 10 probes no longer fit.
            if (which == "fit") Assert.InRange((long)e.Queries![i], 400L - 27, 400L);
            else Assert.Equal(400L, (long)e.Queries![i]);
        }
    }

    /// <summary>
    /// Start images: at a small budget (150 queries), querying the 12 nearest other images of the run as starts ends no
    /// farther than the noise start; and each queried image counts, to the cap: with a budget of 5, the
    /// first probe of 12 images is cut to 5 queries, every attacked image spends exactly 5 and comes back clean.
    /// </summary>
    [Fact]
    public void HopSkipJumpStartImagesAreCountedAndCapped()
    {
        var d = _f.Take(N);
        var noise = new HopSkipJump { Queries = 150, Seed = 2 }.Run(_f.Model, d, AttackGoal.Untargeted);
        var near = new HopSkipJump { Queries = 150, Seed = 2, StartImages = 12 }.Run(_f.Model, d, AttackGoal.Untargeted);
        AttackAsserts.Valid(near, _f.Model, d.X, null);
        _out.WriteLine($"start (150 queries) median L2: noise {MedianL2(noise):F3}, 12 start images {MedianL2(near):F3}");
        Assert.Equal(1.0, near.Results[0].SuccessRate);
        Assert.True(MedianL2(near) <= MedianL2(noise), $"start images' start {MedianL2(near)} vs noise {MedianL2(noise)}");
        var capped = new HopSkipJump { Queries = 5, Seed = 2, StartImages = 12 }.Run(_f.Model, d, AttackGoal.Untargeted);
        AttackAsserts.Valid(capped, _f.Model, d.X, null);
        var c = capped.Results[0];
        for (int i = 0; i < d.Count; i++)
        {
            if (c.Queries![i] == 0) continue; // not attacked: misclassified already
            Assert.Equal(5L, (long)c.Queries[i]);
            Assert.Equal(0.0, c.L2[i]);
        }
        Assert.Contains(c.Queries!, q => q == 5L);
    }
}
