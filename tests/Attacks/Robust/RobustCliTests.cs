using System.Text.Json.Nodes;

namespace Perturb.Tests.Attacks.Robust;

/// <summary><c>perturb attack autoattack</c> and <c>hopskipjump</c> from the CLI: stages in the JSON, the breaking stage per sample in the CSV.</summary>
public class RobustCliTests : TempDirTest
{
    static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    [Fact]
    public void AutoAttackReportsEachStage()
    {
        var model = Path.Combine(Dir, "m.safetensors");
        var (code, _, err) = Run("train", "--arch", "lenet", "--data", "synthetic:train=300,test=32", "--epochs", "2", "--lr", "0.003", "--device", "cpu", "--out", model);
        Assert.True(code == 0, err);
        var j = Path.Combine(Dir, "aa.json"); var outDir = Path.Combine(Dir, "aa");
        (code, var so, err) = Run("attack", "autoattack", "--version", "standard", "--model", model, "--data", "synthetic:train=300,test=32", "--n", "8",
            "--eps", "0.05,0.2", "--steps", "5", "--queries", "40", "--seed", "1", "--device", "cpu", "--out", outDir, "--json", j);
        Assert.True(code == 0, err);
        Assert.Contains("apgd-ce", so);
        var res = JsonNode.Parse(File.ReadAllText(j))!["results"]!.AsArray();
        Assert.Equal(2, res.Count);
        foreach (var r in res)
        {
            var stages = r!["stages"]!.AsArray();
            Assert.Equal(new[] { "apgd-ce", "apgd-t", "fab-t", "square" }, stages.Select(s => (string)s!["stage"]!));
            Assert.Equal((double)r["robust_accuracy"]!, (double)stages[^1]!["robust_accuracy"]!, 9);
        }
        var csv = File.ReadAllLines(Path.Combine(outDir, "results_eps0.2.csv"));
        Assert.EndsWith(",broken_by", csv[0]);
        Assert.Contains(csv.Skip(1), l => l.EndsWith(",apgd-ce") || l.EndsWith(",apgd-t") || l.EndsWith(",fab-t") || l.EndsWith(",square"));
        (code, _, err) = Run("attack", "autoattack", "--version", "nope", "--model", model, "--data", "synthetic:train=300,test=32", "--eps", "0.1");
        Assert.Equal(2, code);
        (code, _, err) = Run("attack", "autoattack", "--model", model, "--data", "synthetic:train=300,test=32", "--n", "4", "--eps", "0.1", "--targeted", "random", "--steps", "2");
        Assert.Equal(2, code);
        Assert.Contains("untargeted", err);

        (code, so, err) = Run("attack", "hopskipjump", "--model", model, "--data", "synthetic:train=300,test=32", "--n", "4", "--queries", "150",
            "--seed", "1", "--device", "cpu", "--json", j);
        Assert.True(code == 0, err);
        var h = JsonNode.Parse(File.ReadAllText(j))!["results"]![0]!;
        Assert.InRange((double)h["mean_queries"]!, 1, 150);
    }
}
