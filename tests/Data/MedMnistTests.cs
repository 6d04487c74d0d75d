using System.IO.Compression;
using Perturb.Engine;
using Perturb.Engine.Data;

namespace Perturb.Tests.Data;

public class MedMnistTests : TempDirTest
{
    [SharedDataFact]
    public void PneumoniaMnistLoadsWithOfficialCountsAndNames()
    {
        var path = SharedData.PathOf("medmnist", "pneumoniamnist.npz");
        var s = MedMnist.Load(path);
        Assert.Equal("pneumoniamnist", s.Name);
        Assert.Equal((4708, 524, 624), (s.Train.Count, s.Val!.Count, s.Test.Count));
        Assert.Equal(new[] { "normal", "pneumonia" }, s.Train.ClassNames);
        Assert.Equal((1, 28, 28), (s.Train.Channels, s.Train.Height, s.Train.Width));
        Assert.Equal(new[] { 1214, 3494 }, s.Train.ClassCounts());
        // pixels are the file's bytes / 255
        using var npz = new NpzFile(path);
        var raw = npz.Read("test_images");
        Assert.Equal(new[] { 624, 28, 28 }, raw.Shape);
        for (int i = 0; i < raw.Count; i += 997) Assert.Equal(raw.Data[i] / 255f, s.Test.X[i]);
        Assert.True(s.Test.X.Max() > 0.9f && s.Test.X.Min() < 0.1f);
        Assert.Equal(s.Test.Labels, MedMnist.LoadSplit(path, "test").Labels);
    }

    [SharedDataFact]
    public void BreastMnistInfoMatchesLoad()
    {
        var path = SharedData.PathOf("medmnist", "breastmnist.npz");
        var s = MedMnist.Load(path);
        Assert.Equal((546, 78, 156), (s.Train.Count, s.Val!.Count, s.Test.Count));
        Assert.Equal(new[] { "malignant", "normal, benign" }, s.Test.ClassNames);
        var info = MedMnist.Info(path);
        Assert.False(info.MultiLabel);
        Assert.Equal(new long[] { 147, 399 }, info.Splits[0].ClassCounts);
        Assert.Equal(s.Test.ClassCounts().Select(c => (long)c), info.Splits[2].ClassCounts);
        Assert.Equal(MedMnist.Sets["breastmnist"].Md5, Fetch.Md5Of(path));
        Assert.Equal(MedMnist.Sets["pneumoniamnist"].Md5, Fetch.Md5Of(SharedData.PathOf("medmnist", "pneumoniamnist.npz")));
    }

    /// <summary>Writes a small MedMNIST-style npz: images N×H×W (or ×3), labels N×K.</summary>
    string Write(string name, int n, bool rgb, int k = 1, int classes = 3, params string[] omit)
    {
        var path = Path.Combine(Dir, name);
        var arrays = new List<(string, NpyArray)>();
        foreach (var s in MedMnist.Splits)
        {
            var img = new byte[n * 4 * 5 * (rgb ? 3 : 1)];
            for (int i = 0; i < img.Length; i++) img[i] = (byte)(i * 7 + s.Length);
            var lab = new byte[n * k];
            for (int i = 0; i < lab.Length; i++) lab[i] = (byte)(k > 1 ? (i % 3 == 0 ? 1 : 0) : i % classes);
            if (!omit.Contains(s + "_images")) arrays.Add((s + "_images", rgb ? NpyArray.FromBytes(img, n, 4, 5, 3) : NpyArray.FromBytes(img, n, 4, 5)));
            if (!omit.Contains(s + "_labels")) arrays.Add((s + "_labels", NpyArray.FromBytes(lab, n, k)));
        }
        Npy.WriteNpz(path, arrays);
        return path;
    }

    [Fact]
    public void RgbImagesBecomeNchwAndUnknownSetsGetNumberedClasses()
    {
        var path = Write("mine.npz", 6, rgb: true);
        var s = MedMnist.Load(path);
        Assert.Equal("mine", s.Name);
        Assert.Equal(new[] { "0", "1", "2" }, s.Train.ClassNames);
        Assert.Equal((3, 4, 5), (s.Train.Channels, s.Train.Height, s.Train.Width));
        Assert.Equal(new[] { 0, 1, 2, 0, 1, 2 }, s.Train.Labels);
        // sample 1, channel 2, row 3, column 4 comes from HWC byte ((1*4+3)*5+4)*3+2
        int src = ((1 * 4 + 3) * 5 + 4) * 3 + 2;
        Assert.Equal((byte)(src * 7 + 5) / 255f, s.Train.X[((1 * 3 + 2) * 4 + 3) * 5 + 4]);
        // a known name picks MedMNIST's class names, also for the larger-size files
        var b = MedMnist.LoadSplit(Write("breastmnist_64.npz", 4, rgb: false, classes: 2), "val");
        Assert.Equal("breastmnist/val", b.Name);
        Assert.Equal(new[] { "malignant", "normal, benign" }, b.ClassNames);
        var e = Assert.Throws<PerturbException>(() => MedMnist.Load(CopyAs(path, "breastmnist.npz")));
        Assert.Contains("label 2, outside the 2 classes of breastmnist", e.Message);
    }

