using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using Perturb.Engine.Data;

namespace Perturb.Tests.Hostile;

/// <summary>Small hostile files made in the tests: image headers that lie about their size, npy/npz/IDX oddities.</summary>
static class Crafted
{
    static uint Crc(ReadOnlySpan<byte> b)
    {
        uint c = 0xFFFFFFFF;
        foreach (var x in b) { c ^= x; for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1; }
        return ~c;
    }

    static void Chunk(MemoryStream s, string type, byte[] data)
    {
        var len = new byte[4]; BinaryPrimitives.WriteUInt32BigEndian(len, (uint)data.Length); s.Write(len);
        var td = Encoding.ASCII.GetBytes(type).Concat(data).ToArray();
        s.Write(td);
        var crc = new byte[4]; BinaryPrimitives.WriteUInt32BigEndian(crc, Crc(td)); s.Write(crc);
    }

    /// <summary>A valid-looking PNG (8-bit RGB) whose IHDR claims w x h, with one small IDAT: a few hundred bytes.</summary>
    public static byte[] Png(uint w, uint h, byte bitDepth = 8, byte colourType = 2)
    {
        var s = new MemoryStream();
        s.Write(new byte[] { 137, 80, 78, 71, 13, 10, 26, 10 });
        var ihdr = new byte[13];
        BinaryPrimitives.WriteUInt32BigEndian(ihdr, w); BinaryPrimitives.WriteUInt32BigEndian(ihdr.AsSpan(4), h);
        ihdr[8] = bitDepth; ihdr[9] = colourType;
        Chunk(s, "IHDR", ihdr);
        var z = new MemoryStream();
        using (var zs = new ZLibStream(z, CompressionLevel.SmallestSize, true)) zs.Write(new byte[4096]);
        Chunk(s, "IDAT", z.ToArray());
        Chunk(s, "IEND", Array.Empty<byte>());
        return s.ToArray();
    }

    /// <summary>A BMP (BITMAPINFOHEADER, 24-bit) whose header claims w x h, with a few bytes of pixels.</summary>
    public static byte[] Bmp(int w, int h)
    {
        var b = new byte[54 + 64];
        b[0] = (byte)'B'; b[1] = (byte)'M';
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(2), (uint)b.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(10), 54);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(14), 40);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(18), w);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(22), h);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(26), 1);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(28), 24);
        return b;
    }

    /// <summary>A baseline JPEG's first segments (SOI, APP0, SOF0 claiming w x h, 3 components), then EOI.</summary>
    public static byte[] Jpeg(ushort w, ushort h)
    {
        var s = new MemoryStream();
        s.Write(new byte[] { 0xFF, 0xD8 });
        s.Write(new byte[] { 0xFF, 0xE0, 0, 16, (byte)'J', (byte)'F', (byte)'I', (byte)'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0 });
        var sof = new byte[] { 0xFF, 0xC0, 0, 17, 8, (byte)(h >> 8), (byte)h, (byte)(w >> 8), (byte)w, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1 };
        s.Write(sof);
        s.Write(new byte[] { 0xFF, 0xD9 });
        return s.ToArray();
    }

    /// <summary>A .npy (version 1.0) with the given header dict text and data.</summary>
    public static byte[] Npy(string dict, byte[] data, int major = 1)
    {
        var s = new MemoryStream();
        s.Write(new byte[] { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', (byte)major, 0 });
        var h = Encoding.Latin1.GetBytes(dict + "\n");
        if (major == 1) { var l = new byte[2]; BinaryPrimitives.WriteUInt16LittleEndian(l, (ushort)h.Length); s.Write(l); }
        else { var l = new byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(l, (uint)h.Length); s.Write(l); }
        s.Write(h); s.Write(data);
        return s.ToArray();
    }

    public static byte[] NpyOf(string descr, string shape, byte[] data) => Npy($"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}", data);

    /// <summary>An .npz (zip) of the given members, in order (names may repeat).</summary>
    public static void Npz(string path, params (string Name, byte[] Data)[] members)
    {
        using var fs = File.Create(path);
        using var zip = new ZipArchive(fs, ZipArchiveMode.Create);
        foreach (var (name, data) in members)
        {
            using var es = zip.CreateEntry(name, CompressionLevel.Fastest).Open();
            es.Write(data);
        }
    }

    /// <summary>A MedMNIST-style npz with uint8 images n x 4 x 4 and int64 labels.</summary>
    public static void MedMnist(string path, long[] trainLabels, long[]? testLabels = null)
    {
        testLabels ??= new long[] { 0, 1 };
        byte[] Labels(long[] l) { var b = new byte[l.Length * 8]; for (int i = 0; i < l.Length; i++) BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(i * 8), l[i]); return b; }
        Npz(path,
            ("train_images.npy", NpyOf("|u1", $"({trainLabels.Length}, 4, 4)", new byte[trainLabels.Length * 16])),
            ("train_labels.npy", NpyOf("<i8", $"({trainLabels.Length}, 1)", Labels(trainLabels))),
            ("test_images.npy", NpyOf("|u1", $"({testLabels.Length}, 4, 4)", new byte[testLabels.Length * 16])),
            ("test_labels.npy", NpyOf("<i8", $"({testLabels.Length}, 1)", Labels(testLabels))));
    }

    /// <summary>An IDX header (magic and dimensions, big-endian) followed by the given bytes.</summary>
    public static byte[] Idx(uint magic, uint[] dims, byte[] data)
    {
        var b = new byte[4 + 4 * dims.Length + data.Length];
        BinaryPrimitives.WriteUInt32BigEndian(b, magic);
        for (int i = 0; i < dims.Length; i++) BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(4 + 4 * i), dims[i]);
        data.CopyTo(b, 4 + 4 * dims.Length);
        return b;
    }

    public static byte[] Gzip(byte[] data)
    {
        var m = new MemoryStream();
        using (var g = new GZipStream(m, CompressionLevel.Fastest, true)) g.Write(data);
        return m.ToArray();
    }

    /// <summary>mkfifo through the shell (no .NET API makes one); false where it is unavailable.</summary>
    public static bool MakeFifo(string path)
    {
        if (OperatingSystem.IsWindows()) return false;
        var p = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("mkfifo", $"\"{path}\"") { UseShellExecute = false });
        p!.WaitForExit();
        return p.ExitCode == 0 && File.Exists(path);
    }
}
