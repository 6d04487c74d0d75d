using System.Text.Json.Nodes;
using Perturb.Engine;
using Perturb.Engine.Attacks;
using Perturb.Engine.Report;
using Perturb.Engine.Sweep;

namespace Perturb.Tests.Sweep;

/// <summary>The experiments that are not attacks (patch, fooling images, poisoning) run from a sweep spec like the attacks.</summary>
public class ExperimentSweepTests : TempDirTest, IClassFixture<SweepFixture>
{
    public ExperimentSweepTests(SweepFixture f) { f.CopyModels(Dir); }

    /// <summary>A spec on the fixture's two LeNets and data set with the given attack objects.</summary>
    string Spec(string attacks, bool models = true)
    {
        var p = Path.Combine(Dir, "sweep.json");
        File.WriteAllText(p, $$"""
            {
              {{(models ? "\"models\": [\"a.safetensors\"]," : "")}}
              "data": ["{{SweepFixture.Data}}"],
              "split": "test", "n": 12, "seed": 5, "device": "cpu",
              "attacks": [{{attacks}}]
            }
            """);
        return p;
    }

    (SweepSummary Summary, List<ResultRow> Rows) Run(string specPath)
    {
        var spec = SweepSpec.Load(specPath);
        var outPath = Path.Combine(Dir, "results.jsonl");
        var s = SweepRunner.Run(spec, new SweepOptions { OutPath = outPath });
        return (s, ResultRow.ReadFile(outPath));
    }

    // One case per kind: the attack object, the attacks its rows carry, and a check of the row's figures that can fail.
    [Theory]
    [InlineData("patch", """{"name": "patch", "target": 1, "steps": 3, "batch_size": 8, "patch_size": 0.1}""")]
    [InlineData("fooling", """{"name": "fooling", "population": 8, "iterations": 2, "query_batch": 64}""")]
    [InlineData("badnets", """{"name": "badnets", "arch": "lenet", "rate": 0.25, "target": 2, "epochs": 1, "batch_size": 16}""")]
    [InlineData("label-flip", """{"name": "label-flip", "arch": "lenet", "grid": {"rate": [0, 0.5]}, "epochs": 1, "batch_size": 16}""")]
    [InlineData("generative", """{"name": "generative", "arch": "lenet", "rate": 0.25, "eps": "8/255", "rounds": 1, "generator_steps": 2, "epochs": 1, "batch_size": 16}""")]
    public void SweepRunsTheExperimentAndItsRowsLandInTheResultsFile(string kind, string attack)
    {
        var path = Spec(attack, models: kind is "patch" or "fooling");
        var spec = SweepSpec.Load(path);
        var (s, rows) = Run(path);
        var exp = ExperimentRegistry.Find(kind)!;
        Assert.Equal(spec.Cells.Count, s.Ran.Count);
        Assert.Equal(spec.Cells.Sum(c => c.ExpectedRows), rows.Count);
        Assert.All(rows, r => Assert.Contains(r.Cell, spec.Cells.Select(c => c.Id)));
        Assert.All(rows, r => Assert.Equal(5UL, r.Seed));
        // Every setting of the experiment is in the row's params, as it ran.
        foreach (var r in rows)
            foreach (var st in exp.Settings) Assert.True(r.Params!.ContainsKey(st.Name), $"{kind}: params lack {st.Name}");
        switch (kind)
        {
            case "patch":
                Assert.Equal(new[] { "patch", "patch-control" }, rows.Select(r => r.Attack));
                Assert.Equal("model=a.safetensors|data=synthetic:train=48,test=16|attack=patch", spec.Cells.Single().Id);
                Assert.All(rows, r => { Assert.Equal(12, r.N); Assert.InRange(r.SuccessRate, 0, 1); Assert.Equal(1, (int)r.Params!["target"]!); });
                Assert.Equal(rows[0].CleanAccuracy, rows[1].CleanAccuracy);
                Assert.Equal(3, (int)rows[0].Params!["steps"]!);
                break;
            case "fooling":
                var f = rows.Single();
                Assert.Equal(4, f.N); // every class of the model
                Assert.Equal(f.SuccessRate, (int)f.Params!["classes_reached"]! / 4.0);
                // One population of 8 per generation at least, over the 4 classes.
                Assert.True(f.MeanQueries * 4 >= 8 * Math.Max(1, (int)f.Params["generations"]!), $"queries per class {f.MeanQueries}");
                break;
            case "badnets":
                var b = rows.Single();
                Assert.Equal("data=synthetic:train=48,test=16|attack=badnets|arch=lenet", spec.Cells.Single().Id);
                Assert.Equal("lenet", b.Model);
                Assert.Equal(12, (int)b.Params!["poisoned_samples"]!); // 25% of 48 training images
                Assert.InRange(b.CleanAccuracy, 0, 1);
                Assert.InRange(b.SuccessRate, 0, 1);
                Assert.InRange(b.N, 1, 12);
                break;
            case "label-flip":
                Assert.Equal(new[] { 0.0, 0.5 }, rows.Select(r => (double)r.Params!["rate"]!));
                Assert.Equal(new[] { 0, 24 }, rows.Select(r => (int)r.Params!["flipped"]!));
                Assert.All(rows, r => Assert.Equal(12, r.N));
                break;
            case "generative":
                var g = rows.Single();
                Assert.Equal(12, (int)g.Params!["n_poison"]!);
                Assert.True((double)g.Params["max_linf"]! <= 8 / 255.0 + 1e-6, $"max Linf {g.Params["max_linf"]}");
                Assert.Equal(g.Param("baseline_clean_accuracy") - g.CleanAccuracy, g.Param("accuracy_drop"), 9);
                break;
        }
        // A rerun finds every cell done (the cell's row count is the experiment's) and runs nothing.
        var again = SweepRunner.Run(spec, new SweepOptions { OutPath = Path.Combine(Dir, "results.jsonl") });
        Assert.Empty(again.Ran);
        Assert.Equal(spec.Cells.Count, again.Skipped);
        Assert.Equal(exp.Rows * spec.Cells.Count, rows.Count);
    }

