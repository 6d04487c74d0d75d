using Perturb.Engine;
using Perturb.Engine.Data;

namespace Perturb.Tests.Data;

/// <summary>DICOM reading and writing through GDCM, on files the tests make through GDCM (<see cref="DicomMaker"/>).</summary>
public sealed class DicomTests : TempDirTest
{
    static int[] Values(int n, int lo, int hi, int seed)
    {
        var r = new SplitMix64((ulong)seed);
        return Enumerable.Range(0, n).Select(_ => lo + r.NextInt(hi - lo + 1)).ToArray();
    }

    /// <summary>The DICOM linear window of PS3.3 C.11.2.1.2.1 onto [0,1], written out here as the reference.</summary>
    static double Window(double x, double c, double w) => x <= c - 0.5 - (w - 1) / 2 ? 0 : x > c - 0.5 + (w - 1) / 2 ? 1 : (x - (c - 0.5)) / (w - 1) + 0.5;

    string Make(string name, DicomSpec s)
    {
        var p = Path.Combine(Dir, name);
        DicomMaker.Write(p, s);
        return p;
    }

    [DicomFact]
    public void Grey16BitAppliesRescaleThenTheFilesFirstWindow()
    {
        var stored = Values(48, 0, 4095, 1);
        var p = Make("ct.dcm", new DicomSpec { Stored = stored, Slope = 2, Intercept = -1024, Window = ("40\\50", "400\\300") });
        var img = Dicom.Decode(p);
        Assert.Equal((1, 6, 8), (img.Channels, img.Height, img.Width));
        for (int i = 0; i < stored.Length; i++) Assert.Equal(Window(2.0 * stored[i] - 1024, 40, 400), img.Pixels[i], 1e-6);
        Assert.Contains(img.Pixels, v => v > 0 && v < 1); // the test's values reach inside the window, not only its edges
    }

    [DicomFact]
    public void WindowOverrideReplacesTheFilesWindow()
    {
        var stored = Values(48, 0, 4095, 2);
        var p = Make("ct.dcm", new DicomSpec { Stored = stored, Window = ("40", "400") });
        var img = Dicom.Decode(p, 0, new DicomOptions { Window = DicomWindow.Parse("2000,4000") });
        for (int i = 0; i < stored.Length; i++) Assert.Equal(Window(stored[i], 2000, 4000), img.Pixels[i], 1e-6);
    }

    [DicomFact]
    public void Monochrome1IsInvertedAndNoWindowTakesTheValueRange()
    {
        var stored = Values(48, 10, 200, 3);
        var p = Make("cr.dcm", new DicomSpec { Stored = stored, BitsAllocated = 8, BitsStored = 8, Photometric = "MONOCHROME1" });
        var img = Dicom.Decode(p);
        int lo = stored.Min(), hi = stored.Max();
        for (int i = 0; i < stored.Length; i++) Assert.Equal(1 - (stored[i] - lo) / (double)(hi - lo), img.Pixels[i], 1e-5);
        Assert.Equal(1f, img.Pixels[Array.IndexOf(stored, lo)], 6); // the lowest value is white in MONOCHROME1
    }

    [DicomFact]
    public void SignedValuesAreSignExtended()
    {
        var stored = Values(48, -2048, 2047, 4);
        var p = Make("s.dcm", new DicomSpec { Stored = stored, Signed = true, Window = ("0", "4096") });
        var img = Dicom.Decode(p);
        for (int i = 0; i < stored.Length; i++) Assert.Equal(Window(stored[i], 0, 4096), img.Pixels[i], 1e-6);
    }

    [DicomTheory]
    [InlineData(0)]
    [InlineData(1)]
    public void RgbIsReadAsPlanesInEitherPlanarConfiguration(int planar)
    {
        var stored = Values(3 * 48, 0, 255, 5);
        var p = Make("rgb.dcm", new DicomSpec { Stored = stored, Samples = 3, BitsAllocated = 8, BitsStored = 8, Photometric = "RGB", PlanarConfiguration = planar });
        var img = Dicom.Decode(p);
        Assert.Equal(3, img.Channels);
        for (int i = 0; i < stored.Length; i++) Assert.Equal(stored[i] / 255.0, img.Pixels[i], 1e-6);
    }

