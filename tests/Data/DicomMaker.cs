namespace Perturb.Tests.Data;

/// <summary>
/// A fact that needs GDCM's C# bindings (Debian's libgdcm-cil) at build and run time. Skipped with the reason where
/// they are absent, unless CI is "true": there the test runs (and fails without them).
/// </summary>
public sealed class DicomFactAttribute : FactAttribute
{
    public DicomFactAttribute()
    {
        if (Environment.GetEnvironmentVariable("CI") == "true") return;
        if (DicomMaker.Missing() is { } m) Skip = m;
    }
}

/// <summary>As <see cref="DicomFactAttribute"/>, for theories.</summary>
public sealed class DicomTheoryAttribute : TheoryAttribute
{
    public DicomTheoryAttribute()
    {
        if (Environment.GetEnvironmentVariable("CI") == "true") return;
        if (DicomMaker.Missing() is { } m) Skip = m;
    }
}

/// <summary>What a test DICOM file holds. Stored values are frame-major, each frame's samples as planes C×H×W.</summary>
public sealed record DicomSpec
{
    public int Rows { get; init; } = 6;
    public int Columns { get; init; } = 8;
    public int Frames { get; init; } = 1;
    public int Samples { get; init; } = 1;
    public int BitsAllocated { get; init; } = 16;
    public int BitsStored { get; init; } = 12;
    public bool Signed { get; init; }
    public string Photometric { get; init; } = "MONOCHROME2";
    public double Slope { get; init; } = 1;
    public double Intercept { get; init; }
    /// <summary>"C\W" text for (0028,1050)/(0028,1051), e.g. ("40\\50", "400\\300"); null writes no window.</summary>
    public (string Center, string Width)? Window { get; init; }
    /// <summary>0 interleaved RGB, 1 planar.</summary>
    public int PlanarConfiguration { get; init; }
    /// <summary>A GDCM transfer syntax name (ExplicitVRLittleEndian, RLELossless, JPEGLSLossless, JPEG2000Lossless, JPEGLosslessProcess14_1).</summary>
    public string TransferSyntax { get; init; } = "ExplicitVRLittleEndian";
    public required int[] Stored { get; init; }
    public string PatientName { get; init; } = "Test^Patient";
    public string StudyUid { get; init; } = "1.2.826.0.1.3680043.2.1125.1.1";
    public string SeriesUid { get; init; } = "1.2.826.0.1.3680043.2.1125.1.2";
}

/// <summary>Makes test DICOM files through GDCM itself (no hand-written DICOM), and reads attributes back.</summary>
public static class DicomMaker
{
#if PERTURB_GDCM
    public static string? Missing()
    {
        try { Perturb.Engine.Data.DicomCodec.Ensure("gdcm"); new gdcm.Tag(0x0008, 0x0018).Dispose(); return null; }
        catch (Exception e) { return $"GDCM's C# bindings do not load ({e.Message.Split('\n')[0]}); apt-get install libgdcm-cil; with CI=true these tests run and fail instead"; }
    }

