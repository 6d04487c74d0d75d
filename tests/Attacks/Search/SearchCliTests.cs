using System.Text.Json.Nodes;

namespace Perturb.Tests.Attacks.Search;

public class SearchCliTests : TempDirTest
{
    static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    [Fact]
    public void OnePixelFromTheCliReportsQueries()
    {
        var model = Path.Combine(Dir, "m.safetensors");
        var (code, _, err) = Run("train", "--arch", "lenet", "--data", "synthetic:train=300,test=32", "--epochs", "2", "--lr", "0.003", "--device", "cpu", "--out", model);
        Assert.True(code == 0, err);
        var j = Path.Combine(Dir, "a.json"); var outDir = Path.Combine(Dir, "out");
        (code, var so, err) = Run("attack", "one-pixel", "--model", model, "--data", "synthetic:train=300,test=32", "--n", "8",
            "--pixels", "1", "--population", "50", "--iterations", "5", "--seed", "1", "--device", "cpu", "--out", outDir, "--json", j);
        Assert.True(code == 0, err);
        Assert.Contains("mean queries", so);
        var doc = JsonNode.Parse(File.ReadAllText(j))!;
        Assert.Equal("one-pixel", (string)doc["attack"]!);
        var res = doc["results"]!.AsArray();
        Assert.Single(res);
        Assert.Null(res[0]!["eps"]);
        double mq = (double)res[0]!["mean_queries"]!;
        Assert.InRange(mq, 50, 50 * 6);
        Assert.True(res[0]!.AsObject().ContainsKey("median_queries"));
        var csv = File.ReadAllLines(Path.Combine(outDir, "results_noeps.csv"));
        Assert.EndsWith(",queries", csv[0]);

        (code, _, err) = Run("attack", "one-pixel", "--model", model, "--data", "synthetic:train=300,test=32", "--n", "2", "--population", "2", "--device", "cpu");
        Assert.Equal(2, code);
        Assert.Contains("population", err);
    }
}
