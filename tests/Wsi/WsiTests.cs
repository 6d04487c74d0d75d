using System.Text.Json.Nodes;
using Perturb.Engine;
using Perturb.Engine.Attacks;
using Perturb.Engine.Data;
using Perturb.Engine.Wsi;
using Xunit.Abstractions;

namespace Perturb.Tests.Wsi;

[Collection("wsi")]
public sealed class WsiTests : TempDirTest
{
    readonly WsiFixture _f;
    readonly ITestOutputHelper _out;
    public WsiTests(WsiFixture f, ITestOutputHelper o) { _f = f; _out = o; }

    static IAttack Pgd(int steps = 10) => new Perturb.Engine.Attacks.Gradient.Pgd { Steps = steps, Seed = 1, MaxBatch = 64 };

    [WsiFact]
    public void OpenSlideReadsThePyramid()
    {
        using var s = Slide.Open(_f.Tif);
        Assert.True(s.LevelCount >= 2, $"levels {s.LevelCount}");
        Assert.Equal((1024L, 768L), s.Dimensions(0));
        Assert.Equal((512L, 384L), s.Dimensions(1));
        Assert.Equal(1.0, s.Downsample(0), 6);
        Assert.Equal(2.0, s.Downsample(1), 3);
        Assert.Equal("generic-tiff", s.Vendor);
        var e = Assert.Throws<PerturbException>(() => s.Dimensions(s.LevelCount));
        Assert.Equal(2, e.ExitCode);
        Assert.Contains("out of range", e.Message);
    }

