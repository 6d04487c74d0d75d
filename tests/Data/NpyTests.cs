using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using Perturb.Engine;
using Perturb.Engine.Data;

namespace Perturb.Tests.Data;

public class NpyTests : TempDirTest
{
    static NpyArray Parse(byte[] b, string name = "x.npy") => Npy.Read(new MemoryStream(b), name);

    static byte[] Raw(string descr, bool fortran, int[] shape, byte[] data)
    {
        var ms = new MemoryStream();
        Npy.WriteRaw(ms, descr, fortran, shape, data);
        return ms.ToArray();
    }

    /// <summary>A file with a hand-made header: version bytes and the literal dict text as given.</summary>
    static byte[] WithHeader(int major, string dict, byte[] data)
    {
        var ms = new MemoryStream();
        ms.Write(new byte[] { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', (byte)major, 0 });
        var h = Encoding.UTF8.GetBytes(dict + "\n");
        if (major == 1) { var l = new byte[2]; BinaryPrimitives.WriteUInt16LittleEndian(l, (ushort)h.Length); ms.Write(l); }
        else { var l = new byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(l, (uint)h.Length); ms.Write(l); }
        ms.Write(h); ms.Write(data);
        return ms.ToArray();
    }

    [Fact]
    public void Float32AndUInt8RoundTripThroughFiles()
    {
        var f = NpyArray.FromFloats(new[] { 0f, 0.5f, -1.25f, 3e-8f, 1e9f, float.Epsilon }, 2, 3);
        var u = NpyArray.FromBytes(new byte[] { 0, 1, 127, 128, 254, 255 }, 6);
        Npy.WriteFile(Path.Combine(Dir, "f.npy"), f);
        Npy.WriteFile(Path.Combine(Dir, "u.npy"), u);
        var f2 = Npy.ReadFile(Path.Combine(Dir, "f.npy"));
        var u2 = Npy.ReadFile(Path.Combine(Dir, "u.npy"));
        Assert.Equal(new[] { 2, 3 }, f2.Shape); Assert.Equal(NpyType.Float32, f2.Type);
        Assert.Equal(f.ToFloat32(), f2.ToFloat32());
        Assert.Equal(new[] { 6 }, u2.Shape); Assert.Equal(u.Data, u2.Data);
        // the header is padded so the data starts on a 64-byte boundary, as NumPy writes it
        var bytes = File.ReadAllBytes(Path.Combine(Dir, "f.npy"));
        Assert.Equal(0, (bytes.Length - 24) % 64);
        Assert.Contains("'shape': (2, 3)", Encoding.Latin1.GetString(bytes));
        Assert.Contains("'shape': (6,)", Encoding.Latin1.GetString(File.ReadAllBytes(Path.Combine(Dir, "u.npy"))));
    }

    [Theory]
    [InlineData("u1", 1)] [InlineData("i1", 1)] [InlineData("b1", 1)]
    [InlineData("u2", 2)] [InlineData("i2", 2)] [InlineData("u4", 4)] [InlineData("i4", 4)]
    [InlineData("u8", 8)] [InlineData("i8", 8)] [InlineData("f2", 2)] [InlineData("f4", 4)] [InlineData("f8", 8)]
    public void EveryDtypeInBothByteOrders(string code, int size)
    {
        double[] vals = code switch { "b1" => new double[] { 0, 1, 1 }, "u1" or "u2" or "u4" or "u8" => new double[] { 0, 7, 200 }, _ => new double[] { -3, 0, 100 } };
        foreach (bool big in new[] { false, true })
        {
            var data = new byte[vals.Length * size];
            for (int i = 0; i < vals.Length; i++)
            {
                var s = data.AsSpan(i * size, size);
                switch (code)
                {
                    case "u1" or "b1": s[0] = (byte)vals[i]; break;
                    case "i1": s[0] = (byte)(sbyte)vals[i]; break;
                    case "u2": BinaryPrimitives.WriteUInt16LittleEndian(s, (ushort)vals[i]); break;
                    case "i2": BinaryPrimitives.WriteInt16LittleEndian(s, (short)vals[i]); break;
                    case "u4": BinaryPrimitives.WriteUInt32LittleEndian(s, (uint)vals[i]); break;
                    case "i4": BinaryPrimitives.WriteInt32LittleEndian(s, (int)vals[i]); break;
                    case "u8": BinaryPrimitives.WriteUInt64LittleEndian(s, (ulong)vals[i]); break;
                    case "i8": BinaryPrimitives.WriteInt64LittleEndian(s, (long)vals[i]); break;
                    case "f2": BinaryPrimitives.WriteHalfLittleEndian(s, (Half)vals[i]); break;
                    case "f4": BinaryPrimitives.WriteSingleLittleEndian(s, (float)vals[i]); break;
                    default: BinaryPrimitives.WriteDoubleLittleEndian(s, vals[i]); break;
                }
                if (big) s.Reverse();
            }
            string descr = (size == 1 ? "|" : big ? ">" : "<") + code;
            var a = Parse(Raw(descr, false, new[] { 3 }, data));
            Assert.Equal(vals, Enumerable.Range(0, 3).Select(i => a[i]).ToArray());
        }
    }

    [Fact]
    public void FortranOrderIsTransposedToCOrder()
    {
        // C-order values v[i,j,k] = 100 i + 10 j + k for shape (2, 3, 4); in Fortran order i varies fastest.
        int[] shape = { 2, 3, 4 };
        var fdata = new byte[24 * 4];
        int p = 0;
        for (int k = 0; k < 4; k++) for (int j = 0; j < 3; j++) for (int i = 0; i < 2; i++)
            BinaryPrimitives.WriteInt32BigEndian(fdata.AsSpan(4 * p++), 100 * i + 10 * j + k);
        var a = Parse(Raw(">i4", true, shape, fdata));
        Assert.Equal(shape, a.Shape);
        int c = 0;
        for (int i = 0; i < 2; i++) for (int j = 0; j < 3; j++) for (int k = 0; k < 4; k++) Assert.Equal(100 * i + 10 * j + k, a[c++]);
    }

    [Fact]
    public void ScalarsVersionsAndHeaderVariants()
    {
        var one = new byte[4]; BinaryPrimitives.WriteSingleLittleEndian(one, 2.5f);
        var s = Parse(Raw("<f4", false, Array.Empty<int>(), one));
        Assert.Empty(s.Shape); Assert.Equal(1, s.Count); Assert.Equal(2.5, s[0]);
        foreach (var major in new[] { 1, 2, 3 })
        {
            var a = Parse(WithHeader(major, "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (1,)}", one));
            Assert.Equal(2.5, a[0]);
        }
        var empty = Parse(WithHeader(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (0, 28, 28), }", Array.Empty<byte>()));
        Assert.Equal(new[] { 0, 28, 28 }, empty.Shape);
    }

    [Theory]
    [InlineData("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", "object (pickled)")]
    [InlineData("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", "unsupported dtype '<c8'")]
    [InlineData("{'descr': [('a', '<i4'), ('b', '<f4')], 'fortran_order': False, 'shape': (2,), }", "structured")]
    [InlineData("{'descr': '<i4', 'shape': (2,), }", "fortran_order")]
    [InlineData("{'descr': '<i4', 'fortran_order': False, 'shape': (2, 'x'), }", "header dict")]
    [InlineData("{'descr': '<i4', 'fortran_order': False, 'shape': (2,)", "header dict")]
    public void MalformedHeadersAreClearErrors(string dict, string expect)
    {
        var e = Assert.Throws<PerturbException>(() => Parse(WithHeader(1, dict, new byte[64]), "bad.npy"));
        Assert.StartsWith("bad.npy: ", e.Message);
        Assert.Contains(expect, e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Fact]
    public void BadMagicVersionAndTruncatedDataAreClearErrors()
    {
        var good = Raw("<f4", false, new[] { 10 }, new byte[40]);
        var e1 = Assert.Throws<PerturbException>(() => Parse(Encoding.ASCII.GetBytes("PK\u0003\u0004 not numpy at all"), "a.npy"));
        Assert.Contains("a.npy", e1.Message); Assert.Contains("magic", e1.Message);
        var v = (byte[])good.Clone(); v[6] = 9;
        Assert.Contains("version 9.0", Assert.Throws<PerturbException>(() => Parse(v)).Message);
        var e3 = Assert.Throws<PerturbException>(() => Parse(good[..^7], "t.npy"));
        Assert.Contains("t.npy: truncated", e3.Message); Assert.Contains("40 bytes", e3.Message); Assert.Contains("33", e3.Message);
        Assert.Contains("no such file", Assert.Throws<PerturbException>(() => Npy.ReadFile(Path.Combine(Dir, "none.npy"))).Message);
    }

    [Fact]
    public void NpzMembersAreReadAndErrorsNameTheMember()
    {
        var path = Path.Combine(Dir, "a.npz");
        Npy.WriteNpz(path, new[] { ("x", NpyArray.FromBytes(new byte[] { 1, 2, 3, 4 }, 2, 2)), ("y", NpyArray.FromFloats(new[] { 1f }, 1)) });
        using (var npz = new NpzFile(path))
        {
            Assert.Equal(new[] { "x", "y" }, npz.Names.ToArray());
            Assert.Equal(new byte[] { 1, 2, 3, 4 }, npz.Read("x").Data);
            var e = Assert.Throws<PerturbException>(() => npz.Read("z"));
            Assert.Contains("a.npz", e.Message); Assert.Contains("'z'", e.Message);
        }
        // a member holding a truncated array
        var bad = Path.Combine(Dir, "bad.npz");
        using (var fs = File.Create(bad))
        using (var zip = new ZipArchive(fs, ZipArchiveMode.Create))
        using (var es = zip.CreateEntry("train_images.npy").Open())
            es.Write(Raw("|u1", false, new[] { 5, 4 }, new byte[7]));
        using (var npz = new NpzFile(bad))
        {
            var e = Assert.Throws<PerturbException>(() => npz.Read("train_images"));
            Assert.Contains("bad.npz: member 'train_images.npy': truncated", e.Message);
        }
        File.WriteAllText(Path.Combine(Dir, "text.npz"), "hello");
        Assert.Contains("not a valid .npz", Assert.Throws<PerturbException>(() => new NpzFile(Path.Combine(Dir, "text.npz"))).Message);
    }
}