    public static void Write(string path, DicomSpec s)
    {
        Perturb.Engine.Data.DicomCodec.Ensure(path);
        int hw = s.Rows * s.Columns, fs = s.Samples * hw, bytes = s.BitsAllocated / 8;
        if (s.Stored.Length != s.Frames * fs) throw new ArgumentException($"{s.Stored.Length} stored values for {s.Frames} frames of {fs}");
        var buf = new byte[s.Stored.Length * bytes];
        for (int f = 0; f < s.Frames; f++)
            for (int c = 0; c < s.Samples; c++)
                for (int p = 0; p < hw; p++)
                {
                    int v = s.Stored[f * fs + c * hw + p];
                    int o = s.PlanarConfiguration == 1 || s.Samples == 1 ? f * fs + c * hw + p : f * fs + p * s.Samples + c;
                    if (bytes == 1) buf[o] = (byte)v; else BitConverter.TryWriteBytes(buf.AsSpan(o * 2), (ushort)(v & 0xffff));
                }
        // GDCM objects are reference counted: the writer (or the filter) that takes the image deletes it, so the C#
        // wrapper must not delete it too.
        var img = new gdcm.Image();
        GC.SuppressFinalize(img);
        img.SetNumberOfDimensions(s.Frames > 1 ? 3u : 2u);
        img.SetDimension(0, (uint)s.Columns); img.SetDimension(1, (uint)s.Rows);
        if (s.Frames > 1) img.SetDimension(2, (uint)s.Frames);
        img.SetPixelFormat(new gdcm.PixelFormat((ushort)s.Samples, (ushort)s.BitsAllocated, (ushort)s.BitsStored, (ushort)(s.BitsStored - 1), (ushort)(s.Signed ? 1 : 0)));
        img.SetPhotometricInterpretation(new gdcm.PhotometricInterpretation(gdcm.PhotometricInterpretation.GetPIType(s.Photometric)));
        if (s.Samples == 3) img.SetPlanarConfiguration((uint)s.PlanarConfiguration);
        img.SetSlope(s.Slope); img.SetIntercept(s.Intercept);
        var px = new gdcm.DataElement(new gdcm.Tag(0x7fe0, 0x0010));
        px.SetByteValue(buf, new gdcm.VL((uint)buf.Length));
        img.SetDataElement(px);
        using var w = new gdcm.ImageWriter();
        var ds = w.GetFile().GetDataSet();
        // SOP class: a multi-frame or a single-frame secondary capture, CT for rescaled single frames.
        string sopClass = s.Frames > 1 ? (s.Samples == 3 ? "1.2.840.10008.5.1.4.1.1.7.4" : s.BitsAllocated == 8 ? "1.2.840.10008.5.1.4.1.1.7.2" : "1.2.840.10008.5.1.4.1.1.7.3")
            : s.Samples == 1 && s.Slope != 1 ? "1.2.840.10008.5.1.4.1.1.2" : "1.2.840.10008.5.1.4.1.1.7";
        Put(ds, 0x0008, 0x0016, sopClass, true);
        Put(ds, 0x0010, 0x0010, s.PatientName);
        Put(ds, 0x0020, 0x000d, s.StudyUid, true);
        Put(ds, 0x0020, 0x000e, s.SeriesUid, true);
        if (s.Window is { } win) { Put(ds, 0x0028, 0x1050, win.Center); Put(ds, 0x0028, 0x1051, win.Width); }
        var ts = Enum.Parse<gdcm.TransferSyntax.TSType>(s.TransferSyntax);
        if (ts == gdcm.TransferSyntax.TSType.ExplicitVRLittleEndian)
        {
            img.SetTransferSyntax(new gdcm.TransferSyntax(ts));
            w.SetImage(img);
        }
        else
        {
            var ch = new gdcm.ImageChangeTransferSyntax();
            GC.SuppressFinalize(ch); // its output goes on living in the writer
            ch.SetTransferSyntax(new gdcm.TransferSyntax(ts));
            ch.SetInput(img);
            if (!ch.Change()) throw new InvalidOperationException($"GDCM could not encode {s.TransferSyntax}");
            w.SetImage(ch.GetOutput());
        }
        w.SetFileName(path);
        if (!w.Write()) throw new InvalidOperationException($"GDCM could not write {path}");
    }

    /// <summary>A text attribute of a file ("gggg,eeee"), trimmed; null when absent.</summary>
    public static string? Attribute(string path, ushort g, ushort e)
    {
        Perturb.Engine.Data.DicomCodec.Ensure(path);
        using var r = new gdcm.Reader();
        r.SetFileName(path);
        if (!r.Read()) throw new InvalidOperationException($"GDCM cannot read {path}");
        gdcm.DataSet ds = g == 0x0002 ? r.GetFile().GetHeader() : r.GetFile().GetDataSet();
        var t = new gdcm.Tag(g, e);
        if (!ds.FindDataElement(t)) return null;
        var bv = ds.GetDataElement(t).GetByteValue();
        if (bv == null) return "";
        uint n = bv.GetLength().GetValueLength();
        var b = new byte[n];
        bv.GetBuffer(b, n);
        return System.Text.Encoding.ASCII.GetString(b).TrimEnd('\0', ' ');
    }

    /// <summary>The transfer syntax UID of a file, from its meta header.</summary>
    public static string TransferSyntaxOf(string path)
    {
        Perturb.Engine.Data.DicomCodec.Ensure(path);
        using var r = new gdcm.ImageReader();
        r.SetFileName(path);
        if (!r.Read()) throw new InvalidOperationException($"GDCM cannot read {path}");
        return r.GetImage().GetTransferSyntax().GetString().TrimEnd('\0', ' ');
    }

    static void Put(gdcm.DataSet ds, ushort g, ushort e, string value, bool uid = false)
    {
        var b = System.Text.Encoding.ASCII.GetBytes(value.Length % 2 == 1 ? value + (uid ? "\0" : " ") : value);
        var de = new gdcm.DataElement(new gdcm.Tag(g, e));
        de.SetByteValue(b, new gdcm.VL((uint)b.Length));
        ds.Replace(de);
    }
#else
    public static string? Missing() => "the tests were built without GDCM's C# bindings (apt-get install libgdcm-cil, then rebuild); with CI=true these tests run and fail instead";
    public static void Write(string path, DicomSpec s) => throw new InvalidOperationException(Missing());
    public static string? Attribute(string path, ushort g, ushort e) => throw new InvalidOperationException(Missing());
    public static string TransferSyntaxOf(string path) => throw new InvalidOperationException(Missing());
#endif
}
