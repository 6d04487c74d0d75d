using System.Text.Json.Nodes;
using Perturb.Engine;

namespace Perturb.Tests.Cli;

/// <summary>Every numeric option goes through the one value parser and is checked before any work: exit 2, one line naming it.</summary>
public class OptionValidationTests : TempDirTest
{
    static void Usage(string option, params string[] args)
    {
        var (code, o, err) = CliRunner.Run(args);
        Assert.True(code == 2, $"{string.Join(" ", args)}: exit {code}, {err}");
        var lines = err.Trim().Split('\n');
        Assert.Single(lines);
        Assert.StartsWith($"error: {option}: expected", lines[0]);
        Assert.DoesNotContain("System.", err);
        Assert.DoesNotContain("Exception", err);
        Assert.Equal("", o);
    }

    [Theory]
    [InlineData("eval", "--batch-size", "0")]
    [InlineData("eval", "--batch-size", "-1")]
    [InlineData("eval", "--batch-size", "1e9")]
    [InlineData("train", "--momentum", "NaN")]
    [InlineData("train", "--momentum", "1")]
    [InlineData("train", "--weight-decay", "-1")]
    [InlineData("train", "--lr", "inf")]
    [InlineData("train", "--lr", "0")]
    [InlineData("train", "--epochs", "0")]
    [InlineData("train", "--eps", "4/0")]
    [InlineData("train", "--milestones", "2,-1")]
    [InlineData("train", "--seed", "-1")]
    [InlineData("train", "--data-seed", "x")]
    [InlineData("attack pgd", "--n", "-5")]
    [InlineData("attack pgd", "--eps", "1/255,NaN")]
    [InlineData("attack pgd", "--eps", "1/255,1/255")]
    [InlineData("attack pgd", "--steps", "0")]
    [InlineData("attack pgd", "--kappa", "-0.5")]
    [InlineData("attack one-pixel", "--population", "3")]
    [InlineData("attack fooling", "--classes", "0,-2")]
    [InlineData("attack patch", "--patch-size", "1.5")]
    [InlineData("attack patch", "--print-max", "2")]
    [InlineData("poison badnets", "--rate", "0")]
    [InlineData("poison badnets", "--alpha", "NaN")]
    [InlineData("poison label-flip", "--rate", "0,1.5")]
    [InlineData("poison generative", "--eps", "-1/255")]
    [InlineData("wsi", "--background", "0")]
    [InlineData("wsi", "--tile", "0")]
    public void BadNumberIsAUsageErrorNamingTheOption(string command, string option, string value)
    {
        var args = command.Split(' ').Concat(new[] { option, value }).ToList();
        // The required options, so that only the bad value is wrong.
        if (command.StartsWith("attack") || command is "eval" or "wsi") args.AddRange(new[] { "--model", Path.Combine(Dir, "none.safetensors") });
        if (command == "attack patch") args.AddRange(new[] { "--target", "0" });
        if (command == "wsi") args.AddRange(new[] { "--slide", "s.svs", "--out", Dir });
        Usage(option, args.ToArray());
    }

    [Fact]
    public void ASettingTheAttackLacksIsAUsageErrorListingItsSettings()
    {
        var (code, _, err) = CliRunner.Run("attack", "fgsm", "--model", "m.safetensors", "--eps", "1/255", "--steps", "3");
        Assert.Equal(2, code);
        Assert.Single(err.Trim().Split('\n'));
        Assert.Contains("'--steps'", err);
        Assert.Contains("fgsm's settings: --seed, --norm", err);
    }

    [Fact]
    public void EvalBatchSizeZeroStopsAtOnceInsteadOfLooping()
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        Usage("--batch-size", "eval", "--model", "m.safetensors", "--data", "synthetic:train=8,test=8", "--batch-size", "0");
        Assert.True(sw.Elapsed.TotalSeconds < 30);
    }

    [Fact]
    public void AdversarialTrainingTakesAFractionBudget()
    {
        var j = Path.Combine(Dir, "t.json");
        var (code, _, err) = CliRunner.Run("train", "--arch", "lenet", "--data", "synthetic:train=64,test=16", "--epochs", "1",
            "--adversarial", "pgd", "--eps", "4/255", "--steps", "1", "--device", "cpu", "--json", j);
        Assert.True(code == 0, err);
        var adv = JsonNode.Parse(File.ReadAllText(j))!["adversarial"]!;
        Assert.Equal(4 / 255f, (float)adv["eps"]!, 6);
    }

    [Theory]
    [InlineData("4/255", 4 / 255.0)]
    [InlineData(" 0.25 ", 0.25)]
    [InlineData("1e-3", 1e-3)]
    [InlineData("8 / 255", 8 / 255.0)]
    public void NumbersAndFractionsParse(string text, double want) =>
        Assert.Equal(want, Values.Number(text, "--x", ValueRange.NonNegative), 12);

    [Theory]
    [InlineData("1/0")]
    [InlineData("1/2/3")]
    [InlineData("NaN")]
    [InlineData("-inf")]
    [InlineData("1e400")]
    [InlineData("")]
    [InlineData("0x10")]
    public void NonNumbersAndNonFiniteAreRefused(string text)
    {
        var e = Assert.Throws<PerturbException>(() => Values.Number(text, "--x", ValueRange.Any));
        Assert.Equal(2, e.ExitCode);
        Assert.StartsWith("--x: expected", e.Message);
    }

    [Fact]
    public void ListsRangesAndJsonFormsAgree()
    {
        Assert.Equal(new[] { 1 / 255.0, 2 / 255.0, 0.03 }, Values.NumberList("1/255, 2/255,0.03", "--eps", ValueRange.NonNegative));
        Assert.Throws<PerturbException>(() => Values.NumberList("1/255,,2/255", "--eps", ValueRange.NonNegative));
        Assert.Throws<PerturbException>(() => Values.NumberList("0.5,0.5", "--eps", ValueRange.NonNegative, distinct: true));
        Assert.Equal(new[] { 0, 2 }, Values.IntList("0,2", "--c", ValueRange.NonNegative));
        Assert.Throws<PerturbException>(() => Values.Int("2.5", "--n", ValueRange.Any));
        Assert.Throws<PerturbException>(() => Values.Int("3000000000", "--n", ValueRange.Any));
        Assert.Equal(4 / 255.0, Values.Number(JsonNode.Parse("\"4/255\""), "k", ValueRange.NonNegative), 12);
        Assert.Equal(0.5, Values.Number(JsonNode.Parse("0.5"), "k", ValueRange.Fraction));
        Assert.Throws<PerturbException>(() => Values.Number(JsonNode.Parse("1.5"), "k", ValueRange.Fraction));
        Assert.Throws<PerturbException>(() => Values.Int(JsonNode.Parse("-5"), "n", ValueRange.NonNegative));
        Assert.Equal(7, Values.Int(JsonValue.Create(7), "n", ValueRange.NonNegative));
        Assert.Equal("in (0, 1]", new ValueRange(0, 1, MinOpen: true).Describe());
        Assert.False(new ValueRange(0, 1, MinOpen: true).Contains(0));
        Assert.False(ValueRange.Any.Contains(double.NaN));
    }
}