    [WsiFact]
    public void ReadRegionMatchesTheSourceWithinJpegTolerance()
    {
        using var s = Slide.Open(_f.Tif);
        const int W = WsiFixture.W, H = WsiFixture.H;
        // A tissue region crossing the TIFF's 256-pixel tiles, and one crossing into the white part.
        foreach (var (x0, y0, w, h) in new[] { (200, 150, 200, 180), (600, 500, 100, 60) })
        {
            var px = s.ReadRegion(0, x0, y0, w, h);
            double sum = 0; int hw = w * h;
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < h; y++)
                    for (int x = 0; x < w; x++)
                        sum += Math.Abs(px[c * hw + y * w + x] - _f.Source[c * W * H + (y0 + y) * W + x0 + x]);
            double mae = sum / (3.0 * hw);
            _out.WriteLine($"region ({x0},{y0}) {w}x{h}: mean abs error {mae:F4}");
            Assert.True(mae < 0.03, $"mean abs error {mae}");
        }
        // Level 1 at level-0 coordinates: the 2x downsampled source, near enough.
        var l1 = s.ReadRegion(1, 256, 128, 64, 64);
        double d1 = 0;
        for (int y = 0; y < 64; y++)
            for (int x = 0; x < 64; x++)
            {
                double m = 0;
                for (int dy = 0; dy < 2; dy++) for (int dx = 0; dx < 2; dx++) m += _f.Source[(128 + 2 * y + dy) * W + 256 + 2 * x + dx];
                d1 += Math.Abs(l1[y * 64 + x] - m / 4);
            }
        _out.WriteLine($"level 1 red mean abs error {d1 / 4096:F4}");
        Assert.True(d1 / 4096 < 0.06, $"level 1 error {d1 / 4096}");
        // Outside the slide: transparent, read as white.
        var outside = s.ReadRegion(0, W + 10, 0, 8, 8);
        Assert.All(outside, v => Assert.Equal(1f, v));
    }

    [WsiFact]
    public void TilerSkipsExactlyTheWhiteTilesAndHeatMapSeparatesTheRegions()
    {
        using var s = Slide.Open(_f.Tif);
        // This model is robust to small budgets (PGD-10 at 8/255 flips about 1% of its own 32x32 test tiles), so a large one.
        var r = WsiAnalysis.Run(s, _f.Model, Pgd(), new WsiOptions { Level = 0, Tile = 64, Epsilon = 32 / 255f, BatchSize = 50 });
        Assert.Equal(WsiFixture.Rows, r.Rows);
        Assert.Equal(WsiFixture.Cols, r.Cols);
        foreach (var t in r.Tiles)
        {
            Assert.Equal(WsiFixture.IsWhite(t.Col), t.Background);
            Assert.Equal(t.Col * 64L, t.X); Assert.Equal(t.Row * 64L, t.Y);
        }
        Assert.Equal(WsiFixture.Rows * (WsiFixture.Cols - WsiFixture.TissueCols), r.Background);
        var tissue = r.Tiles.Where(t => !t.Background).ToArray();
        _out.WriteLine($"tissue brightness {tissue.Min(t => t.Brightness):F3}..{tissue.Max(t => t.Brightness):F3}, saturation {tissue.Min(t => t.Saturation):F3}..{tissue.Max(t => t.Saturation):F3}; model accuracy {_f.ModelAccuracy:P1}");
        double accBefore = tissue.Count(t => t.PredBefore == WsiFixture.ClassOf(t.Row)) / (double)tissue.Length;
        double accAfter = tissue.Count(t => t.PredAfter == WsiFixture.ClassOf(t.Row)) / (double)tissue.Length;
        double mBenign = tissue.Where(t => WsiFixture.ClassOf(t.Row) == 0).Average(t => t.HeatBefore);
        double mMalig = tissue.Where(t => WsiFixture.ClassOf(t.Row) == 1).Average(t => t.HeatBefore);
        _out.WriteLine($"slide accuracy before {accBefore:P1}, after {accAfter:P1}; mean P(malignant) benign region {mBenign:F3}, malignant region {mMalig:F3}; success {r.SuccessRate:P1}");
        Assert.True(accBefore >= 0.85, $"slide accuracy {accBefore}");
        Assert.True(mMalig - mBenign > 0.5, $"heat map: benign {mBenign}, malignant {mMalig}");
        // The attack lowers accuracy and changes most predictions; success is a change of prediction.
        Assert.True(accAfter < accBefore - 0.5, $"accuracy {accBefore} -> {accAfter}");
        Assert.True(r.SuccessRate > 0.5, $"success {r.SuccessRate}");
        // Attacked tiles move their class-1 probability towards the other class.
        Assert.All(tissue.Where(t => t.Success), t => Assert.True(t.PredBefore == 1 ? t.HeatAfter < 0.5 : t.HeatAfter > 0.5));
        Assert.All(tissue, t => Assert.Equal(t.PredAfter != t.PredBefore, t.Success));
        Assert.All(r.Tiles.Where(t => t.Background), t => Assert.True(float.IsNaN(t.HeatBefore) && t.PredBefore == -1));
        var heat = r.Heat(false);
        Assert.True(float.IsNaN(heat[0 * 16 + 12]));
        Assert.False(float.IsNaN(heat[0 * 16 + 3]));
    }
}

[Collection("wsi")]
public sealed class WsiCliTests : TempDirTest
{
    readonly WsiFixture _f;
    public WsiCliTests(WsiFixture f) { _f = f; }

    string[] Args(string outDir, params string[] more) =>
        new[] { "wsi", "--slide", _f.Tif, "--model", _f.ModelPath, "--tile", "64", "--level", "0", "--attack", "pgd", "--eps", "32/255",
            "--steps", "5", "--device", "cpu", "--seed", "3", "--batch-size", "50", "--out", outDir }.Concat(more).ToArray();

