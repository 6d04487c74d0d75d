using Perturb.Engine;
using Perturb.Engine.Attacks;
using Perturb.Engine.Attacks.Gradient;
using Perturb.Engine.Attacks.Search;
using Perturb.Engine.Backends;
using Perturb.Engine.Nn;
using Xunit.Abstractions;

namespace Perturb.Tests.Attacks;

/// <summary>
/// The memory plan, proved by the backend's memory counters (issue 16): on ILGPU (its CPU accelerator, tiny shapes)
/// an attack step after the first allocates no device buffer and moves no byte between host and device. A chunk with
/// S + 1 steps must cost exactly what a chunk with S steps costs (the chunk's own buffers are the same for both), and
/// FGSM's single step, run again on a warm model, must cost nothing at all.
/// </summary>
public class StepTrafficTests : IClassFixture<StepTrafficTests.Fixture>
{
    public sealed class Fixture : IDisposable
    {
        public IBackend Be { get; } = IlgpuBackend.CreateCpuAccelerator();
        public Model Model { get; }
        public Fixture() { Model = SmallResNet(Be); }
        public void Dispose() { Model.Dispose(); Be.Dispose(); }
    }

    /// <summary>
    /// A tiny residual network on 1x6x6 inputs (3 classes): conv, batch norm, ReLU, a residual add, max pooling,
    /// linear: the memory plan's cases (views, accumulated gradients).
    /// </summary>
    internal static Model SmallResNet(IBackend be)
    {
        var g = new GraphBuilder(1, 6, 6);
        g.Add("conv1", new Conv2d(1, 3, 3, padding: 1), GraphBuilder.Input);
        g.Add("bn", new BatchNorm2d(3));
        int r1 = g.Add("relu1", new ActivationLayer(Activation.Relu));
        g.Add("conv2", new Conv2d(3, 3, 3, padding: 1));
        g.Add("add", new AddLayer(), r1, g.Count - 1);
        g.Add("pool", new Pool2d(true, 2));
        g.Add("flat", new Flatten());
        g.Add("fc", new Linear(27, 3));
        var m = g.Build(be, 11);
        m.Eval();
        return m;
    }

    readonly Fixture _f;
    readonly ITestOutputHelper _out;
    public StepTrafficTests(Fixture f, ITestOutputHelper o) { _f = f; _out = o; }

    const int Rows = 3;

    AttackBatch Batch(bool budget)
    {
        var m = _f.Model;
        int d = Layer.Product(m.InputShape);
        var rng = new Random(5);
        var x = Enumerable.Range(0, Rows * d).Select(_ => (float)rng.NextDouble()).ToArray();
        float eps = budget ? 0.1f : float.NaN;
        return new AttackBatch(m, Enumerable.Range(0, Rows).ToArray(), new int[Rows], Enumerable.Repeat(eps, Rows).ToArray(),
            [0, 1, 2], null, x, new float[Rows * m.NumOutputs], 3);
    }

    /// <summary>The memory traffic of one chunk of the attack.</summary>
    MemoryTraffic Chunk(Attack a, AttackBatch b)
    {
        _f.Be.Fill(b.StepCount, 0f);
        var t0 = _f.Be.Counters.Traffic;
        a.RunChunk(b);
        _f.Be.Synchronize();
        return _f.Be.Counters.Traffic - t0;
    }

    /// <summary>What one more step costs: a chunk of S + 1 steps minus a chunk of S steps (after a warm-up chunk).</summary>
    MemoryTraffic ExtraStep(Func<int, Attack> make, AttackBatch b, int s = 2)
    {
        Chunk(make(s), b); // warms the model's memory plan and the backend's workspaces
        var few = Chunk(make(s), b);
        var more = Chunk(make(s + 1), b);
        _out.WriteLine($"{s} steps: {few}; {s + 1} steps: {more}");
        return more - few;
    }