    [DicomTheory]
    [InlineData("RLELossless", "1.2.840.10008.1.2.5")]
    [InlineData("JPEGLSLossless", "1.2.840.10008.1.2.4.80")]
    [InlineData("JPEG2000Lossless", "1.2.840.10008.1.2.4.90")]
    [InlineData("JPEGLosslessProcess14_1", "1.2.840.10008.1.2.4.70")]
    public void CompressedTransferSyntaxesDecodeToTheSamePixels(string ts, string uid)
    {
        // 16x16: GDCM's JPEG 2000 encoder crashes the process on images as small as 6x8.
        var stored = Values(2 * 256, 0, 4095, 6);
        var plain = Make("plain.dcm", new DicomSpec { Rows = 16, Columns = 16, Stored = stored, Frames = 2, Window = ("2048", "4096") });
        var packed = Make("packed.dcm", new DicomSpec { Rows = 16, Columns = 16, Stored = stored, Frames = 2, Window = ("2048", "4096"), TransferSyntax = ts });
        Assert.Equal(uid, DicomMaker.TransferSyntaxOf(packed));
        for (int f = 0; f < 2; f++) Assert.Equal(Dicom.Decode(plain, f).Pixels, Dicom.Decode(packed, f).Pixels);
    }

    [DicomFact]
    public void MultiFrameGivesOneImagePerFrameOrTheFrameAskedFor()
    {
        var stored = Values(3 * 48, 0, 4095, 7);
        var p = Make("mf.dcm", new DicomSpec { Stored = stored, Frames = 3, Window = ("2048", "4096") });
        Assert.Equal(new[] { 0, 1, 2 }, ImageFile.Sources(p).Select(s => s.Frame));
        Assert.Equal(new[] { 2 }, ImageFile.Sources(p, new DicomOptions { Frame = 2 }).Select(s => s.Frame));
        var f2 = Dicom.Decode(p, 2);
        for (int i = 0; i < 48; i++) Assert.Equal(Window(stored[96 + i], 2048, 4096), f2.Pixels[i], 1e-6);
        var e = Assert.Throws<PerturbException>(() => ImageFile.Sources(p, new DicomOptions { Frame = 3 }).ToList());
        Assert.Contains("mf.dcm", e.Message);
        Assert.Contains("--frame 3", e.Message);
    }

    [DicomFact]
    public void ClassFoldersOfDicomFilesLoadWithFramesAsImagesAndKeepTheirSources()
    {
        foreach (var (cls, k) in new[] { ("benign", 0), ("malignant", 1) })
        {
            Directory.CreateDirectory(Path.Combine(Dir, "set", cls));
            for (int j = 0; j < 3; j++)
                DicomMaker.Write(Path.Combine(Dir, "set", cls, $"{j}.dcm"), new DicomSpec { Stored = Values(2 * 48, 0, 4095, 10 * k + j), Frames = 2, Window = ("2048", "4096") });
        }
        var d = DataSources.LoadSplit(Path.Combine(Dir, "set") + ":test=0.5", "test");
        Assert.Equal((1, 6, 8), (d.Channels, d.Height, d.Width));
        Assert.Equal(new[] { "benign", "malignant" }, d.ClassNames);
        Assert.Equal(6, d.Count); // half of the 6 images (3 files x 2 frames) of each class
        Assert.NotNull(d.Sources);
        for (int i = 0; i < d.Count; i++)
            Assert.Equal(Dicom.Decode(d.Sources![i].File, d.Sources[i].Frame).Pixels, d.Sample(i).ToArray());
        var one = DataSources.LoadSplit(Path.Combine(Dir, "set") + ":test=0.5", "test", 0, new DicomOptions { Frame = 1 });
        Assert.All(one.Sources!, s => Assert.Equal(1, s.Frame));
    }

