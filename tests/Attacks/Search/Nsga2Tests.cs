using Perturb.Engine.Attacks.Search;
using Perturb.Engine.Data;

namespace Perturb.Tests.Attacks.Search;

public class Nsga2Tests
{
    // A(1,5) B(2,3) C(4,1) H(3,2) | D(3,4) | G(4,4) | E(5,5): D is dominated by B only, G by D, E by G.
    static readonly double[][] Points =
    {
        new double[] { 1, 5 }, new double[] { 2, 3 }, new double[] { 4, 1 }, new double[] { 3, 4 },
        new double[] { 4, 4 }, new double[] { 5, 5 }, new double[] { 3, 2 },
    };

    [Fact]
    public void DominanceIsStrictInOneObjective()
    {
        Assert.True(Nsga2.Dominates(new double[] { 3, 4 }, new double[] { 4, 4 }));
        Assert.False(Nsga2.Dominates(new double[] { 4, 4 }, new double[] { 4, 4 }));
        Assert.False(Nsga2.Dominates(new double[] { 1, 5 }, new double[] { 2, 3 }));
        Assert.False(Nsga2.Dominates(new double[] { 2, 3 }, new double[] { 1, 5 }));
    }

    [Fact]
    public void FastNonDominatedSortFindsTheKnownFronts()
    {
        var (fronts, rank) = Nsga2.Sort(Points);
        Assert.Equal(4, fronts.Count);
        Assert.Equal(new[] { 0, 1, 2, 6 }, fronts[0]);
        Assert.Equal(new[] { 3 }, fronts[1]);
        Assert.Equal(new[] { 4 }, fronts[2]);
        Assert.Equal(new[] { 5 }, fronts[3]);
        Assert.Equal(new[] { 0, 0, 0, 1, 2, 3, 0 }, rank);
        // Duplicates share a front; a lone point is rank 0.
        var (f2, r2) = Nsga2.Sort(new[] { new double[] { 1, 1 }, new double[] { 1, 1 }, new double[] { 2, 2 } });
        Assert.Equal(new[] { 0, 1 }, f2[0]);
        Assert.Equal(new[] { 0, 0, 1 }, r2);
    }

    [Fact]
    public void CrowdingDistanceMatchesHandComputation()
    {
        // Front A(1,5) B(2,3) H(3,2) C(4,1): ranges 3 and 4.
        // B: (3-1)/3 + (5-2)/4 = 17/12; H: (4-2)/3 + (3-1)/4 = 7/6; the ends are infinite.
        var d = Nsga2.Crowding(Points, new[] { 0, 1, 6, 2 });
        Assert.Equal(double.PositiveInfinity, d[0]);
        Assert.Equal(17.0 / 12, d[1], 12);
        Assert.Equal(7.0 / 6, d[2], 12);
        Assert.Equal(double.PositiveInfinity, d[3]);
        // Three points A B C: B = (4-1)/3 + (5-1)/4 = 2.
        Assert.Equal(2.0, Nsga2.Crowding(Points, new[] { 0, 1, 2 })[1], 12);
        // One objective constant: it adds nothing.
        var flat = new[] { new double[] { 0, 7 }, new double[] { 1, 7 }, new double[] { 3, 7 } };
        Assert.Equal(1.0, Nsga2.Crowding(flat, new[] { 0, 1, 2 })[1], 12);
    }

    [Fact]
    public void SelectionKeepsWholeFrontsThenTheLeastCrowded()
    {
        Assert.Equal(new[] { 0, 1, 2, 3, 6 }, Nsga2.Select(Points, 5));
        // Three of front 0 (A B H C): the two infinite ends, then B (17/12 > 7/6).
        Assert.Equal(new[] { 0, 1, 2 }, Nsga2.Select(Points, 3));
    }

    [Fact]
    public void VariationStaysInsideTheBounds()
    {
        var rng = new SplitMix64(5);
        var lo = Enumerable.Range(0, 64).Select(k => -0.1f * (k % 3)).ToArray();
        var hi = Enumerable.Range(0, 64).Select(k => 0.05f * (k % 4)).ToArray();
        var a = new float[64]; var b = new float[64];
        for (int k = 0; k < 64; k++) { a[k] = lo[k]; b[k] = hi[k]; }
        bool moved = false;
        for (int it = 0; it < 200; it++)
        {
            var a0 = (float[])a.Clone();
            Nsga2.Sbx(a, b, lo, hi, 15, rng);
            Nsga2.Mutate(a, lo, hi, 0.3, 20, rng);
            Nsga2.Mutate(b, lo, hi, 0.3, 20, rng);
            if (!a.SequenceEqual(a0)) moved = true;
            for (int k = 0; k < 64; k++)
            {
                Assert.InRange(a[k], lo[k], hi[k]);
                Assert.InRange(b[k], lo[k], hi[k]);
            }
        }
        Assert.True(moved);
    }
}
