using System.Buffers.Binary;
using System.IO.Compression;

namespace Perturb.Engine.Data;

/// <summary>
/// MNIST and Fashion-MNIST IDX files: a big-endian magic (0x00000803 for uint8 images N×H×W, 0x00000801 for uint8
/// labels N), big-endian 32-bit dimensions, then the bytes. Read from a folder holding the standard names
/// (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte), each plain or
/// gzipped (".gz"). "train" is the train split, "test" the t10k split; there is no val split. A split's files are
/// needed only when that split is loaded. Classes are "0".."9", or Fashion-MNIST's names when the folder's name
/// contains "fashion".
/// </summary>
public static class Idx
{
    public static readonly string[] FashionClasses = { "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot" };

    static string Prefix(string split) => split switch
    {
        "train" => "train",
        "test" => "t10k",
        "val" => throw new PerturbException("IDX (MNIST) data sets have no val split", 1),
        _ => throw new PerturbException($"unknown split '{split}' (choose train or test)", 2),
    };

    /// <summary>The image and label file of a split in <paramref name="dir"/> (plain preferred over .gz), or null for a missing one.</summary>
    public static (string? Images, string? Labels) Files(string dir, string split)
    {
        string p = Prefix(split);
        string? Find(string name) =>
            File.Exists(Path.Combine(dir, name)) ? Path.Combine(dir, name)
            : File.Exists(Path.Combine(dir, name + ".gz")) ? Path.Combine(dir, name + ".gz") : null;
        return (Find($"{p}-images-idx3-ubyte"), Find($"{p}-labels-idx1-ubyte"));
    }

    /// <summary>True when the folder holds the image and label files of at least one split.</summary>
    public static bool IsIdxFolder(string dir)
    {
        if (!Directory.Exists(dir)) return false;
        var (ti, tl) = Files(dir, "train");
        var (si, sl) = Files(dir, "test");
        return (ti != null && tl != null) || (si != null && sl != null);
    }

