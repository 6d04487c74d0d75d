using System.Text;
using Perturb.Engine;
using Perturb.Engine.Report;
using Perturb.Engine.Sweep;

namespace Perturb.Tests.Sweep;

public class SweepTests : TempDirTest, IClassFixture<SweepFixture>
{
    readonly SweepFixture _f;
    public SweepTests(SweepFixture f) { _f = f; f.CopyModels(Dir); }

    string WriteSpec(string json, string name = "sweep.json")
    {
        var p = Path.Combine(Dir, name);
        File.WriteAllText(p, json);
        return p;
    }

    SweepSummary Run(SweepSpec spec, string outPath, SweepShard? shard = null, Action<SweepCell>? after = null, CancellationToken ct = default, List<string>? log = null) =>
        SweepRunner.Run(spec, new SweepOptions { OutPath = outPath, Shard = shard ?? SweepShard.Whole, AfterCell = after, Cancel = ct, Log = log == null ? null : log.Add });

    static readonly string[] Ids =
    {
        "model=a.safetensors|data=synthetic:train=48,test=16|attack=fgsm",
        "model=a.safetensors|data=synthetic:train=48,test=16|attack=pgd|norm=linf|steps=2",
        "model=a.safetensors|data=synthetic:train=48,test=16|attack=pgd|norm=linf|steps=3",
        "model=b.safetensors|data=synthetic:train=48,test=16|attack=fgsm",
        "model=b.safetensors|data=synthetic:train=48,test=16|attack=pgd|norm=linf|steps=2",
        "model=b.safetensors|data=synthetic:train=48,test=16|attack=pgd|norm=linf|steps=3",
    };

    /// <summary>The uninterrupted whole run, done once per test that needs it.</summary>
    (SweepSpec Spec, List<ResultRow> Rows) Whole()
    {
        var spec = SweepSpec.Load(WriteSpec(SweepFixture.SpecJson()));
        var path = Path.Combine(Dir, "whole.jsonl");
        var s = Run(spec, path);
        Assert.Equal(6, s.Ran.Count);
        return (spec, ResultRow.ReadFile(path));
    }

    [Fact]
    public void SpecGivesDeterministicReadableCellsInOrder()
    {
        var spec = SweepSpec.Load(WriteSpec(SweepFixture.SpecJson()));
        Assert.Equal(Ids, spec.Cells.Select(c => c.Id));
        Assert.Equal(Enumerable.Range(0, 6), spec.Cells.Select(c => c.Index));
        var pgd = spec.Cells[2];
        Assert.Equal(3, pgd.Settings["steps"]);
        Assert.Equal(Perturb.Engine.Attacks.Norm.Linf, pgd.Settings["norm"]);
        Assert.Equal(0.3f, pgd.Settings["rel_step_size"]);
        Assert.Equal(7UL, pgd.Seed);
        Assert.Equal(64, pgd.MaxBatch);
        Assert.Equal("{\"norm\":\"linf\",\"steps\":3}", pgd.Params.ToJsonString());
        Assert.Equal(new[] { 1 / 255f, 8 / 255f }, spec.Cells[0].Eps);
        Assert.Equal(Path.Combine(Dir, "b.safetensors"), spec.Cells[3].ModelPath);
        // A second load gives the same cells.
        Assert.Equal(Ids, SweepSpec.Load(Path.Combine(Dir, "sweep.json")).Cells.Select(c => c.Id));
    }

    [Fact]
    public void StoppedSweepResumesToTheUninterruptedResultWithoutRerunningCells()
    {
        var (spec, whole) = Whole();
        Assert.Equal(2 * 2 + 4 * 1, whole.Count); // fgsm: 2 rows per cell (2 cells), pgd: 1 row per cell (4 cells)
        Assert.All(whole, r => Assert.Equal(12, r.N));
        Assert.Equal("linf", whole[2].Norm);

        var path = Path.Combine(Dir, "stopped.jsonl");
        using var cts = new CancellationTokenSource();
        int done = 0;
        var first = Run(spec, path, after: _ => { if (++done == 2) cts.Cancel(); }, ct: cts.Token);
        Assert.True(first.Cancelled);
        Assert.Equal(Ids[..2], first.Ran);
        Assert.Equal(3, ResultRow.ReadFile(path).Count);

        var log = new List<string>();
        var second = Run(spec, path, log: log);
        Assert.False(second.Cancelled);
        Assert.Equal(Ids[2..], second.Ran);
        Assert.Equal(2, second.Skipped);
        Assert.Contains(log, l => l.StartsWith("cell 3/6 (skipped 2 done): " + Ids[2]));
        Assert.Equal(SweepFixture.Comparable(whole), SweepFixture.Comparable(ResultRow.ReadFile(path)));

        var third = Run(spec, path);
        Assert.Empty(third.Ran);
        Assert.Equal(6, third.Skipped);
    }

