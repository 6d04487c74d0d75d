using System.Text.Json.Nodes;
using Perturb.Engine.Backends;
using Perturb.Engine.Data;
using Perturb.Engine.IO;
using Perturb.Engine.Nn;
using Perturb.Engine.Training;
using Perturb.Tests.Data;

namespace Perturb.Tests.Cli;

/// <summary>
/// DICOM through the CLI: a class folder of 12-bit DICOM files (synthetic shapes stored as a CT would store them:
/// rescale intercept -1024 and a window), a LeNet trained on it, then <c>attack --dicom --png-bits 16</c> and
/// <c>predict</c> on multi-frame files.
/// </summary>
public sealed class DicomCliTests : TempDirTest
{
    /// <summary>Shapes in [0,1] to stored values 500..3500 of a 12-bit file; the window maps them back to [0,1].</summary>
    static readonly (string C, string W) Win = ("976.5", "3001");

    static int[] Stored(ReadOnlySpan<float> x, int scale)
    {
        int n = (int)Math.Sqrt(x.Length), m = n * scale;
        var s = new int[m * m];
        for (int y = 0; y < m; y++)
            for (int i = 0; i < m; i++) s[y * m + i] = 500 + (int)Math.Round(3000 * x[(y / scale) * n + i / scale]);
        return s;
    }

    /// <summary>ROOT/train|test/CLASS/NNN.dcm from synthetic shapes, each image upscaled by <paramref name="scale"/>.</summary>
    string MakeSet(int scale)
    {
        var root = Path.Combine(Dir, "set");
        var data = SyntheticShapes.Create(5, trainCount: 240, testCount: 16);
        foreach (var (split, d) in new[] { ("train", data.Train), ("test", data.Test) })
            for (int i = 0; i < d.Count; i++)
            {
                var dir = Path.Combine(root, split, $"c{d.Labels[i]}");
                Directory.CreateDirectory(dir);
                DicomMaker.Write(Path.Combine(dir, $"{i:D3}.dcm"), new DicomSpec
                {
                    Rows = 28 * scale, Columns = 28 * scale, Stored = Stored(d.Sample(i), scale), Intercept = -1024, Slope = 1, Window = Win,
                });
            }
        return root;
    }

    [DicomTheory]
    [InlineData(1)]
    [InlineData(2)]
    public void AttackWritesDicomAndPngThatRereadWithinOneLevelAndReportsSuccessOnTheRereadPixels(int scale)
    {
        var root = MakeSet(scale);
        var spec = scale == 1 ? root : root + ":size=28";
        var modelPath = Path.Combine(Dir, "m.safetensors");
        using (var be = new CpuBackend())
        {
            var d = DataSources.Load(spec);
            using var m = Presets.Create("lenet", be, 1, 28, 28, 4, 3);
            Trainer.Fit(m, d.Train, null, new TrainOptions { Epochs = 3, BatchSize = 32, LearningRate = 3e-3f, Seed = 3 });
            ModelFile.Save(m, modelPath);
        }
        var outDir = Path.Combine(Dir, "out");
        var json = Path.Combine(Dir, "a.json");
        var (code, stdout, err) = CliRunner.Run("attack", "pgd", "--model", modelPath, "--data", spec, "--n", "16", "--eps", "2/255,16/255", "--steps", "10",
            "--device", "cpu", "--out", outDir, "--dicom", "--png-bits", "16", "--json", json);
        Assert.True(code == 0, err + stdout);
        var results = JsonNode.Parse(File.ReadAllText(json))!["results"]!.AsArray();
        Assert.Equal(2, results.Count);
        using var be2 = new CpuBackend();
        using var model = ModelFile.Load(modelPath, be2);
        model.Eval();
        var test = DataSources.LoadSplit(spec, "test");
        var before = Predict(model, be2, test.X, 16);
        foreach (var (entry, tag) in results.Zip(new[] { "eps0.0078", "eps0.0627" }))
        {
            Assert.Equal(16, (int)entry!["files_dicom"]!);
            Assert.True((double)entry["max_error_levels_dicom"]! <= 0.5 + 1e-3, entry.ToJsonString());
            Assert.True((double)entry["max_error_levels_png16"]! <= 0.5 + 1e-3, entry.ToJsonString());
            // The success rate after re-reading, recomputed here from the files the command wrote.
            var files = Directory.GetFiles(Path.Combine(outDir, $"dicom_{tag}"), "*.dcm").OrderBy(f => f, StringComparer.Ordinal).ToArray();
            Assert.Equal(16, files.Length);
            var x = files.SelectMany(f => ImageFile.Load(new ImageSource(f), 1, 28, 28)).ToArray();
            var after = Predict(model, be2, x, 16);
            int correct = Enumerable.Range(0, 16).Count(i => before[i] == test.Labels[i]);
            int fooled = Enumerable.Range(0, 16).Count(i => before[i] == test.Labels[i] && after[i] != test.Labels[i]);
            Assert.Equal(fooled / (double)correct, (double)entry["success_rate_dicom"]!, 9);
            var desc = DicomMaker.Attribute(files[0], 0x0008, 0x2111)!;
            Assert.Contains("pgd", desc);
            Assert.Equal("Test^Patient", DicomMaker.Attribute(files[0], 0x0010, 0x0010));
            Assert.Equal(28 * scale, DicomCodec.Read(files[0]).Rows); // written at the source's size
            Assert.Equal(16, Directory.GetFiles(Path.Combine(outDir, $"png16_{tag}"), "*.png").Length);
        }
        Assert.True((double)results[1]!["success_rate_dicom"]! > 0.5, results[1]!.ToJsonString()); // 16/255 fools a LeNet, after storage too
        Assert.Contains("dicom", stdout);
    }

