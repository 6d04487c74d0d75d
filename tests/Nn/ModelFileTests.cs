using System.Buffers.Binary;
using System.Text;
using Perturb.Engine;
using Perturb.Engine.Backends;
using Perturb.Engine.IO;
using Perturb.Engine.Nn;

namespace Perturb.Tests.Nn;

public class ModelFileTests : TempDirTest
{

    static Model Trained(IBackend be)
    {
        var m = Presets.Create("cnn-small", be, 1, 12, 12, 3, 9);
        // Move the BatchNorm running statistics and weights away from their initial values.
        m.Train();
        var rng = new Random(2);
        using var x = be.FromArray(Enumerable.Range(0, 4 * 144).Select(_ => (float)rng.NextDouble()).ToArray(), 4, 1, 12, 12);
        m.Forward(x);
        m.Eval();
        m.MarkParametersChanged();
        return m;
    }

    [Theory]
    [InlineData("cnn-small")]
    [InlineData("resnet18")]
    [InlineData("lenet")]
    public void RoundTripGivesBitIdenticalOutputs(string arch)
    {
        using var be = new CpuBackend();
        var m = arch == "cnn-small" ? Trained(be) : Presets.Create(arch, be, 3, 16, 16, 4, 3);
        m.Eval();
        m.ClassNames = new[] { "a", "b", "c", "d" }.Take(m.NumClasses).ToArray();
        var path = Path.Combine(Dir, "m.safetensors");
        ModelFile.Save(m, path);
        var c = m.InputShape[0]; var h = m.InputShape[1];
        var rng = new Random(4);
        using var x = be.FromArray(Enumerable.Range(0, 3 * c * h * h).Select(_ => (float)rng.NextDouble()).ToArray(), 3, c, h, h);
        var before = m.Forward(x).ToArray();
        using var m2 = ModelFile.Load(path, be);
        m2.Eval();
        var after = m2.Forward(x).ToArray();
        Assert.Equal(before, after);
        Assert.Equal(m.ClassNames, m2.ClassNames);
        Assert.Equal(m.NamedParameters().Select(p => p.Name), m2.NamedParameters().Select(p => p.Name));
        // Running statistics travel too.
        if (arch != "lenet")
        {
            Assert.Contains(m2.NamedParameters(), p => p.Name.EndsWith("running_var"));
            foreach (var ((_, a), (_, b)) in m.NamedParameters().Zip(m2.NamedParameters())) Assert.Equal(a.Value.ToArray(), b.Value.ToArray());
        }
        Assert.False(File.Exists(path + ".tmp"));
        Assert.Empty(Directory.GetFiles(Dir, ".*tmp*"));
    }

