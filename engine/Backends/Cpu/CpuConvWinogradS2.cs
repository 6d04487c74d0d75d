using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Perturb.Engine.Backends;

/// <summary>
/// Stride-2 3x3 convolutions (forward and backward-data) through a polyphase Winograd transform. Along one axis,
/// with xp the padded input, an output y[o] = w0 xp[2o] + w1 xp[2o+1] + w2 xp[2o+2] is a 2-tap correlation of the
/// even samples E[i] = xp[2i] with (w0, w2) plus a 1-tap one of the odd samples O[i] = xp[2i+1] with w1. A tile of
/// T outputs reads xp[2T t .. 2T t + 2T] (n = 2T + 1 values): the even part runs Winograd F(T, 2) (T + 1 products
/// instead of 2T), the odd part T plain products. So one axis costs n = 2T + 1 products per T outputs instead of 3T,
/// and a T x T tile n^2 instead of 9 T^2 (T = 2: 25 for 36, 1.44x fewer; T = 4: 81 for 144, 1.78x fewer):
///
///   Y = A^T [ (G g G^T) (.) (B^T d B) ] A     summed over the input channels inside the brackets,
///
/// with B^T (n x n), G (n x 3), A^T (T x n) assembled from F(T, 2)'s matrices (<see cref="S2Tables"/>: F(2, 2) at
/// the points 0, 1, inf; F(4, 2) at 0, 1, -1, 2, inf). As in CpuWinograd.cs the sum over channels is one GEMM per
/// transformed position xi (n^2 of them) on weights transformed and packed once per weight tensor and cached.
///
/// Backward-data is the adjoint of the same linear map in x: dM = A dY A^T per output tile, dV[xi] = U[xi]^T dM[xi]
/// (the GEMM with the transposed packed weights), and dd = B dV B^T scatter-added into dx (tiles overlap by one
/// input row and column; a chunk holds whole samples, so no two threads add into the same dx).
/// The transforms run 16 tiles at a time, one tile per vector lane.
/// </summary>
public sealed partial class CpuBackend
{
    /// <summary>Stride-2 3x3 convolutions with enough channels, as for Winograd (the stem conv has 1-3 channels).</summary>
    static bool WinogradS2Applies(in ConvShape s) =>
        s.R == 3 && s.S == 3 && s.StrideH == 2 && s.StrideW == 2 && s.DilH == 1 && s.DilW == 1 && s.Groups == 1
        && s.PadH <= 2 && s.PadW <= 2 && s.C >= WinogradMinChannels && s.K >= WinogradMinChannels && s.N > 0
        && s.OutH > 0 && s.OutW > 0;

    /// <summary>
    /// Where the automatic path takes WinogradS2F4: output sides multiples of 4 (no tile reaches past the output)
    /// and at least 128 input channels (the transforms' cost per product falls with the channels). Measured with
    /// perf conv-paths at batch 128 on one thread: the ResNet-18's 256->512 7x7 (4x4 output) 1.39x faster forward
    /// and 1.67x backward-data than the implicit GEMM and sample blocks; 64->128 28x28 (14x14 output) and 128->256
    /// 14x14 (7x7 output, tiles past the edge) 0.6-0.75x, so they keep the GEMM paths.
    /// </summary>
    static bool WinogradS2Pays(in ConvShape s) =>
        WinogradS2Applies(s) && Avx512F.IsSupported && s.OutH % 4 == 0 && s.OutW % 4 == 0 && s.C >= 128;