    /// <summary>Chunks of S and S + 1 steps cost the same: the extra step allocated and moved nothing.</summary>
    void ExtraStepIsFree(Func<int, Attack> make, bool budget)
    {
        using var b = Batch(budget);
        var step = ExtraStep(make, b);
        Assert.True(step.IsZero, $"one more step cost {step}");
    }

    [Fact]
    public void FgsmStepOnAWarmModelCostsNothing()
    {
        using var b = Batch(true);
        var a = new Fgsm();
        Chunk(a, b);
        var t = Chunk(a, b);
        Assert.True(t.IsZero, $"an FGSM step cost {t}");
    }

    [Fact]
    public void PgdStepCostsNothing() => ExtraStepIsFree(s => new Pgd { Steps = s }, true);

    [Fact]
    public void PgdL2CwLossStepCostsNothing() => ExtraStepIsFree(s => new Pgd { Steps = s, Norm = Norm.L2, Loss = LossKind.CwMargin }, true);

    [Fact]
    public void MiFgsmStepCostsNothing() => ExtraStepIsFree(s => new MiFgsm { Steps = s }, true);

    [Fact]
    public void EotPgdStepCostsNothing() => ExtraStepIsFree(s => new EotPgd { Steps = s, Samples = 2 }, true);

    [Fact]
    public void CarliniWagnerStepCostsNothing() => ExtraStepIsFree(s => new CarliniWagner { Steps = s, BinarySteps = 1 }, false);

    [Fact]
    public void DeepFoolStepAllocatesNothingAndReadsOneNumber()
    {
        // The true class's logit is 100 ahead, beyond what any image in [0,1] can change: every row runs every
        // iteration (checked below), so the extra iteration is real work, not a stop.
        using var m = SmallResNet(_f.Be);
        var fc = m.NamedParameters().Single(p => p.Name == "fc.bias").P.Value;
        _f.Be.Upload(fc, [100f, 0f, 0f]);
        int d = Layer.Product(m.InputShape);
        var x = Enumerable.Range(0, Rows * d).Select(i => (i % 7) / 7f).ToArray();
        foreach (var norm in new[] { Norm.L2, Norm.Linf })
        {
            using var b = new AttackBatch(m, Enumerable.Range(0, Rows).ToArray(), new int[Rows], Enumerable.Repeat(float.NaN, Rows).ToArray(),
                new int[Rows], null, x, new float[Rows * m.NumOutputs], 3);
            var step = ExtraStep(s => new DeepFool { MaxIterations = s, Norm = norm }, b);
            Assert.All(b.StepCount.ToArray(), v => Assert.Equal(3f, v));
            Assert.Equal(new MemoryTraffic(0, 0, 0, 4), step);
        }
    }

    /// <summary>
    /// A model whose true class (0) is 100 logits ahead, beyond what any image in [0,1] can change: every search keeps
    /// running every generation, so the extra generation is real work, and x, its images.
    /// </summary>
    (Model M, float[] X) Unfoolable()
    {
        var m = SmallResNet(_f.Be);
        _f.Be.Upload(m.NamedParameters().Single(p => p.Name == "fc.bias").P.Value, [100f, 0f, 0f]);
        int d = Layer.Product(m.InputShape);
        return (m, Enumerable.Range(0, Rows * d).Select(i => (i % 7) / 7f).ToArray());
    }

