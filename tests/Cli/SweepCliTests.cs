using Perturb.Engine.Report;
using Perturb.Tests.Sweep;

namespace Perturb.Tests.Cli;

public class SweepCliTests : TempDirTest, IClassFixture<SweepFixture>
{
    public SweepCliTests(SweepFixture f) { f.CopyModels(Dir); }

    static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    string Spec(string json = "")
    {
        var p = Path.Combine(Dir, "sweep.json");
        File.WriteAllText(p, json.Length > 0 ? json : SweepFixture.SpecJson());
        return p;
    }

    [Fact]
    public void SweepWritesJsonlNextToTheSpecAndARerunSkipsEveryCell()
    {
        var spec = Spec();
        var (code, so, err) = Run("sweep", spec);
        Assert.True(code == 0, err);
        var results = Path.Combine(Dir, "results.jsonl");
        Assert.Contains($"sweep: 6 cells run, 0 already done, 6 in the sweep -> {results}", so);
        Assert.Contains("cell 1/6 (skipped 0 done): model=a.safetensors|data=synthetic:train=48,test=16|attack=fgsm", err);
        Assert.Contains("cell 6/6 (skipped 0 done): model=b.safetensors|", err);
        Assert.Contains("  pgd eps=0.03: clean ", err);
        var rows = ResultRow.ReadFile(results);
        Assert.Equal(8, rows.Count);
        Assert.All(rows, r => Assert.Equal("cpu", r.Device));

        (code, so, err) = Run("sweep", spec, "--out", results);
        Assert.True(code == 0, err);
        Assert.Contains("sweep: 0 cells run, 6 already done", so);
        Assert.DoesNotContain("cell 1/6", err);
        Assert.Equal(SweepFixture.Comparable(rows), SweepFixture.Comparable(ResultRow.ReadFile(results)));
    }

    [Fact]
    public void ShardsThroughTheCliMergeIntoTheWholeWithCsv()
    {
        var spec = Spec();
        var whole = Path.Combine(Dir, "whole.jsonl");
        Assert.Equal(0, Run("sweep", spec, "--out", whole, "--device", "cpu").Code);
        var shards = new List<string>();
        for (int k = 1; k <= 3; k++)
        {
            var (code, so, err) = Run("sweep", spec, "--out", Path.Combine(Dir, "r.jsonl"), "--shard", $"{k}/3");
            Assert.True(code == 0, err);
            var file = Path.Combine(Dir, $"r.shard-{k}-of-3.jsonl");
            Assert.Contains($"2 cells run, 0 already done, 2 in shard {k}/3 -> {file}", so);
            Assert.Contains("cell 2/2 (skipped 0 done)", err);
            shards.Add(file);
        }
        // Merging needs the spec's cell list only, not its models (e.g. on a login node).
        File.Delete(Path.Combine(Dir, "a.safetensors"));
        var all = Path.Combine(Dir, "all.jsonl"); var csv = Path.Combine(Dir, "all.csv");
        var m = Run(new[] { "merge" }.Concat(shards).Concat(new[] { "--out", all, "--csv", csv, "--spec", spec }).ToArray());
        Assert.True(m.Code == 0, m.Err);
        Assert.Contains("merge: 8 rows of 6 cells from 3 files", m.Out);
        Assert.Equal(SweepFixture.Comparable(ResultRow.ReadFile(whole)), SweepFixture.Comparable(ResultRow.ReadFile(all)));
        var lines = File.ReadAllLines(csv);
        Assert.Equal(ResultRow.CsvHeader, lines[0]);
        Assert.Equal(9, lines.Length);
        Assert.Empty(Directory.GetFiles(Dir, ".*tmp*"));

        // Merging without shard 3 against the spec fails and names what is missing.
        var partial = Run("merge", shards[0], shards[1], "--out", Path.Combine(Dir, "p.jsonl"), "--spec", spec);
        Assert.Equal(1, partial.Code);
        Assert.Contains("2 cells of", partial.Err);
        Assert.False(File.Exists(Path.Combine(Dir, "p.jsonl")));
    }

    [Fact]
    public void BadSpecIsOneErrorLineWithExitCode2AndNoWork()
    {
        var spec = Spec(SweepFixture.SpecJson().Replace("\"rel_step_size\"", "\"rel_stepsize\""));
        var (code, so, err) = Run("sweep", spec);
        Assert.Equal(2, code);
        Assert.Equal($"error: {spec}: attacks[1] (pgd): unknown key 'rel_stepsize'", err.Trim().Split(" (known:")[0]);
        Assert.Single(err.Trim().Split('\n'));
        Assert.False(File.Exists(Path.Combine(Dir, "results.jsonl")));

        (code, _, err) = Run("sweep", Spec(), "--shard", "4/3");
        Assert.Equal(2, code);
        Assert.Contains("--shard: expected K/N", err);
        (code, _, err) = Run("sweep", Path.Combine(Dir, "nope.json"));
        Assert.Equal(2, code);
        Assert.Contains("nope.json: cannot read the sweep spec", err);
    }

    [Fact]
    public void MergeConflictNamesBothFiles()
    {
        var spec = Spec();
        var a = Path.Combine(Dir, "a.jsonl");
        Assert.Equal(0, Run("sweep", spec, "--out", a).Code);
        var b = Path.Combine(Dir, "b.jsonl");
        File.WriteAllLines(b, File.ReadAllLines(a).Select((l, i) => i == 0 ? l.Replace("\"n\":12", "\"n\":11") : l));
        var (code, _, err) = Run("merge", a, b, "--out", Path.Combine(Dir, "m.jsonl"));
        Assert.Equal(1, code);
        Assert.Contains($"differs between {a} and {b}", err);
        Assert.False(File.Exists(Path.Combine(Dir, "m.jsonl")));
    }
}
