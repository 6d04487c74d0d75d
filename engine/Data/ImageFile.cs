using System.Buffers.Binary;
using System.IO.Compression;
using System.Runtime.InteropServices;
using SkiaSharp;

namespace Perturb.Engine.Data;

/// <summary>A decoded image at its own size: planes C×H×W in [0,1], C = 1 (grey) or 3 (RGB; any alpha dropped).</summary>
public sealed record ImageData(int Channels, int Height, int Width, float[] Pixels)
{
    /// <summary>Bits per sample of the file it came from (8, or 16 for 16-bit PNGs): pixel = value / (2^Bits - 1).</summary>
    public int Bits { get; init; } = 8;
    /// <summary>The largest stored sample value, 255 or 65535.</summary>
    public int MaxValue => Bits == 16 ? 65535 : 255;
}

/// <summary>
/// Reads PNG, JPEG and BMP files into float pixels in [0,1], converts channels and resizes.
/// <list type="bullet">
/// <item>8-bit images are decoded by SkiaSharp into unpremultiplied RGBA (alpha is dropped, not composited) or, for grey
/// sources, into 8-bit grey. JPEG EXIF orientation is not applied.</item>
/// <item>16-bit PNGs (grey, grey+alpha, RGB, RGBA; not interlaced) are decoded here at full depth (value/65535):
/// SkiaSharp decodes them to 8 bits per channel in its 8888 and grey colour types, losing the low byte. The decoder
/// inflates the IDAT stream with <see cref="ZLibStream"/> and undoes the five PNG row filters (None, Sub, Up, Average,
/// Paeth). Interlaced 16-bit PNGs are rare and go through SkiaSharp at 8 bits.</item>
/// <item>Channels: grey to RGB repeats the plane; RGB to grey is ITU-R BT.601 luma, 0.299 R + 0.587 G + 0.114 B.</item>
/// <item>Resizing is antialiased bilinear (a triangle filter whose radius grows with the shrink factor, as PIL's
/// BILINEAR resize does), computed here in float so 16-bit data keeps its depth. Same size is an exact copy.</item>
/// </list>
/// </summary>
public static class ImageFile
{
    /// <summary>The file types read: PNG, JPEG, BMP through SkiaSharp, DICOM through GDCM (<see cref="Dicom"/>).</summary>
    public static readonly string[] Extensions = { ".png", ".jpg", ".jpeg", ".bmp", Dicom.Extension };

    public static bool IsImage(string path) => Extensions.Contains(Path.GetExtension(path).ToLowerInvariant());

    /// <summary>Loads one image file as C×H×W floats in [0,1] with the given channels and size (used by predict).</summary>
    public static float[] Load(string path, int channels, int height, int width) => Load(new ImageSource(path), channels, height, width);

    /// <summary>Loads one image (a frame of a DICOM file) as C×H×W floats in [0,1] with the given channels and size.</summary>
    public static float[] Load(ImageSource src, int channels, int height, int width, DicomOptions? dicom = null)
    {
        var img = Decode(src, dicom);
        return Resize(ConvertChannels(img, channels, src.File), channels, img.Height, img.Width, height, width);
    }

    /// <summary>The images of a file: one per frame of a DICOM file (or the one frame asked for), else the file itself.</summary>
    public static IEnumerable<ImageSource> Sources(string file, DicomOptions? dicom = null) =>
        Dicom.IsDicom(file) ? Dicom.Frames(file, dicom).Select(k => new ImageSource(file, k)) : new[] { new ImageSource(file) };

    /// <summary>
    /// The images an --input names: a file, or every image file under a folder (recursively, ordinal order), DICOM
    /// files expanded to their frames.
    /// </summary>
    public static List<ImageSource> ListInputs(string path, DicomOptions? dicom = null)
    {
        string[] files;
        if (Directory.Exists(path))
            files = IO.SafeFiles.FilesRecursive(path).Where(IsImage).ToArray();
        else if (File.Exists(path))
            files = IsImage(path) ? new[] { path } : throw new PerturbException($"{path}: not an image file (expected {string.Join(", ", Extensions)})");
        else throw new PerturbException($"{path}: no such file or folder");
        if (files.Length == 0) throw new PerturbException($"{path}: holds no image files ({string.Join(", ", Extensions)})");
        return files.SelectMany(f => Sources(f, dicom)).ToList();
    }

    /// <summary>Decodes one image (a DICOM frame) at its own size and channel count.</summary>
    public static ImageData Decode(ImageSource src, DicomOptions? dicom = null) =>
        Dicom.IsDicom(src.File) ? Dicom.Decode(src.File, src.Frame, dicom) : Decode(src.File);

    static byte[] ReadAll(string path) => IO.SafeFiles.ReadAllBytes(path, "image file");

