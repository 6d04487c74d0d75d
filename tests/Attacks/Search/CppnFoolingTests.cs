using Perturb.Engine.Attacks.Search;
using Perturb.Engine.Data;
using Perturb.Engine.Nn;
using Xunit.Abstractions;

namespace Perturb.Tests.Attacks.Search;

public class CppnGenomeTests(ITestOutputHelper log)
{
    static CppnGenome Hand(double wx, CppnActivation hidden)
    {
        // x -> hidden(act) -> output, bias -> output (weight 0.5); inputs y and r unused.
        var nodes = new List<CppnActivation> { CppnActivation.Identity, CppnActivation.Identity, CppnActivation.Identity, CppnActivation.Identity, CppnActivation.Sigmoid, hidden };
        var conns = new List<(int, int, double, bool)> { (0, 5, wx, true), (5, 4, 1.0, true), (3, 4, 0.5, true), (1, 4, 9.0, false) };
        return new CppnGenome(1, nodes, conns);
    }

    static double Sigmoid(double s) => 1 / (1 + Math.Exp(-s));

    [Fact]
    public void HandMadeGenomeRendersTheKnownValues()
    {
        var g = Hand(2.0, CppnActivation.Sin);
        Assert.True(g.IsValid());
        var img = new float[3 * 5];
        g.Render(img, 3, 5);
        // Pixel (row, col): x = 2 col / 4 - 1; value = sigmoid(sin(2 x) + 0.5); the disabled y connection adds nothing.
        for (int row = 0; row < 3; row++)
            for (int col = 0; col < 5; col++)
                Assert.Equal(Sigmoid(Math.Sin(2 * (col / 2.0 - 1)) + 0.5), img[row * 5 + col], 6);
        var again = new float[15];
        g.Render(again, 3, 5);
        Assert.Equal(img, again);
        Assert.Equal(Math.Exp(-4), CppnGenome.Activate(CppnActivation.Gaussian, 2), 12);
        Assert.Equal(3, CppnGenome.Activate(CppnActivation.Abs, -3), 12);
    }

    [Fact]
    public void ValidityRejectsCyclesAndBadEdges()
    {
        var g = Hand(1, CppnActivation.Tanh);
        g.Nodes.Add(CppnActivation.Cos);
        g.Connections.Add((5, 6, 1, true));
        Assert.True(g.IsValid());
        g.Connections.Add((6, 5, 1, true));
        Assert.False(g.IsValid());
        Assert.Null(g.TopologicalOrder());
        var h = Hand(1, CppnActivation.Tanh);
        h.Connections.Add((4, 5, 1, true));   // out of an output
        Assert.False(h.IsValid());
        var k = Hand(1, CppnActivation.Tanh);
        k.Connections.Add((5, 0, 1, true));   // into an input
        Assert.False(k.IsValid());
    }

    [Fact]
    public void MutationKeepsGenomesValidAndGrowsThem()
    {
        var enc = new CppnEncoding();
        var rng = new SplitMix64(4);
        var g = enc.Random(3, rng);
        var parentCopy = g.Clone();
        var activations = new HashSet<CppnActivation>();
        for (int it = 0; it < 400; it++)
        {
            var child = enc.Mutate(g, rng);
            Assert.True(child.IsValid(), $"mutation {it} made an invalid genome");
            Assert.All(child.Connections, c => Assert.InRange(c.Weight, -enc.MaxWeight, enc.MaxWeight));
            g = child;
            foreach (var a in g.Nodes.Skip(CppnGenome.Inputs + 3)) activations.Add(a);
        }
        // Mutating a parent leaves it as it was (children are copies).
        var before = (parentCopy.Nodes.ToArray(), parentCopy.Connections.ToArray());
        for (int it = 0; it < 20; it++) enc.Mutate(parentCopy, rng);
        Assert.Equal(before.Item1, parentCopy.Nodes);
        Assert.Equal(before.Item2, parentCopy.Connections);
        log.WriteLine($"after 400 mutations: {g.Nodes.Count} nodes, {g.Connections.Count} connections ({g.Connections.Count(c => !c.Enabled)} disabled), activations {string.Join(",", activations)}");
        Assert.True(g.Nodes.Count > CppnGenome.Inputs + 3 + 10);
        Assert.Contains(g.Connections, c => !c.Enabled);
        Assert.True(activations.Count >= 5);
    }

