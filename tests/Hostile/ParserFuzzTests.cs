using CsCheck;
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
using Perturb.Tests.Data;
using Perturb.Tests.Onnx;
using SkiaSharp;

namespace Perturb.Tests.Hostile;

/// <summary>
/// Property tests over mutated files, one per parser (CsCheck; a failure prints the seed that reproduces it): each
/// mutated input either parses or fails with one <see cref="PerturbException"/> line; no other exception type
/// escapes, and no input allocates more than <see cref="AllocationCap"/>. Mutations start from a valid file: bytes
/// overwritten (often with extreme values), the file cut short, or bytes inserted.
/// </summary>
public class ParserFuzzTests : TempDirTest
{
    /// <summary>Inputs per parser: 250 in CI (a few seconds in all); PERTURB_FUZZ_ITERATIONS runs more locally.</summary>
    static readonly int Iterations = int.TryParse(Environment.GetEnvironmentVariable("PERTURB_FUZZ_ITERATIONS"), out int n) && n > 0 ? n : 250;
    const long AllocationCap = 256L << 20;

    static readonly byte[] Extremes = { 0x00, 0xFF, 0x7F, 0x80, 0x01, (byte)'(', (byte)'{', (byte)'[', (byte)'9', (byte)'-' };

    /// <summary>Mutations of <paramref name="seed"/>: overwrite, overwrite with extreme bytes, truncate, insert.</summary>
    static Gen<byte[]> Mutated(byte[] seed) =>
        Gen.Select(Gen.Int[0, 3], Gen.Int[0, seed.Length - 1].Array[1, 8], Gen.Byte.Array[8], (mode, pos, vals) =>
        {
            var b = (byte[])seed.Clone();
            switch (mode)
            {
                case 0: for (int i = 0; i < pos.Length; i++) b[pos[i]] = vals[i]; return b;
                case 1: for (int i = 0; i < pos.Length; i++) b[pos[i]] = Extremes[vals[i] % Extremes.Length]; return b;
                case 2: return b[..pos[0]];
                default: return b[..pos[0]].Concat(vals.Take(pos.Length)).Concat(b[pos[0]..]).ToArray();
            }
        });

