namespace Perturb.Engine.Wsi;

/// <summary>
/// A whole-slide image opened through OpenSlide: its pyramid levels and RGB regions as float planes in [0,1].
/// <para>OpenSlide returns premultiplied ARGB; pixels are un-premultiplied and composited onto white, so transparent
/// areas (outside the scanned region) read as white background.</para>
/// Errors are one-line <see cref="PerturbException"/>s naming the file: a missing file, a file OpenSlide does not
/// recognise, OpenSlide's own error string, a level out of range, or libopenslide not installed.
/// </summary>
public sealed class Slide : IDisposable
{
    IntPtr _osr;
    public string Path { get; }
    /// <summary>OpenSlide's name for the format (e.g. generic-tiff, aperio).</summary>
    public string Vendor { get; }
    public int LevelCount { get; }
    readonly (long W, long H)[] _dims;
    readonly double[] _down;

    /// <summary>Whether libopenslide.so.0 (Debian's libopenslide0) can be loaded.</summary>
    public static bool LibraryAvailable => OpenSlideNative.Available;

    public const string InstallHint = "libopenslide is not installed: install Debian's libopenslide0 (apt-get install libopenslide0)";

    Slide(string path, IntPtr osr, string vendor)
    {
        Path = path; _osr = osr; Vendor = vendor;
        LevelCount = OpenSlideNative.GetLevelCount(osr);
        CheckError();
        if (LevelCount < 1) throw Fail($"OpenSlide reports {LevelCount} levels");
        _dims = new (long, long)[LevelCount];
        _down = new double[LevelCount];
        for (int l = 0; l < LevelCount; l++)
        {
            OpenSlideNative.GetLevelDimensions(osr, l, out long w, out long h);
            _dims[l] = (w, h);
            _down[l] = OpenSlideNative.GetLevelDownsample(osr, l);
        }
        CheckError();
    }