    [Fact]
    public void RandomGenomesAreSeededAndRenderSmoothImagesInTheUnitRange()
    {
        var enc = new CppnEncoding();
        const int h = 28, w = 28;
        double cppnDiff = 0, randDiff = 0;
        var noise = new SplitMix64(99);
        for (int s = 0; s < 20; s++)
        {
            var g = enc.Random(3, new SplitMix64((ulong)s));
            for (int m = 0; m < 5; m++) g = enc.Mutate(g, new SplitMix64((ulong)(100 + m)));
            var img = new float[3 * h * w];
            g.Render(img, h, w);
            var same = new float[img.Length];
            var g2 = enc.Random(3, new SplitMix64((ulong)s));
            for (int m = 0; m < 5; m++) g2 = enc.Mutate(g2, new SplitMix64((ulong)(100 + m)));
            g2.Render(same, h, w);
            Assert.Equal(img, same);
            Assert.All(img, v => Assert.InRange(v, 0f, 1f));
            var rnd = Enumerable.Range(0, img.Length).Select(_ => (float)noise.NextDouble()).ToArray();
            cppnDiff += NeighbourDiff(img, 3, h, w) / 20;
            randDiff += NeighbourDiff(rnd, 3, h, w) / 20;
        }
        log.WriteLine($"mean |neighbour difference|: CPPN {cppnDiff:F4}, uniform noise {randDiff:F4}");
        Assert.InRange(randDiff, 0.3, 0.37);   // 1/3 for independent uniform pixels
        Assert.True(cppnDiff < randDiff / 5, $"CPPN {cppnDiff} vs noise {randDiff}");
    }

    /// <summary>Mean absolute difference between horizontally and vertically adjacent pixels.</summary>
    internal static double NeighbourDiff(float[] img, int c, int h, int w)
    {
        double s = 0; long n = 0;
        for (int ch = 0; ch < c; ch++)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                {
                    int k = (ch * h + y) * w + x;
                    if (x + 1 < w) { s += Math.Abs(img[k + 1] - img[k]); n++; }
                    if (y + 1 < h) { s += Math.Abs(img[k + w] - img[k]); n++; }
                }
        return s / n;
    }
}

[Collection("trained-lenet")]
public class CppnFoolingTests(TrainedLeNet f, ITestOutputHelper log)
{
    [Fact]
    public void EveryClassReaches99PercentWithCppnImages()
    {
        // Within 100 generations of 50 offspring (seen with seed 7: classes 0-3 at generations 0, 10, 64, 46; seeds 1-3
        // all within 26).
        const int gens = 100;
        var r = new FoolingImages { Population = 50, Generations = gens, Seed = 7, Encoding = FoolingEncoding.Cppn }.Run(f.Model);
        log.WriteLine($"cppn fooling: confidences {string.Join(", ", r.BestConfidence.Select(v => v.ToString("F4")))}, reached at {string.Join(", ", r.ReachedAt)}, {r.Queries} queries, " +
            $"neighbour diff {string.Join(", ", r.Images.Select(im => CppnGenomeTests.NeighbourDiff(im, 1, 28, 28).ToString("F3")))}");
        Assert.Equal("cppn", r.Encoding);
        Assert.All(r.ReachedAt, g => Assert.InRange(g, 0, gens));
        Assert.Equal(50L * (1 + r.Generations), r.Queries);
        using var t = f.Be.FromArray(r.Images.SelectMany(v => v).ToArray(), 4, 1, 28, 28);
        var p = Losses.Probabilities(f.Be, f.Model.Forward(t));
        for (int a = 0; a < 4; a++)
        {
            Assert.True(p[a][a] >= 0.99, $"class {a}: {p[a][a]}");
            Assert.Equal(r.BestConfidence[a], p[a][a], 4);
            // The elite image is its genome's rendering, in [0,1].
            var img = new float[28 * 28];
            r.Genomes![a].Render(img, 28, 28);
            Assert.Equal(r.Images[a], img);
            Assert.All(img, v => Assert.InRange(v, 0f, 1f));
        }
    }

    [Fact]
    public void SeededCppnRunReproducesItself()
    {
        var a = new FoolingImages { Population = 16, Generations = 8, Seed = 3, TargetConfidence = 1.1, Encoding = FoolingEncoding.Cppn }.Run(f.Model, new[] { 1, 2 });
        var b = new FoolingImages { Population = 16, Generations = 8, Seed = 3, TargetConfidence = 1.1, Encoding = FoolingEncoding.Cppn, QueryBatch = 5 }.Run(f.Model, new[] { 1, 2 });
        var c = new FoolingImages { Population = 16, Generations = 8, Seed = 4, TargetConfidence = 1.1, Encoding = FoolingEncoding.Cppn }.Run(f.Model, new[] { 1, 2 });
        Assert.Equal(8, a.Generations);
        Assert.Equal(a.Images[0], b.Images[0]);
        Assert.Equal(a.Images[1], b.Images[1]);
        Assert.Equal(a.BestConfidence, b.BestConfidence);
        Assert.NotEqual(a.Images[0], c.Images[0]);
    }
}
