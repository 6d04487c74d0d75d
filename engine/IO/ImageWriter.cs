using SkiaSharp;

namespace Perturb.Engine.IO;

/// <summary>Writes CHW float images in [0,1] as 8-bit PNG files (grey for 1 channel, RGB for 3), atomically.</summary>
public static class ImageWriter
{
    public static void SavePng(string path, ReadOnlySpan<float> chw, int c, int h, int w)
    {
        if (c != 1 && c != 3) throw new PerturbException($"{path}: cannot write a {c}-channel image as PNG (1 or 3 channels)");
        AtomicFile.WriteBytes(path, EncodePng(chw, c, h, w));
    }

    /// <summary>Encodes a CHW image in [0,1] (1 or 3 channels) as PNG bytes.</summary>
    public static byte[] EncodePng(ReadOnlySpan<float> chw, int c, int h, int w)
    {
        if (c != 1 && c != 3) throw new PerturbException($"cannot encode a {c}-channel image as PNG (1 or 3 channels)");
        if (chw.Length != c * h * w) throw new ArgumentException($"{chw.Length} values for a {c}x{h}x{w} image");
        using var bmp = new SKBitmap(new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Opaque));
        var px = new byte[w * h * 4];
        int hw = h * w;
        for (int i = 0; i < hw; i++)
        {
            byte r = ToByte(chw[i]);
            byte g = c == 3 ? ToByte(chw[hw + i]) : r, b = c == 3 ? ToByte(chw[2 * hw + i]) : r;
            px[4 * i] = r; px[4 * i + 1] = g; px[4 * i + 2] = b; px[4 * i + 3] = 255;
        }
        System.Runtime.InteropServices.Marshal.Copy(px, 0, bmp.GetPixels(), px.Length);
        using var data = bmp.Encode(SKEncodedImageFormat.Png, 100) ?? throw new PerturbException("PNG encoding failed");
        return data.ToArray();
    }

    /// <summary>
    /// Encodes a CHW image in [0,1] as a grey (1 channel) or RGB (3 channels) PNG of 8 or 16 bits per sample, each
    /// value rounded to the nearest level (v × 255 or v × 65535). Written here (filter None, zlib): SkiaSharp encodes
    /// 8 bits per channel only, and always as RGBA.
    /// </summary>
    public static byte[] EncodePng(ReadOnlySpan<float> chw, int c, int h, int w, int bits)
    {
        if (c != 1 && c != 3) throw new PerturbException($"cannot encode a {c}-channel image as PNG (1 or 3 channels)");
        if (bits is not (8 or 16)) throw new PerturbException($"PNG depth must be 8 or 16 bits, got {bits}", 2);
        if (chw.Length != c * h * w) throw new ArgumentException($"{chw.Length} values for a {c}x{h}x{w} image");
        int bps = bits / 8, row = w * c * bps, hw = h * w;
        double max = bits == 8 ? 255 : 65535;
        var raw = new byte[(long)h * (row + 1)];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int ch = 0; ch < c; ch++)
                {
                    int v = (int)Math.Clamp(Math.Round(chw[ch * hw + y * w + x] * max), 0, max);
                    long o = (long)y * (row + 1) + 1 + (x * c + ch) * bps;
                    if (bps == 1) raw[o] = (byte)v;
                    else { raw[o] = (byte)(v >> 8); raw[o + 1] = (byte)v; }
                }
        using var z = new MemoryStream();
        using (var zs = new System.IO.Compression.ZLibStream(z, System.IO.Compression.CompressionLevel.Optimal, leaveOpen: true)) zs.Write(raw);
        using var png = new MemoryStream();
        png.Write(new byte[] { 137, 80, 78, 71, 13, 10, 26, 10 });
        var ihdr = new byte[13];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(ihdr, w);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), h);
        ihdr[8] = (byte)bits; ihdr[9] = (byte)(c == 1 ? 0 : 2);
        Chunk(png, "IHDR", ihdr);
        Chunk(png, "IDAT", z.ToArray());
        Chunk(png, "IEND", Array.Empty<byte>());
        return png.ToArray();
    }

    static void Chunk(Stream s, string type, byte[] data)
    {
        var head = new byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(head, data.Length);
        System.Text.Encoding.ASCII.GetBytes(type, head.AsSpan(4));
        s.Write(head);
        s.Write(data);
        uint crc = Crc32(Crc32(0xffffffffu, head.AsSpan(4)), data) ^ 0xffffffffu;
        var t = new byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(t, crc);
        s.Write(t);
    }

    static readonly uint[] CrcTable = Enumerable.Range(0, 256).Select(n =>
    {
        uint c = (uint)n;
        for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        return c;
    }).ToArray();

    /// <summary>The PNG (ISO 3309) CRC-32 register after the bytes, from a running value.</summary>
    static uint Crc32(uint crc, ReadOnlySpan<byte> b)
    {
        foreach (var x in b) crc = CrcTable[(crc ^ x) & 0xff] ^ (crc >> 8);
        return crc;
    }

    static byte ToByte(float v) => (byte)Math.Clamp((int)MathF.Round(v * 255f), 0, 255);
}
