using Perturb.Engine;
using Perturb.Engine.Backends;
using Perturb.Engine.Nn;
using Perturb.Tests.Ops;

namespace Perturb.Tests.Nn;

/// <summary>
/// Gradient checks (double-precision finite differences of <see cref="RefModel"/>, as <see cref="GradCheckTests"/>)
/// of the general-tensor layers on both backends: every element-wise function on both sides of its kinks, broadcast
/// binary ops between computed tensors (the squeeze-excitation pattern) and with constants on either side, every
/// reduction, Transpose, Slice, Reshape, Concat on a non-channel axis and Linear over the last axis of [N, T, F].
/// </summary>
public class TensorGradCheckTests
{
    public static IEnumerable<object[]> Backends() => new[] { new object[] { TestBackends.Cpu }, new object[] { TestBackends.IlgpuCpu } };

    static IBackend Be(string name) => TestBackends.Get(name);

    static BinaryLayer Shift(float v) => new(BroadcastOp.Sub, new[] { v }, new[] { 1 }, false);

    public static IEnumerable<object[]> UnaryCases() =>
        Enum.GetValues<UnaryOp>().SelectMany(op => new[] { new object[] { TestBackends.Cpu, op }, new object[] { TestBackends.IlgpuCpu, op } });

    [Theory, MemberData(nameof(UnaryCases))]
    public void Unary(string backend, UnaryOp op)
    {
        // inputs in (0.05, 0.95): shifted to (-0.45, 0.45) for functions with a kink or branch at 0, scaled to cross HardSigmoid's and HardSwish's
        bool positive = op is UnaryOp.Sqrt or UnaryOp.Log or UnaryOp.Reciprocal or UnaryOp.Pow;
        var g = new GraphBuilder(3, 5);
        g.Add("shift", positive ? Shift(0f) : new BinaryLayer(BroadcastOp.Mul, new[] { 9f }, new[] { 1 }, false), GraphBuilder.Input);
        if (!positive) g.Add("centre", Shift(4.5f));
        var (a, b) = op switch { UnaryOp.HardSigmoid => (1 / 6f, 0.5f), UnaryOp.Elu => (0.7f, 0f), UnaryOp.Selu => (1.6732632f, 1.050701f), UnaryOp.Pow => (2.5f, 0f), _ => (0f, 0f) };
        g.Add("f", new UnaryLayer(op, a, b));
        using var m = g.Build(Be(backend), 3);
        GradCheckTests.Check(m, 2, false);
    }

    [Theory, MemberData(nameof(Backends))]
    public void BroadcastBetweenComputedTensors(string backend)
    {
        foreach (var op in Enum.GetValues<BroadcastOp>())
        {
            // squeeze-excitation: x [C, H, W] op mean(x) [C, 1, 1]; the gate's gradient sums over H, W
            var g = new GraphBuilder(3, 2, 4);
            int gate = g.Add("gate", new ReduceLayer(ReduceOp.Mean, new[] { 1, 2 }, true), GraphBuilder.Input);
            if (op is BroadcastOp.Div or BroadcastOp.Pow) gate = g.Add("pos", new UnaryLayer(UnaryOp.Exp), gate);
            g.Add("op", new BinaryLayer(op), GraphBuilder.Input, gate);
            using var m = g.Build(Be(backend), 5);
            GradCheckTests.Check(m, 2, false);
            // both operands broadcast: [3, 1, 4] op [3, 2, 1]
            var g2 = new GraphBuilder(3, 2, 4);
            int r1 = g2.Add("rows", new ReduceLayer(ReduceOp.Max, new[] { 1 }, true), GraphBuilder.Input);
            int r2 = g2.Add("cols", new ReduceLayer(ReduceOp.Sum, new[] { 2 }, true), GraphBuilder.Input);
            g2.Add("op", new BinaryLayer(op), r1, r2);
            using var m2 = g2.Build(Be(backend), 5);
            GradCheckTests.Check(m2, 2, false);
        }
    }

    [Theory, MemberData(nameof(Backends))]
    public void BroadcastWithConstants(string backend)
    {
        foreach (var op in Enum.GetValues<BroadcastOp>())
            foreach (bool left in new[] { false, true })
            {
                var k = Enumerable.Range(0, 4).Select(i => 0.3f + 0.4f * i).ToArray();
                var g = new GraphBuilder(3, 4);
                g.Add("op", new BinaryLayer(op, k, new[] { 4 }, left), GraphBuilder.Input);   // [4] onto [3, 4]: the last axis
                using var m = g.Build(Be(backend), 5);
                GradCheckTests.Check(m, 2, false);
            }
    }

