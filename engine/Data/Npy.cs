using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using Perturb.Engine.IO;

namespace Perturb.Engine.Data;

/// <summary>The element types a .npy file may hold here.</summary>
public enum NpyType { Bool, UInt8, Int8, UInt16, Int16, UInt32, Int32, UInt64, Int64, Float16, Float32, Float64 }

/// <summary>What a .npy header says: element type, source byte order, layout and shape.</summary>
public sealed record NpyHeader(NpyType Type, bool BigEndian, bool FortranOrder, int[] Shape, string Descr)
{
    /// <summary>Elements, in checked 64-bit arithmetic (the header reader refuses shapes whose product overflows).</summary>
    public long Count => Limits.Product(Shape);
    /// <summary>Bytes of the magic, version, length and header dict: where the data starts.</summary>
    public long HeaderBytes { get; init; }
    public int ItemSize => Npy.ItemSize(Type);
    public string ShapeText => "(" + string.Join(", ", Shape) + (Shape.Length == 1 ? ",)" : ")");
}

/// <summary>
/// An array read from a .npy file: its data in C order (last index fastest) and little-endian byte order,
/// whatever order and layout the file used.
/// </summary>
public sealed class NpyArray
{
    public NpyType Type { get; }
    public int[] Shape { get; }
    /// <summary>Raw little-endian bytes, C order.</summary>
    public byte[] Data { get; }
    public long Count { get; }

    public NpyArray(NpyType type, int[] shape, byte[] data)
    {
        long n = Limits.Product(shape);
        if (n < 0 || n * Npy.ItemSize(type) != data.Length) throw new ArgumentException($"{data.Length} bytes do not hold shape ({string.Join(", ", shape)}) of {type}");
        Type = type; Shape = shape; Data = data; Count = n;
    }

    public static NpyArray FromFloats(float[] values, params int[] shape)
    {
        var b = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(b.AsSpan(i * 4), values[i]);
        return new NpyArray(NpyType.Float32, shape, b);
    }

    public static NpyArray FromBytes(byte[] values, params int[] shape) => new(NpyType.UInt8, shape, values);

    /// <summary>Element i (C order) as a double.</summary>
    public double this[long i]
    {
        get
        {
            var s = Data.AsSpan();
            return Type switch
            {
                NpyType.Bool or NpyType.UInt8 => s[(int)i],
                NpyType.Int8 => (sbyte)s[(int)i],
                NpyType.UInt16 => BinaryPrimitives.ReadUInt16LittleEndian(s[(int)(i * 2)..]),
                NpyType.Int16 => BinaryPrimitives.ReadInt16LittleEndian(s[(int)(i * 2)..]),
                NpyType.UInt32 => BinaryPrimitives.ReadUInt32LittleEndian(s[(int)(i * 4)..]),
                NpyType.Int32 => BinaryPrimitives.ReadInt32LittleEndian(s[(int)(i * 4)..]),
                NpyType.UInt64 => BinaryPrimitives.ReadUInt64LittleEndian(s[(int)(i * 8)..]),
                NpyType.Int64 => BinaryPrimitives.ReadInt64LittleEndian(s[(int)(i * 8)..]),
                NpyType.Float16 => (double)BinaryPrimitives.ReadHalfLittleEndian(s[(int)(i * 2)..]),
                NpyType.Float32 => BinaryPrimitives.ReadSingleLittleEndian(s[(int)(i * 4)..]),
                _ => BinaryPrimitives.ReadDoubleLittleEndian(s[(int)(i * 8)..]),
            };
        }
    }

    public float[] ToFloat32()
    {
        var r = new float[Count];
        if (Type == NpyType.UInt8) { for (int i = 0; i < r.Length; i++) r[i] = Data[i]; return r; }
        for (long i = 0; i < Count; i++) r[i] = (float)this[i];
        return r;
    }

    public bool IsInteger => Type is not (NpyType.Float16 or NpyType.Float32 or NpyType.Float64);
}

