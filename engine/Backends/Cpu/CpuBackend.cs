using System.Numerics.Tensors;

namespace Perturb.Engine.Backends;

/// <summary>
/// The CPU fallback backend: tensors are <c>float[]</c> storage (a tensor covers [Offset, Offset+Length) of it),
/// arithmetic is managed SIMD (Vector512/Vector256, TensorPrimitives) with Parallel.For over batch, rows or channels,
/// and a packed, register-blocked GEMM (CpuGemm.cs) that convolution (CpuConv.cs) is built on.
/// Ops run synchronously; <see cref="Synchronize"/> has nothing to wait for.
/// This file: construction, memory and the parallel helpers; each op family is in Cpu&lt;Family&gt;.cs beside its kernel
/// twin Ilgpu&lt;Family&gt;.cs.
/// </summary>
public sealed partial class CpuBackend : BackendBase
{
    /// <summary>Below this many elements an op runs on the calling thread.</summary>
    const long ParallelThreshold = 32 * 1024;

    readonly int _threads;
    readonly ParallelOptions _po;

    public CpuBackend(int? threads = null)
    {
        _threads = Math.Max(1, threads ?? Environment.ProcessorCount);
        _po = new ParallelOptions { MaxDegreeOfParallelism = _threads };
        DeviceName = ReadCpuModel();
        MemoryBytes = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
    }

    public override string Name => "cpu";
    public override string DeviceName { get; }
    public override long MemoryBytes { get; }
    /// <summary>Worker threads the backend uses.</summary>
    public int Threads => _threads;

    static string ReadCpuModel()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
                if (line.StartsWith("model name", StringComparison.Ordinal))
                {
                    int colon = line.IndexOf(':');
                    if (colon >= 0 && line[(colon + 1)..].Trim() is { Length: > 0 } name) return name;
                }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return "CPU";
    }

    public override void Dispose() { _pool.Clear(); _pooledBytes = 0; }

    // ---------------------------------------------------------------- tensor access helpers

    // BackendBase has checked ownership and lengths before any core method runs.

    /// <summary>The tensor's elements as a span.</summary>
    static Span<float> Sp(Tensor t) => ((float[])t.Storage).AsSpan(t.Offset, t.Length);

    /// <summary>A (storage, offset) pair that a parallel body can capture (spans cannot be captured).</summary>
    readonly record struct Buf(float[] A, int Off)
    {
        public Span<float> Span(long start, long len) => A.AsSpan(Off + (int)start, (int)len);
        public ref float this[long i] => ref A[Off + i];
    }

    static Buf B(Tensor t) => new((float[])t.Storage, t.Offset);

    /// <summary>The optional tensor's buffer, or null.</summary>
    static Buf? BOpt(Tensor? t) => t is null ? null : B(t);

    /// <summary>Runs body(i) for i in [0, count), in parallel when count*workPerItem is large enough.</summary>
    void For(int count, long workPerItem, Action<int> body)
    {
        if (_threads == 1 || count <= 1 || (long)count * workPerItem < ParallelThreshold)
        {
            for (int i = 0; i < count; i++) body(i);
            return;
        }
        Parallel.For(0, count, _po, body);
    }

    /// <summary>Splits [0, length) into contiguous ranges and runs body(start, end) on each, in parallel when large.</summary>
    void Ranges(long length, Action<long, long> body)
    {
        if (_threads == 1 || length < 2 * ParallelThreshold) { body(0, length); return; }
        int chunks = (int)Math.Min(_threads * 4L, length / ParallelThreshold);
        long per = (length + chunks - 1) / chunks;
        per = (per + 15) & ~15L;
        chunks = (int)((length + per - 1) / per);
        Parallel.For(0, chunks, _po, i =>
        {
            long s = i * per, e = Math.Min(length, s + per);
            body(s, e);
        });
    }

    // ---------------------------------------------------------------- memory

    protected override Tensor AllocateCore(int[] shape, int length) => new(this, Rent(length), shape);

    // Large arrays freed by Tensor.Dispose are kept for reuse (by exact length), so a network's activations do not
    // churn the large-object heap pass after pass. Reused arrays are cleared: Allocate always returns zeros.
    const int PoolMinLength = 1 << 14;
    const long PoolMaxBytes = 2L << 30;
    readonly System.Collections.Concurrent.ConcurrentDictionary<int, System.Collections.Concurrent.ConcurrentBag<float[]>> _pool = new();
    long _pooledBytes;

    float[] Rent(int n)
    {
        if (n >= PoolMinLength && _pool.TryGetValue(n, out var bag) && bag.TryTake(out var a))
        {
            Interlocked.Add(ref _pooledBytes, -4L * n);
            Ranges(n, (s, e) => Array.Clear(a, (int)s, (int)(e - s)));
            return a;
        }
        Counters.Allocated(4L * n);
        return new float[n];
    }

    protected override ReadOnlySpan<float> PeekHost(Tensor t) => Sp(t);

    protected override float[] ToArrayCore(Tensor t) { Counters.ToHost(4L * t.Length); return Sp(t).ToArray(); }

    protected override void UploadCore(Tensor t, ReadOnlySpan<float> data) { Counters.ToDevice(4L * t.Length); data.CopyTo(Sp(t)); }

    protected override void CopyCore(Tensor src, Tensor dst) => Sp(src).CopyTo(Sp(dst));

    protected override void FillCore(Tensor t, float value)
    {
        var b = B(t);
        Ranges(t.Length, (s, e) => b.Span(s, e - s).Fill(value));
    }

    public override void Synchronize() { }

    public override void Free(Tensor t)
    {
        if (t.IsView || t.Storage is not float[] a || a.Length < PoolMinLength) return;
        if (Interlocked.Add(ref _pooledBytes, 4L * a.Length) > PoolMaxBytes) { Interlocked.Add(ref _pooledBytes, -4L * a.Length); return; }
        _pool.GetOrAdd(a.Length, _ => new()).Add(a);
    }
}
