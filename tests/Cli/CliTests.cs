using System.Text.Json.Nodes;
using Perturb.Cli;

namespace Perturb.Tests.Cli;

public class CliTests : TempDirTest
{

    static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    [Fact]
    public void InfoListsDevicesAndAutoChoice()
    {
        var j = Path.Combine(Dir, "info.json");
        var (code, so, _) = Run("info", "--json", j);
        Assert.Equal(0, code);
        Assert.Contains("cpu", so);
        Assert.Contains("ilgpu-cpu", so);
        Assert.Contains("auto -> ", so);
        var doc = JsonNode.Parse(File.ReadAllText(j))!;
        Assert.Contains((string)doc["auto"]!, new[] { "cpu", "cuda" });
        Assert.True(doc["devices"]!.AsArray().Count >= 3);
    }

    [Fact]
    public void TrainThenEvalWritesModelAndJson()
    {
        var model = Path.Combine(Dir, "m.safetensors");
        var tj = Path.Combine(Dir, "train.json");
        var (code, _, err) = Run("train", "--arch", "lenet", "--data", "synthetic:train=256,test=64", "--epochs", "2", "--batch-size", "32",
            "--lr", "0.002", "--optimizer", "adam", "--seed", "3", "--device", "cpu", "--out", model, "--json", tj);
        Assert.True(code == 0, err);
        Assert.True(File.Exists(model));
        var t = JsonNode.Parse(File.ReadAllText(tj))!;
        foreach (var k in new[] { "train_loss", "accuracy", "epochs", "seconds", "device" }) Assert.NotNull(t[k]);
        Assert.Equal("cpu", (string)t["device"]!);
        Assert.Equal(2, (int)t["epochs"]!);
        Assert.Contains("epoch 2/2", err);

        var ej = Path.Combine(Dir, "eval.json");
        (code, _, err) = Run("eval", "--model", model, "--data", "synthetic:train=256,test=64", "--device", "cpu", "--json", ej);
        Assert.True(code == 0, err);
        var ev = JsonNode.Parse(File.ReadAllText(ej))!;
        Assert.Equal(64, (int)ev["n"]!);
        foreach (var k in new[] { "accuracy", "auc", "per_class_accuracy", "confusion" }) Assert.NotNull(ev[k]);
        Assert.Equal(4, ev["confusion"]!.AsArray().Count);
        Assert.Equal(64, ev["confusion"]!.AsArray().Sum(row => row!.AsArray().Sum(v => (int)v!)));
        Assert.InRange((double)ev["auc"]!, 0.0, 1.0);
        Assert.Equal((double)t["accuracy"]!, (double)ev["accuracy"]!, 6);
    }

    [Theory]
    [InlineData("train", "--epochs", "abc")]
    [InlineData("train", "--optimizer", "rmsprop")]
    [InlineData("train", "--device", "tpu")]
    [InlineData("frobnicate")]
    [InlineData("train", "--arch", "vgg99", "--data", "synthetic:train=8,test=4")]
    public void BadUsageExitsTwoWithOneLine(params string[] args)
    {
        var (code, _, err) = Run(args);
        Assert.Equal(2, code);
        Assert.Single(err.Trim().Split('\n'));
        Assert.StartsWith("error:", err);
    }

    [Fact]
    public void BadModelFileExitsOneWithOneLineNamingIt()
    {
        var bad = Path.Combine(Dir, "bad.safetensors");
        File.WriteAllText(bad, "garbage");
        var (code, _, err) = Run("eval", "--model", bad, "--device", "cpu");
        Assert.Equal(1, code);
        Assert.Single(err.Trim().Split('\n'));
        Assert.Contains(bad, err);
        Assert.DoesNotContain("   at ", err);

        (code, _, err) = Run("eval", "--model", Path.Combine(Dir, "missing.safetensors"), "--device", "cpu");
        Assert.Equal(1, code);
        Assert.Contains("no such file", err);
    }