    /// <summary>Runs one parse: success, or one clear PerturbException; bounded allocation either way.</summary>
    static void OneClearOutcome(Action parse)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        try { parse(); }
        catch (PerturbException e)
        {
            Assert.False(string.IsNullOrWhiteSpace(e.Message));
            Assert.DoesNotContain("Exception", e.Message);
        }
        long alloc = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(alloc < AllocationCap, $"one input allocated {alloc} bytes");
    }

    void FuzzFile(byte[] seed, string name, Action<string> parse) =>
        Mutated(seed).Sample(b =>
        {
            var p = Path.Combine(Dir, name);
            File.WriteAllBytes(p, b);
            OneClearOutcome(() => parse(p));
        }, iter: Iterations, threads: 1);

    [Fact]
    public void Npy()
    {
        var ms = new MemoryStream();
        Engine.Data.Npy.Write(ms, NpyArray.FromFloats(Enumerable.Range(0, 6).Select(i => (float)i).ToArray(), 2, 3));
        Mutated(ms.ToArray()).Sample(b => OneClearOutcome(() => Engine.Data.Npy.Read(new MemoryStream(b), "fuzz.npy").ToFloat32()), iter: Iterations, threads: 1);
    }

    [Fact]
    public void NpzMedMnist()
    {
        var p = Path.Combine(Dir, "seed.npz");
        Crafted.MedMnist(p, new long[] { 0, 1, 1, 0 });
        FuzzFile(File.ReadAllBytes(p), "fuzz.npz", f => { MedMnist.Load(f); MedMnist.Info(f); });
    }

    [Fact]
    public void IdxPlainAndGzipped()
    {
        var img = Crafted.Idx(0x803, new uint[] { 3, 4, 4 }, new byte[48]);
        FuzzFile(img, "train-images-idx3-ubyte", f => Idx.ReadImages(f));
        FuzzFile(Crafted.Gzip(img), "train-images-idx3-ubyte.gz", f => Idx.ReadImages(f));
    }

    [Fact]
    public void SafetensorsModelFile()
    {
        using var be = new CpuBackend();
        var g = new GraphBuilder(1, 6, 6);
        g.Add("conv", new Conv2d(1, 2, 3), GraphBuilder.Input);
        g.Add("flat", new Flatten());
        g.Add("fc", new Linear(32, 3));
        using (var m = g.Build(be, 1)) ModelFile.Save(m, Path.Combine(Dir, "seed.safetensors"));
        FuzzFile(File.ReadAllBytes(Path.Combine(Dir, "seed.safetensors")), "fuzz.safetensors", f => ModelFile.Load(f, be).Dispose());
    }

    /// <summary>The architecture JSON inside a model file, mutated as text: FromArchitecture and every layer's settings.</summary>
    [Fact]
    public void ModelArchitectureJson()
    {
        using var be = new CpuBackend();
        var g = new GraphBuilder(1, 6, 6);
        g.Add("norm", new Normalize(new[] { 0.5f }, new[] { 0.5f }), GraphBuilder.Input);
        g.Add("conv", new Conv2d(1, 2, 3, padding: 1));
        g.Add("bn", new BatchNorm2d(2));
        g.Add("relu", new ActivationLayer(Activation.Relu));
        g.Add("pool", new Pool2d(true, 2));
        g.Add("flat", new Flatten());
        g.Add("fc", new Linear(18, 3));
        var p = Path.Combine(Dir, "seed.safetensors");
        using (var m = g.Build(be, 1)) ModelFile.Save(m, p);
        var (tensors, meta) = SafeTensors.Read(p);
        var arch = System.Text.Encoding.UTF8.GetBytes(meta[ModelFile.ArchKey]);
        Mutated(arch).Sample(b =>
        {
            var mm = new Dictionary<string, string>(meta) { [ModelFile.ArchKey] = System.Text.Encoding.UTF8.GetString(b) };
            var f = Path.Combine(Dir, "fuzz.safetensors");
            SafeTensors.Write(f, tensors, mm);
            OneClearOutcome(() => ModelFile.Load(f, be).Dispose());
        }, iter: Iterations, threads: 1);
    }

    [Fact]
    public void OnnxModelFile()
    {
        var gp = new GraphProto { Name = "fuzz" };
        gp.Input.Add(Ox.Value("x", "N", 1, 6, 6));
        gp.Initializer.Add(Ox.Floats("w", Ox.Rand(18, 1), new long[] { 2, 1, 3, 3 }));
        gp.Initializer.Add(Ox.Floats("fw", Ox.Rand(96, 2), new long[] { 32, 3 }));
        gp.Initializer.Add(Ox.Int64s("shape", 0, -1));
        gp.Node.Add(Ox.Node("Conv", "conv", new[] { "x", "w" }, new[] { "c" }));
        gp.Node.Add(Ox.Node("Relu", "relu", new[] { "c" }, new[] { "r" }));
        gp.Node.Add(Ox.Node("Reshape", "flat", new[] { "r", "shape" }, new[] { "f" }));
        gp.Node.Add(Ox.Node("MatMul", "fc", new[] { "f", "fw" }, new[] { "y" }));
        gp.Output.Add(Ox.Value("y", "N", 3));
        var seed = Ox.Model(gp, 17).ToByteArray();
        using var be = new CpuBackend();
        OnnxImporter.Import(ModelProto.Parser.ParseFrom(seed), be).Dispose(); // the seed itself imports
        FuzzFile(seed, "fuzz.onnx", f => OnnxImporter.Load(f, be).Dispose());
    }

    [SharedDataFact]
    public void ImagesPngBmpJpeg()
    {
        var png = File.ReadAllBytes(SharedData.PathOf("samples", "cifar10", "cifar10_00_3.png"));
        using var bmp = SKBitmap.Decode(png);
        var jpg = bmp.Encode(SKEncodedImageFormat.Jpeg, 80).ToArray();
        var bmpFile = Crafted.Bmp(4, 4);
        Assert.Equal(4, ImageFile.Decode(WriteTo("seed.bmp", bmpFile)).Width); // the seeds decode
        FuzzFile(png, "fuzz.png", f => ImageFile.Decode(f));
        FuzzFile(jpg, "fuzz.jpg", f => ImageFile.Decode(f));
        FuzzFile(bmpFile, "fuzz.bmp", f => ImageFile.Decode(f));
    }

    string WriteTo(string name, byte[] b) { var p = Path.Combine(Dir, name); File.WriteAllBytes(p, b); return p; }

    [Fact]
    public void SweepSpec()
    {
        var spec = """
        {"models": ["a.safetensors"], "data": ["synthetic:train=8,test=4"], "n": 4, "seed": 1,
         "attacks": [{"name": "pgd", "eps": ["1/255", 0.03], "steps": 2, "grid": {"restarts": [1, 2], "norm": ["linf", "l2"]}},
                     {"name": "one-pixel", "pixels": 1, "population": 10, "iterations": 2}]}
        """u8.ToArray();
        FuzzFile(spec, "sweep.json", f => Engine.Sweep.SweepSpec.Load(f, checkFiles: false));
    }

    [Fact]
    public void ResultsFiles()
    {
        var rows = new[] { 0.01, 0.02 }.Select(e => new ResultRow { Cell = "c", Attack = "pgd", Eps = e, N = 4, SuccessRate = 0.5, Examples = "ex/a.npz" }).ToList();
        var p = Path.Combine(Dir, "seed.jsonl");
        SweepMerge.WriteJsonl(p, rows);
        FuzzFile(File.ReadAllBytes(p), "fuzz.jsonl", f => { SweepMerge.Merge(new[] { f }); foreach (var r in ResultRow.ReadFile(f)) if (r.Examples != null) ExampleSet.ResolveInside(Dir, r.Examples, f); });
    }
}