    /// <summary>
    /// The polyphase F(T, 3) stride 2 (n = 2T + 1 points): G (n x 3, row-major, double: the weights are transformed in
    /// double) assembled from F(T, 2)'s kernel transform (rows 0..T: even taps w0, w2) and T rows of w1 (odd tap).
    /// F(T, 2) (y[o] = g0 d[o] + g1 d[o + 1]), A^T y, G g, B^T d:
    ///   T = 2, points 0, 1, inf:     A^T = [1 1 0; 0 1 1], G = [1 0; 1 1; 0 1], B^T = [1 -1 0; 0 1 0; 0 -1 1]
    ///   T = 4, points 0, 1, -1, 2, inf: A^T = [1 1 1 1 0; 0 1 -1 2 0; 0 1 1 4 0; 0 1 -1 8 1],
    ///     G = [1/2 0; -1/2 -1/2; -1/6 1/6; 1/6 1/3; 0 1], B^T = [2 -1 -2 1 0; 0 -2 -1 1 0; 0 2 -3 1 0; 0 -1 0 1 0; 0 2 -1 -2 1]
    /// The full B^T (over xp[0..2T]) applies F(T, 2)'s B^T to the even samples and passes the odd ones; A^T adds the
    /// odd products to F(T, 2)'s outputs (<see cref="S2Bt"/>, <see cref="S2At"/> and their adjoints write them out).
    /// </summary>
    sealed class S2Tables
    {
        public required int T, Nn;
        public required double[] G;

        public static S2Tables Build(int t)
        {
            double[,] g = t == 2 ? new double[,] { { 1, 0 }, { 1, 1 }, { 0, 1 } }
                : t == 4 ? new double[,] { { 0.5, 0 }, { -0.5, -0.5 }, { -1.0 / 6, 1.0 / 6 }, { 1.0 / 6, 1.0 / 3 }, { 0, 1 } }
                : throw new ArgumentOutOfRangeException(nameof(t));
            int n = 2 * t + 1;
            var G = new double[n * 3];
            for (int j = 0; j <= t; j++) { G[j * 3] = g[j, 0]; G[j * 3 + 2] = g[j, 1]; }
            for (int i = 0; i < t; i++) G[(t + 1 + i) * 3 + 1] = 1;
            return new S2Tables { T = t, Nn = n, G = G };
        }
    }

    static readonly S2Tables s_s2T2 = S2Tables.Build(2), s_s2T4 = S2Tables.Build(4);

    /// <summary>The transformed, packed weights of one weight tensor for one tile size and direction.</summary>
    sealed class WinogradS2Weights
    {
        public required long Version;
        public required int Offset, K, C;
        public required S2Tables Tab;
        public required float[] Buf;
        public required PackedA[] U;
    }

    /// <summary>[T == 4 ? 2 : 0 + backward ? 1 : 0].</summary>
    sealed class WinogradS2Slot { public readonly WinogradS2Weights?[] Dir = new WinogradS2Weights?[4]; }

    static readonly ConditionalWeakTable<Tensor.VersionBox, WinogradS2Slot> s_winogradS2 = new();

    unsafe WinogradS2Weights WinogradS2For(Tensor w, int k, int c, bool backward, int t)
    {
        var slot = s_winogradS2.GetValue(w.Ver, _ => new WinogradS2Slot());
        int d = (backward ? 1 : 0) + (t == 4 ? 2 : 0);
        long ver = w.Version;
        var e = slot.Dir[d];
        if (e != null && e.Version == ver && e.Offset == w.Offset && e.K == k && e.C == c) return e;
        lock (slot)
        {
            e = slot.Dir[d];
            if (e != null && e.Version == ver && e.Offset == w.Offset && e.K == k && e.C == c) return e;
            var tab = t == 4 ? s_s2T4 : s_s2T2;
            var src = (float[])w.Storage;
            int n = tab.Nn, planes = n * n;
            long kc = (long)k * c;
            // U[xi = i*n + j][k, c] = (G g G^T)[i, j] in double, g = w[k, c] (rows: H, columns: W).
            var u = GC.AllocateUninitializedArray<float>((int)(planes * kc));
            Span<double> g9 = stackalloc double[9], gg = stackalloc double[n * 3];
            for (int ko = 0; ko < k; ko++)
                for (int ci = 0; ci < c; ci++)
                {
                    int b0 = w.Offset + (ko * c + ci) * 9;
                    for (int i = 0; i < 9; i++) g9[i] = src[b0 + i];
                    KernelTransform(tab.G, n, g9, gg, u, kc, (long)ko * c + ci);
                }
            // Forward: A = U[xi] (K x C); backward: A = U[xi]^T (C x K).
            var (buf, packs) = PackPlanes(u, planes, kc, backward, c, backward ? c : k, backward ? k : c);
            e = new WinogradS2Weights { Version = ver, Offset = w.Offset, K = k, C = c, Tab = tab, Buf = buf, U = packs };
            slot.Dir[d] = e;
            Interlocked.Increment(ref _winogradBuilds);
            return e;
        }
    }