    [Fact]
    public void EvalOnMismatchedDataNamesTheLayer()
    {
        var model = Path.Combine(Dir, "m3.safetensors");
        var (code, _, err) = Run("train", "--arch", "lenet", "--data", "synthetic:train=64,test=16", "--epochs", "1", "--device", "cpu", "--out", model);
        Assert.True(code == 0, err);
        (code, _, err) = Run("eval", "--model", model, "--data", "synthetic:train=64,test=16,channels=3", "--device", "cpu");
        Assert.Equal(1, code);
        Assert.Contains("'norm'", err);
        Assert.Contains("3x28x28", err);
    }

    [Fact]
    public void TrainExportsOnnxAndEvalReadsIt()
    {
        var onnx = Path.Combine(Dir, "m.onnx");
        var (code, _, err) = Run("train", "--arch", "cnn-small", "--data", "synthetic:train=128,test=32", "--epochs", "1", "--device", "cpu", "--out", onnx, "--json", Path.Combine(Dir, "t.json"));
        Assert.True(code == 0, err);
        var ej = Path.Combine(Dir, "e.json");
        (code, _, err) = Run("eval", "--model", onnx, "--data", "synthetic:train=128,test=32", "--device", "cpu", "--json", ej);
        Assert.True(code == 0, err);
        var t = JsonNode.Parse(File.ReadAllText(Path.Combine(Dir, "t.json")))!;
        var e = JsonNode.Parse(File.ReadAllText(ej))!;
        Assert.Equal((double)t["accuracy"]!, (double)e["accuracy"]!, 6);
    }

    [Perturb.Tests.Data.SharedDataFact]
    public void PredictClassifiesImageFilesAndFolders()
    {
        var model = Path.Combine(Dir, "p.safetensors");
        var (code, _, err) = Run("train", "--arch", "lenet", "--data", "synthetic:train=128,test=32", "--epochs", "1", "--device", "cpu", "--out", model);
        Assert.True(code == 0, err);
        var folder = Path.Combine(Perturb.Tests.Data.SharedData.Root!, "samples", "mnist");
        var j = Path.Combine(Dir, "pred.json");
        (code, var so, err) = Run("predict", "--model", model, "--input", folder, "--device", "cpu", "--json", j);
        Assert.True(code == 0, err);
        var doc = JsonNode.Parse(File.ReadAllText(j))!;
        var preds = doc["predictions"]!.AsArray();
        Assert.Equal(20, preds.Count);
        Assert.Equal(20, (int)doc["n"]!);
        foreach (var p in preds)
        {
            var probs = p!["probabilities"]!.AsArray().Select(v => (double)v!).ToArray();
            Assert.Equal(4, probs.Length);
            Assert.Equal(1.0, probs.Sum(), 4);
            Assert.Equal(Array.IndexOf(probs, probs.Max()), (int)p["class"]!);
        }
        // One file gives the same answer as in the folder run.
        var one = (string)preds[3]!["file"]!;
        var j1 = Path.Combine(Dir, "pred1.json");
        (code, _, err) = Run("predict", "--model", model, "--input", one, "--device", "cpu", "--json", j1);
        Assert.True(code == 0, err);
        Assert.Equal((int)preds[3]!["class"]!, (int)JsonNode.Parse(File.ReadAllText(j1))!["predictions"]![0]!["class"]!);
    }

    [Fact]
    public void PredictOnABrokenImageIsOneClearLine()
    {
        var model = Path.Combine(Dir, "q.safetensors");
        var (code, _, err) = Run("train", "--arch", "lenet", "--data", "synthetic:train=64,test=16", "--epochs", "1", "--device", "cpu", "--out", model);
        Assert.True(code == 0, err);
        var bad = Path.Combine(Dir, "broken.png");
        File.WriteAllText(bad, "not a png");
        (code, _, err) = Run("predict", "--model", model, "--input", bad, "--device", "cpu");
        Assert.Equal(1, code);
        Assert.Single(err.Trim().Split('\n'));
        Assert.Contains(bad, err);
        (code, _, err) = Run("predict", "--model", model, "--input", Path.Combine(Dir, "nothing-here"), "--device", "cpu");
        Assert.Equal(1, code);
        Assert.Contains("no such file", err);
    }
}
