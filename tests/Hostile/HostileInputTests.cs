using System.Text.Json.Nodes;
using Google.Protobuf;
using Perturb.Engine;
using Perturb.Engine.Backends;
using Perturb.Engine.Data;
using Perturb.Engine.IO;
using Perturb.Engine.Nn;
using Perturb.Engine.Onnx;
using Perturb.Engine.Onnx.Proto;
using Perturb.Engine.Report;
using Perturb.Engine.Sweep;
using Perturb.Engine.Training;
using Perturb.Tests.Data;
using Perturb.Tests.Onnx;

namespace Perturb.Tests.Hostile;

/// <summary>Each class of hostile input in issue 14, crafted small in the test: one clear error naming the file, no crash, no runaway allocation.</summary>
public class HostileInputTests : TempDirTest
{
    string Write(string name, byte[] bytes) { var p = Path.Combine(Dir, name); Directory.CreateDirectory(Path.GetDirectoryName(p)!); File.WriteAllBytes(p, bytes); return p; }

    static long Allocated(Action a)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        a();
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }

    static PerturbException Refused(Action a, params string[] contains)
    {
        var e = Assert.Throws<PerturbException>(a);
        foreach (var c in contains) Assert.Contains(c, e.Message);
        return e;
    }

    // ------------------------------------------------------------------ images

    [Fact]
    public void APngClaiming100000SquaredIsRefusedFromItsHeader()
    {
        var bytes = Crafted.Png(100_000, 100_000);
        Assert.True(bytes.Length < 300, $"{bytes.Length} bytes");
        var p = Write("big.png", bytes);
        long alloc = Allocated(() => Refused(() => ImageFile.Decode(p), "big.png", "100000x100000", "PERTURB_MAX_IMAGE_PIXELS"));
        Assert.True(alloc < 16 << 20, $"{alloc} bytes allocated");
        // Also past 32 bits in one dimension (the uint that used to turn negative) and a 16-bit PNG.
        Refused(() => ImageFile.Decode(Write("wide.png", Crafted.Png(3_000_000_000, 1))), "wide.png");
        Refused(() => ImageFile.Decode(Write("big16.png", Crafted.Png(100_000, 100_000, 16, 0))), "big16.png", "PERTURB_MAX_IMAGE_PIXELS");
    }

    [Fact]
    public void ABmpAndAJpegClaimingHugeSizesAreRefused()
    {
        Refused(() => ImageFile.Decode(Write("big.bmp", Crafted.Bmp(100_000, 100_000))), "big.bmp", "BMP", "PERTURB_MAX_IMAGE_PIXELS");
        Refused(() => ImageFile.Decode(Write("neg.bmp", Crafted.Bmp(int.MinValue, int.MinValue))), "neg.bmp");
        Refused(() => ImageFile.Decode(Write("big.jpg", Crafted.Jpeg(65500, 65500))), "big.jpg", "JPEG", "65500x65500");
        var (f, w, h) = ImageHeader.Read(Crafted.Jpeg(640, 480), "x.jpg");
        Assert.Equal(("JPEG", 640L, 480L), (f, w, h));
    }

    [Fact]
    public void ContentThatIsNoneOfTheFormatsIsRefusedWhateverItsName()
    {
        Refused(() => ImageFile.Decode(Write("gif.png", "GIF89a\x01\x00\x01\x00"u8.ToArray())), "gif.png", "not a PNG, JPEG or BMP");
        Refused(() => ImageFile.Decode(Write("empty.png", Array.Empty<byte>())), "empty.png");
    }

    [SharedDataFact]
    public void RealImagesStillDecodeAndTheHeaderAgreesWithTheDecoder()
    {
        var png = Directory.GetFiles(SharedData.PathOf("samples", "cifar10"), "*.png").OrderBy(x => x, StringComparer.Ordinal).First();
        var img = ImageFile.Decode(png);
        var (_, w, h) = ImageHeader.Read(File.ReadAllBytes(png), png);
        Assert.Equal((w, h), ((long)img.Width, (long)img.Height));
        Assert.Equal(3, img.Channels);
    }

    // ------------------------------------------------------------------ npy / npz

    [Fact]
    public void ANpyHeaderWith30000NestedParenthesesInsideAnNpzIsAnErrorNotAStackOverflow()
    {
        var dict = "{'descr': '<f4', 'fortran_order': False, 'shape': " + new string('(', 30000) + new string(')', 30000) + ", }";
        var npz = Path.Combine(Dir, "deep.npz");
        Crafted.Npz(npz, ("train_images.npy", Crafted.Npy(dict, Array.Empty<byte>(), major: 2)));
        using var z = new NpzFile(npz);
        Refused(() => z.Read("train_images"), "deep.npz", "nested more than");
        Refused(() => Npy.Read(new MemoryStream(Crafted.Npy("{'a': " + new string('{', 5000), Array.Empty<byte>(), major: 2)), "x.npy"), "x.npy");
    }

    [Fact]
    public void NpyShapesWhoseProductWrapsOrIsHugeAreRefusedBeforeAllocating()
    {
        long alloc = Allocated(() =>
        {
            // 2^31-1 cubed wraps a 64-bit product in unchecked arithmetic.
            Refused(() => Npy.Read(new MemoryStream(Crafted.NpyOf("<f4", "(2147483647, 2147483647, 2147483647)", new byte[16])), "wrap.npy"), "wrap.npy", "64-bit");
            Refused(() => Npy.Read(new MemoryStream(Crafted.NpyOf("|u1", "(65536, 65536)", new byte[16])), "big.npy"), "big.npy", "PERTURB_MAX_ARRAY_BYTES");
        });
        Assert.True(alloc < 16 << 20, $"{alloc} bytes allocated");
    }

    [Fact]
    public void NpzMembersThatRepeatOrClaimMoreThanTheirDeclaredSizeAreRefused()
    {
        var dup = Path.Combine(Dir, "dup.npz");
        var a = Crafted.NpyOf("<f4", "(1,)", new byte[4]);
        Crafted.Npz(dup, ("x.npy", a), ("x.npy", a));
        Refused(() => new NpzFile(dup), "dup.npz", "'x'");

        // The zip says 100 bytes; the npy header inside claims 100 MB of data.
        var lie = Path.Combine(Dir, "lie.npz");
        Crafted.Npz(lie, ("x.npy", Crafted.NpyOf("|u1", "(100000000,)", new byte[16])));
        using var z = new NpzFile(lie);
        long alloc = Allocated(() => Refused(() => z.Read("x"), "lie.npz", "declares"));
        Assert.True(alloc < 16 << 20, $"{alloc} bytes allocated");
    }

    [Fact]
    public void ALabelOf100MillionDoesNotBuildAClassNamePerLabel()
    {
        var p = Path.Combine(Dir, "labels.npz");
        Crafted.MedMnist(p, new long[] { 0, 100_000_000 });
        long alloc = Allocated(() => Refused(() => MedMnist.Load(p), "labels.npz", "PERTURB_MAX_CLASSES"));
        Assert.True(alloc < 64 << 20, $"{alloc} bytes allocated");
    }

    // ------------------------------------------------------------------ IDX

    [Fact]
    public void IdxDimensionsAreCheckedBeforeAnythingIsInflated()
    {
        var d = Path.Combine(Dir, "mnist");
        Directory.CreateDirectory(d);
        // A gzip whose header claims 60000 x 4096 x 4096 (a terabyte); the data is a few zeros.
        File.WriteAllBytes(Path.Combine(d, "train-images-idx3-ubyte.gz"), Crafted.Gzip(Crafted.Idx(0x803, new uint[] { 60000, 4096, 4096 }, new byte[1 << 16])));
        File.WriteAllBytes(Path.Combine(d, "train-labels-idx1-ubyte"), Crafted.Idx(0x801, new uint[] { 2 }, new byte[2]));
        long alloc = Allocated(() => Refused(() => Idx.ReadImages(Path.Combine(d, "train-images-idx3-ubyte.gz")), "train-images-idx3-ubyte.gz", "PERTURB_MAX_ARRAY_BYTES"));
        Assert.True(alloc < 16 << 20, $"{alloc} bytes allocated");
        // A product that wraps 64 bits... cannot with three uint32s below 2^31, but one that passes 2^31 bytes does.
        File.WriteAllBytes(Path.Combine(d, "t10k-images-idx3-ubyte"), Crafted.Idx(0x803, new uint[] { 2147483647, 2147483647, 2147483647 }, new byte[8]));
        Refused(() => Idx.ReadImages(Path.Combine(d, "t10k-images-idx3-ubyte")), "t10k-images-idx3-ubyte");
    }

    // ------------------------------------------------------------------ non-regular files and folder walks

    [Fact]
    public void DevZeroAsAModelAndAFifoAsDataFailAtOnce()
    {
        if (OperatingSystem.IsWindows()) return;
        using var be = new CpuBackend();
        Refused(() => ModelFile.Load("/dev/zero", be), "/dev/zero", "not a regular file");
        Refused(() => ModelFile.Load("/dev/zero.onnx", be), "/dev/zero.onnx");
        var fifo = Path.Combine(Dir, "x.npz");
        Assert.True(Crafted.MakeFifo(fifo));
        var t = Task.Run(() => Assert.Throws<PerturbException>(() => DataSources.LoadSplit(fifo, "test")));
        Assert.True(t.Wait(TimeSpan.FromSeconds(30)), "reading a FIFO blocked");
        Assert.Contains("not a regular file", t.Result.Message);
    }

    [SharedDataFact]
    public void AnImageFolderWithAFifoAndALinkLoopIsWalkedAndReadWithoutBlocking()
    {
        if (OperatingSystem.IsWindows()) return;
        var root = Path.Combine(Dir, "imgs");
        var src = Directory.GetFiles(SharedData.PathOf("samples", "cifar10"), "*.png").OrderBy(x => x, StringComparer.Ordinal).Take(4).ToArray();
        foreach (var cls in new[] { "a", "b" })
        {
            Directory.CreateDirectory(Path.Combine(root, cls));
            for (int i = 0; i < 2; i++) File.Copy(src[i + (cls == "a" ? 0 : 2)], Path.Combine(root, cls, $"{i}.png"));
        }
        Assert.True(Crafted.MakeFifo(Path.Combine(root, "a", "x.png")));
        Directory.CreateSymbolicLink(Path.Combine(root, "a", "loop"), root);            // a loop
        Directory.CreateSymbolicLink(Path.Combine(root, "b", "out"), Path.GetTempPath()); // leaves the root
        File.CreateSymbolicLink(Path.Combine(root, "b", "outside.png"), src[3]);          // a file outside the root
        var t = Task.Run(() => (ImageFolder.Load(root, new ImageFolderOptions { TestFraction = 0.5 }), SafeFiles.FilesRecursive(root)));
        Assert.True(t.Wait(TimeSpan.FromSeconds(60)), "the walk blocked or looped");
        var (data, files) = t.Result;
        Assert.Equal(4, data.Train.Count + data.Test.Count); // 4 regular images; the FIFO and the links are left out
        Assert.Equal(4, files.Count(ImageFile.IsImage));
        Assert.DoesNotContain(files, f => f.EndsWith("x.png") || f.EndsWith("outside.png"));
    }

    // ------------------------------------------------------------------ small inputs that would allocate gigabytes

    [Fact]
    public void ASafetensorsArchitectureClaiming12MillionChannelsFailsBeforeAllocating()
    {
        using var be = new CpuBackend();
        using var m = Presets.Create("lenet", be, 1, 28, 28, 4, 1);
        var p = Path.Combine(Dir, "m.safetensors");
        ModelFile.Save(m, p);
        var (tensors, meta) = SafeTensors.Read(p);
        var arch = JsonNode.Parse(meta[ModelFile.ArchKey])!.AsObject();
        var conv = arch["nodes"]!.AsArray().First(n => (string)n!["type"]! == "Conv2d")!;
        conv["config"]!["out_channels"] = 12_000_000;
        meta[ModelFile.ArchKey] = arch.ToJsonString();
        var bad = Path.Combine(Dir, "bad.safetensors");
        SafeTensors.Write(bad, tensors, meta);
        Assert.True(new FileInfo(bad).Length < 1 << 20);
        long alloc = Allocated(() => Refused(() => ModelFile.Load(bad, be), "bad.safetensors", "the architecture needs 12000000x"));
        Assert.True(alloc < 64 << 20, $"{alloc} bytes allocated");
    }

    [Fact]
    public void ASweepGridOfAThousandCubedIsRefusedFromItsCounts()
    {
        using var be = new CpuBackend();
        using var m = Presets.Create("lenet", be, 1, 28, 28, 4, 1);
        ModelFile.Save(m, Path.Combine(Dir, "a.safetensors"));
        var list = "[" + string.Join(",", Enumerable.Range(1, 1000)) + "]";
        var spec = Write("sweep.json", System.Text.Encoding.UTF8.GetBytes(
            $"{{\"models\": [\"a.safetensors\"], \"data\": [\"synthetic\"], \"attacks\": [{{\"name\": \"pgd\", \"eps\": [\"1/255\"], \"grid\": {{\"steps\": {list}, \"restarts\": {list}, \"seed\": {list}}}}}]}}"));
        long alloc = Allocated(() => Assert.Equal(2, Refused(() => SweepSpec.Load(spec), "sweep.json", "1,000,000,000 points", "PERTURB_MAX_SWEEP_CELLS").ExitCode));
        Assert.True(alloc < 64 << 20, $"{alloc} bytes allocated");
    }

    [Fact]
    public void AGeneratedDataSetOf100MillionImagesIsRefusedBeforeItIsMade()
    {
        long alloc = Allocated(() => Refused(() => DataSources.LoadSplit("synthetic:train=100000000", "test"), "synthetic:train=100000000", "PERTURB_MAX_TENSOR_ELEMENTS"));
        Assert.True(alloc < 16 << 20, $"{alloc} bytes allocated");
    }

    [Fact]
    public void OnnxConstantFoldingOfAHugeBroadcastIsRefused()
    {
        var g = new GraphProto { Name = "fold" };
        g.Input.Add(Ox.Value("x", "N", 4));
        g.Initializer.Add(Ox.Floats("a", new float[40000], new long[] { 40000, 1 }));
        g.Initializer.Add(Ox.Floats("b", new float[40000], new long[] { 1, 40000 }));
        g.Node.Add(Ox.Node("Add", "fold_add", new[] { "a", "b" }, new[] { "c" }));
        g.Node.Add(Ox.Node("Add", "use", new[] { "x", "c" }, new[] { "y" }));
        g.Output.Add(Ox.Value("y", "N", 4));
        var p = Path.Combine(Dir, "fold.onnx");
        Ox.Save(Ox.Model(g, 17), p);
        using var be = new CpuBackend();
        long alloc = Allocated(() => Refused(() => OnnxImporter.Load(p, be), "fold.onnx", "40000x40000", "PERTURB_MAX_TENSOR_ELEMENTS"));
        Assert.True(alloc < 64 << 20, $"{alloc} bytes allocated");
    }

    [Fact]
    public void InferenceFreesActivationsOfALongChainAndGivesForwardsLogits()
    {
        using var be = new CpuBackend();
        var g = new GraphBuilder(4, 6, 6);
        g.Add("conv", new Conv2d(4, 4, 3, padding: 1), GraphBuilder.Input);
        for (int i = 0; i < 300; i++) g.Add($"relu{i}", new ActivationLayer(Activation.Relu));
        int flat = g.Add("flat", new Flatten());                  // a view of relu299's output
        int l1 = g.Add("fc1", new Linear(144, 144), flat);
        g.Add("res", new AddLayer(), l1, flat);                     // reads the view again after fc1
        g.Add("fc2", new Linear(144, 3));
        using var m = g.Build(be, 5);
        m.Eval();
        var x = OnnxTestUtilRand(2 * 144);
        using var t = be.FromArray(x, 2, 4, 6, 6);
        var want = m.Forward(t).ToArray();
        int keptByForward = m.LiveActivations;
        var got = m.Infer(t).ToArray();
        int keptByInfer = m.LiveActivations;
        Assert.Equal(want, got);
        Assert.True(keptByForward > 300, $"{keptByForward}");
        Assert.True(keptByInfer <= 4, $"Infer kept {keptByInfer} tensors");
        Assert.Throws<InvalidOperationException>(() => m.Backward(be.FromArray(new float[6], 2, 3), BackwardMode.InputOnly));
        // A Forward after an Infer supports backward again.
        var z = m.Forward(t);
        using var dz = be.FromArray(new float[6] { 1, 0, 0, 0, 1, 0 }, 2, 3);
        Assert.NotNull(m.Backward(dz, BackwardMode.InputOnly));
    }

    static float[] OnnxTestUtilRand(int n) { var r = new SplitMix64(9); return Enumerable.Range(0, n).Select(_ => (float)r.Range(-1, 1)).ToArray(); }

    // ------------------------------------------------------------------ lost or mixed results

    [Fact]
    public void AnOutputFolderIsWrittenWholeAndAForeignOneIsRefused()
    {
        var outDir = Path.Combine(Dir, "out");
        OutputFolder.Write(outDir, false, "test", d => File.WriteAllText(Path.Combine(d, "a.txt"), "1"));
        Assert.True(File.Exists(Path.Combine(outDir, "a.txt")));
        Assert.True(File.Exists(Path.Combine(outDir, OutputFolder.Marker)));
        // A rerun replaces the whole folder: no file of the old run stays beside the new ones.
        OutputFolder.Write(outDir, false, "test", d => File.WriteAllText(Path.Combine(d, "b.txt"), "2"));
        Assert.False(File.Exists(Path.Combine(outDir, "a.txt")));
        Assert.True(File.Exists(Path.Combine(outDir, "b.txt")));
        // A run that fails half-way leaves the previous results as they were, and no temporary folder.
        Assert.Throws<PerturbException>(() => OutputFolder.Write(outDir, false, "test", d => { File.WriteAllText(Path.Combine(d, "c.txt"), "3"); throw new PerturbException("disk full"); }));
        Assert.True(File.Exists(Path.Combine(outDir, "b.txt")));
        Assert.False(File.Exists(Path.Combine(outDir, "c.txt")));
        Assert.Empty(Directory.GetDirectories(Dir, ".out.tmp-*"));
        // Someone else's folder: refused (exit 2), unless overwrite.
        var foreign = Path.Combine(Dir, "mine");
        Directory.CreateDirectory(foreign);
        File.WriteAllText(Path.Combine(foreign, "thesis.tex"), "x");
        Assert.Equal(2, Refused(() => OutputFolder.Write(foreign, false, "test", _ => { }), "--overwrite").ExitCode);
        Assert.True(File.Exists(Path.Combine(foreign, "thesis.tex")));
        OutputFolder.Write(foreign, true, "test", d => File.WriteAllText(Path.Combine(d, "r.txt"), "r"));
        Assert.False(File.Exists(Path.Combine(foreign, "thesis.tex")));
    }

    [Fact]
    public void AttackOutIsReplacedWholeOnARerunAndAForeignFolderNeedsOverwrite()
    {
        using (var be = new CpuBackend())
        using (var m = Presets.Create("lenet", be, 1, 28, 28, 4, 1))
            ModelFile.Save(m, Path.Combine(Dir, "m.safetensors"));
        string[] Attack(string outDir, string eps, params string[] more) =>
            new[] { "attack", "fgsm", "--model", Path.Combine(Dir, "m.safetensors"), "--data", "synthetic:train=8,test=8", "--n", "4", "--eps", eps, "--device", "cpu", "--out", outDir }.Concat(more).ToArray();
        var outDir = Path.Combine(Dir, "out");
        var (code, _, err) = CliRunner.Run(Attack(outDir, "0.1"));
        Assert.True(code == 0, err);
        Assert.True(File.Exists(Path.Combine(outDir, "adversarial_eps0.1.npy")));
        (code, _, err) = CliRunner.Run(Attack(outDir, "0.2"));
        Assert.True(code == 0, err);
        Assert.True(File.Exists(Path.Combine(outDir, "adversarial_eps0.2.npy")));
        Assert.False(File.Exists(Path.Combine(outDir, "adversarial_eps0.1.npy"))); // no old run's file beside the new
        Assert.Empty(Directory.GetDirectories(Dir, ".out.*"));

        var foreign = Path.Combine(Dir, "papers");
        Directory.CreateDirectory(foreign);
        File.WriteAllText(Path.Combine(foreign, "draft.tex"), "x");
        (code, _, err) = CliRunner.Run(Attack(foreign, "0.1"));
        Assert.Equal(2, code);
        Assert.Contains("--overwrite", err);
        Assert.Single(err.Trim().Split('\n'));
        Assert.True(File.Exists(Path.Combine(foreign, "draft.tex")));
        (code, _, err) = CliRunner.Run(Attack(foreign, "0.1", "--overwrite"));
        Assert.True(code == 0, err);
        Assert.False(File.Exists(Path.Combine(foreign, "draft.tex")));
    }

    [Fact]
    public void ASecondSweepOnTheSameResultsFileFailsClearly()
    {
        var p = Path.Combine(Dir, "results.jsonl");
        using (ResultsLog.Lock(p))
            Refused(() => ResultsLog.Lock(p).Dispose(), "results.jsonl", "another sweep");
        ResultsLog.Lock(p).Dispose(); // released with the first
    }

    [Fact]
    public void MergeKeepsACellRepeatedWithinOneFileOnce()
    {
        var rows = new[] { 0.01, 0.02 }.Select(e => new ResultRow { Cell = "c1", Attack = "pgd", Eps = e, N = 4, SuccessRate = e * 10, Seconds = 1 }).ToList();
        var p = Path.Combine(Dir, "twice.jsonl");
        SweepMerge.WriteJsonl(p, rows.Concat(rows.Select(r => r with { Seconds = 2 })));
        var m = SweepMerge.Merge(new[] { p });
        Assert.Equal(2, m.Rows.Count);
        Assert.Equal(1, m.DuplicateCells);
        var q = Path.Combine(Dir, "differ.jsonl");
        SweepMerge.WriteJsonl(q, rows.Concat(rows.Select(r => r with { SuccessRate = 0.9 })));
        Refused(() => SweepMerge.Merge(new[] { q }), "differ.jsonl", "c1");
    }

    [Fact]
    public void ReportRefusesExamplePathsThatLeaveTheResultsFolder()
    {
        Refused(() => ExampleSet.ResolveInside(Dir, "../../etc/passwd", "r.json"), "leaves the results folder");
        Refused(() => ExampleSet.ResolveInside(Dir, "/etc/passwd", "r.json"), "leaves the results folder");
        Assert.Equal(Path.Combine(Dir, "examples", "a.npz"), ExampleSet.ResolveInside(Dir, "examples/a.npz", "r.json"));
        var res = Path.Combine(Dir, "run", "results.json");
        Directory.CreateDirectory(Path.GetDirectoryName(res)!);
        File.WriteAllText(res, new JsonObject { ["rows"] = new JsonArray(new ResultRow { Attack = "pgd", Eps = 0.1, Examples = "../../../etc/passwd" }.ToJson()) }.ToJsonString());
        var (code, _, err) = CliRunner.Run("report", res);
        Assert.Equal(1, code);
        Assert.Contains("leaves the results folder", err);
        Assert.False(File.Exists(Path.Combine(Dir, "run", "index.html")));
    }

    [Fact]
    public void TrainingStopsWithAClearErrorWhenTheLossIsNotFinite()
    {
        using var be = new CpuBackend();
        using var m = Presets.Create("lenet", be, 1, 28, 28, 4, 1);
        var d = SyntheticShapes.Create(1, 64, 8).Train;
        d.X[5] = float.NaN;
        var e = Refused(() => Trainer.Fit(m, d, null, new TrainOptions { Epochs = 1, BatchSize = 64 }), "loss became NaN", "no model was saved");
        Assert.Equal(1, e.ExitCode);
    }

    [Fact]
    public void ErrorsNeverPrintAnExceptionTypeName()
    {
        foreach (var ex in new Exception[] { new InvalidOperationException("Sequence contains more than one element"), new ArgumentException("bad"), new IOException("disk"), new OutOfMemoryException(), new AggregateException(new FormatException("f")) })
        {
            var (line, code) = Perturb.Cli.Program.ErrorLine(ex, new[] { "eval" });
            Assert.Equal(1, code);
            Assert.StartsWith("error: ", line);
            Assert.DoesNotContain("Exception", line);
            Assert.DoesNotContain("--batch-size", line);
        }
    }
}