    [Fact]
    public void TornFinalLineAndUnfinishedCellAreCutOffAndRerun()
    {
        var (spec, whole) = Whole();
        var bytes = File.ReadAllBytes(Path.Combine(Dir, "whole.jsonl"));
        var lineEnds = Enumerable.Range(0, bytes.Length).Where(i => bytes[i] == '\n').ToArray();
        // Rows: fgsm(a) 2, pgd2(a) 1, pgd3(a) 1, fgsm(b) 2, ... Keep the first 4 rows (3 cells) and half of the 5th.
        var torn = Path.Combine(Dir, "torn.jsonl");
        File.WriteAllBytes(torn, bytes[..(lineEnds[3] + 1 + 40)]);
        var log = new List<string>();
        var s = Run(spec, torn, log: log);
        Assert.Equal(Ids[3..], s.Ran);
        Assert.Contains(log, l => l.Contains("cut 40 bytes"));
        Assert.Equal(SweepFixture.Comparable(whole), SweepFixture.Comparable(ResultRow.ReadFile(torn)));
        Assert.EndsWith("\n", File.ReadAllText(torn));

        // A whole line of a two-row cell, and the cell's second line missing: the lone row is cut, the cell reruns.
        var half = Path.Combine(Dir, "half.jsonl");
        File.WriteAllBytes(half, bytes[..(lineEnds[4] + 1)]);
        var s2 = Run(spec, half);
        Assert.Equal(Ids[3..], s2.Ran);
        Assert.Equal(SweepFixture.Comparable(whole), SweepFixture.Comparable(ResultRow.ReadFile(half)));
    }

    [Fact]
    public void ThreeShardsMergedEqualTheWholeSweep()
    {
        var (spec, whole) = Whole();
        var files = new List<string>();
        var owned = new List<string>();
        for (int k = 1; k <= 3; k++)
        {
            var sh = new SweepShard(k, 3);
            var p = sh.FileName(Path.Combine(Dir, "results.jsonl"));
            Assert.EndsWith($"results.shard-{k}-of-3.jsonl", p);
            var s = Run(spec, p, sh);
            Assert.Equal(2, s.Cells);
            Assert.Equal(new[] { Ids[k - 1], Ids[k + 2] }, s.Ran);
            owned.AddRange(s.Ran);
            files.Add(p);
        }
        Assert.Equal(Ids.OrderBy(x => x), owned.OrderBy(x => x));

        var bySpec = SweepMerge.Merge(files, spec);
        Assert.Empty(bySpec.MissingCells);
        Assert.Equal(SweepFixture.Comparable(whole), SweepFixture.Comparable(bySpec.Rows));
        // Without the spec: the same rows, cells sorted by id; a file given twice adds nothing.
        var byId = SweepMerge.Merge(files.Append(files[0]).ToList());
        Assert.Equal(2, byId.DuplicateCells);
        var expect = whole.GroupBy(r => r.Cell).OrderBy(g => g.Key, StringComparer.Ordinal).SelectMany(g => g);
        Assert.Equal(SweepFixture.Comparable(expect), SweepFixture.Comparable(byId.Rows));
        // A missing shard is reported against the spec.
        Assert.Equal(new[] { Ids[2], Ids[5] }, SweepMerge.Merge(files.Take(2).ToList(), spec).MissingCells);
    }

    [Fact]
    public void MergeKeepsIdenticalDuplicatesOnceAndRejectsConflicts()
    {
        var (_, whole) = Whole();
        var a = Path.Combine(Dir, "x.jsonl"); var b = Path.Combine(Dir, "y.jsonl");
        SweepMerge.WriteJsonl(a, whole.Take(3));
        // Same cells, different timing: still the same result.
        SweepMerge.WriteJsonl(b, whole.Take(3).Select(r => r with { Seconds = r.Seconds + 5, ImagesPerSecond = 1 }));
        var m = SweepMerge.Merge(new[] { a, b });
        Assert.Equal(3, m.Rows.Count);
        Assert.Equal(2, m.DuplicateCells);
        // A different robust accuracy for the same cell is a conflict naming both files.
        SweepMerge.WriteJsonl(b, whole.Take(3).Select((r, i) => i == 2 ? r with { RobustAccuracy = r.RobustAccuracy + 0.25 } : r));
        var e = Assert.Throws<PerturbException>(() => SweepMerge.Merge(new[] { a, b }));
        Assert.Contains(a, e.Message); Assert.Contains(b, e.Message); Assert.Contains(Ids[1], e.Message);
    }

