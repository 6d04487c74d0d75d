namespace Perturb.Engine;

/// <summary>
/// A dense float32 tensor in row-major (NCHW for images) layout, owned by one backend.
/// A tensor may be a view of another tensor's storage: <see cref="Offset"/> is the index of its first element in
/// the storage. Every backend op honours the offset. Views never own storage; disposing a view does nothing.
/// </summary>
public sealed class Tensor : IDisposable
{
    public IBackend Backend { get; }
    public int[] Shape { get; }
    public int Length { get; }
    /// <summary>Element offset into <see cref="Storage"/>.</summary>
    public int Offset { get; }
    /// <summary>Backend-specific storage: float[] for CpuBackend, MemoryBuffer1D&lt;float, Stride1D.Dense&gt; for IlgpuBackend.</summary>
    public object Storage { get; private set; }
    public bool IsView { get; }
    bool _disposed;

    /// <summary>
    /// The write counter, shared by a tensor and every view of it (<see cref="Reshape"/>, <see cref="Slice"/>). Every
    /// backend op bumps it on each tensor it is given, except on the weight operand of ConvForward and
    /// ConvBackwardData and the labels (and DLR targets) of the loss ops, which they only read. A backend may therefore
    /// cache data derived from a weight tensor (packed or transformed weights), or the fact that labels passed their
    /// range check, and reuse it while <see cref="Version"/> is unchanged. Conservative: reads elsewhere
    /// count as writes too, which only costs a rebuild.
    /// </summary>
    internal sealed class VersionBox { public long Value; }
    internal VersionBox Ver { get; }
    public long Version => Volatile.Read(ref Ver.Value);
    internal void Touch() => Interlocked.Increment(ref Ver.Value);

    public Tensor(IBackend backend, object storage, int[] shape, int offset = 0, bool isView = false)
        : this(backend, storage, shape, offset, isView, new VersionBox()) { }

    Tensor(IBackend backend, object storage, int[] shape, int offset, bool isView, VersionBox ver)
    {
        Backend = backend; Storage = storage; Shape = (int[])shape.Clone(); Offset = offset; IsView = isView; Ver = ver;
        long n = 1; foreach (var d in shape) { if (d < 0) throw new ArgumentException($"negative dimension in shape [{string.Join(",", shape)}]"); n *= d; }
        if (n > int.MaxValue) throw new ArgumentException($"tensor of shape [{string.Join(",", shape)}] is too large");
        Length = (int)n;
    }

    public int Rank => Shape.Length;
    public int this[int dim] => Shape[dim < 0 ? Shape.Length + dim : dim];
    /// <summary>Batch size: the first dimension.</summary>
    public int N => Shape[0];
    /// <summary>Elements per sample: Length / N.</summary>
    public int PerSample => Shape.Length == 0 || Shape[0] == 0 ? 0 : Length / Shape[0];

    /// <summary>A view over the same storage with another shape of the same length.</summary>
    public Tensor Reshape(params int[] shape)
    {
        long n = 1; int neg = -1;
        for (int i = 0; i < shape.Length; i++) { if (shape[i] == -1) neg = i; else n *= shape[i]; }
        if (neg >= 0) { shape = (int[])shape.Clone(); shape[neg] = (int)(Length / Math.Max(1, n)); n *= shape[neg]; }
        if (n != Length) throw new ArgumentException($"cannot reshape [{ShapeString(Shape)}] to [{ShapeString(shape)}]");
        return new Tensor(Backend, Storage, shape, Offset, true, Ver);
    }

    /// <summary>A view of samples [start, start+count) along dimension 0.</summary>
    public Tensor Slice(int start, int count)
    {
        if (start < 0 || count < 0 || start + count > Shape[0]) throw new ArgumentOutOfRangeException(nameof(start), $"slice [{start},{start + count}) outside dimension 0 of size {Shape[0]}");
        var s = (int[])Shape.Clone(); s[0] = count;
        return new Tensor(Backend, Storage, s, Offset + start * PerSample, true, Ver);
    }

    public float[] ToArray() => Backend.ToArray(this);

    public static string ShapeString(int[] s) => string.Join("x", s);
    public override string ToString() => $"Tensor[{ShapeString(Shape)}]@{Backend.Name}";

    public void Dispose()
    {
        if (_disposed || IsView) return;
        _disposed = true;
        Backend.Free(this);
    }
}