    [Fact]
    public void EveryExperimentSettingIsASweepKeyWithItsDefaultAndRange()
    {
        int n = 0;
        foreach (var e in ExperimentRegistry.Experiments)
        {
            var fresh = Setting.Params(e.Create(null));
            Assert.NotEmpty(e.Settings);
            foreach (var s in e.Settings)
            {
                Assert.Equal(s.ToJson(s.Default)?.ToJsonString(), fresh[s.Name]?.ToJsonString());
                var attack = new JsonObject { ["name"] = e.Name };
                if (e.Needs == ExperimentNeeds.Architecture) attack["arch"] = "lenet";
                var spec = new JsonObject { ["models"] = "m.safetensors", ["data"] = "synthetic", ["attacks"] = new JsonArray(attack) };
                var cell = SweepSpec.Parse(spec, Path.Combine(Dir, "s.json"), checkFiles: false).Cells.Single();
                Assert.Equal(fresh.ToJsonString(), Setting.Params(e.Create(cell.Settings)).ToJsonString());
                // Out of range is refused naming the key.
                if (s.Type == typeof(int) || s.Type == typeof(float) || s.Type == typeof(double))
                {
                    attack[s.Name] = "NaN";
                    var ex = Assert.Throws<PerturbException>(() => SweepSpec.Parse(spec, "s.json", checkFiles: false));
                    Assert.StartsWith($"s.json: attacks[0] ({e.Name}).{s.Name}: expected", ex.Message);
                }
                n++;
            }
        }
        Assert.True(n >= 40, $"only {n} settings");
    }

    [Theory]
    [InlineData("""{"name": "badnets", "rate": 0.1}""", "attacks[0] (badnets): missing 'arch'")]
    [InlineData("""{"name": "badnets", "arch": "lenet5"}""", "attacks[0] (badnets).arch: unknown architecture 'lenet5'")]
    [InlineData("""{"name": "patch", "eps": [0.1]}""", "attacks[0] (patch): unknown key 'eps'")]
    [InlineData("""{"name": "patch", "targeted": 1}""", "attacks[0] (patch): unknown key 'targeted'")]
    [InlineData("""{"name": "patch", "scale_min": 0.9, "scale_max": 0.5}""", "scale_min <= scale_max")]
    [InlineData("""{"name": "badnets", "arch": "lenet", "trigger": "image"}""", "trigger 'image' needs a file")]
    [InlineData("""{"name": "fgsm", "eps": [0.1]}""", "missing 'models'")]
    public void BadExperimentObjectsAreOneErrorNamingTheKey(string attack, string expected)
    {
        var e = Assert.Throws<PerturbException>(() => SweepSpec.Load(Spec(attack, models: false)));
        Assert.Equal(2, e.ExitCode);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void PoisoningCellsFollowTheCellsOnModelFilesAndGridTheArchitecture()
    {
        var spec = SweepSpec.Load(Spec("""
            {"name": "label-flip", "grid": {"arch": ["lenet", "cnn-small"], "rate": [0.1]}},
            {"name": "fgsm", "eps": [0.1]}
            """));
        Assert.Equal(new[]
        {
            "model=a.safetensors|data=synthetic:train=48,test=16|attack=fgsm",
            "data=synthetic:train=48,test=16|attack=label-flip|arch=lenet|rate=0.1",
            "data=synthetic:train=48,test=16|attack=label-flip|arch=cnn-small|rate=0.1",
        }, spec.Cells.Select(c => c.Id));
        Assert.Equal(new string?[] { null, "lenet", "cnn-small" }, spec.Cells.Select(c => c.Arch));
        Assert.Equal(0.1, spec.Cells[1].Settings["rate"]);
    }
}
