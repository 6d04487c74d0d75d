using System.Globalization;

namespace Perturb.Engine.Data;

/// <summary>A linear VOI window: centre and width in modality units (after rescale), as DICOM's (0028,1050/1051).</summary>
public sealed record DicomWindow(double Center, double Width)
{
    /// <summary>Parses "C,W" (e.g. "40,400"); width at least 1.</summary>
    public static DicomWindow Parse(string s, string what = "--window")
    {
        var p = s.Split(',', StringSplitOptions.TrimEntries);
        if (p.Length == 2 && double.TryParse(p[0], NumberStyles.Float, CultureInfo.InvariantCulture, out var c)
            && double.TryParse(p[1], NumberStyles.Float, CultureInfo.InvariantCulture, out var w) && double.IsFinite(c) && double.IsFinite(w) && w >= 1)
            return new DicomWindow(c, w);
        throw new PerturbException($"{what}: expected CENTER,WIDTH with width at least 1 (e.g. 40,400), got '{s}'", 2);
    }

    /// <summary>DICOM PS3.3 C.11.2.1.2.1, output range [0,1]: x at or below c - 0.5 - (w-1)/2 gives 0, above c - 0.5 + (w-1)/2 gives 1.</summary>
    public double ToUnit(double x)
    {
        if (Width <= 1) return x <= Center - 0.5 ? 0 : 1;
        return Math.Clamp((x - (Center - 0.5)) / (Width - 1) + 0.5, 0, 1);
    }

    /// <summary>The inverse of <see cref="ToUnit"/> inside the window.</summary>
    public double FromUnit(double y) => Width <= 1 ? Center - 0.5 + (y >= 0.5 ? 0.5 : -0.5) : Center - 0.5 + (y - 0.5) * (Width - 1);

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Center:G6},{Width:G6}");
}

/// <summary>How DICOM files are read: a window overriding the file's own, and one frame of multi-frame files.</summary>
public sealed record DicomOptions
{
    /// <summary>Overrides the file's VOI window for grey images; null takes the file's first window.</summary>
    public DicomWindow? Window { get; init; }
    /// <summary>Reads only this frame (0-based) of every file; null reads one image per frame.</summary>
    public int? Frame { get; init; }

    public static readonly DicomOptions Default = new();
}

/// <summary>One image of a data set or an input folder: a file, and a frame of a multi-frame DICOM file.</summary>
public sealed record ImageSource(string File, int Frame = 0);

/// <summary>
/// DICOM images through GDCM (<see cref="DicomCodec"/>), mapped to [0,1]:
/// <list type="bullet">
/// <item>grey (MONOCHROME2; MONOCHROME1 inverted after the window): stored value s, modality value m = slope s +
/// intercept (Rescale Slope and Intercept), then the linear VOI window (<see cref="DicomWindow.ToUnit"/>): the
/// <c>--window</c> override, else the file's first Window Center/Width, else the range of the file's modality values
/// (min to max over all frames, so the darkest pixel is 0 and the brightest 1).</item>
/// <item>RGB (or JPEG-compressed YBR, which GDCM decodes to RGB): s / (2^bits stored - 1) per channel, no window.</item>
/// </list>
/// 8 to 16 bits stored, signed or not, any transfer syntax GDCM decodes. Multi-frame files give one image per frame,
/// or only <see cref="DicomOptions.Frame"/>. Writing back (<see cref="Encode"/>) inverts the same mapping.
/// </summary>
public static class Dicom
{
    public const string Extension = ".dcm";

    public static bool IsDicom(string path) => Path.GetExtension(path).Equals(Extension, StringComparison.OrdinalIgnoreCase);

    /// <summary>The frames of a file to read as images: one per frame, or the one frame asked for.</summary>
    public static IEnumerable<int> Frames(string path, DicomOptions? o)
    {
        int n = DicomCodec.CountFrames(path);
        if (o?.Frame is int k)
        {
            if (k < 0 || k >= n) throw new PerturbException($"{path}: --frame {k} is outside its {n} frame{(n == 1 ? "" : "s")} (0 to {n - 1})", 2);
            return new[] { k };
        }
        return Enumerable.Range(0, n);
    }

