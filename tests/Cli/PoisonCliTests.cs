using System.Text.Json.Nodes;

namespace Perturb.Tests.Cli;

public class PoisonCliTests : TempDirTest
{
    [Fact]
    public void BadNetsWritesTheJsonKeys()
    {
        var j = Path.Combine(Dir, "b.json");
        var (code, o, e) = CliRunner.Run("poison", "badnets", "--data", "synthetic:train=200,test=40", "--arch", "lenet", "--rate", "0.1", "--target", "1",
            "--epochs", "1", "--device", "cpu", "--seed", "3", "--detect", "--out", Path.Combine(Dir, "ex"), "--json", j);
        Assert.True(code == 0, e);
        var r = JsonNode.Parse(File.ReadAllText(j))!;
        foreach (var k in new[] { "clean_accuracy", "attack_success_rate", "baseline_clean_accuracy", "baseline_attack_success_rate" })
            Assert.NotNull(r[k]);
        Assert.Equal(20, (int)r["n_poison"]!);
        Assert.NotNull(r["detection"]!["spectral_signatures"]!["recall"]);
        Assert.True(File.Exists(Path.Combine(Dir, "ex", "triggered_0.png")));
    }

    [Fact]
    public void LabelFlipReportsEachRateAndBadUsageExits2()
    {
        var j = Path.Combine(Dir, "f.json");
        var (code, _, e) = CliRunner.Run("poison", "label-flip", "--data", "synthetic:train=200,test=40", "--arch", "lenet", "--rate", "0,0.5",
            "--epochs", "1", "--device", "cpu", "--json", j);
        Assert.True(code == 0, e);
        var pts = JsonNode.Parse(File.ReadAllText(j))!["points"]!.AsArray();
        Assert.Equal(2, pts.Count);
        Assert.Equal(100, (int)pts[1]!["flipped"]!);
        var bad = CliRunner.Run("poison", "label-flip", "--data", "synthetic:train=20,test=8", "--rate", "2", "--device", "cpu");
        Assert.Equal(2, bad.Code);
        Assert.Single(bad.Err.Trim().Split('\n'));
        Assert.Equal(2, CliRunner.Run("poison", "badnets", "--data", "synthetic:train=20,test=8", "--trigger", "zigzag", "--device", "cpu").Code);
    }

    [Fact]
    public void GenerativeWritesTheDrop()
    {
        var j = Path.Combine(Dir, "g.json");
        var (code, _, e) = CliRunner.Run("poison", "generative", "--data", "synthetic:train=100,test=30", "--arch", "lenet", "--rate", "0.1",
            "--epochs", "1", "--rounds", "1", "--generator-steps", "2", "--device", "cpu", "--json", j);
        Assert.True(code == 0, e);
        var r = JsonNode.Parse(File.ReadAllText(j))!;
        Assert.NotNull(r["accuracy_drop"]); Assert.Equal(10, (int)r["n_poison"]!);
    }
}
