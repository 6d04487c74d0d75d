using System.Globalization;
using System.Text.Json.Nodes;
using Perturb.Engine.Data;
using Perturb.Engine.IO;
using Perturb.Engine.Nn;
using Perturb.Engine.Training;

namespace Perturb.Tests.Wsi;

/// <summary><c>perturb wsi --task segmentation</c>: nucleus density heat maps of the fixture slide before and after an erase attack.</summary>
[Collection("wsi")]
public sealed class WsiSegmentationTests : TempDirTest
{
    readonly WsiFixture _f;
    public WsiSegmentationTests(WsiFixture f) { _f = f; }

    [WsiFact]
    public void NucleusDensityHeatMapsBeforeAndAfterErase()
    {
        // A unet-small on 16x16 histology-seg tiles: the slide's 64-pixel cells (32-pixel tiles at 2x) resize to 16x16.
        var unet = Path.Combine(Dir, "unet.safetensors");
        using (var m = Presets.Create("unet-small", _f.Be, 3, 16, 16, 2, 2))
        {
            SegTrainer.Fit(m, SyntheticHistology.CreateSegmentation(4, trainCount: 240, testCount: 8, size: 16).Train, null,
                new TrainOptions { Epochs = 4, BatchSize = 16, LearningRate = 5e-3f, Seed = 2 });
            ModelFile.Save(m, unet);
        }
        var od = Path.Combine(Dir, "seg");
        var (code, stdout, err) = CliRunner.Run("wsi", "--slide", _f.Tif, "--model", unet, "--tile", "64", "--task", "segmentation", "--target", "erase",
            "--eps", "128/255", "--steps", "40", "--device", "cpu", "--seed", "3", "--batch-size", "64", "--out", od);
        Assert.True(code == 0, err);
        Assert.Contains("predicted nuclei per tile before", stdout);
        foreach (var f in new[] { "heatmap_before.png", "heatmap_after.png", "heatmap_before.npy", "heatmap_after.npy", "tiles.csv", "wsi.json", "index.html" })
            Assert.True(File.Exists(Path.Combine(od, f)), f);

        var csv = File.ReadAllLines(Path.Combine(od, "tiles.csv"));
        var head = csv[0].Split(',');
        int Col(string n) => Array.IndexOf(head, n);
        var before = Npy.ReadFile(Path.Combine(od, "heatmap_before.npy")).ToFloat32();
        var after = Npy.ReadFile(Path.Combine(od, "heatmap_after.npy")).ToFloat32();
        double[] area = new double[2]; int[] tilesOf = new int[2]; double countBefore = 0, countAfter = 0; int processed = 0;
        foreach (var line in csv.Skip(1))
        {
            var c = line.Split(',');
            int row = int.Parse(c[0], CultureInfo.InvariantCulture), col = int.Parse(c[1], CultureInfo.InvariantCulture);
            Assert.Equal(!WsiFixture.IsWhite(col), c[Col("processed")] == "1");
            if (WsiFixture.IsWhite(col)) { Assert.Equal("", c[Col("nuclei_before")]); Assert.True(float.IsNaN(before[row * 16 + col])); continue; }
            int nb = int.Parse(c[Col("nuclei_before")], CultureInfo.InvariantCulture), na = int.Parse(c[Col("nuclei_after")], CultureInfo.InvariantCulture);
            // The heat maps are the predicted nucleus counts.
            Assert.Equal(nb, before[row * 16 + col]); Assert.Equal(na, after[row * 16 + col]);
            countBefore += nb; countAfter += na; processed++;
            int cls = WsiFixture.ClassOf(row);
            area[cls] += double.Parse(c[Col("nucleus_area_before")], CultureInfo.InvariantCulture); tilesOf[cls]++;
        }
        Assert.Equal(120, processed);
        // Malignant tissue (crowded nuclei) has more predicted nucleus area than benign; erase lowers the count.
        Assert.True(area[1] / tilesOf[1] > area[0] / tilesOf[0] + 0.02, $"nucleus area malignant {area[1] / tilesOf[1]:F3} vs benign {area[0] / tilesOf[0]:F3}");
        Assert.True(countBefore / processed > 2, $"{countBefore / processed:F1} nuclei per tile before");
        Assert.True(countAfter < 0.5 * countBefore, $"nuclei per tile {countBefore / processed:F1} -> {countAfter / processed:F1}");

        var j = JsonNode.Parse(File.ReadAllText(Path.Combine(od, "wsi.json")))!;
        Assert.Equal("segmentation", (string)j["task"]!);
        Assert.Equal("erase", (string)j["goal"]!);
        Assert.Equal("nuclei", (string)j["heat"]!);
        Assert.Equal(countBefore / processed, (double)j["mean_nuclei_before"]!, 9);
        Assert.Equal(Math.Max(before.Where(float.IsFinite).Max(), after.Where(float.IsFinite).Max()), (float)j["heat_max"]!);
        var html = File.ReadAllText(Path.Combine(od, "index.html"));
        Assert.Contains("predicted nuclei, before the attack", html);
        // The busiest tile is drawn red on the before map when it is the most of both maps.
        var heat = ImageFile.Decode(Path.Combine(od, "heatmap_before.png"));
        int best = Array.IndexOf(before, before.Where(float.IsFinite).Max()), hw = heat.Height * heat.Width;
        int py = best / 16 * 32 + 16, px = best % 16 * 32 + 16;
        Assert.True(heat.Pixels[py * heat.Width + px] > 0.8 && heat.Pixels[2 * hw + py * heat.Width + px] < 0.2, "the densest tile is red");

        // Asking for segmentation of a classifier is one usage line naming the model.
        var (bad, _, berr) = CliRunner.Run("wsi", "--slide", _f.Tif, "--model", _f.ModelPath, "--tile", "64", "--task", "segmentation",
            "--eps", "8/255", "--device", "cpu", "--out", Path.Combine(Dir, "bad"));
        Assert.Equal(2, bad);
        Assert.Contains(_f.ModelPath, berr); Assert.Contains("classifies", berr);
    }
}