    /// <summary>The window a grey file is read with.</summary>
    internal static DicomWindow WindowOf(DicomRaw raw, DicomOptions? o)
    {
        if (o?.Window is { } w) return w;
        if (raw.FileWindow is { } f) return f;
        int lo = int.MaxValue, hi = int.MinValue;
        foreach (var s in raw.Stored) { lo = Math.Min(lo, s); hi = Math.Max(hi, s); }
        double a = raw.Slope * lo + raw.Intercept, b = raw.Slope * hi + raw.Intercept;
        (a, b) = (Math.Min(a, b), Math.Max(a, b));
        return new DicomWindow((a + b) / 2 + 0.5, b - a + 1);
    }

    /// <summary>Decodes one frame as planes C×H×W in [0,1].</summary>
    public static ImageData Decode(string path, int frame = 0, DicomOptions? o = null) => Decode(DicomCodec.Read(path), frame, o);

    internal static ImageData Decode(DicomRaw raw, int frame, DicomOptions? o)
    {
        if (frame < 0 || frame >= raw.Frames) throw new PerturbException($"{raw.Path}: frame {frame} is outside its {raw.Frames} frames", 2);
        int n = raw.FrameSize;
        var px = new float[n];
        var stored = raw.Stored.AsSpan(frame * n, n);
        if (raw.Samples == 3)
        {
            double max = raw.MaxStored;
            for (int i = 0; i < n; i++) px[i] = (float)Math.Clamp(stored[i] / max, 0, 1);
        }
        else
        {
            var win = WindowOf(raw, o);
            bool invert = raw.Photometric == "MONOCHROME1";
            for (int i = 0; i < n; i++)
            {
                double y = win.ToUnit(raw.Slope * stored[i] + raw.Intercept);
                px[i] = (float)(invert ? 1 - y : y);
            }
        }
        return new ImageData(raw.Samples, raw.Rows, raw.Columns, px);
    }

    /// <summary>
    /// Stored values for an image in [0,1] at the source's size and channels, through the inverse of the read mapping,
    /// rounded to the nearest stored level and clamped to the source's bit depth. A pixel whose level equals the level
    /// of the source's own [0,1] value keeps the source's stored value (so pixels the change did not reach, including
    /// those outside the window, are written back exactly).
    /// </summary>
    internal static int[] Encode(DicomRaw raw, int frame, DicomOptions? o, ReadOnlySpan<float> unit)
    {
        int n = raw.FrameSize;
        if (unit.Length != n) throw new ArgumentException($"{unit.Length} values for a {raw.Samples}x{raw.Rows}x{raw.Columns} frame");
        var src = raw.Stored.AsSpan(frame * n, n);
        var orig = Decode(raw, frame, o).Pixels;
        var win = raw.Samples == 1 ? WindowOf(raw, o) : null;
        bool invert = raw.Photometric == "MONOCHROME1";
        long lo = raw.MinStored, hi = raw.MaxStored;
        long Level(double y)
        {
            y = Math.Clamp(y, 0, 1);
            double s = win == null ? y * hi : (win.FromUnit(invert ? 1 - y : y) - raw.Intercept) / raw.Slope;
            return (long)Math.Clamp(Math.Round(s), lo, hi);
        }
        var r = new int[n];
        for (int i = 0; i < n; i++)
        {
            long l = Level(unit[i]);
            r[i] = l == Level(orig[i]) ? src[i] : (int)l;
        }
        return r;
    }

    /// <summary>One grey level of the file in [0,1] units: the change one stored step makes inside the window.</summary>
    internal static double GreyLevel(DicomRaw raw, DicomOptions? o) =>
        raw.Samples == 3 ? 1.0 / raw.MaxStored : Math.Abs(raw.Slope) / Math.Max(1, WindowOf(raw, o).Width - 1);

    /// <summary>
    /// Writes an image in [0,1] (the source frame's size and channels) as a derived single-frame DICOM file beside the
    /// source's metadata (see <see cref="DicomCodec.WriteDerived"/>), stored at the source's bit depth.
    /// </summary>
    internal static void WriteDerived(DicomRaw raw, int frame, DicomOptions? o, ReadOnlySpan<float> unit, string outPath, string description)
    {
        var stored = Encode(raw, frame, o, unit);
        var win = raw.Samples == 1 ? WindowOf(raw, o) : new DicomWindow(0, 1);
        bool writeWindow = raw.Samples == 1 && raw.FileWindow == null && o?.Window == null;
        DicomCodec.WriteDerived(raw, stored, outPath, new DicomDerivation(description, win, writeWindow));
    }
}