    public static Slide Open(string path)
    {
        if (!File.Exists(path))
            throw new PerturbException(Directory.Exists(path) ? $"{path}: is a folder, not a slide file" : $"{path}: no such file");
        IO.SafeFiles.RequireRegular(path, "slide file"); // OpenSlide would block on a FIFO
        if (!LibraryAvailable) throw new PerturbException(InstallHint);
        string full = System.IO.Path.GetFullPath(path);
        IntPtr v;
        try { v = OpenSlideNative.DetectVendor(full); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { throw new PerturbException($"{InstallHint} ({e.Message})"); }
        if (v == IntPtr.Zero) throw new PerturbException($"{path}: not a slide OpenSlide can read (unrecognised format; use a pyramidal tiled TIFF, SVS, NDPI, MRXS, ...)");
        string vendor = OpenSlideNative.Str(v) ?? "?";
        var osr = OpenSlideNative.Open(full);
        if (osr == IntPtr.Zero) throw new PerturbException($"{path}: OpenSlide cannot open it ({vendor} format)");
        var err = OpenSlideNative.Str(OpenSlideNative.GetError(osr));
        if (err != null)
        {
            OpenSlideNative.Close(osr);
            throw new PerturbException($"{path}: OpenSlide cannot open it: {err}");
        }
        try { return new Slide(path, osr, vendor); }
        catch { OpenSlideNative.Close(osr); throw; }
    }

    PerturbException Fail(string what, int code = 1) => new($"{Path}: {what}", code);

    void CheckError()
    {
        var err = OpenSlideNative.Str(OpenSlideNative.GetError(_osr));
        if (err != null) throw Fail($"OpenSlide error: {err}");
    }

    void Alive() { if (_osr == IntPtr.Zero) throw new ObjectDisposedException(nameof(Slide)); }

    /// <summary>Throws a usage error (exit 2) unless 0 &lt;= level &lt; LevelCount.</summary>
    public void CheckLevel(int level)
    {
        if (level < 0 || level >= LevelCount)
            throw Fail($"level {level} out of range (the slide has {LevelCount} level{(LevelCount == 1 ? "" : "s")}: 0 to {LevelCount - 1})", 2);
    }

    public (long Width, long Height) Dimensions(int level) { CheckLevel(level); return _dims[level]; }
    public double Downsample(int level) { CheckLevel(level); return _down[level]; }

    /// <summary>
    /// Reads a w×h region of <paramref name="level"/> whose top-left corner is (x0, y0) in LEVEL-0 coordinates, as
    /// RGB planes (3×h×w) in [0,1], transparent pixels composited onto white.
    /// </summary>
    public unsafe float[] ReadRegion(int level, long x0, long y0, int w, int h)
    {
        Alive(); CheckLevel(level);
        if (w <= 0 || h <= 0) throw new ArgumentException($"region size must be positive, got {w}x{h}");
        var buf = new uint[(long)w * h];
        fixed (uint* p = buf) OpenSlideNative.ReadRegion(_osr, p, x0, y0, level, w, h);
        CheckError();
        int hw = w * h;
        var px = new float[3 * hw];
        for (int i = 0; i < hw; i++)
        {
            uint v = buf[i];
            uint a = v >> 24;
            float r = (v >> 16) & 0xFF, g = (v >> 8) & 0xFF, b = v & 0xFF;
            if (a == 255) { px[i] = r / 255f; px[hw + i] = g / 255f; px[2 * hw + i] = b / 255f; }
            else
            {
                // Premultiplied: colour = c + (1 - alpha) * white.
                float bg = (255 - a) / 255f;
                px[i] = Math.Min(1f, r / 255f + bg); px[hw + i] = Math.Min(1f, g / 255f + bg); px[2 * hw + i] = Math.Min(1f, b / 255f + bg);
            }
        }
        return px;
    }

    /// <summary>
    /// A thumbnail of a level: the level shrunk by the integer factor f = ceil(longest side / maxSide) with an f×f box
    /// average (f = 1: the level itself), read in blocks so large levels never sit in memory whole.
    /// </summary>
    public (float[] Pixels, int Width, int Height, int Factor) Thumbnail(int level, int maxSide = 2048)
    {
        var (lw, lh) = Dimensions(level);
        int f = (int)Math.Max(1, (Math.Max(lw, lh) + maxSide - 1) / maxSide);
        int ow = (int)((lw + f - 1) / f), oh = (int)((lh + f - 1) / f);
        var dst = new float[3L * ow * oh];
        int ohw = ow * oh;
        double ds = Downsample(level);
        int blockOut = Math.Max(1, 1024 / f);
        for (int by = 0; by < oh; by += blockOut)
            for (int bx = 0; bx < ow; bx += blockOut)
            {
                int bw = Math.Min(blockOut, ow - bx), bh = Math.Min(blockOut, oh - by);
                long sx = (long)bx * f, sy = (long)by * f;
                int sw = (int)Math.Min((long)bw * f, lw - sx), sh = (int)Math.Min((long)bh * f, lh - sy);
                var src = ReadRegion(level, (long)Math.Round(sx * ds), (long)Math.Round(sy * ds), sw, sh);
                int shw = sw * sh;
                for (int y = 0; y < bh; y++)
                    for (int x = 0; x < bw; x++)
                    {
                        int y0 = y * f, x0 = x * f, y1 = Math.Min(sh, y0 + f), x1 = Math.Min(sw, x0 + f);
                        int cnt = (y1 - y0) * (x1 - x0);
                        for (int c = 0; c < 3; c++)
                        {
                            float s = 0;
                            for (int yy = y0; yy < y1; yy++)
                                for (int xx = x0; xx < x1; xx++) s += src[c * shw + yy * sw + xx];
                            dst[c * ohw + (by + y) * ow + bx + x] = s / cnt;
                        }
                    }
            }
        return (dst, ow, oh, f);
    }

    public void Dispose()
    {
        if (_osr != IntPtr.Zero) { OpenSlideNative.Close(_osr); _osr = IntPtr.Zero; }
    }
}