    string CopyAs(string path, string name) { var p = Path.Combine(Dir, name); File.Copy(path, p); return p; }

    [Fact]
    public void AMissingSplitIsAnErrorForThatSplitOnly()
    {
        var path = Write("s.npz", 4, rgb: false, 1, 3, "test_images");
        Assert.Equal(4, MedMnist.LoadSplit(path, "train").Count);
        Assert.Equal(4, MedMnist.LoadSplit(path, "val").Count);
        var e = Assert.Throws<PerturbException>(() => MedMnist.LoadSplit(path, "test"));
        Assert.Contains("s.npz: the test split is missing", e.Message);
        Assert.Contains("test_images", e.Message);
        Assert.Contains("the test split is missing", Assert.Throws<PerturbException>(() => MedMnist.Load(path)).Message);
        var info = MedMnist.Info(path);
        Assert.NotNull(info.Splits.Single(x => x.Split == "test").Missing);
        Assert.Equal(4, info.Splits.Single(x => x.Split == "train").Count);
        // no val split: Load works, Val is null
        var nv = Write("nv.npz", 4, rgb: false, 1, 3, "val_images", "val_labels");
        Assert.Null(MedMnist.Load(nv).Val);
    }

    [Fact]
    public void MultiLabelIsDescribedButNotLoaded()
    {
        var path = Write("chestmnist.npz", 6, rgb: false, 14);
        var e = Assert.Throws<PerturbException>(() => MedMnist.Load(path));
        Assert.Contains("multi-label", e.Message); Assert.Contains("chestmnist.npz", e.Message);
        var info = MedMnist.Info(path);
        Assert.True(info.MultiLabel);
        Assert.Equal("atelectasis", info.ClassNames[0]);
        Assert.Equal(14, info.ClassNames.Length);
        // label bytes i % 3 == 0 are positive: flat indices 0,3,...,81 over a 6×14 array
        var expect = new long[14];
        for (int i = 0; i < 84; i += 3) expect[i % 14]++;
        Assert.Equal(expect, info.Splits[0].ClassCounts);
    }

    [Fact]
    public void ShapeAndCountMismatchesAreClearErrors()
    {
        var path = Path.Combine(Dir, "bad.npz");
        Npy.WriteNpz(path, new[]
        {
            ("train_images", NpyArray.FromBytes(new byte[3 * 4], 3, 2, 2)), ("train_labels", NpyArray.FromBytes(new byte[2], 2, 1)),
            ("test_images", NpyArray.FromBytes(new byte[8], 2, 4)), ("test_labels", NpyArray.FromBytes(new byte[2], 2, 1)),
            ("val_images", NpyArray.FromFloats(new[] { 0f, 2f, 0f, 0f }, 1, 2, 2)), ("val_labels", NpyArray.FromBytes(new byte[1], 1, 1)),
        });
        Assert.Contains("3 images but train_labels holds 2 labels", Assert.Throws<PerturbException>(() => MedMnist.LoadSplit(path, "train")).Message);
        Assert.Contains("expected N×H×W", Assert.Throws<PerturbException>(() => MedMnist.LoadSplit(path, "test")).Message);
        Assert.Contains("[0,1]", Assert.Throws<PerturbException>(() => MedMnist.LoadSplit(path, "val")).Message);
        // a zip member that is an object array
        var obj = Path.Combine(Dir, "obj.npz");
        using (var fs = File.Create(obj))
        using (var zip = new ZipArchive(fs, ZipArchiveMode.Create))
        {
            using (var es = zip.CreateEntry("train_images.npy").Open()) Npy.WriteRaw(es, "|O", false, new[] { 2 }, new byte[16]);
            using (var es = zip.CreateEntry("train_labels.npy").Open()) Npy.Write(es, NpyArray.FromBytes(new byte[2], 2, 1));
        }
        var e = Assert.Throws<PerturbException>(() => MedMnist.LoadSplit(obj, "train"));
        Assert.Contains("obj.npz: member 'train_images.npy'", e.Message); Assert.Contains("object", e.Message);
    }
}
