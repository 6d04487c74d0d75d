using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Perturb.Engine.IO;

/// <summary>One tensor read from or written to a .safetensors file, as float32 on the host.</summary>
public sealed record NamedArray(string Name, int[] Shape, float[] Data);

/// <summary>
/// The safetensors format: an 8-byte little-endian header length, a UTF-8 JSON header mapping each tensor name to
/// {dtype, shape, data_offsets: [begin, end)} relative to the data section, an optional "__metadata__" object of
/// string values, then the raw little-endian data. Writes F32; reads F32, F64, F16 and BF16 (converted to float32).
/// </summary>
public static class SafeTensors
{
    const long MaxHeader = 100_000_000;

    public static void Write(string path, IEnumerable<NamedArray> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        var header = new JsonObject();
        if (metadata != null && metadata.Count > 0)
        {
            var meta = new JsonObject();
            foreach (var kv in metadata) meta[kv.Key] = kv.Value;
            header["__metadata__"] = meta;
        }
        long off = 0;
        foreach (var t in list)
        {
            long n = (long)t.Data.Length * 4;
            if (Layer_Product(t.Shape) != t.Data.Length) throw new ArgumentException($"tensor '{t.Name}' has {t.Data.Length} values for shape {string.Join("x", t.Shape)}");
            header[t.Name] = new JsonObject
            {
                ["dtype"] = "F32",
                ["shape"] = new JsonArray(t.Shape.Select(d => (JsonNode)d).ToArray()),
                ["data_offsets"] = new JsonArray(off, off + n),
            };
            off += n;
        }
        var hb = Encoding.UTF8.GetBytes(header.ToJsonString());
        int pad = (8 - hb.Length % 8) % 8;
        var hbytes = new byte[hb.Length + pad];
        hb.CopyTo(hbytes, 0);
        for (int i = hb.Length; i < hbytes.Length; i++) hbytes[i] = (byte)' ';

        AtomicFile.Write(path, fs =>
        {
            Span<byte> len = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)hbytes.Length);
            fs.Write(len);
            fs.Write(hbytes);
            foreach (var t in list)
            {
                var bytes = new byte[t.Data.Length * 4];
                for (int i = 0; i < t.Data.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), t.Data[i]);
                fs.Write(bytes);
            }
        });
    }

    static long Layer_Product(int[] s) { long p = 1; foreach (var d in s) p *= d; return p; }

    /// <summary>Reads every tensor and the metadata. Any malformed part is a PerturbException naming the file.</summary>
    public static (List<NamedArray> Tensors, Dictionary<string, string> Metadata) Read(string path)
    {
        return Parse(SafeFiles.ReadAllBytes(path, "model file"), path);
    }

    public static (List<NamedArray> Tensors, Dictionary<string, string> Metadata) Parse(byte[] all, string path)
    {
        PerturbException Bad(string what) => new($"{path}: not a valid safetensors file: {what}");
        if (all.Length < 8) throw Bad($"file is {all.Length} bytes, shorter than the 8-byte header length");
        ulong hlen = BinaryPrimitives.ReadUInt64LittleEndian(all);
        if (hlen > MaxHeader || (long)hlen > all.Length - 8) throw Bad($"header length {hlen} exceeds the file size {all.Length} (truncated?)");
        JsonObject header;
        try { header = JsonNode.Parse(Encoding.UTF8.GetString(all, 8, (int)hlen)) as JsonObject ?? throw Bad("header is not a JSON object"); }
        catch (JsonException e) { throw Bad($"header is not valid JSON ({e.Message})"); }
        long dataStart = 8 + (long)hlen, dataLen = all.Length - dataStart;
        var meta = new Dictionary<string, string>();
        var tensors = new List<NamedArray>();
        var ranges = new List<(long B, long E, string Name)>();
        foreach (var (name, node) in header)
        {
            if (name == "__metadata__")
            {
                if (node is JsonObject mo)
                    foreach (var (k, v) in mo)
                        meta[k] = v is JsonValue jv && jv.TryGetValue<string>(out var s) ? s : throw Bad($"metadata '{k}' is not a string");
                continue;
            }
            if (node is not JsonObject to) throw Bad($"entry '{name}' is not an object");
            string dtype = (string?)to["dtype"] ?? throw Bad($"tensor '{name}' has no dtype");
            int[] shape; long b, e;
            try
            {
                shape = (to["shape"] as JsonArray ?? throw Bad($"tensor '{name}' has no shape")).Select(v => v!.GetValue<int>()).ToArray();
                var offs = to["data_offsets"] as JsonArray ?? throw Bad($"tensor '{name}' has no data_offsets");
                if (offs.Count != 2) throw Bad($"tensor '{name}' data_offsets must have two entries");
                b = offs[0]!.GetValue<long>(); e = offs[1]!.GetValue<long>();
            }
            catch (Exception ex) when (ex is InvalidOperationException or FormatException or NullReferenceException or OverflowException)
            { throw Bad($"tensor '{name}' has a malformed shape or data_offsets"); }
            if (shape.Any(d => d < 0)) throw Bad($"tensor '{name}' has a negative dimension");
            if (Limits.Product(shape) < 0 || Limits.Product(shape) > dataLen) throw Bad($"tensor '{name}' of shape {string.Join("x", shape)} holds more values than the file has bytes");
            int esize = dtype switch { "F32" => 4, "F64" => 8, "F16" => 2, "BF16" => 2, _ => throw Bad($"tensor '{name}' has dtype {dtype}; only F32, F64, F16 and BF16 are supported") };
            long count = Layer_Product(shape);
            if (b < 0 || e < b || e > dataLen) throw Bad($"tensor '{name}' data [{b}, {e}) lies outside the {dataLen}-byte data section (truncated?)");
            if (e - b != count * esize) throw Bad($"tensor '{name}' has {e - b} bytes for shape {string.Join("x", shape)} of {dtype} ({count * esize} expected)");
            ranges.Add((b, e, name));
            var data = new float[count];
            var src = all.AsSpan((int)(dataStart + b), (int)(e - b));
            for (long i = 0; i < count; i++)
            {
                data[i] = dtype switch
                {
                    "F32" => BinaryPrimitives.ReadSingleLittleEndian(src.Slice((int)i * 4)),
                    "F64" => (float)BinaryPrimitives.ReadDoubleLittleEndian(src.Slice((int)i * 8)),
                    "F16" => (float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(src.Slice((int)i * 2))),
                    _ => BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(src.Slice((int)i * 2)) << 16),
                };
            }
            tensors.Add(new NamedArray(name, shape, data));
        }
        ranges.Sort();
        for (int i = 1; i < ranges.Count; i++)
            if (ranges[i].B < ranges[i - 1].E) throw Bad($"tensors '{ranges[i - 1].Name}' and '{ranges[i].Name}' overlap");
        return (tensors, meta);
    }
}

/// <summary>Writes a file under a temporary name and renames it when complete, so no half-written file is left.</summary>
public static class AtomicFile
{
    public static void Write(string path, Action<Stream> write)
    {
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full)!;
        try { Directory.CreateDirectory(dir); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new PerturbException($"{path}: cannot create folder {dir}: {e.Message}"); }
        var tmp = Path.Combine(dir, "." + Path.GetFileName(full) + $".tmp{Environment.ProcessId}");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write))
                write(fs);
            File.Move(tmp, full, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            try { File.Delete(tmp); } catch { }
            throw new PerturbException($"{path}: cannot write: {e.Message}");
        }
        catch
        {
            try { File.Delete(tmp); } catch { }
            throw;
        }
    }

    public static void WriteText(string path, string text) => WriteBytes(path, Encoding.UTF8.GetBytes(text));

    public static void WriteBytes(string path, byte[] bytes) => Write(path, s => s.Write(bytes));
}
