using System.Diagnostics;
using Perturb.Engine.Backends;
using Perturb.Engine.Data;
using Perturb.Engine.IO;
using Perturb.Engine.Nn;
using Perturb.Engine.Training;
using Perturb.Engine.Wsi;

namespace Perturb.Tests.Wsi;

/// <summary>
/// A fact that needs libopenslide (Debian's libopenslide0) and the vips command (libvips-tools). Skipped with the
/// reason where either is absent, unless CI is "true": there the test runs (and fails without them).
/// </summary>
public sealed class WsiFactAttribute : FactAttribute
{
    public WsiFactAttribute()
    {
        if (Environment.GetEnvironmentVariable("CI") == "true") return;
        var missing = WsiFixture.Missing();
        if (missing != null) Skip = $"{missing} (apt-get install libopenslide0 libvips-tools; with CI=true these tests run and fail instead)";
    }
}

[CollectionDefinition("wsi")]
public sealed class WsiCollection : ICollectionFixture<WsiFixture> { }

/// <summary>
/// A synthetic slide made once for the collection: a 1024x768 mosaic whose left 640 columns are 64-pixel cells of
/// <see cref="SyntheticHistology"/> tiles (32-pixel tiles shown at 2x; rows 0-5 benign, rows 6-11 malignant) and whose right 384 columns are white,
/// saved as a JPEG-compressed pyramidal tiled TIFF by <c>vips tiffsave</c>; and a cnn-small (3x32x32, two classes)
/// trained on synthetic histology, saved as a file for the CLI.
/// </summary>
public sealed class WsiFixture : IDisposable
{
    public const int W = 1024, H = 768, T = 64, TissueCols = 10, Rows = 12, Cols = 16;
    public string Dir { get; } = Path.Combine(Path.GetTempPath(), "perturb-wsi-" + Guid.NewGuid().ToString("N"));
    public string Png => Path.Combine(Dir, "mosaic.png");
    public string Tif => Path.Combine(Dir, "slide.tif");
    public string ModelPath => Path.Combine(Dir, "histo.safetensors");
    /// <summary>The mosaic's pixels (3 x H x W) as written to the PNG (8-bit values).</summary>
    public float[] Source { get; }
    public CpuBackend Be { get; } = new();
    public Model Model { get; }
    public double ModelAccuracy { get; }

    /// <summary>Null when libopenslide and vips are both present, else what is missing.</summary>
    public static string? Missing()
    {
        var m = new List<string>();
        if (!Slide.LibraryAvailable) m.Add("libopenslide.so.0 (Debian's libopenslide0) is not installed");
        if (FindVips() == null) m.Add("the vips command (Debian's libvips-tools) is not installed");
        return m.Count == 0 ? null : string.Join("; ", m);
    }

    static string? FindVips() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(p => Path.Combine(p, "vips")).FirstOrDefault(File.Exists);

    /// <summary>True class of tissue tile (row, col): rows 0-5 benign (0), 6-11 malignant (1).</summary>
    public static int ClassOf(int row) => row < Rows / 2 ? 0 : 1;
    public static bool IsWhite(int col) => col >= TissueCols;

    public WsiFixture()
    {
        Directory.CreateDirectory(Dir);
        if (Missing() is { } missing)
        {
            // Outside CI every test of the collection is skipped and nothing here is used; under CI=true, fail loudly.
            if (Environment.GetEnvironmentVariable("CI") == "true") throw new InvalidOperationException($"CI=true but {missing}");
            Source = Array.Empty<float>(); Model = null!;
            return;
        }
        // 32-pixel tiles (the size the generator and the model are made for) drawn at 2x: every pixel a 2x2 block.
        var tiles = SyntheticHistology.Create(21, trainCount: 2 * Rows * TissueCols, testCount: 2, size: T / 2).Train;
        var px = new float[3 * W * H];
        Array.Fill(px, 1f);
        int hw = W * H, benign = 0, malignant = 1;
        for (int r = 0; r < Rows; r++)
            for (int c = 0; c < TissueCols; c++)
            {
                int idx = ClassOf(r) == 0 ? benign : malignant;
                if (ClassOf(r) == 0) benign += 2; else malignant += 2;
                var s = tiles.Sample(idx);
                for (int ch = 0; ch < 3; ch++)
                    for (int y = 0; y < T; y++)
                        for (int x = 0; x < T; x++)
                            px[ch * hw + (r * T + y) * W + c * T + x] = MathF.Round(s[ch * T * T / 4 + y / 2 * (T / 2) + x / 2] * 255f) / 255f;
            }
        Source = px;
        ImageWriter.SavePng(Png, px, 3, H, W);
        RunVips(FindVips()!);

        var data = SyntheticHistology.Create(3, trainCount: 800, testCount: 200, size: 32);
        Model = Presets.Create("cnn-small", Be, 3, 32, 32, 2, 5);
        Trainer.Fit(Model, data.Train, null, new TrainOptions { Epochs = 3, BatchSize = 32, LearningRate = 3e-3f, Optimizer = "adam", Seed = 5 });
        ModelAccuracy = Evaluator.Accuracy(Model, data.Test);
        ModelFile.Save(Model, ModelPath);
    }

    void RunVips(string vips)
    {
        var psi = new ProcessStartInfo(vips) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[] { "tiffsave", Png, Tif, "--tile", "--pyramid", "--tile-width", "256", "--tile-height", "256", "--compression", "jpeg", "--Q", "90" })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"vips tiffsave failed ({p.ExitCode}): {err}");
    }

    public void Dispose()
    {
        Model?.Dispose(); Be.Dispose();
        try { Directory.Delete(Dir, true); } catch (IOException) { }
    }
}