    [DicomTheory]
    [InlineData(16, 12, false, "MONOCHROME2", 1.0, 0.0, "2048", "3000")]
    [InlineData(16, 16, true, "MONOCHROME2", 2.0, -1024.0, "100", "2000")]
    [InlineData(8, 8, false, "MONOCHROME1", 1.0, 0.0, null, null)]
    public void WrittenBackTheImageRereadsWithinOneGreyLevelWithTheSourcesMetadata(int ba, int bs, bool signed, string pi, double slope, double intercept, string? wc, string? ww)
    {
        int lo = signed ? -3000 : 0, hi = signed ? 3000 : (1 << bs) - 1;
        var stored = Values(48, lo, hi, 8);
        var src = Make("src.dcm", new DicomSpec
        {
            Stored = stored, BitsAllocated = ba, BitsStored = bs, Signed = signed, Photometric = pi, Slope = slope, Intercept = intercept,
            Window = wc == null ? null : (wc, ww!), // windows the stored range can reach: outside it a value cannot be written
        });
        var raw = DicomCodec.Read(src);
        var orig = Dicom.Decode(raw, 0, null).Pixels;
        // A change on half the pixels (positions 0, 2, 4, ...); the others stay as they are.
        var r = new SplitMix64(9);
        var adv = orig.Select((v, i) => i % 2 == 0 ? (float)Math.Clamp(v + r.Range(-0.1, 0.1), 0, 1) : v).ToArray();
        var outPath = Path.Combine(Dir, "out", "adv.dcm");
        Directory.CreateDirectory(Path.GetDirectoryName(outPath)!);
        Dicom.WriteDerived(raw, 0, null, adv, outPath, "test derivation");
        var back = DicomCodec.Read(outPath);
        Assert.Equal((ba, bs, signed, pi), (back.BitsAllocated, back.BitsStored, back.Signed, back.Photometric));
        var reread = Dicom.Decode(back, 0, null).Pixels;
        double level = Dicom.GreyLevel(raw, null);
        for (int i = 0; i < adv.Length; i++)
        {
            Assert.True(Math.Abs(reread[i] - adv[i]) <= 0.5 * level + 1e-6, $"pixel {i}: re-read {reread[i]}, written {adv[i]}, grey level {level}");
            if (i % 2 == 1) Assert.Equal(stored[i], back.Stored[i]); // untouched pixels keep their stored value, even outside the window
        }
        Assert.Contains(Enumerable.Range(0, 48), i => i % 2 == 0 && back.Stored[i] != stored[i]);
        Assert.Equal("Test^Patient", DicomMaker.Attribute(outPath, 0x0010, 0x0010));
        Assert.Equal("1.2.826.0.1.3680043.2.1125.1.1", DicomMaker.Attribute(outPath, 0x0020, 0x000d));
        Assert.NotEqual(DicomMaker.Attribute(src, 0x0020, 0x000e), DicomMaker.Attribute(outPath, 0x0020, 0x000e));
        Assert.NotEqual(DicomMaker.Attribute(src, 0x0008, 0x0018), DicomMaker.Attribute(outPath, 0x0008, 0x0018));
        Assert.Equal(DicomMaker.Attribute(outPath, 0x0008, 0x0018), DicomMaker.Attribute(outPath, 0x0002, 0x0003)); // meta header follows
        Assert.Equal("test derivation", DicomMaker.Attribute(outPath, 0x0008, 0x2111));
        Assert.Equal("DERIVED\\SECONDARY", DicomMaker.Attribute(outPath, 0x0008, 0x0008));
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(outPath)!, ".*")); // no temporary file left
    }

    [DicomFact]
    public void AFrameOfAMultiFrameFileIsWrittenAsOneFrame()
    {
        var stored = Values(3 * 48, 0, 4095, 11);
        var src = Make("mf.dcm", new DicomSpec { Stored = stored, Frames = 3, Window = ("2048", "4096") });
        var raw = DicomCodec.Read(src);
        var adv = Dicom.Decode(raw, 1, null).Pixels.Select(v => 1 - v).ToArray();
        var outPath = Path.Combine(Dir, "f1.dcm");
        Dicom.WriteDerived(raw, 1, null, adv, outPath, "frame 1");
        var back = DicomCodec.Read(outPath);
        Assert.Equal(1, back.Frames);
        var reread = Dicom.Decode(back, 0, null).Pixels;
        for (int i = 0; i < 48; i++) Assert.True(Math.Abs(reread[i] - adv[i]) <= 0.5 / 4095 + 1e-6);
    }

    [DicomFact]
    public void HostileFilesGiveOneLineNamingTheFile()
    {
        var junk = Path.Combine(Dir, "junk.dcm");
        File.WriteAllBytes(junk, Enumerable.Range(0, 4000).Select(i => (byte)(i * 7919 >> 3)).ToArray());
        var e = Assert.Throws<PerturbException>(() => Dicom.Decode(junk));
        Assert.StartsWith(junk + ": ", e.Message);
        Assert.DoesNotContain("\n", e.Message);

        var good = Make("good.dcm", new DicomSpec { Stored = Values(48 * 40, 0, 4095, 12), Rows = 48, Columns = 40, Window = ("2048", "4096") });
        var bytes = File.ReadAllBytes(good);
        var cut = Path.Combine(Dir, "cut.dcm");
        File.WriteAllBytes(cut, bytes[..(bytes.Length - 1500)]); // pixel data cut short
        e = Assert.Throws<PerturbException>(() => Dicom.Decode(cut));
        Assert.StartsWith(cut + ": ", e.Message);

        var missing = Path.Combine(Dir, "none.dcm");
        Assert.StartsWith(missing + ": no such file", Assert.Throws<PerturbException>(() => Dicom.Decode(missing)).Message);
    }

    [Fact]
    public void WindowOptionParsesCenterAndWidthAndRejectsTheRest()
    {
        Assert.Equal(new DicomWindow(40, 400), DicomWindow.Parse("40,400"));
        Assert.Equal(new DicomWindow(-600, 1500), DicomWindow.Parse(" -600 , 1500 "));
        foreach (var bad in new[] { "40", "40,0", "a,b", "40,400,1", "40,nan" })
        {
            var e = Assert.Throws<PerturbException>(() => DicomWindow.Parse(bad));
            Assert.Equal(2, e.ExitCode);
            Assert.Contains("--window", e.Message);
        }
    }
}
