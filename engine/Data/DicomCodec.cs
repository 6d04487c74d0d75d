using System.Runtime.InteropServices;
using System.Text;

namespace Perturb.Engine.Data;

/// <summary>
/// What a DICOM file holds, decoded: the stored pixel values of every frame (frame-major, each frame's samples as
/// planes C×H×W), the pixel format, the photometric interpretation, the rescale and the file's first VOI window.
/// </summary>
internal sealed record DicomRaw(
    string Path, int Frames, int Rows, int Columns, int Samples, int BitsAllocated, int BitsStored, bool Signed,
    string Photometric, double Slope, double Intercept, DicomWindow? FileWindow, int[] Stored)
{
    public int FrameSize => Samples * Rows * Columns;
    public long MinStored => Signed ? -(1L << (BitsStored - 1)) : 0;
    public long MaxStored => Signed ? (1L << (BitsStored - 1)) - 1 : (1L << BitsStored) - 1;
}

/// <summary>What <see cref="DicomCodec.WriteDerived"/> changes in the copy of the source's data set.</summary>
internal sealed record DicomDerivation(string Description, DicomWindow Window, bool WriteWindow);

/// <summary>
/// The only code that touches GDCM (Debian's <c>libgdcm-cil</c>: the managed <c>gdcm-sharp.dll</c> and its native glue
/// <c>libgdcmsharpglue.so</c>, which lives beside the DLL in /usr/lib/cli/gdcm-sharp-3.0, off the loader path: a
/// DllImport resolver loads it from there). The engine builds without GDCM (PERTURB_GDCM undefined); then, as when the
/// glue is missing at run time, a DICOM file gives one line saying which package to install. GDCM decodes every
/// transfer syntax it knows (uncompressed, RLE, JPEG lossless and lossy, JPEG-LS, JPEG 2000) to stored values.
/// </summary>
internal static partial class DicomCodec
{
    public const string Missing = "DICOM needs GDCM's C# bindings: install them with 'apt-get install libgdcm-cil' (Debian/Ubuntu)";
    public const string GdcmDir = "/usr/lib/cli/gdcm-sharp-3.0";
}

#if PERTURB_GDCM
internal static partial class DicomCodec
{
    static readonly object Gate = new();
    static bool _ready;