    [Theory]
    [InlineData("\"bogus\": 1,", "unknown key 'bogus'")]
    [InlineData("", "attacks[2] (pgd): unknown key 'stepz'", "{\"name\": \"pgd\", \"eps\": [0.1], \"stepz\": 3}")]
    [InlineData("", "attacks[2].name: unknown attack 'pgdd'", "{\"name\": \"pgdd\", \"eps\": [0.1]}")]
    [InlineData("", "attacks[2] (pgd).grid: unknown key 'stepz'", "{\"name\": \"pgd\", \"eps\": [0.1], \"grid\": {\"stepz\": [1]}}")]
    [InlineData("", "attacks[2] (pgd).eps[0]: expected a number or a fraction", "{\"name\": \"pgd\", \"eps\": [\"x/255\"]}")]
    [InlineData("", "attacks[2] (pgd).eps[0]: expected a number 0 or more", "{\"name\": \"pgd\", \"eps\": [-0.1]}")]
    [InlineData("", "attacks[2] (pgd).kappa: expected a number or a fraction like 4/255 (0 or more), got 'NaN'", "{\"name\": \"pgd\", \"eps\": [0.1], \"kappa\": \"NaN\"}")]
    [InlineData("", "attacks[2] (moea): moea: population must be even", "{\"name\": \"moea\", \"eps\": [0.1], \"population\": 5}")]
    [InlineData("", "attacks[2] (fgsm): unknown key 'steps' (known: name, eps, grid, label, seed, norm, targeted)", "{\"name\": \"fgsm\", \"eps\": [0.1], \"steps\": 3}")]
    [InlineData("", "attacks[2] (pgd): attack pgd needs 'eps'", "{\"name\": \"pgd\"}")]
    [InlineData("", "attacks[2] (deepfool): attack deepfool has no budget", "{\"name\": \"deepfool\", \"eps\": [0.1]}")]
    [InlineData("", "attacks[2] (cw): unknown key 'norm'", "{\"name\": \"cw\", \"norm\": \"linf\"}")]
    [InlineData("", "attacks[2] (pgd).grid.norm[0]: expected linf or l2, got 'l3'", "{\"name\": \"pgd\", \"eps\": [0.1], \"grid\": {\"norm\": [\"l3\"]}}")]
    [InlineData("", "gives the cell 'model=a.safetensors|data=synthetic:train=48,test=16|attack=fgsm' a second time", "{\"name\": \"fgsm\", \"eps\": [0.1]}")]
    public void BadSpecGivesOneErrorNamingTheFileAndKey(string extraTop, string expected, string? extraAttack = null)
    {
        var json = SweepFixture.SpecJson(extraTop);
        if (extraAttack != null) json = json.Replace("\"norm\": [\"linf\"]}}", "\"norm\": [\"linf\"]}},\n    " + extraAttack);
        var path = WriteSpec(json);
        var e = Assert.Throws<PerturbException>(() => SweepSpec.Load(path));
        Assert.Equal(2, e.ExitCode);
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Theory]
    [InlineData("\"split\": \"test\"", "\"split\": \"dev\"", "'split' must be train, val or test")]
    [InlineData("\"split\": \"test\"", "\"split\": \"test\", \"split\": \"val\"", "split")]
    [InlineData("\"n\": 12", "\"n\": 1.5", "n: expected a whole number 0 or more, got 1.5")]
    [InlineData("\"n\": 12", "\"n\": -5", "n: expected a whole number 0 or more, got -5")]
    [InlineData("{\"name\": \"pgd\"", "{\"name\": \"pgd\", \"steps\": -1", "attacks[1] (pgd).steps: expected a whole number at least 1, got -1")]
    [InlineData("\"models\": [\"a.safetensors\", \"b.safetensors\"]", "\"models\": [\"a.safetensors\", \"a.safetensors\"]", "'models' lists 'a.safetensors' twice")]
    public void BadTopLevelValuesAreNamed(string find, string replace, string expected)
    {
        var json = SweepFixture.SpecJson();
        Assert.Contains(find, json);
        var path = WriteSpec(json.Replace(find, replace));
        var e = Assert.Throws<PerturbException>(() => SweepSpec.Load(path));
        Assert.Equal(2, e.ExitCode);
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void MissingModelOrDataIsAnErrorBeforeAnyWork()
    {
        var p = WriteSpec(SweepFixture.SpecJson().Replace("b.safetensors", "missing.safetensors"));
        var e = Assert.Throws<PerturbException>(() => SweepSpec.Load(p));
        Assert.Contains("models: 'missing.safetensors': no such model file", e.Message);
        p = WriteSpec(SweepFixture.SpecJson().Replace(SweepFixture.Data, "nothere.npz"));
        e = Assert.Throws<PerturbException>(() => SweepSpec.Load(p));
        Assert.Contains("data: 'nothere.npz': no such data set", e.Message);
        // A model that does not fit the data: found when loading, before the first cell.
        p = WriteSpec(SweepFixture.SpecJson().Replace(SweepFixture.Data, "histology:train=8,test=8"));
        var spec = SweepSpec.Load(p);
        var outPath = Path.Combine(Dir, "r.jsonl");
        e = Assert.Throws<PerturbException>(() => Run(spec, outPath));
        Assert.Contains("takes 1x28x28 images but data", e.Message);
        Assert.False(File.Exists(outPath));
    }

    [Fact]
    public void AutoBatchSizeGivesTheSameRows()
    {
        var (_, whole) = Whole();
        var spec = SweepSpec.Load(WriteSpec(SweepFixture.SpecJson().Replace("\"batch_size\": 64,", ""), "auto.json"));
        Assert.Null(spec.BatchSize);
        var log = new List<string>();
        var path = Path.Combine(Dir, "auto.jsonl");
        Run(spec, path, log: log);
        Assert.Contains(log, l => l.StartsWith("batch size for a.safetensors: ") && l.Contains("(auto, from "));
        Assert.Equal(SweepFixture.Comparable(whole), SweepFixture.Comparable(ResultRow.ReadFile(path)));
    }

    [Fact]
    public void ResultsOfAChangedSpecAreRefused()
    {
        var (spec, _) = Whole();
        var changed = SweepSpec.Load(WriteSpec(SweepFixture.SpecJson().Replace("[\"1/255\", \"8/255\"]", "[\"1/255\", \"4/255\"]"), "changed.json"));
        var e = Assert.Throws<PerturbException>(() => Run(changed, Path.Combine(Dir, "whole.jsonl")));
        Assert.Contains("the spec changed", e.Message);
        Assert.Contains("whole.jsonl:1", e.Message);
    }

    [Fact]
    public void ShardsParseFromTextSlurmAndKubernetes()
    {
        Assert.Equal(new SweepShard(2, 4), SweepShard.Parse("2/4"));
        foreach (var bad in new[] { "0/4", "5/4", "2", "a/b", "2/0" })
            Assert.Equal(2, Assert.Throws<PerturbException>(() => SweepShard.Parse(bad)).ExitCode);
        Dictionary<string, string> env = new() { ["SLURM_ARRAY_TASK_ID"] = "3", ["SLURM_ARRAY_TASK_COUNT"] = "4", ["SLURM_ARRAY_TASK_MIN"] = "0" };
        Assert.Equal(new SweepShard(4, 4), SweepShard.Parse("auto", k => env.GetValueOrDefault(k)));
        env = new() { ["SLURM_ARRAY_TASK_ID"] = "1", ["SLURM_ARRAY_TASK_COUNT"] = "4", ["SLURM_ARRAY_TASK_MIN"] = "1" };
        Assert.Equal(new SweepShard(1, 4), SweepShard.Parse("auto", k => env.GetValueOrDefault(k)));
        env = new() { ["JOB_COMPLETION_INDEX"] = "0", [SweepShard.CountVariable] = "3" };
        Assert.Equal(new SweepShard(1, 3), SweepShard.Parse("auto", k => env.GetValueOrDefault(k)));
        env = new() { ["JOB_COMPLETION_INDEX"] = "0" };
        Assert.Contains(SweepShard.CountVariable, Assert.Throws<PerturbException>(() => SweepShard.Parse("auto", k => env.GetValueOrDefault(k))).Message);
        Assert.Throws<PerturbException>(() => SweepShard.Parse("auto", _ => null));
        Assert.Equal("r.jsonl", SweepShard.Whole.FileName("r.jsonl"));
        Assert.Equal(Path.Combine("o", "r.shard-2-of-4.jsonl"), new SweepShard(2, 4).FileName(Path.Combine("o", "r.jsonl")));
    }
}