    /// <summary>Decodes an image at its own size and channel count (grey stays 1 channel, colour is 3).</summary>
    public static ImageData Decode(string path)
    {
        if (Dicom.IsDicom(path)) return Dicom.Decode(path);
        var bytes = ReadAll(path);
        // The header is read and its size checked here, before SkiaSharp sees a byte (see ImageHeader).
        var (format, hw0, hh0) = ImageHeader.Read(bytes, path);
        if (Png16.Is16BitNonInterlaced(bytes)) return Png16.Decode(bytes, path);
        using var data = SKData.CreateCopy(bytes);
        using var codec = SKCodec.Create(data) ?? throw new PerturbException($"{path}: not a readable image (no PNG, JPEG or BMP data that SkiaSharp can decode)");
        var ci = codec.Info;
        if (ci.Width != hw0 || ci.Height != hh0)
            throw new PerturbException($"{path}: the {format} header declares {hw0}x{hh0} pixels but the decoder reads {ci.Width}x{ci.Height}");
        bool grey = ci.ColorType == SKColorType.Gray8;
        int w = ci.Width, h = ci.Height, hw = w * h;
        var info = new SKImageInfo(w, h, grey ? SKColorType.Gray8 : SKColorType.Rgba8888, grey ? SKAlphaType.Opaque : SKAlphaType.Unpremul);
        long bufBytes = (long)w * h * (grey ? 1 : 4);
        if (bufBytes > Array.MaxLength || (long)info.RowBytes * h != bufBytes)
            throw new PerturbException($"{path}: {w}x{h} pixels need {bufBytes:N0} bytes, more than one buffer holds");
        var buf = new byte[bufBytes];
        var handle = GCHandle.Alloc(buf, GCHandleType.Pinned);
        SKCodecResult r;
        try { r = codec.GetPixels(info, handle.AddrOfPinnedObject()); }
        finally { handle.Free(); }
        if (r != SKCodecResult.Success)
            throw new PerturbException($"{path}: {(r == SKCodecResult.IncompleteInput ? "truncated image data" : "cannot decode the image")} ({r})");
        int stride = info.RowBytes;
        int c = grey ? 1 : 3;
        var px = new float[c * hw];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                if (grey) px[y * w + x] = buf[y * stride + x] / 255f;
                else
                {
                    int o = y * stride + x * 4;
                    for (int ch = 0; ch < 3; ch++) px[ch * hw + y * w + x] = buf[o + ch] / 255f;
                }
            }
        return new ImageData(c, h, w, px);
    }

    /// <summary>Returns the image's planes with <paramref name="channels"/> channels (1 or 3).</summary>
    public static float[] ConvertChannels(ImageData img, int channels, string where = "")
    {
        if (channels is not (1 or 3)) throw new PerturbException($"{where}: channels must be 1 or 3, got {channels}", 2);
        int hw = img.Height * img.Width;
        if (channels == img.Channels) return img.Pixels;
        var r = new float[channels * hw];
        if (channels == 3)
            for (int ch = 0; ch < 3; ch++) Array.Copy(img.Pixels, 0, r, ch * hw, hw);
        else
            for (int p = 0; p < hw; p++)
                r[p] = Math.Clamp(0.299f * img.Pixels[p] + 0.587f * img.Pixels[hw + p] + 0.114f * img.Pixels[2 * hw + p], 0f, 1f);
        return r;
    }

    /// <summary>Antialiased bilinear resize of C planes from h×w to oh×ow (see the class summary).</summary>
    public static float[] Resize(float[] src, int c, int h, int w, int oh, int ow)
    {
        if (oh <= 0 || ow <= 0) throw new PerturbException($"image size must be positive, got {oh}x{ow}", 2);
        if (oh == h && ow == w) return src;
        var (ys, yw, yk) = Weights(h, oh);
        var (xs, xw, xk) = Weights(w, ow);
        var tmp = new float[c * h * ow];
        var dst = new float[c * oh * ow];
        for (int ch = 0; ch < c; ch++)
        {
            for (int y = 0; y < h; y++)
                for (int x = 0; x < ow; x++)
                {
                    float s = 0;
                    for (int k = 0; k < xk; k++) s += xw[x * xk + k] * src[(ch * h + y) * w + Math.Min(xs[x] + k, w - 1)];
                    tmp[(ch * h + y) * ow + x] = s;
                }
            for (int y = 0; y < oh; y++)
                for (int x = 0; x < ow; x++)
                {
                    float s = 0;
                    for (int k = 0; k < yk; k++) s += yw[y * yk + k] * tmp[(ch * h + Math.Min(ys[y] + k, h - 1)) * ow + x];
                    dst[(ch * oh + y) * ow + x] = Math.Clamp(s, 0f, 1f);
                }
        }
        return dst;
    }

    /// <summary>Triangle-filter taps for one axis: first source index, weights (k per output, zero-padded), k.</summary>
    static (int[] Start, float[] W, int K) Weights(int n, int on)
    {
        double scale = (double)n / on, fs = Math.Max(scale, 1.0);
        int k = (int)Math.Ceiling(fs) * 2 + 1;
        var start = new int[on];
        var wts = new float[on * k];
        for (int o = 0; o < on; o++)
        {
            double center = (o + 0.5) * scale;
            int lo = Math.Max(0, (int)Math.Floor(center - fs)), hi = Math.Min(n, (int)Math.Ceiling(center + fs));
            start[o] = lo;
            double sum = 0;
            for (int i = lo; i < hi && i - lo < k; i++) sum += Math.Max(0, 1 - Math.Abs((i + 0.5 - center) / fs));
            for (int i = lo; i < hi && i - lo < k; i++) wts[o * k + i - lo] = (float)(Math.Max(0, 1 - Math.Abs((i + 0.5 - center) / fs)) / sum);
        }
        return (start, wts, k);
    }
}