    static string SetName(string dir)
    {
        var n = Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir)));
        return string.IsNullOrEmpty(n) ? "idx" : n;
    }

    public static string[] ClassNames(string dir) =>
        SetName(dir).Contains("fashion", StringComparison.OrdinalIgnoreCase) ? FashionClasses : Enumerable.Range(0, 10).Select(i => i.ToString()).ToArray();

    /// <summary>Loads both splits; each must be present.</summary>
    public static DataSplits Load(string dir) => new(SetName(dir), LoadSplit(dir, "train"), null, LoadSplit(dir, "test"));

    public static Dataset LoadSplit(string dir, string split)
    {
        var (imPath, lbPath) = Files(dir, split);
        string p = Prefix(split);
        if (imPath == null || lbPath == null)
            throw new PerturbException($"{dir}: the {split} split is missing: needs {p}-images-idx3-ubyte and {p}-labels-idx1-ubyte (plain or .gz); missing {string.Join(" and ", new[] { imPath == null ? $"{p}-images-idx3-ubyte" : null, lbPath == null ? $"{p}-labels-idx1-ubyte" : null }.Where(s => s != null))}");
        var (pix, n, h, w) = ReadImages(imPath);
        var labels = ReadLabels(lbPath);
        if (labels.Length != n) throw new PerturbException($"{dir}: {Path.GetFileName(imPath)} holds {n} images but {Path.GetFileName(lbPath)} holds {labels.Length} labels");
        var names = ClassNames(dir);
        var y = new int[n];
        for (int i = 0; i < n; i++)
        {
            y[i] = labels[i];
            if (y[i] >= names.Length) throw new PerturbException($"{lbPath}: label {y[i]} at index {i} is outside the {names.Length} classes");
        }
        var x = new float[pix.Length];
        for (int i = 0; i < x.Length; i++) x[i] = pix[i] / 255f;
        return new Dataset(x, y, 1, h, w, names) { Name = $"{SetName(dir)}/{split}" };
    }

    /// <summary>Reads an idx3-ubyte image file: N×H×W bytes.</summary>
    public static (byte[] Pixels, int N, int H, int W) ReadImages(string path)
    {
        var (dims, data) = Read(path, 0x00000803, 3);
        return (data, dims[0], dims[1], dims[2]);
    }

    /// <summary>Reads an idx1-ubyte label file.</summary>
    public static byte[] ReadLabels(string path) => Read(path, 0x00000801, 1).Data;

    /// <summary>
    /// Reads the header from the (gunzipped) stream first, checks the dimensions' product in 64-bit arithmetic against
    /// <see cref="Limits.MaxArrayBytes"/>, then reads exactly that many bytes: an 11 MB gzip that inflates to 2.6 GB is
    /// refused from its 16-byte header, before anything is inflated.
    /// </summary>
    static (int[] Dims, byte[] Data) Read(string path, uint magic, int nd)
    {
        try
        {
            using var fs = Npy.OpenRead(path);
            bool gz = path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase);
            uint? isize = gz ? GzipDeclaredSize(fs) : null;
            using Stream s = gz ? new GZipStream(fs, CompressionMode.Decompress) : fs;
            int head = 4 + 4 * nd;
            var hb = new byte[head];
            int got = ReadFully(s, hb, head);
            if (got < head) throw new PerturbException($"{path}: not an IDX file: {got} bytes, shorter than its {head}-byte header");
            uint m = BinaryPrimitives.ReadUInt32BigEndian(hb);
            if (m != magic)
                throw new PerturbException($"{path}: not an IDX {(nd == 3 ? "image" : "label")} file: magic 0x{m:X8}, expected 0x{magic:X8}");
            var dims = new int[nd];
            for (int d = 0; d < nd; d++)
            {
                uint v = BinaryPrimitives.ReadUInt32BigEndian(hb.AsSpan(4 + 4 * d));
                if (v > int.MaxValue) throw new PerturbException($"{path}: dimension {d} is {v}, too large");
                dims[d] = (int)v;
            }
            long count = Limits.Product(dims);
            if (count < 0) throw new PerturbException($"{path}: dimensions {string.Join("x", dims)} hold more bytes than 64-bit arithmetic counts");
            Limits.Check($"{path}: dimensions {string.Join("x", dims)}: bytes", count, Math.Min(Limits.MaxArrayBytes, Array.MaxLength), "PERTURB_MAX_ARRAY_BYTES");
            if (isize is { } declared && (uint)(head + count) != declared && declared < head + count)
                throw new PerturbException($"{path}: the gzip trailer declares {declared} uncompressed bytes but the IDX header's dimensions {string.Join("x", dims)} need {head + count}");
            var data = IO.SafeFiles.ReadUpTo(s, count);
            got = data.Length;
            if (got < count)
                throw new PerturbException($"{path}: truncated: dimensions {string.Join("x", dims)} need {count} bytes of data, the file has {got}");
            return (dims, data);
        }
        catch (InvalidDataException e) { throw new PerturbException($"{path}: not a valid gzip file: {e.Message}"); }
    }

    /// <summary>The uncompressed size a gzip member declares in its last 4 bytes (modulo 2^32), leaving the stream at the start.</summary>
    static uint? GzipDeclaredSize(FileStream fs)
    {
        if (!fs.CanSeek || fs.Length < 18) return null;
        var b = new byte[4];
        fs.Seek(-4, SeekOrigin.End);
        int got = 0;
        while (got < 4) { int k = fs.Read(b, got, 4 - got); if (k <= 0) break; got += k; }
        fs.Seek(0, SeekOrigin.Begin);
        return got == 4 ? BinaryPrimitives.ReadUInt32LittleEndian(b) : null;
    }

    static int ReadFully(Stream s, byte[] buf, int n)
    {
        int got = 0;
        while (got < n) { int k = s.Read(buf, got, n - got); if (k <= 0) break; got += k; }
        return got;
    }

    public static DataInfo Info(string dir)
    {
        var splits = new List<SplitInfo>();
        foreach (var s in new[] { "train", "test" })
        {
            var (im, lb) = Files(dir, s);
            if (im == null || lb == null) { splits.Add(SplitInfo.Absent(s, $"{Prefix(s)}-images-idx3-ubyte and {Prefix(s)}-labels-idx1-ubyte are not both present")); continue; }
            splits.Add(SplitInfo.Of(s, LoadSplit(dir, s)));
        }
        return new DataInfo(SetName(dir), "idx folder", dir, ClassNames(dir), false, splits);
    }
}
