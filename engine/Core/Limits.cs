using System.Globalization;

namespace Perturb.Engine;

/// <summary>
/// The size limits every reader checks before it allocates, so a small hostile file cannot make the engine allocate
/// gigabytes, recurse until the stack overflows or hand an unchecked size to native code. Each limit has a default,
/// an environment variable that raises or lowers it for a run (<c>PERTURB_MAX_IMAGE_PIXELS=400000000 perturb ...</c>),
/// and a settable property for library users. docs/limits.md lists them. A value that is not a positive integer in
/// the variable is a usage error naming the variable.
/// </summary>
public static class Limits
{
    /// <summary>The most pixels (width x height) of one decoded image. PIL's default decompression-bomb limit.</summary>
    public static long MaxImagePixels { get => Get(ref _imagePixels, "PERTURB_MAX_IMAGE_PIXELS", 89_478_485); set => _imagePixels = Positive(value); }
    /// <summary>The most bytes of one decoded array: an .npy file or .npz member, an IDX file after gunzip.</summary>
    public static long MaxArrayBytes { get => Get(ref _arrayBytes, "PERTURB_MAX_ARRAY_BYTES", 1L << 30); set => _arrayBytes = Positive(value); }
    /// <summary>The most values (float32) of a data set held in memory, and of one tensor made at ONNX import (constant folding).</summary>
    public static long MaxTensorElements { get => Get(ref _tensorElements, "PERTURB_MAX_TENSOR_ELEMENTS", 1L << 28); set => _tensorElements = Positive(value); }
    /// <summary>The most classes a data set or a model may have.</summary>
    public static long MaxClasses { get => Get(ref _classes, "PERTURB_MAX_CLASSES", 100_000); set => _classes = Positive(value); }
    /// <summary>The most cells (models x data x attacks x grid points) one sweep spec may describe.</summary>
    public static long MaxSweepCells { get => Get(ref _sweepCells, "PERTURB_MAX_SWEEP_CELLS", 100_000); set => _sweepCells = Positive(value); }
    /// <summary>The most bytes of a file read whole: a model (.safetensors, .onnx), a sweep spec, a results file.</summary>
    public static long MaxFileBytes { get => Get(ref _fileBytes, "PERTURB_MAX_FILE_BYTES", Array.MaxLength); set => _fileBytes = Positive(value); }
    /// <summary>The deepest nesting a recursive parser follows (npy header literals, JSON documents, ONNX subgraphs).</summary>
    public static int MaxNesting { get => (int)Get(ref _nesting, "PERTURB_MAX_NESTING", 64); set => _nesting = Positive(value); }

    static long? _imagePixels, _arrayBytes, _tensorElements, _classes, _sweepCells, _fileBytes, _nesting;

    static long Get(ref long? field, string variable, long def)
    {
        if (field is { } v) return v;
        var s = Environment.GetEnvironmentVariable(variable);
        if (string.IsNullOrWhiteSpace(s)) return def;
        if (long.TryParse(s.Replace("_", ""), NumberStyles.None, CultureInfo.InvariantCulture, out long x) && x > 0) return x;
        throw new PerturbException($"environment variable {variable}: expected a positive integer, got '{s}'", 2);
    }

    static long Positive(long v) => v > 0 ? v : throw new ArgumentOutOfRangeException(nameof(v), v, "a limit must be positive");

    /// <summary>Forgets values set through the properties (tests), so the environment and defaults apply again.</summary>
    public static void Reset() => _imagePixels = _arrayBytes = _tensorElements = _classes = _sweepCells = _fileBytes = _nesting = null;

    /// <summary>The error for a size over a limit: what, how big, the limit, and the variable that raises it.</summary>
    public static PerturbException Exceeded(string what, long size, long limit, string variable) =>
        new($"{what}: {(size < 0 ? "more than 64-bit arithmetic counts" : size.ToString("N0", CultureInfo.InvariantCulture))} is over the limit of {limit.ToString("N0", CultureInfo.InvariantCulture)} (set {variable} to raise it; see docs/limits.md)");

    /// <summary>Throws <see cref="Exceeded"/> when <paramref name="size"/> is over <paramref name="limit"/> (a negative size is an overflowed product, always over).</summary>
    public static void Check(string what, long size, long limit, string variable)
    {
        if (size < 0 || size > limit) throw Exceeded(what, size, limit, variable);
    }

    /// <summary>The product of the dimensions in checked 64-bit arithmetic; -1 when it overflows or a dimension is negative.</summary>
    public static long Product(IEnumerable<long> dims)
    {
        long p = 1;
        foreach (var d in dims)
        {
            if (d < 0) return -1;
            try { p = checked(p * d); }
            catch (OverflowException) { return -1; }
        }
        return p;
    }

    public static long Product(IEnumerable<int> dims) => Product(dims.Select(d => (long)d));
}