/// <summary>
/// NumPy's .npy format (versions 1.0, 2.0 and 3.0): the magic "\x93NUMPY", a major and minor version byte, a header
/// length (2 bytes little-endian in 1.0, 4 in 2.0 and 3.0), then a Python dict literal
/// <c>{'descr': '&lt;f4', 'fortran_order': False, 'shape': (3, 4), }</c> padded with spaces and a newline, then the
/// raw data. Reads dtypes b1, u1, i1, u2, i2, u4, i4, u8, i8, f2, f4, f8 in either byte order; Fortran-order data is
/// transposed to C order. Object (pickled) and structured dtypes are errors. Writes float32 and uint8 (version 1.0).
/// .npz files are zip archives of .npy members, read through <see cref="ZipArchive"/>.
/// </summary>
public static class Npy
{
    static readonly byte[] Magic = { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y' };
    const int MaxHeader = 1 << 20;

    public static int ItemSize(NpyType t) => t switch
    {
        NpyType.Bool or NpyType.UInt8 or NpyType.Int8 => 1,
        NpyType.UInt16 or NpyType.Int16 or NpyType.Float16 => 2,
        NpyType.UInt32 or NpyType.Int32 or NpyType.Float32 => 4,
        _ => 8,
    };

    /// <summary>Reads a whole .npy file.</summary>
    public static NpyArray ReadFile(string path)
    {
        using var fs = OpenRead(path);
        return Read(fs, path);
    }

    internal static FileStream OpenRead(string path) => SafeFiles.OpenRead(path);

    /// <summary>Reads one array from a stream; <paramref name="where"/> names it in errors (a file, or "file.npz: member").</summary>
    /// <param name="declaredBytes">The size the container declares for this array (an .npz member's uncompressed size), checked against the header's shape before any data is read.</param>
    public static NpyArray Read(Stream s, string where, long? declaredBytes = null)
    {
        var h = ReadHeader(s, where);
        long n = h.Count, bytes = n * h.ItemSize;
        if (declaredBytes is { } dec && h.HeaderBytes + bytes > dec)
            throw new PerturbException($"{where}: truncated: shape {h.ShapeText} of '{h.Descr}' needs {bytes} bytes of data, the archive declares {Math.Max(0, dec - h.HeaderBytes)} for this member");
        var data = SafeFiles.ReadUpTo(s, bytes);
        long got = data.Length;
        if (got < bytes) throw new PerturbException($"{where}: truncated: shape {h.ShapeText} of '{h.Descr}' needs {bytes} bytes of data, the file has {got}");
        int size = h.ItemSize;
        if (h.BigEndian && size > 1)
            for (long i = 0; i < bytes; i += size) Array.Reverse(data, (int)i, size);
        if (h.FortranOrder && h.Shape.Length > 1) data = FortranToC(data, h.Shape, size);
        return new NpyArray(h.Type, h.Shape, data);
    }

    static int ReadFully(Stream s, byte[] buf)
    {
        int got = 0;
        while (got < buf.Length)
        {
            int k = s.Read(buf, got, buf.Length - got);
            if (k <= 0) break;
            got += k;
        }
        return got;
    }

    /// <summary>Reads and checks the magic, version and header dict, leaving the stream at the start of the data.</summary>
    public static NpyHeader ReadHeader(Stream s, string where)
    {
        PerturbException Bad(string what) => new($"{where}: not a valid .npy array: {what}");
        var pre = new byte[8];
        int got = ReadFully(s, pre);
        if (got < 8 || !pre.AsSpan(0, 6).SequenceEqual(Magic))
            throw Bad(got < 6 ? $"{got} bytes, shorter than the magic string" : "the magic string \\x93NUMPY is missing");
        int major = pre[6], minor = pre[7];
        if (major is < 1 or > 3 || minor != 0) throw Bad($"format version {major}.{minor} (1.0, 2.0 and 3.0 are read)");
        int hlen;
        if (major == 1) { var b = new byte[2]; if (ReadFully(s, b) < 2) throw Bad("truncated header length"); hlen = BinaryPrimitives.ReadUInt16LittleEndian(b); }
        else { var b = new byte[4]; if (ReadFully(s, b) < 4) throw Bad("truncated header length"); uint u = BinaryPrimitives.ReadUInt32LittleEndian(b); if (u > MaxHeader) throw Bad($"header length {u} is implausible"); hlen = (int)u; }
        var hb = new byte[hlen];
        if (ReadFully(s, hb) < hlen) throw Bad($"truncated header (needs {hlen} bytes)");
        string text = (major == 3 ? Encoding.UTF8 : Encoding.Latin1).GetString(hb).Trim();
        Dictionary<string, object> dict;
        try { dict = new HeaderParser(text).ParseDict(0); }
        catch (FormatException e) { throw Bad($"header dict: {e.Message}: {Shorten(text)}"); }
        if (!dict.TryGetValue("descr", out var descrObj)) throw Bad("header has no 'descr'");
        if (descrObj is not string descr) throw Bad("structured (record) dtypes are not supported");
        if (!dict.TryGetValue("fortran_order", out var fo) || fo is not bool fortran) throw Bad("header has no boolean 'fortran_order'");
        if (!dict.TryGetValue("shape", out var so) || so is not List<long> shapeL) throw Bad("header has no 'shape' tuple");
        if (shapeL.Any(d => d < 0 || d > int.MaxValue)) throw Bad($"shape ({string.Join(", ", shapeL)}) has an impossible dimension");
        if (shapeL.Count > 32) throw Bad($"shape has {shapeL.Count} dimensions (NumPy allows 32 at most)");
        var (type, big) = ParseDescr(descr, where);
        long count = Limits.Product(shapeL), bytes = count < 0 || count > long.MaxValue / 8 ? -1 : count * ItemSize(type);
        if (bytes < 0) throw Bad($"shape ({string.Join(", ", shapeL)}) holds more elements than 64-bit arithmetic counts");
        Limits.Check($"{where}: array of shape ({string.Join(", ", shapeL)}) of '{descr}': bytes", bytes, Math.Min(Limits.MaxArrayBytes, Array.MaxLength), "PERTURB_MAX_ARRAY_BYTES");
        return new NpyHeader(type, big, fortran, shapeL.Select(d => (int)d).ToArray(), descr) { HeaderBytes = 8 + (major == 1 ? 2 : 4) + hlen };
    }

    static string Shorten(string s) => s.Length > 120 ? s[..120] + "..." : s;

    static (NpyType, bool) ParseDescr(string d, string where)
    {
        if (d.Length < 2) throw new PerturbException($"{where}: unsupported dtype '{d}'");
        char order = d[0];
        string code = d[1..];
        if (order is not ('<' or '>' or '|' or '='))
        { order = '='; code = d; }
        if (code.StartsWith('O')) throw new PerturbException($"{where}: dtype '{d}' is an object (pickled) array; only numeric arrays are read (save with allow_pickle=False)");
        NpyType? t = code switch
        {
            "b1" or "?" => NpyType.Bool, "u1" => NpyType.UInt8, "i1" => NpyType.Int8,
            "u2" => NpyType.UInt16, "i2" => NpyType.Int16, "u4" => NpyType.UInt32, "i4" => NpyType.Int32,
            "u8" => NpyType.UInt64, "i8" => NpyType.Int64, "f2" => NpyType.Float16, "f4" => NpyType.Float32, "f8" => NpyType.Float64,
            _ => null,
        };
        if (t == null) throw new PerturbException($"{where}: unsupported dtype '{d}' (numeric b1, u1-u8, i1-i8, f2, f4, f8 are read)");
        return (t.Value, order == '>');
    }

    /// <summary>Reorders Fortran-order (first index fastest) data to C order.</summary>
    static byte[] FortranToC(byte[] src, int[] shape, int size)
    {
        int nd = shape.Length;
        long n = src.Length / size;
        var dst = new byte[src.Length];
        var fStride = new long[nd];
        long st = 1;
        for (int d = 0; d < nd; d++) { fStride[d] = st; st *= shape[d]; }
        var idx = new int[nd];
        long fOff = 0;
        for (long c = 0; c < n; c++)
        {
            Buffer.BlockCopy(src, (int)(fOff * size), dst, (int)(c * size), size);
            for (int d = nd - 1; d >= 0; d--)
            {
                idx[d]++; fOff += fStride[d];
                if (idx[d] < shape[d]) break;
                fOff -= fStride[d] * shape[d]; idx[d] = 0;
            }
        }
        return dst;
    }

    /// <summary>
    /// Writes one array as .npy version 1.0. <paramref name="descr"/> and <paramref name="fortran"/> are written as
    /// given, so tests can produce big-endian and Fortran-order files; <paramref name="data"/> must already be in that form.
    /// </summary>
    public static void WriteRaw(Stream s, string descr, bool fortran, int[] shape, ReadOnlySpan<byte> data)
    {
        string shapeText = "(" + string.Join(", ", shape) + (shape.Length == 1 ? ",)" : ")");
        string dict = $"{{'descr': '{descr}', 'fortran_order': {(fortran ? "True" : "False")}, 'shape': {shapeText}, }}";
        int total = 10 + dict.Length + 1;
        int pad = (64 - total % 64) % 64;
        string header = dict + new string(' ', pad) + "\n";
        s.Write(Magic);
        s.WriteByte(1); s.WriteByte(0);
        Span<byte> len = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(len, (ushort)header.Length);
        s.Write(len);
        s.Write(Encoding.Latin1.GetBytes(header));
        s.Write(data);
    }

    static string DescrOf(NpyType t) => t switch
    {
        NpyType.UInt8 => "|u1", NpyType.Float32 => "<f4", NpyType.Int32 => "<i4", NpyType.Int64 => "<i8",
        _ => throw new ArgumentException($"writing {t} arrays is not supported (float32, uint8, int32 and int64 are)"),
    };

    /// <summary>Writes a float32, uint8, int32 or int64 array (little-endian data) to a stream, C order.</summary>
    public static void Write(Stream s, NpyArray a) => WriteRaw(s, DescrOf(a.Type), false, a.Shape, a.Data);

    /// <summary>Writes a float32 or uint8 array to a .npy file (atomically).</summary>
    public static void WriteFile(string path, NpyArray a)
    {
        DescrOf(a.Type);
        AtomicFile.Write(path, fs => Write(fs, a));
    }

    /// <summary>Writes several float32 or uint8 arrays as an .npz (uncompressed zip of name.npy members), atomically.</summary>
    public static void WriteNpz(string path, IEnumerable<(string Name, NpyArray Array)> arrays)
    {
        var list = arrays.ToList();
        foreach (var (_, a) in list) DescrOf(a.Type);
        AtomicFile.Write(path, fs =>
        {
            using var zip = new ZipArchive(fs, ZipArchiveMode.Create, leaveOpen: true);
            foreach (var (name, a) in list)
            {
                using var es = zip.CreateEntry(name + ".npy", CompressionLevel.NoCompression).Open();
                Write(es, a);
            }
        });
    }

    /// <summary>Parses the Python literal subset used by .npy headers: dicts, strings, True/False, ints and tuples of ints.</summary>
    sealed class HeaderParser
    {
        readonly string _s; int _i;
        public HeaderParser(string s) { _s = s; }

        void Ws() { while (_i < _s.Length && char.IsWhiteSpace(_s[_i])) _i++; }
        char Peek() { Ws(); return _i < _s.Length ? _s[_i] : '\0'; }
        void Expect(char c) { if (Peek() != c) throw new FormatException($"expected '{c}' at position {_i}"); _i++; }

        /// <summary>Dicts and tuples nest; past <see cref="Limits.MaxNesting"/> levels the header is refused (a header of 30,000 '(' would overflow the stack).</summary>
        static void Depth(int depth)
        {
            if (depth > Limits.MaxNesting) throw new FormatException($"nested more than {Limits.MaxNesting} levels deep");
        }

        public Dictionary<string, object> ParseDict(int depth)
        {
            Depth(depth);
            var d = new Dictionary<string, object>();
            Expect('{');
            while (Peek() != '}')
            {
                if (Peek() is not ('\'' or '"')) throw new FormatException($"expected a quoted key at position {_i}");
                string k = ParseString();
                Expect(':');
                d[k] = ParseValue(depth + 1);
                if (Peek() == ',') _i++;
                else if (Peek() != '}') throw new FormatException($"expected ',' or '}}' at position {_i}");
            }
            _i++;
            return d;
        }

        object ParseValue(int depth)
        {
            char c = Peek();
            if (c is '\'' or '"') return ParseString();
            if (c == '(') return ParseTuple(depth);
            if (c == '[') { SkipBracketed(); return new object(); } // a structured dtype's field list
            if (c == '{') return ParseDict(depth);
            int start = _i;
            while (_i < _s.Length && (char.IsLetterOrDigit(_s[_i]) || _s[_i] is '-' or '_' or 'L')) _i++;
            string w = _s[start.._i];
            if (w == "True") return true;
            if (w == "False") return false;
            if (long.TryParse(w.TrimEnd('L'), out var v)) return v;
            throw new FormatException($"unexpected value '{w}' at position {start}");
        }

        void SkipBracketed()
        {
            int depth = 0;
            do
            {
                if (_i >= _s.Length) throw new FormatException("unbalanced brackets");
                char c = _s[_i++];
                if (c is '[' or '(') depth++; else if (c is ']' or ')') depth--;
            } while (depth > 0);
        }

        string ParseString()
        {
            char q = _s[_i++];
            int start = _i;
            while (_i < _s.Length && _s[_i] != q) _i++;
            if (_i >= _s.Length) throw new FormatException("unterminated string");
            return _s[start.._i++];
        }

        List<long> ParseTuple(int depth)
        {
            Depth(depth);
            var r = new List<long>();
            Expect('(');
            while (Peek() != ')')
            {
                if (_i >= _s.Length) throw new FormatException("unterminated tuple");
                if (ParseValue(depth + 1) is not long v) throw new FormatException("a shape entry is not an integer");
                r.Add(v);
                if (Peek() == ',') _i++;
                else if (Peek() != ')') throw new FormatException($"expected ',' or ')' at position {_i}");
            }
            _i++;
            return r;
        }
    }
}

/// <summary>A read-only .npz archive: members by name (with or without ".npy").</summary>
public sealed class NpzFile : IDisposable
{
    readonly ZipArchive _zip;
    readonly FileStream _fs;
    public string Path { get; }

