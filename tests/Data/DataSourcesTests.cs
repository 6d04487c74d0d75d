using System.Text.Json.Nodes;
using Perturb.Cli;
using Perturb.Engine;
using Perturb.Engine.Data;
using SkiaSharp;

namespace Perturb.Tests.Data;

public class DataSourcesTests : TempDirTest
{
    static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    [Fact]
    public void GeneratedSpecsAndTheirSettings()
    {
        var h = DataSources.Load("histology:train=20,test=8,size=24", 4);
        Assert.Equal("histology", h.Name);
        Assert.Equal((20, 8, 4), (h.Train.Count, h.Test.Count, h.Val!.Count));
        Assert.Equal((3, 24, 24), (h.Train.Channels, h.Train.Height, h.Train.Width));
        Assert.Equal(h.Test.X, DataSources.LoadSplit("histology:train=20,test=8,size=24", "test", 4).X);
        Assert.NotEqual(h.Test.X, DataSources.LoadSplit("histology:train=20,test=8,size=24", "test", 5).X);
        Assert.Equal(4, DataSources.Load("synthetic:train=8,test=4").Train.NumClasses);
        foreach (var bad in new[] { "histology:colour=1", "histology:size=-3", "histology:train", "synthetic:size=x" })
            Assert.Equal(2, Assert.Throws<PerturbException>(() => DataSources.Load(bad)).ExitCode);
        Assert.Equal(2, Assert.Throws<PerturbException>(() => DataSources.LoadSplit("histology", "dev")).ExitCode);
        var missing = Assert.Throws<PerturbException>(() => DataSources.Load(Path.Combine(Dir, "nope.npz")));
        Assert.Contains("nope.npz: no such data set, file or folder", missing.Message);
        Directory.CreateDirectory(Path.Combine(Dir, "empty"));
        Assert.Contains("holds no data set", Assert.Throws<PerturbException>(() => DataSources.Load(Path.Combine(Dir, "empty"))).Message);
        Assert.Contains("histology", DataSources.Help);
        Assert.Contains("SYNTHETIC", DataSources.Help);
    }

    [Fact]
    public void ImageFolderSettingsFollowTheLastColon()
    {
        var root = Path.Combine(Dir, "img:set"); // a colon inside the path itself
        foreach (var c in new[] { "x", "y" })
            for (int i = 0; i < 3; i++)
            {
                Directory.CreateDirectory(Path.Combine(root, c));
                using var bmp = new SKBitmap(10, 6);
                bmp.Erase(c == "x" ? SKColors.Orange : SKColors.Teal);
                using var fs = File.Create(Path.Combine(root, c, $"{i}.png"));
                bmp.Encode(fs, SKEncodedImageFormat.Png, 100);
            }
        var d = DataSources.Load(root);
        Assert.Equal((3, 6, 10), (d.Train.Channels, d.Train.Height, d.Train.Width));
        var s = DataSources.Load(root + ":size=8x12,channels=1,test=0.34");
        Assert.Equal((1, 8, 12), (s.Train.Channels, s.Train.Height, s.Train.Width));
        Assert.Equal(new[] { 1, 1 }, s.Test.ClassCounts());
        Assert.Equal(16, DataSources.Load(root + ":size=16").Train.Width);
        Assert.Equal(2, Assert.Throws<PerturbException>(() => DataSources.Load(root + ":size=0")).ExitCode);
        Assert.Equal(2, Assert.Throws<PerturbException>(() => DataSources.Load(root + ":channels=2")).ExitCode);
        Assert.Equal(2, Assert.Throws<PerturbException>(() => DataSources.Load(root + ":depth=3")).ExitCode);
    }

    [Fact]
    public void DataInfoPrintsAndWritesJson()
    {
        var j = Path.Combine(Dir, "info.json");
        var (code, so, err) = Run("data", "info", "histology:train=10,test=6,size=16", "--json", j);
        Assert.True(code == 0, err);
        Assert.Contains("benign 5 (50.0%), malignant 5 (50.0%)", so);
        Assert.Contains("3x16x16", so);
        var doc = JsonNode.Parse(File.ReadAllText(j))!;
        Assert.Equal(10, (int)doc["splits"]!["train"]!["count"]!);
        Assert.Equal(new[] { 3, 16, 16 }, doc["splits"]!["test"]!["shape"]!.AsArray().Select(v => (int)v!).ToArray());
        Assert.Equal("malignant", (string)doc["classes"]![1]!);

        // a multi-label npz is described (positives per label); an IDX folder with a missing split says so
        var chest = Path.Combine(Dir, "chestmnist.npz");
        Npy.WriteNpz(chest, new[] { ("train_images", NpyArray.FromBytes(new byte[2 * 9], 2, 3, 3)), ("train_labels", NpyArray.FromBytes(new byte[28].Select((_, i) => (byte)(i == 1 || i == 15 ? 1 : 0)).ToArray(), 2, 14)) });
        var (c2, o2, e2) = Run("data", "info", chest, "--json", j);
        Assert.True(c2 == 0, e2);
        Assert.Contains("positives per label", o2);
        Assert.Contains("cardiomegaly 2 (100.0%)", o2);
        Assert.Contains("missing", o2);
        Assert.True((bool)JsonNode.Parse(File.ReadAllText(j))!["multi_label"]!);
        Assert.NotNull(JsonNode.Parse(File.ReadAllText(j))!["splits"]!["test"]!["missing"]);
        var (c3, _, e3) = Run("train", "--data", chest, "--epochs", "1", "--device", "cpu", "--out", Path.Combine(Dir, "m.safetensors"));
        Assert.Equal(1, c3);
        Assert.Contains("multi-label data sets (ChestMNIST) are not supported for classification yet", e3);

        var (c4, _, e4) = Run("data", "info", Path.Combine(Dir, "absent"));
        Assert.Equal(1, c4);
        Assert.Single(e4.Trim().Split('\n'));
        Assert.Contains("absent: no such data set", e4);
    }

    [SharedDataFact]
    public void DataInfoOnRealFiles()
    {
        var (code, so, err) = Run("data", "info", SharedData.PathOf("medmnist", "pneumoniamnist.npz"));
        Assert.True(code == 0, err);
        Assert.Contains("train      4708  1x28x28    normal 1214 (25.8%), pneumonia 3494 (74.2%)", so);
        Assert.Contains("test        624", so);
        var (c2, o2, e2) = Run("data", "info", SharedData.PathOf("samples") + ":size=28,channels=3");
        Assert.True(c2 == 0, e2);
        Assert.Contains("chest_xray, cifar10, fashion_mnist, histopathology, mnist", o2);
        Assert.Contains("3x28x28", o2);
    }

    [Fact]
    public void FetchCommandUsageErrors()
    {
        var (code, _, err) = Run("data", "fetch", "imagenet", "--cache", Dir);
        Assert.Equal(2, code);
        Assert.Contains("unknown MedMNIST set 'imagenet'", err);
        Assert.Equal(2, Run("data", "fetch").Code);
    }
}
