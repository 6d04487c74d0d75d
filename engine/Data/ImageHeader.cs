using System.Buffers.Binary;

namespace Perturb.Engine.Data;

/// <summary>
/// Reads an image file's format and size from its header alone, before any decoder sees it, so a file whose header
/// claims 100000x100000 pixels is refused here instead of overflowing a 32-bit buffer size in native code. Sizes are
/// 64-bit; the pixel count is checked against <see cref="Limits.MaxImagePixels"/>. Formats: PNG (IHDR), BMP (core and
/// info headers), JPEG (the first SOFn marker). Other content, whatever the file's extension, is refused.
/// </summary>
public static class ImageHeader
{
    static readonly byte[] PngSig = { 137, 80, 78, 71, 13, 10, 26, 10 };

    /// <summary>The format ("PNG", "BMP", "JPEG") and size the header declares; errors name the file.</summary>
    public static (string Format, long Width, long Height) Read(ReadOnlySpan<byte> b, string path)
    {
        PerturbException Bad(string what) => new($"{path}: {what}");
        string format; long w, h;
        if (b.Length >= 8 && b[..8].SequenceEqual(PngSig))
        {
            format = "PNG";
            if (b.Length < 24 || !b.Slice(12, 4).SequenceEqual("IHDR"u8)) throw Bad("corrupt PNG: no IHDR chunk after the signature");
            w = BinaryPrimitives.ReadUInt32BigEndian(b[16..]);
            h = BinaryPrimitives.ReadUInt32BigEndian(b[20..]);
        }
        else if (b.Length >= 2 && b[0] == 'B' && b[1] == 'M')
        {
            format = "BMP";
            if (b.Length < 26) throw Bad("corrupt BMP: header truncated");
            uint dib = BinaryPrimitives.ReadUInt32LittleEndian(b[14..]);
            if (dib == 12) { w = BinaryPrimitives.ReadUInt16LittleEndian(b[18..]); h = BinaryPrimitives.ReadUInt16LittleEndian(b[20..]); }
            else if (dib >= 40) { w = BinaryPrimitives.ReadInt32LittleEndian(b[18..]); h = Math.Abs((long)BinaryPrimitives.ReadInt32LittleEndian(b[22..])); }
            else throw Bad($"corrupt BMP: unknown header size {dib}");
        }
        else if (b.Length >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF)
        {
            format = "JPEG";
            (w, h) = JpegSize(b, path);
        }
        else throw Bad("not a readable image: not a PNG, JPEG or BMP (its first bytes are none of their signatures)");
        if (w <= 0 || h <= 0) throw Bad($"{format} header declares {w}x{h} pixels; an image needs at least one");
        Limits.Check($"{path}: {format} header declares {w}x{h}; pixels", w * h, Limits.MaxImagePixels, "PERTURB_MAX_IMAGE_PIXELS");
        return (format, w, h);
    }

    /// <summary>Width and height from the first start-of-frame marker (SOF0-SOF15 except DHT, JPG and DAC).</summary>
    static (long W, long H) JpegSize(ReadOnlySpan<byte> b, string path)
    {
        int p = 2;
        while (p + 4 <= b.Length)
        {
            if (b[p] != 0xFF) throw new PerturbException($"{path}: corrupt JPEG: expected a marker at byte {p}");
            byte m = b[p + 1];
            if (m == 0xFF) { p++; continue; } // fill byte
            if (m is 0x01 or (>= 0xD0 and <= 0xD7)) { p += 2; continue; } // markers without a length
            if (m is 0xD9 or 0xDA) break; // end of image, or start of scan before any frame header
            int len = BinaryPrimitives.ReadUInt16BigEndian(b[(p + 2)..]);
            if (len < 2) throw new PerturbException($"{path}: corrupt JPEG: segment length {len} at byte {p}");
            if (m is >= 0xC0 and <= 0xCF and not (0xC4 or 0xC8 or 0xCC))
            {
                if (p + 9 > b.Length) break;
                return (BinaryPrimitives.ReadUInt16BigEndian(b[(p + 7)..]), BinaryPrimitives.ReadUInt16BigEndian(b[(p + 5)..]));
            }
            p += 2 + len;
        }
        throw new PerturbException($"{path}: corrupt JPEG: no frame header (SOF marker) before the image data");
    }
}
