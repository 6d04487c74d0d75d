using System.Buffers.Binary;
using System.IO.Compression;
using Perturb.Engine;
using Perturb.Engine.Data;

namespace Perturb.Tests.Data;

public class IdxTests : TempDirTest
{
    static byte[] IdxBytes(uint magic, int[] dims, byte[] data)
    {
        var b = new byte[4 + 4 * dims.Length + data.Length];
        BinaryPrimitives.WriteUInt32BigEndian(b, magic);
        for (int d = 0; d < dims.Length; d++) BinaryPrimitives.WriteInt32BigEndian(b.AsSpan(4 + 4 * d), dims[d]);
        data.CopyTo(b, 4 + 4 * dims.Length);
        return b;
    }

    static void Put(string path, byte[] b, bool gz)
    {
        if (!gz) { File.WriteAllBytes(path, b); return; }
        using var fs = File.Create(path + ".gz");
        using var z = new GZipStream(fs, CompressionLevel.Fastest);
        z.Write(b);
    }

    /// <summary>Writes a split: n images of 3×4 with pixel values (i*12+p)*3 and labels i % 10.</summary>
    void WriteSplit(string dir, string prefix, int n, bool gz, int labels = -1)
    {
        Directory.CreateDirectory(dir);
        var img = new byte[n * 12];
        for (int i = 0; i < img.Length; i++) img[i] = (byte)(i * 3);
        Put(Path.Combine(dir, $"{prefix}-images-idx3-ubyte"), IdxBytes(0x803, new[] { n, 3, 4 }, img), gz);
        int nl = labels < 0 ? n : labels;
        Put(Path.Combine(dir, $"{prefix}-labels-idx1-ubyte"), IdxBytes(0x801, new[] { nl }, Enumerable.Range(0, nl).Select(i => (byte)(i % 10)).ToArray()), gz);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void PlainAndGzippedFilesLoad(bool gz)
    {
        var dir = Path.Combine(Dir, "mnist");
        WriteSplit(dir, "train", 12, gz);
        WriteSplit(dir, "t10k", 5, !gz);
        Assert.True(Idx.IsIdxFolder(dir));
        var s = Idx.Load(dir);
        Assert.Equal("mnist", s.Name);
        Assert.Null(s.Val);
        Assert.Equal((12, 1, 3, 4), (s.Train.Count, s.Train.Channels, s.Train.Height, s.Train.Width));
        Assert.Equal(5, s.Test.Count);
        Assert.Equal(Enumerable.Range(0, 10).Select(i => i.ToString()), s.Train.ClassNames);
        Assert.Equal(new[] { 0, 1, 2, 3, 4 }, s.Test.Labels);
        Assert.Equal((byte)(13 * 3) / 255f, s.Train.X[13]);
        Assert.Equal(2, s.Train.Labels[2]);
    }

    [Fact]
    public void AMissingSplitFailsOnlyWhenAskedFor()
    {
        var dir = Path.Combine(Dir, "fashion-mnist");
        WriteSplit(dir, "train", 4, gz: true);
        var train = Idx.LoadSplit(dir, "train");
        Assert.Equal(4, train.Count);
        Assert.Equal("T-shirt/top", train.ClassNames[0]);
        var e = Assert.Throws<PerturbException>(() => Idx.LoadSplit(dir, "test"));
        Assert.Contains("the test split is missing", e.Message);
        Assert.Contains("t10k-images-idx3-ubyte", e.Message);
        Assert.Throws<PerturbException>(() => Idx.Load(dir));
        Assert.NotNull(Idx.Info(dir).Splits[1].Missing);
        Assert.Equal(4, DataSources.LoadSplit(dir, "train").Count);
        Assert.Contains("no val split", Assert.Throws<PerturbException>(() => Idx.LoadSplit(dir, "val")).Message);
    }

    [Fact]
    public void CountMismatchBadMagicAndTruncationAreErrors()
    {
        var dir = Path.Combine(Dir, "bad");
        WriteSplit(dir, "train", 6, gz: false, labels: 5);
        var e = Assert.Throws<PerturbException>(() => Idx.LoadSplit(dir, "train"));
        Assert.Contains("6 images but train-labels-idx1-ubyte holds 5 labels", e.Message);

        var lab = Path.Combine(dir, "lab");
        File.WriteAllBytes(lab, IdxBytes(0x803, new[] { 2 }, new byte[2]));
        Assert.Contains("magic 0x00000803, expected 0x00000801", Assert.Throws<PerturbException>(() => Idx.ReadLabels(lab)).Message);
        var img = Path.Combine(dir, "img");
        File.WriteAllBytes(img, IdxBytes(0x803, new[] { 2, 3, 4 }, new byte[20]));
        var t = Assert.Throws<PerturbException>(() => Idx.ReadImages(img));
        Assert.Contains("truncated", t.Message); Assert.Contains(img, t.Message);
        File.WriteAllText(img + ".gz", "not gzip");
        Assert.Contains("gzip", Assert.Throws<PerturbException>(() => Idx.ReadImages(img + ".gz")).Message);
    }
}