/// <summary>A decoder for non-interlaced 16-bit PNGs (colour types 0, 2, 4, 6) at full depth.</summary>
static class Png16
{
    static readonly byte[] Sig = { 137, 80, 78, 71, 13, 10, 26, 10 };

    public static bool Is16BitNonInterlaced(byte[] b) =>
        b.Length >= 33 && b.AsSpan(0, 8).SequenceEqual(Sig) && b.AsSpan(12, 4).SequenceEqual("IHDR"u8) && b[24] == 16 && b[28] == 0;

    public static ImageData Decode(byte[] b, string path)
    {
        PerturbException Bad(string what) => new($"{path}: corrupt 16-bit PNG: {what}");
        int w = (int)BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(16)), h = (int)BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(20));
        int colourType = b[25];
        int samples = colourType switch { 0 => 1, 2 => 3, 4 => 2, 6 => 4, _ => throw Bad($"colour type {colourType} cannot have 16-bit samples") };
        if (w <= 0 || h <= 0) throw Bad($"size {w}x{h}");
        Limits.Check($"{path}: PNG header declares {w}x{h}; pixels", (long)w * h, Limits.MaxImagePixels, "PERTURB_MAX_IMAGE_PIXELS");
        if ((long)w * h * (samples >= 3 ? 3 : 1) > Array.MaxLength || (long)h * (w * (long)samples * 2 + 1) > Array.MaxLength) throw Bad($"size {w}x{h} is too large for one buffer");
        using var idat = new MemoryStream();
        int pos = 8;
        bool end = false;
        while (!end)
        {
            if (pos + 8 > b.Length) throw Bad("truncated (no IEND chunk)");
            int len = (int)BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(pos));
            if (len < 0 || pos + 12L + len > b.Length) throw Bad("truncated chunk");
            var type = b.AsSpan(pos + 4, 4);
            if (type.SequenceEqual("IDAT"u8)) idat.Write(b, pos + 8, len);
            else if (type.SequenceEqual("IEND"u8)) end = true;
            pos += 12 + len;
        }
        int bpp = samples * 2, rowBytes = w * bpp;
        var raw = new byte[(long)h * (rowBytes + 1)];
        try
        {
            idat.Position = 0;
            using var z = new ZLibStream(idat, CompressionMode.Decompress);
            int got = 0;
            while (got < raw.Length) { int k = z.Read(raw, got, raw.Length - got); if (k <= 0) break; got += k; }
            if (got < raw.Length) throw Bad($"image data holds {got} bytes, {raw.Length} expected (truncated)");
        }
        catch (InvalidDataException e) { throw Bad($"bad compressed data ({e.Message})"); }
        var cur = new byte[rowBytes];
        var prev = new byte[rowBytes];
        int c = samples >= 3 ? 3 : 1, hw = w * h;
        var px = new float[c * hw];
        for (int y = 0; y < h; y++)
        {
            int f = raw[y * (rowBytes + 1)];
            Array.Copy(raw, y * (rowBytes + 1) + 1, cur, 0, rowBytes);
            Unfilter(f, cur, prev, bpp, path, y);
            for (int x = 0; x < w; x++)
                for (int ch = 0; ch < c; ch++)
                    px[ch * hw + y * w + x] = BinaryPrimitives.ReadUInt16BigEndian(cur.AsSpan(x * bpp + ch * 2)) / 65535f;
            (cur, prev) = (prev, cur);
        }
        return new ImageData(c, h, w, px) { Bits = 16 };
    }

    /// <summary>Undoes one row's filter in place: 0 None, 1 Sub, 2 Up, 3 Average, 4 Paeth.</summary>
    static void Unfilter(int f, byte[] row, byte[] prev, int bpp, string path, int y)
    {
        switch (f)
        {
            case 0: break;
            case 1: for (int i = bpp; i < row.Length; i++) row[i] += row[i - bpp]; break;
            case 2: for (int i = 0; i < row.Length; i++) row[i] += prev[i]; break;
            case 3: for (int i = 0; i < row.Length; i++) row[i] += (byte)(((i >= bpp ? row[i - bpp] : 0) + prev[i]) >> 1); break;
            case 4:
                for (int i = 0; i < row.Length; i++)
                {
                    int a = i >= bpp ? row[i - bpp] : 0, b = prev[i], c = i >= bpp ? prev[i - bpp] : 0;
                    int p = a + b - c, pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
                    row[i] += (byte)(pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
                }
                break;
            default: throw new PerturbException($"{path}: corrupt 16-bit PNG: row {y} has unknown filter type {f}");
        }
    }
}