    [ThreadStatic] static float[]? t_s2V, t_s2M;

    /// <summary>
    /// Forward (backward = false): y = conv(x) (+ bias, ReLU) with stride 2, src = x, dst = y (every element written).
    /// Backward-data: dx = conv^T(dy), src = dy, dst = dx (overwritten).
    /// </summary>
    unsafe void WinogradS2Conv(ConvShape s, Buf src, WinogradS2Weights ww, Buf? bias, Buf dst, bool relu, bool backward)
    {
        var tab = ww.Tab;
        int t = tab.T, planes = tab.Nn * tab.Nn;
        int th = (s.OutH + t - 1) / t, tw = (s.OutW + t - 1) / t, tps = th * tw;
        var g = new S2Geom(s, t, th, tw, relu, backward);
        // Samples per chunk: V and M of a chunk within about 16 MB.
        long perSample = (long)tps * planes * (s.C + s.K);
        int spc = (int)Math.Clamp(4194304 / perSample, 1, s.N);
        int chunks = (s.N + spc - 1) / spc;
        bool par = _threads > 1 && s.N >= _threads;
        if (par) chunks = Math.Min(s.N, (chunks + _threads - 1) / _threads * _threads);
        void Chunk(int ci, bool split)
        {
            int n0 = (int)((long)s.N * ci / chunks), n1 = (int)((long)s.N * (ci + 1) / chunks);
            int tc = (n1 - n0) * tps;
            var v = Grow(ref t_s2V, planes * PlaneLen(s.C, tc));
            var m = Grow(ref t_s2M, planes * PlaneLen(s.K, tc));
            fixed (float* pv = v, pm = m, ps = src.A, pd = dst.A)
                WinogradS2Chunk(g, tab, n0, tc, ps + src.Off, ww, bias, pd + dst.Off, pv, pm, split);
        }
        if (par) Parallel.For(0, chunks, _po, ci => Chunk(ci, false));
        else for (int ci = 0; ci < chunks; ci++) Chunk(ci, _threads > 1);
    }

    readonly record struct S2Geom(ConvShape S, int T, int TH, int TW, bool Relu, bool Backward);

    unsafe void WinogradS2Chunk(S2Geom g, S2Tables tab, int n0, int tc, float* src, WinogradS2Weights ww, Buf? bias, float* dst, float* v, float* m, bool split)
    {
        var s = g.S;
        int planes = tab.Nn * tab.Nn;
        nint sp = (nint)src, dp = (nint)dst, vp = (nint)v, mp = (nint)m;
        long vStride = PlaneLen(s.C, tc), mStride = PlaneLen(s.K, tc);
        if (!g.Backward)
        {
            Split(split, s.C, r => { for (int c = r.Item1; c < r.Item2; c++) S2InputTransform(g, tab, n0, tc, c, (float*)sp, (float*)vp + (long)c * tc, vStride); });
            Split(split, planes, r =>
            {
                for (int xi = r.Item1; xi < r.Item2; xi++)
                    GemmST(false, false, s.K, tc, s.C, 1f, null, 0, (float*)vp + xi * vStride, tc, 0f, (float*)mp + xi * mStride, tc, ww.U[xi]);
            });
            Split(split, s.K, r =>
            {
                for (int k = r.Item1; k < r.Item2; k++)
                    S2OutputTransform(g, tab, n0, tc, k, (float*)mp + (long)k * tc, mStride, bias is { } b ? b[k] : 0f, (float*)dp);
            });
        }
        else
        {
            Split(split, s.K, r => { for (int k = r.Item1; k < r.Item2; k++) S2DyTransform(g, tab, n0, tc, k, (float*)sp, (float*)mp + (long)k * tc, mStride); });
            Split(split, planes, r =>
            {
                for (int xi = r.Item1; xi < r.Item2; xi++)
                    GemmST(false, false, s.C, tc, s.K, 1f, null, 0, (float*)mp + xi * mStride, tc, 0f, (float*)vp + xi * vStride, tc, ww.U[xi]);
            });
            Split(split, s.C, r => { for (int c = r.Item1; c < r.Item2; c++) S2DxTransform(g, tab, n0, tc, c, (float*)vp + (long)c * tc, vStride, (float*)dp); });
        }
    }

