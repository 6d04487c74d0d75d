using Perturb.Engine;
using Perturb.Engine.Attacks;
using Perturb.Engine.Attacks.Segmentation;
using Perturb.Engine.IO;
using Perturb.Engine.Report;
using Perturb.Engine.Sweep;

namespace Perturb.Tests.Segmentation;

/// <summary>Segmentation attacks in the registry and in sweeps: a spec cell runs the attack on the masks and writes its rows.</summary>
[Collection("trained-unet")]
public class SegSweepTests : TempDirTest
{
    readonly TrainedUnet _f;
    public SegSweepTests(TrainedUnet f) { _f = f; }

    [Fact]
    public void RegistryListsTheSegmentationAttacksWithTheirSettings()
    {
        Assert.Equal(new[] { "seg-fgsm", "seg-pgd", "dag", "asma" }, AttackRegistry.Segmentation.Select(a => a.Name));
        var pgd = (SegPgd)AttackRegistry.Get("seg-pgd").CreateSegmentation(new Dictionary<string, object> { ["steps"] = 7, ["loss"] = SegPgdLoss.Ce });
        Assert.Equal(7, pgd.Steps); Assert.Equal(SegPgdLoss.Ce, pgd.Loss);
        Assert.Contains("segmentation models", Assert.Throws<PerturbException>(() => AttackRegistry.Create("dag")).Message);
        Assert.Contains(AttackRegistry.SettingsMarkdown().Split('\n'), l => l.StartsWith("| seg-pgd | `loss` |"));
    }

    [Fact]
    public void SweepCellWithASegAttackRunsAndWritesItsRows()
    {
        var model = Path.Combine(Dir, "unet.safetensors");
        ModelFile.Save(_f.Model, model);
        var spec = Path.Combine(Dir, "sweep.json");
        File.WriteAllText(spec, """
        {
          "models": ["unet.safetensors"], "data": ["histology-seg:train=240,test=24,size=16"], "data_seed": 4, "n": 4, "seed": 5,
          "device": "cpu", "batch_size": 16,
          "attacks": [
            {"name": "seg-pgd", "eps": ["2/255", "32/255"], "steps": 4, "targeted": "erase"},
            {"name": "dag", "iterations": 3, "gamma": 0.01}
          ]
        }
        """);
        var s = SweepSpec.Load(spec);
        var outPath = Path.Combine(Dir, "results.jsonl");
        var summary = SweepRunner.Run(s, new SweepOptions { OutPath = outPath });
        Assert.Equal(2, summary.Ran.Count);
        var rows = ResultRow.ReadFile(outPath);
        Assert.Equal(new[] { "seg-pgd", "seg-pgd", "dag" }, rows.Select(r => r.Attack));
        Assert.All(rows, r => { Assert.True(r.IsSegmentation); Assert.Equal(4, r.N); Assert.InRange(r.RobustAccuracy, 0, 1); });
        Assert.Equal("erase", (string)rows[0].Params!["goal"]!);
        Assert.Equal("untargeted", (string)rows[2].Params!["goal"]!);
        Assert.Equal(s.Cells[0].Id, rows[0].Cell);
        // The row is the attack's own result: the same run made directly gives the same figures.
        var direct = new SegPgd { Steps = 4, Seed = 5 }.Run(_f.Model, _f.Test.Take(4).X, _f.Test.Take(4).Masks, SegGoal.Erase, new[] { 2f / 255, 32f / 255 });
        Assert.Equal(direct.Results[1].MeanDiceTruth, rows[1].RobustAccuracy, 9);
        Assert.Equal(direct.Results[1].SuccessRate, rows[1].SuccessRate, 9);
        Assert.Equal(direct.MeanCleanDiceTruth, rows[0].CleanAccuracy, 9);
        // A rerun finds every cell done.
        Assert.Equal(2, SweepRunner.Run(s, new SweepOptions { OutPath = outPath }).Skipped);

        // A classifier attack on the segmentation model, or a bad goal, is one line naming the spec.
        File.WriteAllText(spec, """{"models": ["unet.safetensors"], "data": ["histology-seg:train=240,test=24,size=16"], "data_seed": 4, "n": 4, "device": "cpu", "attacks": [{"name": "fgsm", "eps": ["2/255"]}]}""");
        var e = Assert.Throws<PerturbException>(() => SweepRunner.Run(SweepSpec.Load(spec), new SweepOptions { OutPath = Path.Combine(Dir, "r2.jsonl") }));
        Assert.Contains("fgsm", e.Message); Assert.Contains("segments", e.Message); Assert.StartsWith(spec, e.Message);
        File.WriteAllText(spec, """{"models": ["unet.safetensors"], "data": ["histology-seg"], "attacks": [{"name": "seg-pgd", "eps": ["2/255"], "targeted": "vanish"}]}""");
        e = Assert.Throws<PerturbException>(() => SweepSpec.Load(spec));
        Assert.Contains("targeted", e.Message); Assert.Equal(2, e.ExitCode);
    }
}
