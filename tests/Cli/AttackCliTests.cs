using System.Text.Json.Nodes;
using Perturb.Engine.Data;

namespace Perturb.Tests.Cli;

public class AttackCliTests : TempDirTest
{
    static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    string TrainedModel()
    {
        var model = Path.Combine(Dir, "m.safetensors");
        var (code, _, err) = Run("train", "--arch", "lenet", "--data", "synthetic:train=400,test=64", "--epochs", "3", "--lr", "0.003", "--device", "cpu", "--out", model);
        Assert.True(code == 0, err);
        return model;
    }

    [Fact]
    public void PgdWithAnEpsilonListWritesJsonArraysPngsAndCsv()
    {
        var model = TrainedModel();
        var outDir = Path.Combine(Dir, "out"); var j = Path.Combine(Dir, "a.json");
        var (code, so, err) = Run("attack", "pgd", "--model", model, "--data", "synthetic:train=400,test=64", "--n", "20",
            "--eps", "2/255,0.05,0.2", "--steps", "5", "--seed", "3", "--device", "cpu", "--out", outDir, "--json", j);
        Assert.True(code == 0, err);
        var doc = JsonNode.Parse(File.ReadAllText(j))!;
        Assert.Equal("pgd", (string)doc["attack"]!);
        Assert.Equal(20, (int)doc["n"]!);
        var results = doc["results"]!.AsArray();
        Assert.Equal(3, results.Count);
        Assert.Equal(2 / 255.0, (double)results[0]!["eps"]!, 6);
        foreach (var k in new[] { "clean_accuracy", "robust_accuracy", "success_rate", "mean_l2", "median_l2", "max_linf", "mean_psnr", "images_per_second" })
            Assert.True(results[2]!.AsObject().ContainsKey(k), k);
        // Robust accuracy falls (or stays) as eps grows; max Linf stays within each budget.
        for (int i = 0; i < 3; i++) Assert.True((double)results[i]!["max_linf"]! <= (double)results[i]!["eps"]! + 1e-6);
        Assert.True((double)results[2]!["robust_accuracy"]! <= (double)results[0]!["robust_accuracy"]!);

        var orig = Npy.ReadFile(Path.Combine(outDir, "originals.npy"));
        Assert.Equal(new[] { 20, 1, 28, 28 }, orig.Shape);
        var adv = Npy.ReadFile(Path.Combine(outDir, "adversarial_eps0.2.npy"));
        Assert.Equal(new[] { 20, 1, 28, 28 }, adv.Shape);
        var o = orig.ToFloat32(); var a = adv.ToFloat32();
        Assert.All(a, v => Assert.InRange(v, 0f, 1f));
        Assert.True(o.Zip(a).Max(p => Math.Abs(p.First - p.Second)) <= 0.2f + 1e-6f);
        Assert.Equal(new[] { 20 }, Npy.ReadFile(Path.Combine(outDir, "labels.npy")).Shape);
        Assert.Equal(16, Directory.GetFiles(outDir, "original_*.png").Length);
        Assert.Equal(3 * 16, Directory.GetFiles(outDir, "adversarial_*.png").Length);
        Assert.Equal(3 * 16, Directory.GetFiles(outDir, "perturbation_*.png").Length);
        var csv = File.ReadAllLines(Path.Combine(outDir, "results_eps0.2.csv"));
        Assert.Equal(21, csv.Length);
        Assert.Contains("success", csv[0]);
        Assert.Empty(Directory.GetFiles(outDir, ".*tmp*"));
    }

    [Fact]
    public void BudgetFreeAttackHasOneEntryWithNullEps()
    {
        var model = TrainedModel();
        var j = Path.Combine(Dir, "d.json");
        var (code, _, err) = Run("attack", "deepfool", "--model", model, "--data", "synthetic:train=400,test=64", "--n", "10", "--device", "cpu", "--json", j);
        Assert.True(code == 0, err);
        var r = JsonNode.Parse(File.ReadAllText(j))!["results"]!.AsArray();
        Assert.Single(r);
        Assert.Null(r[0]!["eps"]);
    }

    [Theory]
    [InlineData("pgd")]                      // needs --eps
    [InlineData("deepfool", "--eps", "0.1")] // has no budget
    [InlineData("fgsm", "--eps", "abc")]
    [InlineData("fgsm", "--eps", "0.1", "--norm", "l3")]
    public void BadAttackUsageExitsTwo(string name, params string[] extra)
    {
        var model = Path.Combine(Dir, "none.safetensors");
        var (code, _, err) = Run(new[] { "attack", name, "--model", model, "--data", "synthetic:train=16,test=8", "--device", "cpu" }.Concat(extra).ToArray());
        Assert.Equal(2, code);
        Assert.Single(err.Trim().Split('\n'));
    }
}
