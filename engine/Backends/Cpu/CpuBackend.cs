using System.Numerics.Tensors;
using Philox = Perturb.Kernels.Philox;

namespace Perturb.Engine.Backends;

/// <summary>
/// The CPU fallback backend: tensors are <c>float[]</c> storage (a tensor covers [Offset, Offset+Length) of it),
/// arithmetic is managed SIMD (Vector512/Vector256, TensorPrimitives) with Parallel.For over batch, rows or channels,
/// and a packed, register-blocked GEMM (CpuGemm.cs) that convolution (CpuConv.cs) is built on.
/// Ops run synchronously; <see cref="Synchronize"/> has nothing to wait for.
/// This file: construction, memory, the parallel helpers, element-wise ops, reductions, random numbers,
/// optimisers and the fused attack steps.
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
        return new float[n];
    }

    protected override ReadOnlySpan<float> PeekHost(Tensor t) => Sp(t);

    protected override float[] ToArrayCore(Tensor t) => Sp(t).ToArray();

    protected override void UploadCore(Tensor t, ReadOnlySpan<float> data) => data.CopyTo(Sp(t));

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

    // ---------------------------------------------------------------- bias

    protected override void BiasAddCore(Tensor y, Tensor bias, int outer, int channels, int inner)
    {
        var yb = B(y);
        var bb = B(bias);
        For(outer * channels, inner, i =>
        {
            var row = yb.Span((long)i * inner, inner);
            TensorPrimitives.Add(row, bb[i % channels], row);
        });
    }

    protected override void BiasGradCore(Tensor dy, Tensor db, int outer, int channels, int inner) =>
        SumChannels(B(dy), B(db), outer, channels, inner);

    /// <summary>o[c] = sum over n, i of d[n, c, i] (d viewed as [outer, channels, inner]), accumulated in double.</summary>
    void SumChannels(Buf d, Buf o, int outer, int channels, int inner)
    {
        For(channels, (long)outer * inner, c =>
        {
            double s = 0;
            for (int n = 0; n < outer; n++) s += SumD(d.Span(((long)n * channels + c) * inner, inner));
            o[c] = (float)s;
        });
    }

    // ---------------------------------------------------------------- activations

    protected override void ActivationForwardCore(Activation f, float alpha, Tensor x, Tensor y)
    {
        var xb = B(x);
        var yb = B(y);
        Ranges(x.Length, (s, e) =>
        {
            var xs = xb.Span(s, e - s);
            var ys = yb.Span(s, e - s);
            switch (f)
            {
                case Activation.Relu: TensorPrimitives.Max(xs, 0f, ys); break;
                case Activation.LeakyRelu:
                    for (int i = 0; i < xs.Length; i++) { float v = xs[i]; ys[i] = v > 0 ? v : alpha * v; }
                    break;
                case Activation.Sigmoid:
                    for (int i = 0; i < xs.Length; i++) ys[i] = 1f / (1f + MathF.Exp(-xs[i]));
                    break;
                case Activation.Tanh: for (int i = 0; i < xs.Length; i++) ys[i] = MathF.Tanh(xs[i]); break;
                default: throw new InvalidOperationException($"act_fwd: activation {f} has no CPU implementation");
            }
        });
    }

    protected override void ActivationBackwardCore(Activation f, float alpha, Tensor src, Tensor dy, Tensor dx)
    {
        var sb = B(src);
        var db = B(dy);
        var ob = B(dx);
        Ranges(dy.Length, (s, e) =>
        {
            var v = sb.Span(s, e - s);
            var g = db.Span(s, e - s);
            var o = ob.Span(s, e - s);
            switch (f)
            {
                case Activation.Relu: for (int i = 0; i < v.Length; i++) o[i] = v[i] > 0 ? g[i] : 0f; break;
                case Activation.LeakyRelu: for (int i = 0; i < v.Length; i++) o[i] = v[i] > 0 ? g[i] : alpha * g[i]; break;
                case Activation.Sigmoid: for (int i = 0; i < v.Length; i++) o[i] = g[i] * v[i] * (1f - v[i]); break;
                case Activation.Tanh: for (int i = 0; i < v.Length; i++) o[i] = g[i] * (1f - v[i] * v[i]); break;
                default: throw new InvalidOperationException($"act_bwd: activation {f} has no CPU implementation");
            }
        });
    }

    // ---------------------------------------------------------------- element-wise

    /// <summary>Runs a span-wise kernel over two inputs and one output of equal length, in parallel chunks.</summary>
    void Binary(Tensor a, Tensor b, Tensor y, SpanBinary kernel)
    {
        var ab = B(a); var bb = B(b); var yb = B(y);
        Ranges(a.Length, (s, e) => kernel(ab.Span(s, e - s), bb.Span(s, e - s), yb.Span(s, e - s)));
    }

    delegate void SpanBinary(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> y);

    protected override void BinaryCore(BinaryOp kind, Tensor a, Tensor b, Tensor y) =>
        Binary(a, b, y, kind switch
        {
            BinaryOp.Add => TensorPrimitives.Add,
            BinaryOp.Mul => TensorPrimitives.Multiply,
            _ => throw new InvalidOperationException($"binary op {kind} has no CPU implementation"),
        });

    protected override void AxpyCore(float alpha, Tensor x, Tensor y) =>
        Binary(x, y, y, (xs, ys, o) => TensorPrimitives.FusedMultiplyAdd(xs, alpha, ys, o));

    protected override void ScaleCore(float alpha, Tensor x, Tensor y) =>
        Binary(x, x, y, (xs, _, o) => TensorPrimitives.Multiply(xs, alpha, o));

    protected override void ClampCore(Tensor x, float lo, float hi, Tensor y) =>
        Binary(x, x, y, (xs, _, o) =>
        {
            for (int i = 0; i < xs.Length; i++) o[i] = MathF.Min(MathF.Max(xs[i], lo), hi);
        });

    protected override void SignCore(Tensor x, Tensor y) =>
        Binary(x, x, y, (xs, _, o) =>
        {
            for (int i = 0; i < xs.Length; i++) { float v = xs[i]; o[i] = v > 0 ? 1f : v < 0 ? -1f : 0f; }
        });

    protected override void LerpCore(Tensor a, Tensor b, float t, Tensor y) =>
        Binary(a, b, y, (as_, bs, o) =>
        {
            for (int i = 0; i < as_.Length; i++) o[i] = as_[i] + t * (bs[i] - as_[i]);
        });

    protected override void ChannelCopyCore(Tensor src, int srcC, int srcOff, Tensor dst, int dstC, int dstOff, int count, int outer, int inner, bool accumulate)
    {
        var s = B(src);
        var d = B(dst);
        For(outer * count, inner, j =>
        {
            int n = j / count, i = j % count;
            var from = s.Span(((long)n * srcC + srcOff + i) * inner, inner);
            var to = d.Span(((long)n * dstC + dstOff + i) * inner, inner);
            if (accumulate) TensorPrimitives.Add(to, from, to); else from.CopyTo(to);
        });
    }

    // ---------------------------------------------------------------- per-sample reductions

    protected override void ReduceRowsCore(Reduction kind, Tensor x, Tensor outp, int rows, int cols)
    {
        var xb = B(x);
        var ob = B(outp);
        For(rows, cols, r =>
        {
            var v = xb.Span((long)r * cols, cols);
            ob[r] = kind switch
            {
                Reduction.Sum => (float)SumD(v),
                Reduction.Max => cols == 0 ? float.NegativeInfinity : TensorPrimitives.Max(v),
                Reduction.L0 => CountNonZero(v),
                Reduction.L2 => (float)Math.Sqrt(SumSqD(v)),
                Reduction.Linf => cols == 0 ? 0f : TensorPrimitives.MaxMagnitude(v) is var m ? MathF.Abs(m) : 0f,
                _ => throw new InvalidOperationException($"reduce: reduction {kind} has no CPU implementation"),
            };
        });
    }

    static float CountNonZero(ReadOnlySpan<float> v)
    {
        int c = 0;
        foreach (var e in v) if (MathF.Abs(e) > 0) c++;
        return c;
    }

    /// <summary>Sum in double, vectorised 16 floats at a time per block of 1024.</summary>
    static double SumD(ReadOnlySpan<float> v)
    {
        double s = 0;
        for (int i = 0; i < v.Length; i += 1024) s += TensorPrimitives.Sum<float>(v.Slice(i, Math.Min(1024, v.Length - i)));
        return s;
    }

    static double SumSqD(ReadOnlySpan<float> v)
    {
        double s = 0;
        for (int i = 0; i < v.Length; i += 1024) s += TensorPrimitives.SumOfSquares<float>(v.Slice(i, Math.Min(1024, v.Length - i)));
        return s;
    }

    static double DotD(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i += 1024)
        {
            int l = Math.Min(1024, a.Length - i);
            s += TensorPrimitives.Dot(a.Slice(i, l), b.Slice(i, l));
        }
        return s;
    }

    protected override void ArgmaxRowsCore(Tensor x, Tensor outp, int rows, int cols)
    {
        var xb = B(x);
        var ob = B(outp);
        For(rows, cols, r => ob[r] = FirstArgmax(xb.Span((long)r * cols, cols), -1));
    }

    /// <summary>Index of the first maximum of v, skipping index <paramref name="skip"/>; -1 when nothing is left.</summary>
    static int FirstArgmax(ReadOnlySpan<float> v, int skip)
    {
        int best = -1; float m = 0;
        for (int j = 0; j < v.Length; j++)
        {
            if (j == skip) continue;
            if (best < 0 || v[j] > m) { best = j; m = v[j]; }
        }
        return best;
    }

    // ---------------------------------------------------------------- random

    protected override void RandomUniformCore(Tensor t, ulong seed, ulong offset)
    {
        var b = B(t);
        Ranges(t.Length, (s, e) => { for (long i = s; i < e; i++) b[i] = Philox.Uniform(seed, offset, i); });
    }

    protected override void RandomNormalCore(Tensor t, ulong seed, ulong offset, float mean, float std)
    {
        var b = B(t);
        Ranges(t.Length, (s, e) => { for (long i = s; i < e; i++) b[i] = mean + std * Philox.Normal(seed, offset, i); });
    }

    protected override void DropoutForwardCore(Tensor x, Tensor y, Tensor mask, float p, ulong seed, ulong offset)
    {
        var xb = B(x); var yb = B(y); var mb = B(mask);
        float keep = 1f / (1f - p);
        Ranges(x.Length, (s, e) =>
        {
            for (long i = s; i < e; i++)
            {
                float m = Philox.Uniform(seed, offset, i) >= p ? keep : 0f;
                mb[i] = m;
                yb[i] = xb[i] * m;
            }
        });
    }

    // ---------------------------------------------------------------- optimisers

    protected override void SgdUpdateCore(Tensor w, Tensor g, Tensor v, float lr, float momentum, float weightDecay, bool nesterov)
    {
        var wb = B(w); var gb = B(g); var vb = B(v);
        Ranges(w.Length, (s, e) =>
        {
            for (long i = s; i < e; i++)
            {
                float gp = gb[i] + weightDecay * wb[i];
                float vi = momentum == 0f ? gp : momentum * vb[i] + gp;
                vb[i] = vi;
                wb[i] -= lr * (nesterov ? gp + momentum * vi : vi);
            }
        });
    }

    protected override void AdamUpdateCore(Tensor w, Tensor g, Tensor m, Tensor v, float lr, float beta1, float beta2, float eps, float weightDecay, int step)
    {
        var wb = B(w); var gb = B(g); var mb = B(m); var vb = B(v);
        float bc1 = (float)(1 - Math.Pow(beta1, step)), bc2 = (float)(1 - Math.Pow(beta2, step));
        Ranges(w.Length, (s, e) =>
        {
            for (long i = s; i < e; i++)
            {
                float gp = gb[i] + weightDecay * wb[i];
                float mi = beta1 * mb[i] + (1f - beta1) * gp;
                float vi = beta2 * vb[i] + (1f - beta2) * gp * gp;
                mb[i] = mi; vb[i] = vi;
                wb[i] -= lr * (mi / bc1) / (MathF.Sqrt(vi / bc2) + eps);
            }
        });
    }

    // ---------------------------------------------------------------- fused attack steps

    /// <summary>One sample's attack step, in place on x (that sample's row of xadv).</summary>
    delegate void AttackRow(Span<float> x, ReadOnlySpan<float> x0, ReadOnlySpan<float> g, float step, float eps);

    /// <summary>Shared driver of the fused attack steps: runs one sample (row) per work item.</summary>
    void AttackStep(Tensor xadv, Tensor x0, Tensor grad, Tensor step, Tensor eps, int rows, int cols, AttackRow body)
    {
        var xa = B(xadv); var xo = B(x0); var gr = B(grad);
        var st = B(step); var ep = B(eps);
        For(rows, cols, r => body(xa.Span((long)r * cols, cols), xo.Span((long)r * cols, cols), gr.Span((long)r * cols, cols), st[r], ep[r]));
    }

    protected override void AttackStepLinfCore(Tensor xadv, Tensor x0, Tensor grad, Tensor step, Tensor eps, int rows, int cols) =>
        AttackStep(xadv, x0, grad, step, eps, rows, cols, (xs, x0s, gs, a, e) =>
        {
            for (int i = 0; i < xs.Length; i++)
            {
                float g = gs[i], sg = g > 0 ? 1f : g < 0 ? -1f : 0f;
                float v = xs[i] + a * sg;
                v = MathF.Min(MathF.Max(v, x0s[i] - e), x0s[i] + e);
                xs[i] = MathF.Min(MathF.Max(v, 0f), 1f);
            }
        });

    protected override void AttackStepL2Core(Tensor xadv, Tensor x0, Tensor grad, Tensor step, Tensor eps, int rows, int cols) =>
        AttackStep(xadv, x0, grad, step, eps, rows, cols, (xs, x0s, gs, a, e) =>
        {
            int cols = xs.Length;
            float inv = (float)(1.0 / (Math.Sqrt(SumSqD(gs)) + 1e-12));
            // d = xadv + step*g/||g|| - x0 is recomputed in the second pass rather than stored.
            double dd = 0;
            for (int i = 0; i < cols; i++) { float d = xs[i] + a * (gs[i] * inv) - x0s[i]; dd += (double)d * d; }
            double dn = Math.Sqrt(dd);
            float f = dn > 0 ? (float)Math.Min(1.0, e / dn) : 1f;
            for (int i = 0; i < cols; i++)
            {
                float d = (xs[i] + a * (gs[i] * inv) - x0s[i]) * f;
                xs[i] = MathF.Min(MathF.Max(x0s[i] + d, 0f), 1f);
            }
        });
}
