using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using Perturb.Engine;
using Perturb.Engine.Data;
using SkiaSharp;

namespace Perturb.Tests.Data;

public class ImageTests : TempDirTest
{
    static uint Crc(ReadOnlySpan<byte> b)
    {
        uint c = 0xFFFFFFFF;
        foreach (var x in b) { c ^= x; for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1; }
        return ~c;
    }

    static void Chunk(Stream s, string type, byte[] data)
    {
        var head = new byte[8];
        BinaryPrimitives.WriteInt32BigEndian(head, data.Length);
        Encoding.ASCII.GetBytes(type).CopyTo(head, 4);
        s.Write(head);
        s.Write(data);
        var crc = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(crc, Crc(head.AsSpan(4).ToArray().Concat(data).ToArray()));
        s.Write(crc);
    }

    /// <summary>A 16-bit PNG (colour type 0 grey or 2 RGB) whose rows use filter types 0..4 in turn.</summary>
    static byte[] Png16(int w, int h, int colourType, ushort[] samples)
    {
        int spp = colourType == 2 ? 3 : 1, bpp = 2 * spp, rb = w * bpp;
        var raw = new byte[h * rb];
        for (int i = 0; i < samples.Length; i++) BinaryPrimitives.WriteUInt16BigEndian(raw.AsSpan(2 * i), samples[i]);
        var filtered = new MemoryStream();
        for (int y = 0; y < h; y++)
        {
            int f = y % 5;
            filtered.WriteByte((byte)f);
            for (int i = 0; i < rb; i++)
            {
                int x = raw[y * rb + i], a = i >= bpp ? raw[y * rb + i - bpp] : 0, b = y > 0 ? raw[(y - 1) * rb + i] : 0, c = i >= bpp && y > 0 ? raw[(y - 1) * rb + i - bpp] : 0;
                int p = a + b - c, pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
                int pred = f switch { 0 => 0, 1 => a, 2 => b, 3 => (a + b) >> 1, _ => pa <= pb && pa <= pc ? a : pb <= pc ? b : c };
                filtered.WriteByte((byte)(x - pred));
            }
        }
        var z = new MemoryStream();
        using (var zs = new ZLibStream(z, CompressionLevel.Optimal, leaveOpen: true)) zs.Write(filtered.ToArray());
        var png = new MemoryStream();
        png.Write(new byte[] { 137, 80, 78, 71, 13, 10, 26, 10 });
        var ihdr = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(ihdr, w); BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), h);
        ihdr[8] = 16; ihdr[9] = (byte)colourType;
        Chunk(png, "IHDR", ihdr);
        var zb = z.ToArray();
        Chunk(png, "IDAT", zb[..(zb.Length / 2)]); // split over two IDAT chunks
        Chunk(png, "IDAT", zb[(zb.Length / 2)..]);
        Chunk(png, "IEND", Array.Empty<byte>());
        return png.ToArray();
    }

    [Fact]
    public void SixteenBitPngsAreReadAtFullDepth()
    {
        int w = 7, h = 10;
        var grey = new ushort[w * h];
        var rng = new SplitMix64(4);
        for (int i = 0; i < grey.Length; i++) grey[i] = (ushort)(0x8000 + (i % 2) + 256 * (int)(rng.Next() % 100)); // neighbours differ in the low byte
        grey[1] = (ushort)(grey[0] + 1);
        var path = Path.Combine(Dir, "g16.png");
        File.WriteAllBytes(path, Png16(w, h, 0, grey));
        using (var skia = SKBitmap.Decode(path)) Assert.Equal((w, h), (skia.Width, skia.Height)); // a valid PNG for SkiaSharp too
        var img = ImageFile.Decode(path);
        Assert.Equal((1, h, w), (img.Channels, img.Height, img.Width));
        for (int i = 0; i < grey.Length; i++) Assert.Equal(grey[i] / 65535f, img.Pixels[i]);
        Assert.NotEqual(img.Pixels[0], img.Pixels[1]);
        Assert.True(Math.Abs(img.Pixels[1] - img.Pixels[0]) < 1f / 255, "values one 16-bit step apart are kept apart");

        var rgb = new ushort[w * h * 3];
        for (int i = 0; i < rgb.Length; i++) rgb[i] = (ushort)(i * 911 + 3);
        var p2 = Path.Combine(Dir, "c16.png");
        File.WriteAllBytes(p2, Png16(w, h, 2, rgb));
        var c = ImageFile.Decode(p2);
        Assert.Equal(3, c.Channels);
        for (int y = 0; y < h; y++) for (int x = 0; x < w; x++) for (int ch = 0; ch < 3; ch++)
            Assert.Equal(rgb[(y * w + x) * 3 + ch] / 65535f, c.Pixels[ch * w * h + y * w + x]);

        var trunc = Path.Combine(Dir, "t16.png");
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(trunc, bytes[..(bytes.Length - 30)]);
        var e = Assert.Throws<PerturbException>(() => ImageFile.Decode(trunc));
        Assert.Contains(trunc, e.Message);
    }

    [SharedDataFact]
    public void RealSamplesDecode()
    {
        var mnist = SharedData.PathOf("samples", "mnist", "mnist_00_7.png");
        var m = ImageFile.Decode(mnist);
        Assert.Equal((1, 28, 28), (m.Channels, m.Height, m.Width));
        using (var skia = SKBitmap.Decode(mnist))
            for (int i = 0; i < 28 * 28; i += 13) Assert.Equal(skia.GetPixel(i % 28, i / 28).Red / 255f, m.Pixels[i]);
        var cifar = ImageFile.Decode(SharedData.PathOf("samples", "cifar10", "cifar10_00_3.png"));
        Assert.Equal((3, 32, 32), (cifar.Channels, cifar.Height, cifar.Width));
        var histo = Directory.GetFiles(SharedData.PathOf("samples", "histopathology"), "*.png").OrderBy(f => f, StringComparer.Ordinal).First();
        var hi = ImageFile.Decode(histo); // RGBA: alpha dropped
        Assert.Equal((3, 512, 512), (hi.Channels, hi.Height, hi.Width));
        var small = ImageFile.Load(histo, 3, 64, 64);
        Assert.Equal(3 * 64 * 64, small.Length);
        // the downscaled mean stays the image's mean (an averaging filter), within a little
        Assert.Equal(hi.Pixels.Average(), small.Average(), 2);
        var xray = ImageFile.Load(Directory.GetFiles(SharedData.PathOf("samples", "chest_xray"))[0], 1, 28, 28);
        Assert.Equal(784, xray.Length);
        Assert.All(xray, v => Assert.InRange(v, 0f, 1f));
    }

    [Fact]
    public void ChannelConversionAndResize()
    {
        // RGB -> grey by BT.601 luma
        var img = new ImageData(3, 1, 2, new[] { 1f, 0f, /*G*/ 0f, 1f, /*B*/ 0f, 0f });
        var g = ImageFile.ConvertChannels(img, 1);
        Assert.Equal(0.299f, g[0], 5); Assert.Equal(0.587f, g[1], 5);
        var grey = new ImageData(1, 1, 2, new[] { 0.25f, 0.75f });
        Assert.Equal(new[] { 0.25f, 0.75f, 0.25f, 0.75f, 0.25f, 0.75f }, ImageFile.ConvertChannels(grey, 3));
        Assert.Throws<PerturbException>(() => ImageFile.ConvertChannels(grey, 2));
        // same size: exact; a 2x2 block shrunk to 1x1 is its mean; a checkerboard halves to grey; a constant stays
        var four = new[] { 0.1f, 0.2f, 0.3f, 0.6f };
        Assert.Same(four, ImageFile.Resize(four, 1, 2, 2, 2, 2));
        Assert.Equal(0.3f, ImageFile.Resize(four, 1, 2, 2, 1, 1)[0], 5);
        var checker = Enumerable.Range(0, 64).Select(i => (float)((i / 8 + i % 8) % 2)).ToArray();
        var half = ImageFile.Resize(checker, 1, 8, 8, 4, 4);
        foreach (var i in new[] { 5, 6, 9, 10 }) Assert.Equal(0.5f, half[i], 5); // inside; the border taps are cut and renormalised
        Assert.All(half, v => Assert.InRange(v, 0.4f, 0.6f));
        Assert.All(ImageFile.Resize(Enumerable.Repeat(0.4f, 3 * 30).ToArray(), 3, 5, 6, 11, 3), v => Assert.Equal(0.4f, v, 5));
        // upscaling a ramp by 2 stays monotone and inside the input range
        var up = ImageFile.Resize(new[] { 0f, 0.5f, 1f }, 1, 1, 3, 1, 6);
        for (int i = 1; i < up.Length; i++) Assert.True(up[i] >= up[i - 1]);
        Assert.Equal(0f, up[0]); Assert.Equal(1f, up[^1]);
    }

    void SavePng(string path, int w, int h, Func<int, int, SKColor> colour, bool greyFile = false)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using var bmp = new SKBitmap(new SKImageInfo(w, h, greyFile ? SKColorType.Gray8 : SKColorType.Rgba8888, SKAlphaType.Unpremul));
        for (int y = 0; y < h; y++) for (int x = 0; x < w; x++) bmp.SetPixel(x, y, colour(x, y));
        using var fs = File.Create(path);
        bmp.Encode(fs, SKEncodedImageFormat.Png, 100);
    }

    [Fact]
    public void BrokenFilesAreOneClearErrorNamingTheFile()
    {
        var text = Path.Combine(Dir, "notes.png");
        File.WriteAllText(text, "this is text, not an image");
        var e = Assert.Throws<PerturbException>(() => ImageFile.Decode(text));
        Assert.StartsWith(text + ": not a readable image", e.Message);
        var good = Path.Combine(Dir, "good.png");
        SavePng(good, 40, 40, (x, y) => new SKColor((byte)(x * 6), (byte)(y * 6), (byte)((x * y) % 256)));
        var bytes = File.ReadAllBytes(good);
        var cut = Path.Combine(Dir, "cut.png");
        File.WriteAllBytes(cut, bytes[..(bytes.Length / 2)]);
        var e2 = Assert.Throws<PerturbException>(() => ImageFile.Decode(cut));
        Assert.StartsWith(cut + ": ", e2.Message);
        Assert.DoesNotContain("\n", e2.Message);
        Assert.Contains("no such file", Assert.Throws<PerturbException>(() => ImageFile.Decode(Path.Combine(Dir, "none.png"))).Message);
        // inside a folder, the first bad file in order is named
        var root = Path.Combine(Dir, "set");
        SavePng(Path.Combine(root, "a", "1.png"), 4, 4, (x, y) => SKColors.White);
        SavePng(Path.Combine(root, "b", "1.png"), 4, 4, (x, y) => SKColors.Black);
        File.WriteAllText(Path.Combine(root, "b", "2.png"), "junk");
        SavePng(Path.Combine(root, "b", "3.png"), 4, 4, (x, y) => SKColors.Black);
        var e3 = Assert.Throws<PerturbException>(() => ImageFolder.Load(root, new ImageFolderOptions { TestFraction = 0.5 }));
        Assert.Contains(Path.Combine(root, "b", "2.png"), e3.Message);
    }

    [Fact]
    public void ImageFoldersWithAndWithoutSplitFolders()
    {
        var root = Path.Combine(Dir, "flat");
        // class folders sorted ordinally: "B" before "a"; grey files; a non-image file is ignored
        for (int i = 0; i < 5; i++) SavePng(Path.Combine(root, "a", $"{i}.png"), 6, 4, (x, y) => new SKColor((byte)(200 + i), (byte)(200 + i), (byte)(200 + i)), greyFile: true);
        for (int i = 0; i < 5; i++) SavePng(Path.Combine(root, "B", $"{i}.png"), 6, 4, (x, y) => new SKColor(10, 10, 10), greyFile: true);
        File.WriteAllText(Path.Combine(root, "a", "readme.txt"), "x");
        var s = ImageFolder.Load(root, new ImageFolderOptions { Seed = 3 });
        Assert.Equal(new[] { "B", "a" }, s.Train.ClassNames);
        Assert.Equal((1, 4, 6), (s.Train.Channels, s.Train.Height, s.Train.Width)); // the first image's size and channels
        Assert.Equal(new[] { 1, 1 }, s.Test.ClassCounts()); // 20% of 5 per class, stratified
        Assert.Equal(new[] { 4, 4 }, s.Train.ClassCounts());
        Assert.Equal(s.Test.X, ImageFolder.Load(root, new ImageFolderOptions { Seed = 3 }).Test.X);
        var other = Enumerable.Range(0, 10).Select(seed => ImageFolder.Load(root, new ImageFolderOptions { Seed = (ulong)seed }).Test.X.Sum()).Distinct().Count();
        Assert.True(other > 1, "the held-out images depend on the seed");
        Assert.Equal(10f / 255, s.Test.X[0], 5);
        var rgb = ImageFolder.Load(root, new ImageFolderOptions { Channels = 3, Height = 8, Width = 8 });
        Assert.Equal((3, 8, 8), (rgb.Train.Channels, rgb.Train.Height, rgb.Train.Width));

        var split = Path.Combine(Dir, "split");
        SavePng(Path.Combine(split, "train", "cat", "1.png"), 5, 5, (x, y) => SKColors.Red);
        SavePng(Path.Combine(split, "train", "dog", "1.jpg".Replace(".jpg", ".png")), 5, 5, (x, y) => SKColors.Blue);
        SavePng(Path.Combine(split, "test", "dog", "2.png"), 9, 9, (x, y) => SKColors.Blue);
        var sp = ImageFolder.Load(split);
        Assert.Equal(new[] { "cat", "dog" }, sp.Test.ClassNames);
        Assert.Equal(new[] { 1 }, sp.Test.Labels);
        Assert.Equal((3, 5, 5), (sp.Test.Channels, sp.Test.Height, sp.Test.Width)); // resized to the first image's size
        Assert.Null(sp.Val);
        Assert.Equal(0.299f, ImageFolder.LoadSplit(split, "train", new ImageFolderOptions { Channels = 1 }).X[0], 2); // pure red → luma 0.299
        Assert.Contains("the val split is missing", Assert.Throws<PerturbException>(() => ImageFolder.LoadSplit(split, "val")).Message);
    }
}
