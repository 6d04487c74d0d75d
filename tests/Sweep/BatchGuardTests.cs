using Perturb.Engine;
using Perturb.Engine.Attacks;
using Perturb.Engine.Attacks.Gradient;
using Perturb.Engine.Attacks.Search;
using Perturb.Engine.Backends;
using Perturb.Engine.Data;
using Perturb.Engine.IO;

namespace Perturb.Tests.Sweep;

public class BatchGuardTests : IClassFixture<SweepFixture>
{
    readonly SweepFixture _f;
    public BatchGuardTests(SweepFixture f) { _f = f; }

    /// <summary>A chunk action that "runs out of memory" above <paramref name="limit"/> items and squares its items otherwise.</summary>
    static (double[] Out, List<(long, int)> Calls) Squares(int total, int batch, int limit, List<string> log)
    {
        var outp = new double[total]; var calls = new List<(long, int)>();
        BatchGuard.Run(total, batch, (start, count) =>
        {
            calls.Add((start, count));
            if (count > limit) throw new OutOfMemoryException("fake device full");
            for (int i = 0; i < count; i++) outp[start + i] = (start + i) * (double)(start + i);
        }, log.Add);
        return (outp, calls);
    }

    [Fact]
    public void OutOfMemoryHalvesTheBatchLogsAndGivesTheSameResult()
    {
        var log = new List<string>();
        var (reference, refCalls) = Squares(300, 256, int.MaxValue, log);
        Assert.Empty(log);
        Assert.Equal(new[] { (0L, 256), (256L, 44) }, refCalls);

        var (got, calls) = Squares(300, 256, 50, log);
        Assert.Equal(reference, got);
        Assert.Equal(new[] { "out of memory at batch 256; halving to 128", "out of memory at batch 128; halving to 64", "out of memory at batch 64; halving to 32" }, log);
        // After the halvings every chunk is 32 (the last one the rest) and covers each item once.
        var ok = calls.Where(c => c.Item2 <= 50).ToList();
        Assert.Equal(Enumerable.Range(0, 300).Select(i => (long)i), ok.SelectMany(c => Enumerable.Range((int)c.Item1, c.Item2).Select(i => (long)i)));
        Assert.All(ok.Take(ok.Count - 1), c => Assert.Equal(32, c.Item2));
    }

    [Fact]
    public void OutOfMemoryAtBatchOneFailsCleanlyAndOtherErrorsPassThrough()
    {
        var log = new List<string>();
        var e = Assert.Throws<PerturbException>(() => BatchGuard.Run(10, 4, (_, _) => throw new OutOfMemoryException("no memory at all"), log.Add, what: "pgd"));
        Assert.Equal(1, e.ExitCode);
        Assert.Contains("pgd: out of memory at batch 1", e.Message);
        Assert.Equal(new[] { "pgd: out of memory at batch 4; halving to 2", "pgd: out of memory at batch 2; halving to 1" }, log);
        Assert.Throws<InvalidOperationException>(() => BatchGuard.Run(10, 4, (_, _) => throw new InvalidOperationException("not memory"), log.Add));
        Assert.True(BatchGuard.IsOutOfMemory(new AggregateException(new OutOfMemoryException())));
        Assert.True(BatchGuard.IsOutOfMemory(new InvalidOperationException("wrapped", new OutOfMemoryException())));
        Assert.False(BatchGuard.IsOutOfMemory(new ILGPU.Runtime.Cuda.CudaException("launch failed")));
    }

    [Fact]
    public void DefaultBatchFollowsTheDocumentedRule()
    {
        using var be = new CpuBackend();
        using var m = ModelFile.Load(_f.ModelA, be);
        long floats = 28 * 28 + m.Nodes.Sum(n => (long)n.Layer.OutShape.Aggregate(1, (a, b) => a * b));
        long perImage = floats * 4 * 3;
        foreach (long mem in new[] { 1L << 20, 64L << 20, 1L << 30 })
        {
            int b = BatchGuard.DefaultBatch(m, mem);
            Assert.True((b & (b - 1)) == 0 && b >= 1 && b <= 1024, $"{b}");
            if (b < 1024) Assert.True(b * perImage <= Math.Max(perImage, mem / 4) && 2 * b * perImage > mem / 4, $"{b} at {mem}");
        }
        Assert.Equal(1, BatchGuard.DefaultBatch(m, 1000));
        Assert.Equal(1024, BatchGuard.DefaultBatch(m, 1L << 40));
        Assert.Equal(16, BatchGuard.DefaultBatch(m, 1L << 40, cap: 16));
    }

    [Fact]
    public void AttacksGiveTheSameResultWhenTheDeviceRunsOutOfMemory()
    {
        using var be = new CpuBackend();
        using var m = ModelFile.Load(_f.ModelA, be);
        var d = DataSources.LoadSplit(SweepFixture.Data, "test").Take(12);
        var eps = new[] { 2 / 255f, 0.05f };
        var attacks = new Func<IAttack>[]
        {
            () => new Pgd { Steps = 3, Seed = 5, MaxBatch = 24 },
            () => new OnePixel { Pixels = 1, Population = 20, Iterations = 3, QueryBatch = 64, Seed = 5 },
        };
        foreach (var make in attacks)
        {
            var attack = make();
            var e = attack.NeedsEpsilon ? eps : null;
            var clean = attack.Run(m, d.X, d.Labels, AttackGoal.Untargeted, e);
            var log = new List<string>();
            AttackResult faulty;
            BatchGuard.Log = log.Add; BatchGuard.FaultAbove = 5;
            try { faulty = make().Run(m, d.X, d.Labels, AttackGoal.Untargeted, e); }
            finally { BatchGuard.Log = null; BatchGuard.FaultAbove = null; }
            Assert.NotEmpty(log);
            Assert.Contains(log, l => l.Contains(": out of memory at batch ") && l.Contains("; halving to "));
            Assert.Equal(clean.Results.Count, faulty.Results.Count);
            for (int i = 0; i < clean.Results.Count; i++)
            {
                Assert.Equal(clean.Results[i].Adversarial, faulty.Results[i].Adversarial);
                Assert.Equal(clean.Results[i].PredictedAfter, faulty.Results[i].PredictedAfter);
                Assert.Equal(clean.Results[i].Steps, faulty.Results[i].Steps);
                Assert.Equal(clean.Results[i].Queries, faulty.Results[i].Queries);
            }
            // The attack did something, so the comparison is not of two copies of the input.
            Assert.Contains(clean.Results, r => r.Adversarial.Where((v, j) => v != d.X[j]).Any());
        }
    }
}