    /// <summary>
    /// A generation of one-pixel (and pixel-saliency, the same search over salient positions) after the first allocates
    /// nothing and moves only what the search needs: per candidate its edits up (its image's row and K*C (index, value)
    /// pairs, 4 * (1 + 2 K C) bytes) and its logits down (4 * classes bytes); the images stay on the device.
    /// </summary>
    [Theory, InlineData(false), InlineData(true)]
    public void OnePixelGenerationMovesOnlyEditsAndLogits(bool saliency)
    {
        var (m, x) = Unfoolable();
        using var _ = m;
        const int pop = 5, k = 2, classes = 3;
        SearchAttack Make(int gens) => saliency
            ? new PixelSaliency { Pixels = k, Population = pop, Iterations = gens, Candidates = 6, Seed = 3 }
            : new OnePixel { Pixels = k, Population = pop, Iterations = gens, Seed = 3 };
        MemoryTraffic Run(int gens)
        {
            var t0 = _f.Be.Counters.Traffic;
            var r = Make(gens).Run(m, x, new int[Rows], AttackGoal.Untargeted);
            _f.Be.Synchronize();
            Assert.All(r.Results[0].Steps, v => Assert.Equal(gens, v));
            return _f.Be.Counters.Traffic - t0;
        }
        Run(1);
        var few = Run(2);
        var more = Run(3);
        _out.WriteLine($"2 generations: {few}; 3 generations: {more}");
        long cand = Rows * pop, edits = k * 1; // one channel
        Assert.Equal(new MemoryTraffic(0, 0, 4 * cand * (1 + 2 * edits), 4 * cand * classes), more - few);
    }

    [Fact]
    public void PlanIsReusedAndFreedWhenTheBatchShapeChanges()
    {
        var be = _f.Be; var m = _f.Model;
        using var x3 = be.FromArray(new float[3 * 36], 3, 1, 6, 6);
        using var x5 = be.FromArray(new float[5 * 36], 5, 1, 6, 6);
        using var dz3 = be.FromArray(new float[9], 3, 3);
        void Pass(Tensor x, Tensor? dz) { m.Forward(x); if (dz != null) m.Backward(dz, BackwardMode.InputOnly); }
        Pass(x3, dz3);
        var t0 = be.Counters.Traffic;
        Pass(x3, dz3);
        Assert.Equal(0, (be.Counters.Traffic - t0).Allocations);
        // A new batch shape frees the old plan: nothing more is held than one pass's tensors.
        Pass(x5, null);
        int held = m.LiveActivations + m.SpareActivations;
        for (int i = 0; i < 3; i++) { Pass(x3, dz3); Pass(x5, null); }
        Assert.Equal(held, m.LiveActivations + m.SpareActivations);
    }
}

/// <summary>The memory plan does not change results: a pass on reused (zero-filled) storage equals a pass on fresh storage.</summary>
public class MemoryPlanResultTests
{
    [Theory, InlineData("cpu", "resnet18"), InlineData("cpu", "small"), InlineData("ilgpu-cpu", "small")]
    public void WarmPlanGivesTheResultsOfAFreshModel(string backend, string arch)
    {
        using IBackend be = backend == "cpu" ? new CpuBackend() : IlgpuBackend.CreateCpuAccelerator();
        Model Make() => arch == "small" ? StepTrafficTests.SmallResNet(be) : Presets.Create(arch, be, 1, 6, 6, 3, 9);
        using var fresh = Make();
        using var warm = Make();
        fresh.Eval(); warm.Eval();
        var rng = new Random(8);
        Tensor R(params int[] shape) => be.FromArray(Enumerable.Range(0, shape.Aggregate(1, (a, v) => a * v)).Select(_ => (float)rng.NextDouble()).ToArray(), shape);
        const int n = 2;
        using var x1 = R(n, 1, 6, 6); using var x2 = R(n, 1, 6, 6); using var r = R(n, 3);
        (float[] Z, float[] Dx) Run(Model m, Tensor x) => (m.Forward(x).ToArray(), m.Backward(r, BackwardMode.InputOnly)!.ToArray());
        var want = Run(fresh, x1);
        Run(warm, x2); Run(warm, x2);
        var t0 = be.Counters.Traffic;
        var got = Run(warm, x1);
        Assert.Equal(0, (be.Counters.Traffic - t0).Allocations);
        Assert.Equal(want.Z, got.Z);
        Assert.Equal(want.Dx, got.Dx);
    }
}