    static int[] Predict(Model m, CpuBackend be, float[] x, int n)
    {
        using var t = be.FromArray(x.AsSpan(0, n * 784), n, 1, 28, 28);
        return Losses.Predict(be, m.Forward(t));
    }

    [DicomFact]
    public void PredictReadsEveryFrameOrTheFrameAskedFor()
    {
        var modelPath = Path.Combine(Dir, "m.safetensors");
        using (var be = new CpuBackend())
        using (var m = Presets.Create("lenet", be, 1, 28, 28, 4, 3)) ModelFile.Save(m, modelPath);
        var stored = Enumerable.Range(0, 3 * 784).Select(i => 500 + i % 3000).ToArray();
        var inDir = Path.Combine(Dir, "in");
        Directory.CreateDirectory(inDir);
        DicomMaker.Write(Path.Combine(inDir, "mf.dcm"), new DicomSpec { Rows = 28, Columns = 28, Frames = 3, Stored = stored, Window = Win });
        var (code, stdout, err) = CliRunner.Run("predict", "--model", modelPath, "--input", inDir, "--device", "cpu", "--json", Path.Combine(Dir, "p.json"));
        Assert.True(code == 0, err);
        Assert.Equal(new[] { "#0", "#1", "#2" }, stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split('\t')[0][^2..]));
        var preds = JsonNode.Parse(File.ReadAllText(Path.Combine(Dir, "p.json")))!["predictions"]!.AsArray();
        Assert.Equal(new[] { 0, 1, 2 }, preds.Select(p => (int)p!["frame"]!));
        (code, stdout, err) = CliRunner.Run("predict", "--model", modelPath, "--input", inDir, "--frame", "2", "--device", "cpu");
        Assert.True(code == 0, err);
        Assert.Single(stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        (code, _, err) = CliRunner.Run("predict", "--model", modelPath, "--input", inDir, "--frame", "3", "--device", "cpu");
        Assert.Equal(2, code);
        Assert.Contains("mf.dcm: --frame 3 is outside its 3 frames", err);
        (code, _, err) = CliRunner.Run("predict", "--model", modelPath, "--input", inDir, "--window", "40", "--device", "cpu");
        Assert.Equal(2, code);
        Assert.Contains("--window", err);
    }

    [Fact]
    public void DicomOutputNeedsDicomInput()
    {
        var modelPath = Path.Combine(Dir, "m.safetensors");
        using (var be = new CpuBackend())
        using (var m = Presets.Create("lenet", be, 1, 28, 28, 4, 3)) ModelFile.Save(m, modelPath);
        var (code, _, err) = CliRunner.Run("attack", "fgsm", "--model", modelPath, "--data", "synthetic:train=8,test=4", "--eps", "8/255", "--device", "cpu",
            "--out", Path.Combine(Dir, "o"), "--dicom");
        Assert.Equal(2, code);
        Assert.Contains("--dicom: the data set", err);
        (code, _, err) = CliRunner.Run("attack", "fgsm", "--model", modelPath, "--data", "synthetic:train=8,test=4", "--eps", "8/255", "--device", "cpu", "--png-bits", "16");
        Assert.Equal(2, code);
        Assert.Contains("--out", err);
    }

    [Theory]
    [InlineData(1, 8)]
    [InlineData(1, 16)]
    [InlineData(3, 8)]
    [InlineData(3, 16)]
    public void PngAtADepthRereadsAsTheValuesRoundedToThatDepth(int c, int bits)
    {
        var r = new SplitMix64((ulong)(c * 100 + bits));
        var x = Enumerable.Range(0, c * 7 * 5).Select(_ => (float)r.NextDouble()).ToArray();
        x[0] = 0; x[1] = 1; x[2] = -0.2f; x[3] = 1.3f; // the ends, and values outside [0,1] that must clamp
        var path = Path.Combine(Dir, "a.png");
        File.WriteAllBytes(path, ImageWriter.EncodePng(x, c, 7, 5, bits));
        var back = ImageFile.Decode(path);
        Assert.Equal((c, 7, 5), (back.Channels, back.Height, back.Width));
        double max = bits == 8 ? 255 : 65535;
        for (int i = 0; i < x.Length; i++) Assert.Equal(Math.Round(Math.Clamp(x[i], 0, 1) * max) / max, back.Pixels[i], 1e-6);
    }
}
