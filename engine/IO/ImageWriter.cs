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

    static byte ToByte(float v) => (byte)Math.Clamp((int)MathF.Round(v * 255f), 0, 255);
}