    const int S2Lanes = 16;

    // The 1-D transforms of S2Tables written out (16 tiles per vector; s and d strided by ss and ds vectors):
    // Bt: p = B^T x (n -> n), At: y = A^T p (n -> T), and their adjoints A: p = A y (T -> n), B: x = B p (n -> n).

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static unsafe void S2Bt(int t, Vector512<float>* s, int ss, Vector512<float>* d, int ds)
    {
        if (t == 4)
        {
            Vector512<float> e0 = s[0], e1 = s[2 * ss], e2 = s[4 * ss], e3 = s[6 * ss], e4 = s[8 * ss];
            var e1x2 = e1 + e1;
            d[0] = e0 + e0 - e1 - (e2 + e2) + e3;
            d[ds] = e3 - e1x2 - e2;
            d[2 * ds] = e1x2 - e2 - e2 - e2 + e3;
            d[3 * ds] = e3 - e1;
            d[4 * ds] = e1x2 - e2 - (e3 + e3) + e4;
            d[5 * ds] = s[ss]; d[6 * ds] = s[3 * ss]; d[7 * ds] = s[5 * ss]; d[8 * ds] = s[7 * ss];
        }
        else
        {
            Vector512<float> x2 = s[2 * ss];
            d[0] = s[0] - x2; d[ds] = x2; d[2 * ds] = s[4 * ss] - x2; d[3 * ds] = s[ss]; d[4 * ds] = s[3 * ss];
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static unsafe void S2At(int t, Vector512<float>* s, int ss, Vector512<float>* d, int ds)
    {
        if (t == 4)
        {
            Vector512<float> p1 = s[ss], p2 = s[2 * ss], p3 = s[3 * ss];
            Vector512<float> sum = p1 + p2, dif = p1 - p2, p3x2 = p3 + p3, p3x4 = p3x2 + p3x2;
            d[0] = s[0] + sum + p3 + s[5 * ss];
            d[ds] = dif + p3x2 + s[6 * ss];
            d[2 * ds] = sum + p3x4 + s[7 * ss];
            d[3 * ds] = dif + p3x4 + p3x4 + s[4 * ss] + s[8 * ss];
        }
        else
        {
            Vector512<float> p1 = s[ss];
            d[0] = s[0] + p1 + s[3 * ss]; d[ds] = p1 + s[2 * ss] + s[4 * ss];
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static unsafe void S2A(int t, Vector512<float>* s, int ss, Vector512<float>* d, int ds)
    {
        if (t == 4)
        {
            Vector512<float> y0 = s[0], y1 = s[ss], y2 = s[2 * ss], y3 = s[3 * ss];
            Vector512<float> even = y0 + y2, odd = y1 + y3, y2x4 = y2 * 4f, y3x8 = y3 * 8f;
            d[0] = y0; d[ds] = even + odd; d[2 * ds] = even - odd; d[3 * ds] = y0 + y1 + y1 + y2x4 + y3x8; d[4 * ds] = y3;
            d[5 * ds] = y0; d[6 * ds] = y1; d[7 * ds] = y2; d[8 * ds] = y3;
        }
        else
        {
            Vector512<float> y0 = s[0], y1 = s[ss];
            d[0] = y0; d[ds] = y0 + y1; d[2 * ds] = y1; d[3 * ds] = y0; d[4 * ds] = y1;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static unsafe void S2B(int t, Vector512<float>* s, int ss, Vector512<float>* d, int ds)
    {
        if (t == 4)
        {
            Vector512<float> p0 = s[0], p1 = s[ss], p2 = s[2 * ss], p3 = s[3 * ss], p4 = s[4 * ss];
            d[0] = p0 + p0;
            d[2 * ds] = (p2 - p1 + p4) * 2f - p0 - p3;
            d[4 * ds] = -(p0 + p0 + p1 + p2 * 3f + p4);
            d[6 * ds] = p0 + p1 + p2 + p3 - p4 - p4;
            d[8 * ds] = p4;
            d[ds] = s[5 * ss]; d[3 * ds] = s[6 * ss]; d[5 * ds] = s[7 * ss]; d[7 * ds] = s[8 * ss];
        }
        else
        {
            Vector512<float> p0 = s[0], p2 = s[2 * ss];
            d[0] = p0; d[ds] = s[3 * ss]; d[2 * ds] = s[ss] - p0 - p2; d[3 * ds] = s[4 * ss]; d[4 * ds] = p2;
        }
    }

    /// <summary>V[xi][c][t] = (B^T d B)[xi] for the chunk's tiles t (samples from n0), d the zero-padded input patch.</summary>
    static unsafe void S2InputTransform(in S2Geom g, S2Tables tab, int n0, int tc, int c, float* x, float* v, long stride)
    {
        int n = tab.Nn;
        var d = stackalloc Vector512<float>[n * n];
        var e = stackalloc Vector512<float>[n * n];
        for (int t0 = 0; t0 < tc; t0 += S2Lanes)
        {
            int cnt = Math.Min(S2Lanes, tc - t0);
            new Span<float>(d, n * n * S2Lanes).Clear();
            S2Walk(g, n0, t0, cnt, true, c, x, (float*)d, n, 0);
            for (int b = 0; b < n; b++) S2Bt(g.T, d + b, n, e + b, n);       // rows: e = B^T d
            for (int a = 0; a < n; a++) S2Bt(g.T, e + a * n, 1, d + a * n, 1);   // columns: d = e B
            var mask = Lanes(0, cnt);
            for (int xi = 0; xi < n * n; xi++) Avx512F.MaskStore(v + xi * stride + t0, mask, d[xi]);
        }
    }

    /// <summary>y[img, k, T ty + o, T tx + p] = (A^T M A)[o, p] + bias (ReLU), inside the output only.</summary>
    static unsafe void S2OutputTransform(in S2Geom g, S2Tables tab, int n0, int tc, int k, float* m, long stride, float bias, float* y)
    {
        int n = tab.Nn, t = g.T;
        var q = stackalloc Vector512<float>[n * n];
        var e = stackalloc Vector512<float>[t * n];
        var o = stackalloc Vector512<float>[t * n];
        for (int t0 = 0; t0 < tc; t0 += S2Lanes)
        {
            int cnt = Math.Min(S2Lanes, tc - t0);
            var mask = Lanes(0, cnt);
            for (int xi = 0; xi < n * n; xi++) q[xi] = Avx512F.MaskLoad(m + xi * stride + t0, mask, Vector512<float>.Zero);
            for (int b = 0; b < n; b++) S2At(t, q + b, n, e + b, n);        // rows: e = A^T q (T x n, row stride n)
            for (int a = 0; a < t; a++) S2At(t, e + a * n, 1, o + a * n, 1);   // columns: o = e A (T x T, row stride n)
            var bv = Vector512.Create(bias);
            for (int i = 0; i < t; i++)
                for (int j = 0; j < t; j++)
                {
                    var val = o[i * n + j] + bv;
                    o[i * n + j] = g.Relu ? Vector512.Max(val, Vector512<float>.Zero) : val;
                }
            S2Walk(g, n0, t0, cnt, false, k, y, (float*)o, n, 2);
        }
    }

    /// <summary>Backward: dM[xi][k][t] = (A dY A^T)[xi], dY the tile's T x T block of dy (zero outside the output).</summary>
    static unsafe void S2DyTransform(in S2Geom g, S2Tables tab, int n0, int tc, int k, float* dy, float* m, long stride)
    {
        int n = tab.Nn, t = g.T;
        var d = stackalloc Vector512<float>[t * t];
        var e = stackalloc Vector512<float>[n * t];
        var q = stackalloc Vector512<float>[n * n];
        for (int t0 = 0; t0 < tc; t0 += S2Lanes)
        {
            int cnt = Math.Min(S2Lanes, tc - t0);
            new Span<float>(d, t * t * S2Lanes).Clear();
            S2Walk(g, n0, t0, cnt, false, k, dy, (float*)d, t, 0);
            for (int b = 0; b < t; b++) S2A(t, d + b, t, e + b, t);         // rows: e = A d (n x T)
            for (int a = 0; a < n; a++) S2A(t, e + a * t, 1, q + a * n, 1);   // columns: q = e A^T (n x n)
            var mask = Lanes(0, cnt);
            for (int xi = 0; xi < n * n; xi++) Avx512F.MaskStore(m + xi * stride + t0, mask, q[xi]);
        }
    }

    /// <summary>Backward: dx[img, c] += (B dV B^T) over each tile's input patch, inside the input only (dx cleared per sample first).</summary>
    static unsafe void S2DxTransform(in S2Geom g, S2Tables tab, int n0, int tc, int c, float* v, long stride, float* dx)
    {
        var s = g.S;
        int n = tab.Nn, tps = g.TH * g.TW, hw = s.H * s.W;
        var q = stackalloc Vector512<float>[n * n];
        var e = stackalloc Vector512<float>[n * n];
        for (int i = 0; i < tc / tps; i++) new Span<float>(dx + ((long)(n0 + i) * s.C + c) * hw, hw).Clear();
        for (int t0 = 0; t0 < tc; t0 += S2Lanes)
        {
            int cnt = Math.Min(S2Lanes, tc - t0);
            var mask = Lanes(0, cnt);
            for (int xi = 0; xi < n * n; xi++) q[xi] = Avx512F.MaskLoad(v + xi * stride + t0, mask, Vector512<float>.Zero);
            for (int b = 0; b < n; b++) S2B(g.T, q + b, n, e + b, n);       // rows: e = B q
            for (int a = 0; a < n; a++) S2B(g.T, e + a * n, 1, q + a * n, 1);   // columns: q = e B^T
            S2Walk(g, n0, t0, cnt, true, c, dx, (float*)q, n, 1);
        }
    }

    /// <summary>
    /// Moves the lanes of 16 tiles [t0, t0 + cnt) of channel ch between a tensor and lane vectors (element (a, b) of
    /// lane l at lanes[(a*ld + b)*16 + l]), inside the tensor only: input side (input = true) the tile's (2T + 1)^2
    /// patch at (2T ty - padH, 2T tx - padW) of [N, C, H, W], else its T x T block at (T ty, T tx) of [N, K, OH, OW].
    /// mode 0: lanes = tensor (lanes outside the tensor keep their value), 1: tensor += lanes, 2: tensor = lanes.
    /// </summary>
    static unsafe void S2Walk(in S2Geom g, int n0, int t0, int cnt, bool input, int ch, float* tensor, float* lanes, int ld, int mode)
    {
        var s = g.S;
        int tps = g.TH * g.TW, size = input ? 2 * g.T + 1 : g.T, step = input ? 2 * g.T : g.T;
        int h = input ? s.H : s.OutH, w = input ? s.W : s.OutW, chans = input ? s.C : s.K;
        int ph = input ? s.PadH : 0, pw = input ? s.PadW : 0;
        int img = n0 + t0 / tps, rem = t0 % tps, ty = rem / g.TW, tx = rem % g.TW;
        for (int l = 0; l < cnt; l++)
        {
            int r0 = step * ty - ph, c0 = step * tx - pw;
            float* plane = tensor + ((long)img * chans + ch) * h * w;
            int a0 = Math.Max(0, -r0), a1 = Math.Min(size, h - r0), b0 = Math.Max(0, -c0), b1 = Math.Min(size, w - c0);
            for (int a = a0; a < a1; a++)
            {
                float* row = plane + (r0 + a) * w + c0, ln = lanes + a * ld * S2Lanes + l;
                if (mode == 0) for (int b = b0; b < b1; b++) ln[b * S2Lanes] = row[b];
                else if (mode == 1) for (int b = b0; b < b1; b++) row[b] += ln[b * S2Lanes];
                else for (int b = b0; b < b1; b++) row[b] = ln[b * S2Lanes];
            }
            if (++tx == g.TW) { tx = 0; if (++ty == g.TH) { ty = 0; img++; } }
        }
    }
}