    [WsiFact]
    public void WritesEveryOutputAndIsDeterministic()
    {
        var od = Path.Combine(Dir, "out");
        var jp = Path.Combine(Dir, "summary.json");
        var (code, stdout, err) = CliRunner.Run(Args(od, "--max-tiles", "100", "--json", jp));
        Assert.True(code == 0, err);
        Assert.Contains("72 background", stdout);
        Assert.Matches(@"tiles \d+/192", err);
        var names = Directory.GetFiles(od).Select(Path.GetFileName).OrderBy(n => n).ToArray();
        Assert.Equal(new[] { Perturb.Engine.IO.OutputFolder.Marker, "heatmap_after.npy", "heatmap_after.png", "heatmap_before.npy", "heatmap_before.png", "index.html", "thumbnail.png", "tiles.csv", "wsi.json" }, names);
        // The page inlines exactly the three PNG files written beside it and fetches nothing.
        var html = File.ReadAllText(Path.Combine(od, "index.html"));
        var srcs = System.Text.RegularExpressions.Regex.Matches(html, "src=\"data:image/png;base64,([^\"]*)\"").Select(m => m.Groups[1].Value).ToArray();
        Assert.Equal(new[] { "thumbnail.png", "heatmap_before.png", "heatmap_after.png" }.Select(f => Convert.ToBase64String(File.ReadAllBytes(Path.Combine(od, f)))), srcs);
        Assert.DoesNotContain("http", html);
        Assert.Equal(3, System.Text.RegularExpressions.Regex.Matches(html, "src=").Count);

        var hb = Npy.ReadFile(Path.Combine(od, "heatmap_before.npy"));
        Assert.Equal(new[] { 12, 16 }, hb.Shape);
        var hv = hb.ToFloat32();
        var csv = File.ReadAllLines(Path.Combine(od, "tiles.csv"));
        Assert.Equal(193, csv.Length);
        Assert.StartsWith("row,col,x,y,background,processed", csv[0]);
        int processed = 0, succ = 0, pos = 0;
        foreach (var line in csv.Skip(1))
        {
            var c = line.Split(',');
            int row = int.Parse(c[0]), col = int.Parse(c[1]);
            bool bgFlag = c[4] == "1", proc = c[5] == "1";
            Assert.Equal(WsiFixture.IsWhite(col), bgFlag);
            // --max-tiles 100: the 100 first tissue tiles in row-major order (rows 0-9 of the 10 tissue columns).
            Assert.Equal(!bgFlag && row < 10, proc);
            Assert.Equal(proc, !float.IsNaN(hv[row * 16 + col]));
            if (proc)
            {
                processed++;
                Assert.True(Math.Abs(hv[row * 16 + col] - float.Parse(c[10], System.Globalization.CultureInfo.InvariantCulture)) < 1e-6, $"csv heat {c[10]} vs npy {hv[row * 16 + col]}");
                if (c[14] == "1") succ++;
                Assert.Equal(c[8] != c[9], c[14] == "1");
                if (c[8] == "1") pos++;
            }
        }
        Assert.Equal(100, processed);
        var j = JsonNode.Parse(File.ReadAllText(Path.Combine(od, "wsi.json")))!;
        Assert.Equal(192, (int)j["tiles"]!);
        Assert.Equal(72, (int)j["background_tiles"]!);
        Assert.Equal(120, (int)j["tissue_tiles"]!);
        Assert.Equal(100, (int)j["processed_tiles"]!);
        Assert.Equal(1024, (long)j["level_width"]!);
        Assert.Equal(succ / 100.0, (double)j["success_rate"]!, 9);
        Assert.Equal(pos / 100.0, (double)j["clean_positive_fraction"]!, 9);
        Assert.Equal(0.4, (double)j["clean_positive_fraction"]!, 9); // rows 6-9 of 0-9 are malignant, all classified so
        Assert.True((double)j["success_rate"]! > 0.1);
        Assert.Equal((double)j["success_rate"]!, (double)JsonNode.Parse(File.ReadAllText(jp))!["success_rate"]!);

        var heat = ImageFile.Decode(Path.Combine(od, "heatmap_before.png"));
        Assert.Equal((3, 384, 512), (heat.Channels, heat.Height, heat.Width));
        int hw = 384 * 512;
        float Px(int ch, int y, int x) => heat.Pixels[ch * hw + y * 512 + x];
        Assert.Equal(WsiOutput.BackgroundGrey, Px(0, 5, 15 * 32 + 5), 2);          // background tile: light grey
        Assert.Equal(WsiOutput.UnprocessedGrey, Px(1, 11 * 32 + 5, 5), 2);        // left out by --max-tiles: dark grey
        Assert.True(Px(2, 5, 5) > 0.8 && Px(0, 5, 5) < 0.2, "benign tile should be blue");      // P(malignant) ~ 0
        Assert.True(Px(0, 8 * 32 + 5, 5) > 0.8 && Px(2, 8 * 32 + 5, 5) < 0.2, "malignant tile should be red");
        var th = ImageFile.Decode(Path.Combine(od, "thumbnail.png"));
        Assert.Equal((768, 1024), (th.Height, th.Width));
        Assert.Equal(1f, th.Pixels[700 * 1024 + 1000]);

        // Same seed, same result.
        var od2 = Path.Combine(Dir, "out2");
        Assert.Equal(0, CliRunner.Run(Args(od2, "--max-tiles", "100")).Code);
        Assert.Equal(File.ReadAllBytes(Path.Combine(od, "heatmap_after.npy")), File.ReadAllBytes(Path.Combine(od2, "heatmap_after.npy")));
        Assert.Equal(File.ReadAllBytes(Path.Combine(od, "tiles.csv")), File.ReadAllBytes(Path.Combine(od2, "tiles.csv")));
    }