    [Theory, MemberData(nameof(Backends))]
    public void Reductions(string backend)
    {
        foreach (var op in Enum.GetValues<ReduceOp>())
            foreach (var (axes, keep) in new[] { (new[] { 0 }, true), (new[] { 0, 2 }, false), (new[] { 1, 2 }, true) })
            {
                var g = new GraphBuilder(3, 4, 5);
                g.Add("r", new ReduceLayer(op, axes, keep), GraphBuilder.Input);
                using var m = g.Build(Be(backend), 5);
                GradCheckTests.Check(m, 2, false);
            }
    }

    [Theory, MemberData(nameof(Backends))]
    public void Layout(string backend)
    {
        // Transpose → Slice → Reshape → Concat on axis 1 with a function of the input's transpose → Linear over the last axis
        var g = new GraphBuilder(4, 3, 5);
        int t = g.Add("t", new TransposeLayer(new[] { 2, 0, 1 }), GraphBuilder.Input);            // [5, 4, 3]
        int s = g.Add("s", new SliceLayer(new[] { 1, 0, 0 }, new[] { 2, 1, 1 }, new[] { 2, 4, 3 }), t);   // rows 1, 3 → [2, 4, 3]
        int u = g.Add("u", new UnaryLayer(UnaryOp.Silu), t);                                          // [5, 4, 3]
        int c = g.Add("c", new Concat(0), s, u);                                                       // [7, 4, 3]
        int c2 = g.Add("c2", new Concat(2), c, c);                                                     // [7, 4, 6]
        int r = g.Add("r", new ReshapeLayer(new[] { 14, 12 }), c2);
        int fc = g.Add("fc", new Linear(12, 3), r);                                                     // [14, 3]
        int red = g.Add("red", new ReduceLayer(ReduceOp.Mean, new[] { 0 }, true), fc);                  // [1, 3]
        int ex = g.Add("ex", new ExpandLayer(new[] { 4, 3 }), red);                                     // [4, 3]
        g.Add("tile", new TileLayer(new[] { 2, 3 }), ex);                                               // [8, 9]
        using var m = g.Build(Be(backend), 5);
        GradCheckTests.Check(m, 2, false, maxPerTensor: 30);
    }

    /// <summary>
    /// Slice with negative steps (a flip and a reversed stride-2 walk) and Gather of constant index lists with repeats
    /// and any order (cut into runs of one strided copy each; the backward adds of repeated indices accumulate).
    /// </summary>
    [Theory, MemberData(nameof(Backends))]
    public void ReversedSliceAndGather(string backend)
    {
        var g = new GraphBuilder(4, 3, 5);
        int s = g.Add("s", new SliceLayer(new[] { 3, 0, 4 }, new[] { -1, 1, -2 }, new[] { 4, 3, 3 }), GraphBuilder.Input); // x[:, ::-1, :, 4::-2]
        int a = g.Add("a", new GatherLayer(2, new[] { 2, 0, 0, 1, 2, 1, 1 }), s);                                     // [4, 3, 7]
        int b = g.Add("b", new GatherLayer(0, new[] { 3, 3, 0, 1, 1, 2 }), a);                                        // [6, 3, 7]: nearest x2 of rows
        int u = g.Add("u", new UnaryLayer(UnaryOp.Silu), b);
        int fc = g.Add("fc", new Linear(7, 2), u);
        g.Add("r", new GatherLayer(1, new[] { 2, 1, 0, 0 }), fc);                                                     // [6, 4, 2]
        using var m = g.Build(Be(backend), 6);
        GradCheckTests.Check(m, 2, false, maxPerTensor: 40);
    }

    /// <summary>The runs a Gather is cut into: nearest upsampling by 2 is two runs, a reversal one, a half-pixel linear tap three.</summary>
    [Fact]
    public void GatherRunsAreFew()
    {
        Assert.Equal(2, GatherLayer.Cut(new[] { 0, 0, 1, 1, 2, 2, 3, 3 }).Length);
        Assert.Single(GatherLayer.Cut(new[] { 4, 3, 2, 1, 0 }));
        Assert.Equal(3, GatherLayer.Cut(new[] { 0, 0, 0, 1, 1, 2, 2, 3 }).Length);
        // every output position is covered exactly once and reads its index
        var ix = new[] { 5, 0, 3, 3, 1, 4, 2, 2, 0 };
        var seen = new int[ix.Length];
        foreach (var (j0, js, i0, st, len) in GatherLayer.Cut(ix))
            for (int t = 0; t < len; t++) { seen[j0 + js * t]++; Assert.Equal(ix[j0 + js * t], i0 + st * t); Assert.True(len == 1 || st != 0); }
        Assert.All(seen, c => Assert.Equal(1, c));
    }
}