    [Fact]
    public void FileIsStandardSafetensors()
    {
        using var be = new CpuBackend();
        var m = Presets.Create("lenet", be, 1, 28, 28, 10, 0);
        var path = Path.Combine(Dir, "l.safetensors");
        ModelFile.Save(m, path);
        var bytes = File.ReadAllBytes(path);
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0UL, (8 + n) % 8);
        var header = Encoding.UTF8.GetString(bytes, 8, (int)n);
        Assert.Contains("\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":[6,1,5,5],\"data_offsets\":[", header);
        Assert.Contains("__metadata__", header);
        // Data section length equals the sum of the tensor sizes.
        long total = m.NamedParameters().Sum(p => (long)p.P.Value.Length * 4);
        Assert.Equal(total, bytes.Length - 8 - (long)n);
    }

    string Saved()
    {
        using var be = new CpuBackend();
        var path = Path.Combine(Dir, "ok.safetensors");
        ModelFile.Save(Presets.Create("lenet", be, 1, 28, 28, 10, 0), path);
        return path;
    }

    [Fact]
    public void TruncatedFileIsAClearError()
    {
        var path = Saved();
        var bytes = File.ReadAllBytes(path);
        using var be = new CpuBackend();
        foreach (int len in new[] { 0, 5, 20, bytes.Length / 2, bytes.Length - 1 })
        {
            var p = Path.Combine(Dir, $"trunc{len}.safetensors");
            File.WriteAllBytes(p, bytes.AsSpan(0, len).ToArray());
            var e = Assert.Throws<PerturbException>(() => ModelFile.Load(p, be));
            Assert.Contains(p, e.Message);
            Assert.DoesNotContain("\n", e.Message);
        }
    }

    [Fact]
    public void CorruptedHeaderIsAClearError()
    {
        var path = Saved();
        var bytes = File.ReadAllBytes(path);
        using var be = new CpuBackend();
        var bad = (byte[])bytes.Clone();
        bad[12] = (byte)'#'; // breaks the JSON
        var p = Path.Combine(Dir, "corrupt.safetensors");
        File.WriteAllBytes(p, bad);
        var e = Assert.Throws<PerturbException>(() => ModelFile.Load(p, be));
        Assert.Contains("not a valid safetensors file", e.Message);

        var huge = (byte[])bytes.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(huge, ulong.MaxValue);
        File.WriteAllBytes(p, huge);
        e = Assert.Throws<PerturbException>(() => ModelFile.Load(p, be));
        Assert.Contains("header length", e.Message);

        File.WriteAllText(p, "this is not a model at all, just text");
        Assert.Throws<PerturbException>(() => ModelFile.Load(p, be));
    }

    [Fact]
    public void MismatchedTensorsAreClearErrors()
    {
        using var be = new CpuBackend();
        var m = Presets.Create("lenet", be, 1, 28, 28, 10, 0);
        var arch = m.ArchitectureJson().ToJsonString();
        var tensors = m.NamedParameters().Select(p => new NamedArray(p.Name, p.P.Value.Shape, p.P.Value.ToArray())).ToList();
        var meta = new Dictionary<string, string> { [ModelFile.ArchKey] = arch };
        var p = Path.Combine(Dir, "mm.safetensors");

        // Wrong shape for one tensor.
        var wrong = tensors.Select(t => t.Name == "fc1.weight" ? new NamedArray(t.Name, new[] { 120, 399 }, new float[120 * 399]) : t);
        SafeTensors.Write(p, wrong, meta);
        var e = Assert.Throws<PerturbException>(() => ModelFile.Load(p, be));
        Assert.Contains("fc1.weight", e.Message); Assert.Contains("120x399", e.Message); Assert.Contains("120x400", e.Message);

        // A missing tensor.
        SafeTensors.Write(p, tensors.Where(t => t.Name != "conv2.bias"), meta);
        e = Assert.Throws<PerturbException>(() => ModelFile.Load(p, be));
        Assert.Contains("conv2.bias", e.Message); Assert.Contains("missing", e.Message);

        // An extra tensor.
        SafeTensors.Write(p, tensors.Append(new NamedArray("stray", new[] { 2 }, new float[2])), meta);
        e = Assert.Throws<PerturbException>(() => ModelFile.Load(p, be));
        Assert.Contains("stray", e.Message);

        // No architecture.
        SafeTensors.Write(p, tensors, new Dictionary<string, string>());
        e = Assert.Throws<PerturbException>(() => ModelFile.Load(p, be));
        Assert.Contains("perturb.architecture", e.Message);

        // Missing file.
        e = Assert.Throws<PerturbException>(() => ModelFile.Load(Path.Combine(Dir, "nope.safetensors"), be));
        Assert.Contains("no such file", e.Message);
    }

    [Fact]
    public void ReadsHalfAndDoublePrecisionTensors()
    {
        var p = Path.Combine(Dir, "dtypes.safetensors");
        // Hand-built file: one F16 tensor [2] = (1.5, -2), one F64 tensor [1] = 0.25, one BF16 [1] = 3.0.
        var header = "{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[4,12]},\"c\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[12,14]}}";
        var hb = Encoding.UTF8.GetBytes(header);
        using var ms = new MemoryStream();
        var len = new byte[8]; BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)hb.Length);
        ms.Write(len); ms.Write(hb);
        var d = new byte[14];
        BinaryPrimitives.WriteHalfLittleEndian(d, (Half)1.5f); BinaryPrimitives.WriteHalfLittleEndian(d.AsSpan(2), (Half)(-2f));
        BinaryPrimitives.WriteDoubleLittleEndian(d.AsSpan(4), 0.25);
        BinaryPrimitives.WriteUInt16LittleEndian(d.AsSpan(12), (ushort)(BitConverter.SingleToInt32Bits(3f) >> 16));
        ms.Write(d);
        File.WriteAllBytes(p, ms.ToArray());
        var (t, _) = SafeTensors.Read(p);
        Assert.Equal(new[] { 1.5f, -2f }, t.Single(x => x.Name == "a").Data);
        Assert.Equal(new[] { 0.25f }, t.Single(x => x.Name == "b").Data);
        Assert.Equal(new[] { 3f }, t.Single(x => x.Name == "c").Data);
    }
}