    public NpzFile(string path)
    {
        Path = path;
        _fs = Npy.OpenRead(path);
        IGrouping<string, ZipArchiveEntry>? dup;
        try
        {
            _zip = new ZipArchive(_fs, ZipArchiveMode.Read);
            // NumPy reads the last of two members with one name, ZipArchive.GetEntry the first: refuse the ambiguity.
            dup = _zip.Entries.GroupBy(e => e.FullName.EndsWith(".npy") ? e.FullName[..^4] : e.FullName).FirstOrDefault(g => g.Count() > 1);
        }
        catch (InvalidDataException e) { _zip?.Dispose(); _fs.Dispose(); throw new PerturbException($"{path}: not a valid .npz (zip) file: {e.Message}"); }
        if (dup != null)
        {
            Dispose();
            throw new PerturbException($"{path}: the archive holds {dup.Count()} members named '{dup.Key}'; a valid .npz has each array once");
        }
    }

    public IEnumerable<string> Names => _zip.Entries.Select(e => e.FullName.EndsWith(".npy") ? e.FullName[..^4] : e.FullName);

    public bool Has(string name) => Entry(name) != null;

    ZipArchiveEntry? Entry(string name) => _zip.GetEntry(name + ".npy") ?? _zip.GetEntry(name);

    public NpyArray Read(string name) => Use(name, (s, w, declared) => Npy.Read(s, w, declared));

    public NpyHeader ReadHeader(string name) => Use(name, (s, w, _) => Npy.ReadHeader(s, w));

    T Use<T>(string name, Func<Stream, string, long, T> f)
    {
        var e = Entry(name) ?? throw new PerturbException($"{Path}: has no member '{name}' (members: {string.Join(", ", Names)})");
        string where = $"{Path}: member '{e.FullName}'";
        try
        {
            using var s = e.Open();
            return f(s, where, e.Length);
        }
        catch (InvalidDataException ex) { throw new PerturbException($"{where}: corrupt zip data: {ex.Message}"); }
    }

    public void Dispose() { _zip.Dispose(); _fs.Dispose(); }
}