    [WsiFact]
    public void TilesAnUpperLevel()
    {
        var od = Path.Combine(Dir, "l1");
        var (code, _, err) = CliRunner.Run("wsi", "--slide", _f.Tif, "--model", _f.ModelPath, "--tile", "32", "--level", "1", "--attack", "fgsm",
            "--eps", "8/255", "--device", "cpu", "--out", od);
        Assert.True(code == 0, err);
        var j = JsonNode.Parse(File.ReadAllText(Path.Combine(od, "wsi.json")))!;
        Assert.Equal((512, 384, 12, 16, 72, 2.0), ((int)j["level_width"]!, (int)j["level_height"]!, (int)j["rows"]!, (int)j["cols"]!, (int)j["background_tiles"]!, (double)j["downsample"]!));
        Assert.Equal(0.5, (double)j["clean_positive_fraction"]!, 9);
        var csv = File.ReadAllLines(Path.Combine(od, "tiles.csv"));
        Assert.Contains("3,5,320,192,", csv[1 + 3 * 16 + 5]); // x, y in level-0 pixels
        var th = ImageFile.Decode(Path.Combine(od, "thumbnail.png"));
        Assert.Equal((384, 512), (th.Height, th.Width));
    }

    [WsiFact]
    public void FailsCleanlyOnBadInput()
    {
        var txt = Path.Combine(Dir, "notes.txt");
        File.WriteAllText(txt, "not a slide\n");
        var grey = Path.Combine(Dir, "grey.safetensors");
        using (var gm = Perturb.Engine.Nn.Presets.Create("lenet", _f.Be, 1, 28, 28, 2, 1)) Perturb.Engine.IO.ModelFile.Save(gm, grey);
        var od = Path.Combine(Dir, "o");
        void Fails(string[] args, int exit, params string[] parts)
        {
            var (code, _, err) = CliRunner.Run(args);
            Assert.True(code == exit, $"exit {code}: {err}");
            var lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Single(lines);
            foreach (var p in parts) Assert.Contains(p, lines[0]);
        }
        Fails(Args(od).Select(a => a == _f.Tif ? txt : a).ToArray(), 1, txt, "not a slide");
        Fails(Args(od).Select(a => a == _f.Tif ? _f.Png : a).ToArray(), 1, _f.Png, "not a slide");
        Fails(Args(od).Select(a => a == _f.Tif ? Path.Combine(Dir, "missing.tif") : a).ToArray(), 1, "missing.tif", "no such file");
        Fails(Args(od).Select(a => a == "0" ? "7" : a).ToArray(), 2, _f.Tif, "level 7 out of range");
        Fails(Args(od).Select(a => a == "64" ? "800" : a).ToArray(), 2, _f.Tif, "tile 800 is larger than level 0 (1024x768)");
        Fails(Args(od).Select(a => a == _f.ModelPath ? grey : a).ToArray(), 2, grey, "1-channel");
        // Someone else's non-empty folder is refused before any work, and left as it was.
        var foreign = Path.Combine(Dir, "foreign");
        Directory.CreateDirectory(foreign);
        File.WriteAllText(Path.Combine(foreign, "keep.txt"), "mine\n");
        Fails(Args(foreign), 2, "--overwrite");
        Assert.Equal(new[] { "keep.txt" }, Directory.GetFiles(foreign).Select(Path.GetFileName).ToArray());
        Assert.False(Directory.Exists(od));
    }
}
