using System.Text.Json.Nodes;
using Perturb.Cli;

namespace Perturb.Tests.Segmentation;

public class SegCliTests : TempDirTest
{
    [Fact]
    public void TrainEvalAndAttackASegmentationModel()
    {
        var model = Path.Combine(Dir, "unet.safetensors");
        var tj = Path.Combine(Dir, "train.json");
        const string data = "histology-seg:train=64,test=8,size=16";
        // The task is inferred from the masks; the default architecture for segmentation is unet (here unet-small).
        var (code, so, err) = CliRunner.Run("train", "--arch", "unet-small", "--data", data, "--epochs", "1", "--batch-size", "16",
            "--loss", "ce+dice", "--seed", "1", "--device", "cpu", "--out", model, "--json", tj);
        Assert.True(code == 0, err);
        Assert.Contains("nucleus Dice", so);
        var t = JsonNode.Parse(File.ReadAllText(tj))!;
        Assert.Equal("segmentation", (string)t["task"]!);
        Assert.Equal("ce+dice", (string)t["loss"]!);
        Assert.Equal(2, t["dice"]!.AsArray().Count);

        var ej = Path.Combine(Dir, "eval.json");
        (code, so, err) = CliRunner.Run("eval", "--model", model, "--data", data, "--device", "cpu", "--json", ej);
        Assert.True(code == 0, err);
        var e = JsonNode.Parse(File.ReadAllText(ej))!;
        Assert.Equal(8, (int)e["n"]!);
        Assert.InRange((double)e["pixel_accuracy"]!, 0, 1);
        Assert.NotNull(e["mean_true_count"]);

        var aj = Path.Combine(Dir, "attack.json");
        var outDir = Path.Combine(Dir, "atk");
        (code, so, err) = CliRunner.Run("attack", "seg-pgd", "--model", model, "--data", data, "--n", "4", "--eps", "2/255,8/255",
            "--steps", "3", "--target", "erase", "--device", "cpu", "--out", outDir, "--json", aj);
        Assert.True(code == 0, err);
        var a = JsonNode.Parse(File.ReadAllText(aj))!;
        Assert.Equal("erase", (string)a["goal"]!);
        Assert.Equal(2, a["results"]!.AsArray().Count);
        Assert.Equal(3, (int)a["params"]!["steps"]!);
        Assert.True(File.Exists(Path.Combine(outDir, "overlays_eps0.0314.png")));

        // Usage errors: one line, exit 2.
        (code, _, err) = CliRunner.Run("attack", "seg-pgd", "--model", model, "--data", data, "--target", "forge:5,5,1,1", "--eps", "0.1", "--device", "cpu");
        Assert.Equal(2, code);
        Assert.Contains("Y1 > Y0", err);
        (code, _, err) = CliRunner.Run("train", "--data", data, "--loss", "hinge", "--epochs", "1", "--device", "cpu");
        Assert.Equal(2, code);
        Assert.Contains("--loss", err);
    }
}