    /// <summary>Registers the glue resolver once and checks GDCM loads; one clear error line otherwise.</summary>
    internal static void Ensure(string path)
    {
        lock (Gate)
        {
            if (_ready) return;
            try
            {
                var asm = typeof(gdcm.Tag).Assembly;
                try
                {
                    NativeLibrary.SetDllImportResolver(asm, (name, _, _) =>
                    {
                        if (!name.Contains("gdcmsharpglue")) return IntPtr.Zero;
                        foreach (var dir in new[] { AppContext.BaseDirectory, GdcmDir })
                        {
                            var f = System.IO.Path.Combine(dir, "libgdcmsharpglue.so");
                            if (File.Exists(f) && NativeLibrary.TryLoad(f, out var h)) return h;
                        }
                        return IntPtr.Zero;
                    });
                }
                catch (InvalidOperationException) { } // a resolver is already set (another caller in this process)
                gdcm.Trace.WarningOff(); gdcm.Trace.DebugOff(); gdcm.Trace.ErrorOff();
                _ready = true;
            }
            catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or FileNotFoundException or BadImageFormatException or EntryPointNotFoundException)
            {
                throw new PerturbException($"{path}: {Missing}; {e.GetType().Name}: {e.Message.Split('\n')[0]}");
            }
        }
    }

    static PerturbException Bad(string path, string what) => new($"{path}: {what}");

    static gdcm.ImageReader Open(string path)
    {
        Ensure(path);
        if (!File.Exists(path)) throw Bad(path, "no such file");
        IO.SafeFiles.RequireRegular(path, "DICOM file"); // GDCM would block on a FIFO named x.dcm
        var r = new gdcm.ImageReader();
        r.SetFileName(path);
        if (!r.Read()) throw Bad(path, "not a DICOM image GDCM can read (no pixel data, an unknown transfer syntax, or a damaged file)");
        return r;
    }

    static string? Text(gdcm.DataSet ds, ushort g, ushort e)
    {
        var t = new gdcm.Tag(g, e);
        if (!ds.FindDataElement(t)) return null;
        var bv = ds.GetDataElement(t).GetByteValue();
        if (bv == null) return null;
        uint n = bv.GetLength().GetValueLength();
        if (n == 0 || n > 1 << 16) return null;
        var b = new byte[n];
        bv.GetBuffer(b, n);
        return Encoding.ASCII.GetString(b).TrimEnd('\0', ' ');
    }

    static double? FirstNumber(string? s) =>
        s != null && double.TryParse(s.Split('\\')[0].Trim(), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var v) && double.IsFinite(v) ? v : null;

    /// <summary>
    /// GDCM reads a file cut short inside native (uncompressed) pixel data without complaint, zero-filling what is
    /// missing. So look for the Pixel Data element's header (tag 7FE0,0010, with or without an OW/OB VR, its length
    /// the size the image needs) and check the bytes after it are all in the file.
    /// </summary>
    static void CheckNotTruncated(string path, long need)
    {
        var b = IO.SafeFiles.ReadAllBytes(path, "DICOM file");
        long dataStart = -1;
        for (int i = b.Length - 8; i >= 0 && dataStart < 0; i--)
        {
            if (b[i] != 0xE0 || b[i + 1] != 0x7F || b[i + 2] != 0x10 || b[i + 3] != 0x00) continue;
            if (i + 12 <= b.Length && b[i + 4] == 'O' && (b[i + 5] == 'W' || b[i + 5] == 'B') && BitConverter.ToUInt32(b, i + 8) is var ve && (ve == need || ve == need + 1))
                dataStart = i + 12;
            else if (BitConverter.ToUInt32(b, i + 4) is var vi && (vi == need || vi == need + 1))
                dataStart = i + 8;
        }
        if (dataStart >= 0 && b.Length - dataStart < need)
            throw Bad(path, $"pixel data truncated: {b.Length - dataStart} bytes of the {need} the image needs");
    }

    /// <summary>Frames in the file, from its header only (the pixel data is not decoded).</summary>
    public static int CountFrames(string path)
    {
        Ensure(path);
        if (!File.Exists(path)) throw Bad(path, "no such file");
        IO.SafeFiles.RequireRegular(path, "DICOM file");
        using var r = new gdcm.Reader(); // disposed at the end: the data set below lives inside the reader
        r.SetFileName(path);
        if (!r.ReadUpToTag(new gdcm.Tag(0x7fe0, 0x0010))) throw Bad(path, "not a DICOM file GDCM can read");
        var ds = r.GetFile().GetDataSet();
        if (!ds.FindDataElement(new gdcm.Tag(0x0028, 0x0010))) throw Bad(path, "holds no image (no Rows attribute)");
        var f = FirstNumber(Text(ds, 0x0028, 0x0008));
        return f is >= 1 and <= 1 << 20 ? (int)f.Value : 1;
    }

    public static DicomRaw Read(string path)
    {
        // The image and data set wrappers below point into the reader's memory: it must outlive them (a reader left to
        // the finalizer can be deleted while they are in use), so it is disposed at the end of the method.
        using var r = Open(path);
        var im = r.GetImage();
        var pf = im.GetPixelFormat();
        int cols = (int)im.GetDimension(0), rows = (int)im.GetDimension(1);
        int frames = im.GetNumberOfDimensions() > 2 ? (int)im.GetDimension(2) : 1;
        int spp = pf.GetSamplesPerPixel(), ba = pf.GetBitsAllocated(), bs = pf.GetBitsStored();
        bool signed = pf.GetPixelRepresentation() == 1;
        var pi = im.GetPhotometricInterpretation().GetString().Trim();
        if (cols <= 0 || rows <= 0 || frames <= 0) throw Bad(path, $"image has no pixels ({cols}x{rows}, {frames} frames)");
        if (spp is not (1 or 3)) throw Bad(path, $"{spp} samples per pixel (1 or 3 are read)");
        if (ba is not (8 or 16) || bs < 1 || bs > ba) throw Bad(path, $"{ba} bits allocated, {bs} stored (8 or 16 allocated, up to 16 stored, are read)");
        bool rgbLike = pi == "RGB" || (pi.StartsWith("YBR", StringComparison.Ordinal) && im.GetTransferSyntax().IsEncapsulated() && ba == 8);
        if (spp == 1 ? pi is not ("MONOCHROME1" or "MONOCHROME2") : !rgbLike)
            throw Bad(path, $"photometric interpretation {pi} with {spp} samples is not read (MONOCHROME1, MONOCHROME2 or RGB)");
        long total = (long)frames * rows * cols * spp;
        if (total > 1L << 28) throw Bad(path, $"image too large ({cols}x{rows}x{spp}, {frames} frames)");
        long len = im.GetBufferLength();
        if (len < total * (ba / 8)) throw Bad(path, $"pixel data holds {len} bytes, {total * (ba / 8)} expected");
        if (!im.GetTransferSyntax().IsEncapsulated()) CheckNotTruncated(path, total * (ba / 8));
        var buf = new byte[len];
        if (!im.GetBuffer(buf)) throw Bad(path, $"GDCM could not decode the pixel data (transfer syntax {im.GetTransferSyntax().GetString()?.TrimEnd('\0')})");
        bool planar = spp == 3 && im.GetPlanarConfiguration() == 1;
        var stored = new int[total];
        int hw = rows * cols, fs = spp * hw;
        uint mask = bs >= 32 ? uint.MaxValue : (1u << bs) - 1;
        for (long i = 0; i < total; i++)
        {
            uint raw = ba == 8 ? buf[i] : BitConverter.ToUInt16(buf, (int)(i * 2));
            raw &= mask;
            int v = signed && (raw & (1u << (bs - 1))) != 0 ? (int)raw - (1 << bs) : (int)raw;
            long f = i / fs, k = i % fs;
            long dst = planar || spp == 1 ? i : f * fs + (k % spp) * hw + k / spp; // interleaved RGB to planes
            stored[dst] = v;
        }
        double slope = im.GetSlope(), intercept = im.GetIntercept();
        if (!(slope != 0 && double.IsFinite(slope))) slope = 1;
        if (!double.IsFinite(intercept)) intercept = 0;
        var ds = r.GetFile().GetDataSet();
        var c = FirstNumber(Text(ds, 0x0028, 0x1050));
        var w = FirstNumber(Text(ds, 0x0028, 0x1051));
        DicomWindow? win = c.HasValue && w is >= 1 ? new DicomWindow(c.Value, w.Value) : null;
        return new DicomRaw(path, frames, rows, cols, spp, ba, bs, signed, rgbLike ? "RGB" : pi, slope, intercept, win, stored);
    }

    /// <summary>
    /// Writes one frame of stored values as a new single-frame DICOM file carrying the source's data set: same patient
    /// and study, a new SOP Instance UID and Series Instance UID, Image Type DERIVED\SECONDARY, the Derivation
    /// Description, and the window used when the source had none. Pixel data at the source's bits allocated and stored,
    /// uncompressed (explicit VR little endian). Written under a temporary name and renamed when complete.
    /// </summary>
    public static void WriteDerived(DicomRaw src, int[] frame, string outPath, DicomDerivation d)
    {
        using var r = Open(src.Path); // outlives the file, data set and image wrappers that point into it
        var im = r.GetImage();
        var file = r.GetFile();
        var ds = file.GetDataSet();
        int hw = src.Rows * src.Columns, spp = src.Samples, bytes = src.BitsAllocated / 8;
        var buf = new byte[(long)hw * spp * bytes];
        for (int p = 0; p < hw; p++)
            for (int s = 0; s < spp; s++)
            {
                int v = frame[s * hw + p], o = (p * spp + s) * bytes; // planes to interleaved
                if (bytes == 1) buf[o] = (byte)v;
                else BitConverter.TryWriteBytes(buf.AsSpan(o), (ushort)(v & 0xffff));
            }
        var img = new gdcm.Image();
        GC.SuppressFinalize(img); // reference counted: the writer that takes it deletes it (a second delete would crash)
        img.SetNumberOfDimensions(2);
        img.SetDimension(0, (uint)src.Columns); img.SetDimension(1, (uint)src.Rows);
        var pf = new gdcm.PixelFormat((ushort)spp, (ushort)src.BitsAllocated, (ushort)src.BitsStored, (ushort)(src.BitsStored - 1), (ushort)(src.Signed ? 1 : 0));
        img.SetPixelFormat(pf);
        img.SetPhotometricInterpretation(new gdcm.PhotometricInterpretation(gdcm.PhotometricInterpretation.GetPIType(src.Photometric)));
        if (spp == 3) img.SetPlanarConfiguration(0);
        img.SetSlope(src.Slope); img.SetIntercept(src.Intercept);
        img.SetSpacing(0, im.GetSpacing(0)); img.SetSpacing(1, im.GetSpacing(1));
        img.SetTransferSyntax(new gdcm.TransferSyntax(gdcm.TransferSyntax.TSType.ExplicitVRLittleEndian));
        var px = new gdcm.DataElement(new gdcm.Tag(0x7fe0, 0x0010));
        px.SetByteValue(buf, new gdcm.VL((uint)buf.Length));
        img.SetDataElement(px);
        foreach (var (g, e) in new (ushort, ushort)[] { (0x0028, 0x0008), (0x0028, 0x0009), (0x5200, 0x9230), (0x5200, 0x9229), (0x0028, 0x2110), (0x0028, 0x2112), (0x0028, 0x2114), (0x0088, 0x0200) })
            ds.Remove(new gdcm.Tag(g, e)); // frames, per-frame groups, lossy-compression notes (the new pixels are not from a lossy codec), icon
        var uid = new gdcm.UIDGenerator();
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        Put(ds, 0x0008, 0x0018, uid.Generate(), uidValue: true);
        Put(ds, 0x0020, 0x000e, uid.Generate(), uidValue: true);
        Put(ds, 0x0008, 0x0008, "DERIVED\\SECONDARY");
        Put(ds, 0x0008, 0x2111, d.Description.Length > 1024 ? d.Description[..1024] : d.Description);
        if (d.WriteWindow)
        {
            Put(ds, 0x0028, 0x1050, d.Window.Center.ToString("0.######", inv));
            Put(ds, 0x0028, 0x1051, d.Window.Width.ToString("0.######", inv));
        }
        var w = new gdcm.ImageWriter();
        w.SetFile(file);
        w.SetImage(img);
        var full = System.IO.Path.GetFullPath(outPath);
        var tmp = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(full)!, "." + System.IO.Path.GetFileName(full) + $".tmp{Environment.ProcessId}");
        w.SetFileName(tmp);
        bool ok = w.Write();
        w.Dispose();
        if (!ok) { try { File.Delete(tmp); } catch { } throw Bad(outPath, "GDCM could not write the DICOM file"); }
        File.Move(tmp, full, overwrite: true);
    }

    /// <summary>Replaces a text attribute (padded to even length: UIDs with NUL, text with a space).</summary>
    static void Put(gdcm.DataSet ds, ushort g, ushort e, string value, bool uidValue = false)
    {
        var b = Encoding.ASCII.GetBytes(value.Length % 2 == 1 ? value + (uidValue ? "\0" : " ") : value);
        var de = new gdcm.DataElement(new gdcm.Tag(g, e));
        de.SetByteValue(b, new gdcm.VL((uint)b.Length));
        ds.Replace(de);
    }
}
#else
internal static partial class DicomCodec
{
    internal static void Ensure(string path) => throw new PerturbException($"{path}: {Missing}, then rebuild Perturb");
    public static int CountFrames(string path) => throw new PerturbException($"{path}: {Missing}, then rebuild Perturb");
    public static DicomRaw Read(string path) => throw new PerturbException($"{path}: {Missing}, then rebuild Perturb");
    public static void WriteDerived(DicomRaw src, int[] frame, string outPath, DicomDerivation d) => throw new PerturbException($"{outPath}: {Missing}, then rebuild Perturb");
}
#endif
