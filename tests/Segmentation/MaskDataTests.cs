using Perturb.Engine;
using Perturb.Engine.Data;
using Perturb.Engine.IO;

namespace Perturb.Tests.Segmentation;

public class MaskDataTests : TempDirTest
{
    /// <summary>Writes ROOT/images/NAME.png (RGB, a gradient) and ROOT/masks/NAME.png (grey class values).</summary>
    void Write(string name, int h, int w, Func<int, int, int> cls, int maskH = -1, int maskW = -1, bool writeMask = true)
    {
        Directory.CreateDirectory(Path.Combine(Dir, "images")); Directory.CreateDirectory(Path.Combine(Dir, "masks"));
        var img = new float[3 * h * w];
        for (int j = 0; j < h * w; j++) for (int c = 0; c < 3; c++) img[c * h * w + j] = (j % w) / (float)w;
        ImageWriter.SavePng(Path.Combine(Dir, "images", name + ".png"), img, 3, h, w);
        if (!writeMask) return;
        int mh = maskH > 0 ? maskH : h, mw = maskW > 0 ? maskW : w;
        var m = new float[mh * mw];
        for (int y = 0; y < mh; y++) for (int x = 0; x < mw; x++) m[y * mw + x] = cls(y, x) / 255f;
        ImageWriter.SavePng(Path.Combine(Dir, "masks", name + ".png"), m, 1, mh, mw);
    }

    [Fact]
    public void FolderOfImagesAndMasksWithNearestResize()
    {
        for (int i = 0; i < 5; i++) Write($"t{i}", 8, 8, (y, x) => x < 4 ? 0 : (y < 4 ? 1 : 2));
        var s = DataSources.Load(Dir + ":size=4,test=0.4", 1);
        Assert.Equal(3, s.Train.Count); Assert.Equal(2, s.Test.Count);
        Assert.Equal(new[] { "background", "class 1", "class 2" }, s.Train.MaskClassNames);
        // 8x8 -> 4x4 nearest: the left half stays background, the top-right quarter 1, the bottom-right 2.
        var m = s.Train.Mask(0).ToArray();
        Assert.Equal(new[] { 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 2, 2, 0, 0, 2, 2 }, m);
        Assert.Equal(4, s.Train.Height);
        // A palette maps grey values to named classes.
        File.WriteAllText(Path.Combine(Dir, "palette.json"), "{\"classes\": [\"bg\", \"benign\", \"malignant\"], \"colors\": [0, 1, 2]}");
        Assert.Equal(new[] { "bg", "benign", "malignant" }, DataSources.Load(Dir).Train.MaskClassNames);
        File.WriteAllText(Path.Combine(Dir, "palette.json"), "{\"classes\": [\"bg\", \"nucleus\"], \"colors\": [0, 1]}");
        Assert.Contains("does not list", Assert.Throws<PerturbException>(() => DataSources.Load(Dir)).Message);
    }

    [Fact]
    public void MissingAndMismatchedMasksAreNamed()
    {
        Write("a", 8, 8, (y, x) => 0);
        Write("b", 8, 8, (y, x) => 1, writeMask: false);
        var e = Assert.Throws<PerturbException>(() => DataSources.Load(Dir));
        Assert.Contains("b.png", e.Message); Assert.Contains("no mask", e.Message);
        Write("b", 8, 8, (y, x) => 1, maskH: 6, maskW: 8);
        e = Assert.Throws<PerturbException>(() => DataSources.Load(Dir));
        Assert.Contains("8x6", e.Message); Assert.Contains("b.png", e.Message);
        Write("b", 8, 8, (y, x) => 255);
        Assert.Contains("palette.json", Assert.Throws<PerturbException>(() => DataSources.Load(Dir)).Message);
    }

    [Fact]
    public void SixteenBitMasksHoldTheClassAsTheStoredValue()
    {
        // 16-bit grey masks: class = the stored value (0, 1, 2), not the value scaled from 65535 (which rounds to 0).
        for (int i = 0; i < 3; i++)
        {
            Write($"t{i}", 4, 4, (y, x) => 0);
            var m = new float[16];
            for (int j = 0; j < 16; j++) m[j] = (j % 3) / 65535f;
            File.WriteAllBytes(Path.Combine(Dir, "masks", $"t{i}.png"), ImageWriter.EncodePng(m, 1, 4, 4, 16));
        }
        var s = DataSources.Load(Dir + ":test=0.34", 1);
        Assert.Equal(new[] { "background", "class 1", "class 2" }, s.Train.MaskClassNames);
        Assert.Equal(Enumerable.Range(0, 16).Select(j => j % 3), s.Train.Mask(0).ToArray());
        // A palette compares at the mask's depth: 16-bit grey values above 255 name classes.
        for (int i = 0; i < 3; i++)
        {
            var m = new float[16];
            for (int j = 0; j < 16; j++) m[j] = (j % 2 == 0 ? 0 : 1000) / 65535f;
            File.WriteAllBytes(Path.Combine(Dir, "masks", $"t{i}.png"), ImageWriter.EncodePng(m, 1, 4, 4, 16));
        }
        File.WriteAllText(Path.Combine(Dir, "palette.json"), "{\"classes\": [\"bg\", \"nucleus\"], \"colors\": [0, 1000]}");
        var p = DataSources.Load(Dir + ":test=0.34", 1);
        Assert.Equal(Enumerable.Range(0, 16).Select(j => j % 2), p.Train.Mask(0).ToArray());
        // Without the palette, 1000 is no class index: one line naming the folder and the palette.
        File.Delete(Path.Combine(Dir, "palette.json"));
        var e = Assert.Throws<PerturbException>(() => DataSources.Load(Dir));
        Assert.Contains("1000", e.Message); Assert.Contains("palette.json", e.Message);
        // An interlaced 16-bit mask (which only an 8-bit decoder reads) is refused by name.
        var bytes = File.ReadAllBytes(Path.Combine(Dir, "masks", "t1.png"));
        bytes[28] = 1;
        File.WriteAllBytes(Path.Combine(Dir, "masks", "t1.png"), bytes);
        e = Assert.Throws<PerturbException>(() => DataSources.Load(Dir));
        Assert.Contains("t1.png", e.Message); Assert.Contains("interlaced", e.Message);
    }

    [Fact]
    public void NpzOfImagesAndMasks()
    {
        var path = Path.Combine(Dir, "seg.npz");
        byte[] Img(int n) => Enumerable.Range(0, n * 4 * 4).Select(i => (byte)(i * 7)).ToArray();
        byte[] Msk(int n) => Enumerable.Range(0, n * 4 * 4).Select(i => (byte)(i % 3)).ToArray();
        Npy.WriteNpz(path, new[]
        {
            ("train_images", NpyArray.FromBytes(Img(3), 3, 4, 4)), ("train_masks", NpyArray.FromBytes(Msk(3), 3, 4, 4)),
            ("test_images", NpyArray.FromBytes(Img(2), 2, 4, 4)), ("test_masks", NpyArray.FromBytes(Msk(2), 2, 4, 4)),
        });
        var s = DataSources.Load(path);
        Assert.Equal(3, s.Test.NumMaskClasses);
        Assert.Equal(Msk(2).Select(v => (int)v), s.Test.Masks!);
        Assert.Equal(1, s.Train.Channels);
        Npy.WriteNpz(path, new[]
        {
            ("train_images", NpyArray.FromBytes(Img(3), 3, 4, 4)), ("train_masks", NpyArray.FromBytes(Msk(2), 2, 4, 4)),
            ("test_images", NpyArray.FromBytes(Img(2), 2, 4, 4)), ("test_masks", NpyArray.FromBytes(Msk(2), 2, 4, 4)),
        });
        Assert.Contains("expected (3, 4, 4)", Assert.Throws<PerturbException>(() => DataSources.Load(path)).Message);
    }
}
