using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Perturb.Engine.Backends;

/// <summary>
/// Convolution as im2col + packed GEMM, per sample n and group g (x: [N,C,H,W], w: [K,C/G,R,S], y: [N,K,OH,OW],
/// CRS = C/G*R*S, P = OH*OW):
///
///   forward          y_n,g [K/G, P]   = W_g [K/G, CRS] x col(x_n,g) [CRS, P]
///   backward data    col [CRS, P]     = W_g^T x dy_n,g [K/G, P];   dx_n,g = col2im(col) (accumulating overlaps)
///   backward weights dW_g [K/G, CRS] += dy_n,g [K/G, P] x col(x_n,g)^T, summed over n
///
/// col[(c*R + r)*S + s, oh*OW + ow] = x[c, oh*strideH - padH + r*dilH, ow*strideW - padW + s*dilW] (0 outside).
/// Which path runs a forward or backward-data convolution is decided once, in <see cref="PathFor"/>:
/// stride-1 3x3 convolutions with enough channels run through Winograd F(4x4,3x3) (CpuWinogradF4.cs; F(2x2,3x3)
/// in CpuWinograd.cs without AVX-512); small outputs (P &lt; 512, groups 1) run several samples per GEMM
/// (<see cref="ConvForwardBlocked"/>, <see cref="ConvBackwardDataBlocked"/>), the forward of kernels larger than
/// 1x1 as an implicit GEMM that packs its B panels straight from x (CpuConvImplicit.cs).
/// 1x1, stride-1, unpadded convolutions use x (and dx) directly as col. Depthwise convolutions (C/G == 1, K == G)
/// use direct loops. Samples run in parallel when there are at least as many as threads; otherwise the GEMM
/// itself is split over the threads.
/// </summary>
public sealed partial class CpuBackend
{
    [ThreadStatic] static float[]? t_col;

    static float[] ColScratch(long size)
    {
        var c = t_col;
        if (c == null || c.Length < size) t_col = c = GC.AllocateUninitializedArray<float>((int)size, pinned: true);
        return c;
    }

    static bool IsDepthwise(in ConvShape s) => s.CPerGroup == 1 && s.KPerGroup == 1;

    static bool IsPointwise(in ConvShape s) =>
        s.R == 1 && s.S == 1 && s.StrideH == 1 && s.StrideW == 1 && s.PadH == 0 && s.PadW == 0;

    /// <summary>How a (not depthwise) forward or backward-data convolution runs on this backend.</summary>
    internal enum ConvPath
    {
        /// <summary>Chosen by shape (<see cref="PathFor"/>).</summary>
        Auto,
        /// <summary>im2col + GEMM one sample (and group) at a time.</summary>
        Im2Col,
        /// <summary>im2col of several samples side by side, one GEMM per block (groups == 1, not pointwise).</summary>
        Blocked,
        /// <summary>Winograd F(2x2,3x3) (stride-1 3x3, CpuWinograd.cs).</summary>
        Winograd,
        /// <summary>Winograd F(4x4,3x3) (stride-1 3x3, AVX-512, CpuWinogradF4.cs).</summary>
        Winograd4,
        /// <summary>
        /// Winograd F(4x4,3x3) with the lanes over the tiles of one tile row only (CpuWinogradF4.cs; Winograd4 runs the
        /// groups of 16 images with the lanes over images, CpuWinogradImages.cs): for comparison and tests.
        /// </summary>
        Winograd4Rows,
        /// <summary>
        /// Forward: the sample blocks as an implicit GEMM, im2col done by the GEMM's B packer (CpuConvImplicit.cs).
        /// Backward-data has no implicit form here and runs the sample blocks.
        /// </summary>
        Implicit,
        /// <summary>Stride-2 3x3: polyphase Winograd with 2x2 output tiles, 25 products per tile for 36 (CpuConvWinogradS2.cs).</summary>
        WinogradS2,
        /// <summary>Stride-2 3x3: polyphase Winograd with 4x4 output tiles, 81 products per tile for 144 (CpuConvWinogradS2.cs).</summary>
        WinogradS2F4,
        /// <summary>
        /// Forward: direct, vectors over output channels and broadcasts over output pixels from a padded copy of the
        /// sample (groups 1, AVX-512, CpuConvDirect.cs). Backward-data: the same kernel over each stride phase of dx.
        /// </summary>
        Direct,
    }

    /// <summary>
    /// Forces a path wherever it applies (others fall back to <see cref="ConvPath.Auto"/>): tests run every path
    /// against the reference, and perf's conv-paths bench times the paths against each other in one process.
    /// </summary>
    internal ConvPath ForcePath { get; set; }

    /// <summary>The shortest reduction (C*R*S) for which the automatic path runs a forward convolution direct.</summary>
    const int DirectMinReduction = 512;

    /// <summary>Whether <paramref name="p"/> can run the convolution s (not depthwise).</summary>
    internal static bool PathApplies(ConvPath p, in ConvShape s) => p switch
    {
        ConvPath.Im2Col => true,
        ConvPath.Blocked or ConvPath.Implicit => s.Groups == 1 && !IsPointwise(s),
        ConvPath.Winograd => WinogradApplies(s),
        ConvPath.Winograd4 or ConvPath.Winograd4Rows => WinogradApplies(s) && Avx512F.IsSupported,
        ConvPath.WinogradS2 or ConvPath.WinogradS2F4 => WinogradS2Applies(s) && Avx512F.IsSupported,
        ConvPath.Direct => DirectApplies(s),
        _ => false,
    };

    /// <summary>
    /// The path of a forward or backward-data convolution: the forced one where it applies, else Winograd for
    /// stride-1 3x3 with enough channels (unless PERTURB_WINOGRAD=0): F(4x4,3x3) with AVX-512 (measured 4-40 %
    /// faster than F(2x2,3x3) on every stride-1 3x3 shape of the harness, perf conv-paths; its groups of 16 images
    /// with the lanes over images, 1.3-1.7x the tile-row lanes at batch 64), F(2x2,3x3) without;
    /// the polyphase Winograd with 4x4 tiles for stride-2 3x3 convolutions where it pays (<see cref="WinogradS2Pays"/>);
    /// sample blocks where the output is small (P &lt; 512): for kernels larger than 1x1 the direct convolution when
    /// strided (CpuConvDirect.cs; stride-2 3x3 forward 64->128 and 128->256 measured 5-10 % faster than the implicit
    /// GEMM in one process, which is 10 % faster than the explicit blocks; backward-data 1.1-1.4x the blocks, and
    /// 1.9-2.2x on the U-Net's 2x2 stride-2 transposed convolutions), but forward only with a reduction C*R*S of at
    /// least <see cref="DirectMinReduction"/> (the 2x2 stride-2 forwards, C*R*S 64-256, ran at 0.5-0.8x the implicit
    /// GEMM), else the implicit GEMM (im2col in the GEMM's packer); the explicit blocks for 1x1 (the stride-2
    /// projection measured 29 % slower implicit);
    /// im2col per sample otherwise.
    /// </summary>
    ConvPath PathFor(in ConvShape s, bool backward)
    {
        if (ForcePath != ConvPath.Auto && PathApplies(ForcePath, s)) return ForcePath;
        if (WinogradEnabled && WinogradApplies(s)) return WinogradF4Enabled && PathApplies(ConvPath.Winograd4, s) ? ConvPath.Winograd4 : ConvPath.Winograd;
        if (WinogradEnabled && WinogradS2Pays(s)) return ConvPath.WinogradS2F4;
        if (PathApplies(ConvPath.Blocked, s) && (long)s.OutH * s.OutW < 512 && SampleBlock(s) > 1)
        {
            if (s.R * s.S == 1) return ConvPath.Blocked;
            bool direct = (s.StrideH > 1 || s.StrideW > 1) && DirectApplies(s) && (backward || s.C * s.R * s.S >= DirectMinReduction);
            return direct ? ConvPath.Direct : ConvPath.Implicit;
        }
        return ConvPath.Im2Col;
    }

    /// <summary>
    /// Runs body(n, gemmThreads) for every sample: in parallel over samples (gemmThreads = false) when there are
    /// enough of them, else one after another with the GEMM split over the threads.
    /// </summary>
    void ForSamples(int n, long flopsPerSample, Action<int, bool> body)
    {
        if (_threads > 1 && n >= _threads && n * flopsPerSample >= GemmParallelFlops)
            Parallel.For(0, n, _po, i => body(i, false));
        else
            for (int i = 0; i < n; i++) body(i, _threads > 1);
    }

    // ---------------------------------------------------------------- forward

    protected override void ConvForwardCore(in ConvShape s, Tensor x, Tensor w, Tensor? bias, Tensor y) =>
        ConvForwardFused(s, x, w, bias, y, false);

    protected override void ConvForwardReluCore(in ConvShape s, Tensor x, Tensor w, Tensor? bias, Tensor y) =>
        ConvForwardFused(s, x, w, bias, y, true);

    /// <summary>The forward convolution with its epilogue (bias, then ReLU when relu) applied per sample while y is in cache.</summary>
    void ConvForwardFused(in ConvShape s, Tensor x, Tensor w, Tensor? bias, Tensor y, bool relu)
    {
        var sh = s;
        int crs = s.CPerGroup * s.R * s.S, p = s.OutH * s.OutW, kpg = s.KPerGroup, hw = s.H * s.W;
        var xb = B(x);
        var wb = B(w);
        var yb = B(y);
        Buf? bb = bias == null ? null : B(bias);
        if (IsDepthwise(s)) { DepthwiseForward(sh, xb, wb, bb, yb, relu); return; }
        var path = PathFor(s, false);
        if (path is ConvPath.Winograd or ConvPath.Winograd4 or ConvPath.Winograd4Rows)
        {
            WinogradConv(s.N, s.C, s.H, s.W, s.K, s.PadH, s.PadW, xb, WinogradFor(w, s.K, s.C, false, path == ConvPath.Winograd ? 2 : 4), bb, yb, relu,
                path != ConvPath.Winograd4Rows);
            return;
        }
        if (path is ConvPath.WinogradS2 or ConvPath.WinogradS2F4)
        {
            WinogradS2Conv(s, xb, WinogradS2For(w, s.K, s.C, false, path == ConvPath.WinogradS2F4 ? 4 : 2), bb, yb, relu, false);
            return;
        }
        if (path == ConvPath.Direct) { ConvForwardDirect(sh, xb, w, bb, yb, relu); return; }
        bool pointwise = IsPointwise(s);
        var pack = WeightPackFor(s, w, transposed: false);
        if (path is ConvPath.Blocked or ConvPath.Implicit)
        {
            ConvForwardBlocked(sh, xb, wb, bb, yb, relu, SampleBlock(s), pack.Groups[0], path == ConvPath.Implicit);
            GC.KeepAlive(pack);
            return;
        }
        ForSamples(s.N, s.Flops / Math.Max(1, s.N), (n, gemmThreads) =>
        {
            float[]? col = pointwise ? null : ColScratch((long)crs * p);
            for (int g = 0; g < sh.Groups; g++)
            {
                var xg = new Buf(xb.A, xb.Off + (int)(((long)n * sh.C + g * sh.CPerGroup) * hw));
                Buf colb = xg;
                if (col != null) { Im2Col(sh, xg, col); colb = new Buf(col, 0); }
                var yg = new Buf(yb.A, yb.Off + (int)(((long)n * sh.K + g * kpg) * p));
                GemmParallel(false, false, kpg, p, crs, 1f, new Buf(wb.A, wb.Off + g * kpg * crs), crs, colb, p, 0f, yg, p, gemmThreads, pack.Groups[g]);
            }
            if (bb is { } || relu)
                for (int k = 0; k < sh.K; k++)
                {
                    var row = yb.Span(((long)n * sh.K + k) * p, p);
                    if (bb is { } bv) TensorPrimitives.Add(row, bv[k], row);
                    if (relu) TensorPrimitives.Max(row, 0f, row);
                }
        });
        GC.KeepAlive(pack);
    }

    /// <summary>
    /// Samples per GEMM in <see cref="ConvForwardBlocked"/> and <see cref="ConvBackwardDataBlocked"/>: enough that the product is about 768 columns wide (a
    /// 7x7 output alone is 49 columns, too narrow for the GEMM's register tiles to stream well), within a 16 MB
    /// column buffer, and no more than leaves one block per thread.
    /// </summary>
    int SampleBlock(in ConvShape s)
    {
        long p = (long)s.OutH * s.OutW, crs = (long)s.C * s.R * s.S;
        long nb = Math.Min((768 + p - 1) / p, (4L << 20) / ((crs + s.K) * p));
        nb = Math.Min(nb, (s.N + _threads - 1) / _threads);
        return (int)Math.Max(1, nb);
    }

    /// <summary>
    /// How many blocks of at most nb samples the N samples run in: a multiple of the thread count when there are
    /// at least as many blocks as threads (11 blocks on 2 threads would leave one idle for a twelfth of the call);
    /// block bi holds samples [N bi / blocks, N (bi + 1) / blocks), at most nb of them.
    /// </summary>
    int SampleBlocks(int n, int nb)
    {
        int blocks = (n + nb - 1) / nb;
        if (_threads > 1 && blocks >= _threads) blocks = Math.Min(n, (blocks + _threads - 1) / _threads * _threads);
        return blocks;
    }

    /// <summary>
    /// Forward im2col + GEMM over blocks of nb samples (groups == 1): col [CRS, nb*P] holds the nb samples' columns
    /// side by side, one GEMM gives Y [K, nb*P], and the epilogue (bias, ReLU) copies each sample's [K, P] slice
    /// into y while it is in cache. implicitB: no col, the GEMM packs its B panels from x (<see cref="Im2ColSource"/>).
    /// </summary>
    unsafe void ConvForwardBlocked(ConvShape s, Buf xb, Buf wb, Buf? bb, Buf yb, bool relu, int nb, PackedA pack, bool implicitB)
    {
        int crs = s.C * s.R * s.S, p = s.OutH * s.OutW, hw = s.H * s.W, ld = nb * p;
        int blocks = SampleBlocks(s.N, nb);
        void Block(int bi, bool gemmThreads)
        {
            int n0 = (int)((long)s.N * bi / blocks), cnt = (int)((long)s.N * (bi + 1) / blocks) - n0;
            long y0 = implicitB ? 0 : (long)crs * ld;
            var col = ColScratch(y0 + (long)s.K * ld);
            if (implicitB)
                fixed (float* px = xb.A)
                    GemmParallel(false, false, s.K, cnt * p, crs, 1f, wb, crs, new Buf(col, 0), ld, 0f, new Buf(col, 0), ld, gemmThreads, pack,
                        new Im2ColSource(s, px + xb.Off + (long)n0 * s.C * hw));
            else
            {
                for (int j = 0; j < cnt; j++) Im2Col(s, new Buf(xb.A, xb.Off + (int)((long)(n0 + j) * s.C * hw)), col, ld, j * p);
                GemmParallel(false, false, s.K, cnt * p, crs, 1f, wb, crs, new Buf(col, 0), ld, 0f, new Buf(col, (int)y0), ld, gemmThreads, pack);
            }
            for (int j = 0; j < cnt; j++)
                for (int k = 0; k < s.K; k++)
                {
                    var src = col.AsSpan((int)(y0 + (long)k * ld + j * p), p);
                    var dst = yb.Span(((long)(n0 + j) * s.K + k) * p, p);
                    if (bb is { } bv) TensorPrimitives.Add(src, bv[k], dst); else src.CopyTo(dst);
                    if (relu) TensorPrimitives.Max(dst, 0f, dst);
                }
        }
        if (_threads > 1 && blocks >= _threads) Parallel.For(0, blocks, _po, bi => Block(bi, false));
        else for (int bi = 0; bi < blocks; bi++) Block(bi, _threads > 1);
    }

    // ---------------------------------------------------------------- backward data

    protected override void ConvBackwardDataCore(in ConvShape s, Tensor dy, Tensor w, Tensor dx)
    {
        var sh = s;
        int crs = s.CPerGroup * s.R * s.S, p = s.OutH * s.OutW, kpg = s.KPerGroup, cpg = s.CPerGroup, hw = s.H * s.W;
        var db = B(dy);
        var wb = B(w);
        var xb = B(dx);
        if (IsDepthwise(s)) { DepthwiseBackwardData(sh, db, wb, xb); return; }
        var path = PathFor(s, true);
        if (path is ConvPath.Winograd or ConvPath.Winograd4 or ConvPath.Winograd4Rows)
        {
            WinogradConv(s.N, s.K, s.OutH, s.OutW, s.C, 2 - s.PadH, 2 - s.PadW, db, WinogradFor(w, s.K, s.C, true, path == ConvPath.Winograd ? 2 : 4), null, xb, false,
                path != ConvPath.Winograd4Rows);
            return;
        }
        if (path is ConvPath.WinogradS2 or ConvPath.WinogradS2F4)
        {
            WinogradS2Conv(s, db, WinogradS2For(w, s.K, s.C, true, path == ConvPath.WinogradS2F4 ? 4 : 2), null, xb, false, true);
            return;
        }
        bool pointwise = IsPointwise(s);
        if (path == ConvPath.Direct) { ConvBackwardDataDirect(sh, db, w, xb); return; }
        var pack = WeightPackFor(s, w, transposed: true);
        if (path is ConvPath.Blocked or ConvPath.Implicit) { ConvBackwardDataBlocked(sh, db, wb, xb, SampleBlock(s), pack.Groups[0]); GC.KeepAlive(pack); return; }
        ForSamples(s.N, s.Flops / Math.Max(1, s.N), (n, gemmThreads) =>
        {
            float[]? col = pointwise ? null : ColScratch((long)crs * p);
            for (int g = 0; g < sh.Groups; g++)
            {
                var dxg = new Buf(xb.A, xb.Off + (int)(((long)n * sh.C + g * cpg) * hw));
                var dyg = new Buf(db.A, db.Off + (int)(((long)n * sh.K + g * kpg) * p));
                var wg = new Buf(wb.A, wb.Off + g * kpg * crs);
                if (col == null)
                {
                    GemmParallel(true, false, cpg, p, kpg, 1f, wg, crs, dyg, p, 0f, dxg, p, gemmThreads, pack.Groups[g]);
                    continue;
                }
                GemmParallel(true, false, crs, p, kpg, 1f, wg, crs, dyg, p, 0f, new Buf(col, 0), p, gemmThreads, pack.Groups[g]);
                dxg.Span(0, (long)cpg * hw).Clear();
                Col2Im(sh, col, dxg);
            }
        });
        GC.KeepAlive(pack);
    }

    /// <summary>
    /// Backward-data over blocks of nb samples (groups == 1), the transpose of <see cref="ConvForwardBlocked"/>: the
    /// samples' dy [K, P] side by side as [K, nb*P], one GEMM col = W^T dy [CRS, nb*P], then col2im per sample.
    /// </summary>
    void ConvBackwardDataBlocked(ConvShape s, Buf db, Buf wb, Buf xb, int nb, PackedA pack)
    {
        int crs = s.C * s.R * s.S, p = s.OutH * s.OutW, hw = s.H * s.W, ld = nb * p;
        int blocks = SampleBlocks(s.N, nb);
        void Block(int bi, bool gemmThreads)
        {
            int n0 = (int)((long)s.N * bi / blocks), cnt = (int)((long)s.N * (bi + 1) / blocks) - n0;
            var col = ColScratch((long)(crs + s.K) * ld);
            long d0 = (long)crs * ld;
            for (int j = 0; j < cnt; j++)
                for (int k = 0; k < s.K; k++)
                    db.Span(((long)(n0 + j) * s.K + k) * p, p).CopyTo(col.AsSpan((int)(d0 + (long)k * ld + j * p), p));
            GemmParallel(true, false, crs, cnt * p, s.K, 1f, wb, crs, new Buf(col, (int)d0), ld, 0f, new Buf(col, 0), ld, gemmThreads, pack);
            for (int j = 0; j < cnt; j++)
            {
                var dxj = new Buf(xb.A, xb.Off + (int)((long)(n0 + j) * s.C * hw));
                dxj.Span(0, (long)s.C * hw).Clear();
                Col2Im(s, col, dxj, ld, j * p);
            }
        }
        if (_threads > 1 && blocks >= _threads) Parallel.For(0, blocks, _po, bi => Block(bi, false));
        else for (int bi = 0; bi < blocks; bi++) Block(bi, _threads > 1);
    }

    // ---------------------------------------------------------------- backward weights

    protected override void ConvBackwardWeightsCore(in ConvShape s, Tensor x, Tensor dy, Tensor dw, Tensor? dbias)
    {
        var sh = s;
        int crs = s.CPerGroup * s.R * s.S, p = s.OutH * s.OutW, kpg = s.KPerGroup, hw = s.H * s.W;
        var xb = B(x);
        var db = B(dy);
        var wb = B(dw);
        Buf? bb = dbias == null ? null : B(dbias);
        if (bb is { } bv) SumChannels(db, bv, s.N, s.K, p);
        if (IsDepthwise(s)) { DepthwiseBackwardWeights(sh, xb, db, wb); return; }
        if (s.N == 0) { wb.Span(0, (long)s.K * crs).Clear(); return; }
        bool pointwise = IsPointwise(s);
        long wlen = (long)s.K * crs;

        // dW over samples [n0, n1) into acc (overwritten by the first sample).
        void Accumulate(int n0, int n1, Buf acc, bool gemmThreads)
        {
            float[]? col = pointwise ? null : ColScratch((long)crs * p);
            for (int n = n0; n < n1; n++)
                for (int g = 0; g < sh.Groups; g++)
                {
                    var xg = new Buf(xb.A, xb.Off + (int)(((long)n * sh.C + g * sh.CPerGroup) * hw));
                    Buf colb = xg;
                    if (col != null) { Im2Col(sh, xg, col); colb = new Buf(col, 0); }
                    var dyg = new Buf(db.A, db.Off + (int)(((long)n * sh.K + g * kpg) * p));
                    GemmParallel(false, true, kpg, crs, p, 1f, dyg, p, colb, p, n == n0 ? 0f : 1f,
                        new Buf(acc.A, acc.Off + g * kpg * crs), crs, gemmThreads);
                }
        }

        int parts = _threads > 1 && s.N >= _threads && s.Flops >= GemmParallelFlops ? _threads : 1;
        if (parts == 1) { Accumulate(0, s.N, wb, _threads > 1); return; }
        // One accumulator per thread: part 0 writes dw itself, the others rented arrays that are then added in.
        var partial = new float[parts][];
        Parallel.For(0, parts, _po, t =>
        {
            int n0 = (int)((long)sh.N * t / parts), n1 = (int)((long)sh.N * (t + 1) / parts);
            Buf acc = wb;
            if (t > 0) { partial[t] = ArrayPool<float>.Shared.Rent((int)wlen); acc = new Buf(partial[t], 0); }
            Accumulate(n0, n1, acc, false);
        });
        var dst = wb.Span(0, wlen);
        for (int t = 1; t < parts; t++)
        {
            TensorPrimitives.Add(dst, partial[t].AsSpan(0, (int)wlen), dst);
            ArrayPool<float>.Shared.Return(partial[t]);
        }
    }

    /// <summary>
    /// A form derived from a weight tensor for one direction (forward, backward-data) and shape, cached per tensor
    /// (keyed on its version box) and rebuilt when its <see cref="Tensor.Version"/> moves, its offset or the shape
    /// (less the batch) differs: weights do not change during an attack. The GEMM paths' and the direct path's
    /// packings use it; builds counts one backend's builds, for tests of the cache.
    /// </summary>
    sealed class WeightForms<T> where T : class
    {
        sealed record Entry(long Version, int Offset, ConvShape Shape, T Form);
        sealed class Slot { public readonly Entry?[] Dir = new Entry?[2]; }
        readonly ConditionalWeakTable<Tensor.VersionBox, Slot> _table = new();

        public T Get(CpuBackend be, Tensor w, in ConvShape s, bool backward, ref long builds, Func<CpuBackend, ConvShape, Tensor, bool, T> build)
        {
            var slot = _table.GetValue(w.Ver, _ => new Slot());
            var key = s with { N = 0 };
            long ver = w.Version;
            int d = backward ? 1 : 0;
            var e = slot.Dir[d];
            if (e != null && e.Version == ver && e.Offset == w.Offset && e.Shape == key) return e.Form;
            lock (slot)
            {
                e = slot.Dir[d];
                if (e != null && e.Version == ver && e.Offset == w.Offset && e.Shape == key) return e.Form;
                var form = build(be, s, w, backward);
                slot.Dir[d] = new Entry(ver, w.Offset, key, form);
                Interlocked.Increment(ref builds);
                return form;
            }
        }
    }

    /// <summary>
    /// Each group's weights packed as the GEMM's A operand (W_g, or W_g^T for backward-data), shared read-only by all
    /// samples and cached per weight version (<see cref="WeightForms{T}"/>). The caller keeps the object alive while
    /// it uses the pointers in <see cref="Groups"/>.
    /// </summary>
    sealed record WeightPack(float[] Buf, PackedA[] Groups);

    static readonly WeightForms<WeightPack> s_weightPacks = new();
    long _weightPackBuilds;
    /// <summary>How many GEMM weight packings this backend has built, for tests of the cache.</summary>
    internal long WeightPackBuilds => Interlocked.Read(ref _weightPackBuilds);

    WeightPack WeightPackFor(in ConvShape s, Tensor w, bool transposed) =>
        s_weightPacks.Get(this, w, s, transposed, ref _weightPackBuilds, static (be, s, w, transposed) => be.PackWeights(s, w, transposed));

    unsafe WeightPack PackWeights(in ConvShape s, Tensor w, bool transposed)
    {
        int crs = s.CPerGroup * s.R * s.S, kpg = s.KPerGroup;
        int m = transposed ? crs : kpg, k = transposed ? kpg : crs;
        long per = PackedALength(m, k);
        var buf = GC.AllocateUninitializedArray<float>((int)(per * s.Groups), pinned: true);
        var groups = new PackedA[s.Groups];
        var wb = B(w);
        fixed (float* pw = wb.A, dst = buf)
            for (int g = 0; g < s.Groups; g++)
                groups[g] = PackAll(transposed, pw + wb.Off + (long)g * kpg * crs, crs, m, k, 1f, dst + g * per);
        return new WeightPack(buf, groups);
    }

    // ---------------------------------------------------------------- im2col / col2im

    /// <summary>
    /// The output columns [lo, hi) whose input column ow*stride + off lies inside [0, size), for a kernel tap whose
    /// offset from the window origin is off (= tap*dilation - pad).
    /// </summary>
    static (int lo, int hi) ValidRange(int off, int stride, int size, int outSize)
    {
        int lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
        int last = size - 1 - off;
        int hi = last < 0 ? 0 : Math.Min(outSize, last / stride + 1);
        lo = Math.Min(lo, outSize);
        return (lo, Math.Max(lo, hi));
    }

    /// <summary>
    /// Visits every (channel c, tap r, s, output row oh) of a group: calls row.Row(c, r*S + s, oh, xRow, lo, hi, off)
    /// where xRow is the input row's start (c*H*W + ih*W) or -1 when ih is padding, and output columns [lo, hi)
    /// read input columns ow*strideW + off.
    /// </summary>
    static void ForEachTapRow<T>(in ConvShape s, int channels, ref T row) where T : struct, ITapRow
    {
        int oh_ = s.OutH, ow_ = s.OutW;
        for (int c = 0; c < channels; c++)
            for (int r = 0; r < s.R; r++)
                for (int q = 0; q < s.S; q++)
                {
                    int off = q * s.DilW - s.PadW;
                    var (lo, hi) = ValidRange(off, s.StrideW, s.W, ow_);
                    for (int oh = 0; oh < oh_; oh++)
                    {
                        int ih = oh * s.StrideH - s.PadH + r * s.DilH;
                        int xRow = ih < 0 || ih >= s.H ? -1 : (c * s.H + ih) * s.W;
                        row.Row(c, r * s.S + q, oh, xRow, lo, hi, off);
                    }
                }
    }

    interface ITapRow { void Row(int c, int tap, int oh, int xRow, int lo, int hi, int off); }

    /// <summary>col[(c*RS + tap)*P + oh*OW + ow] = x[xRow + ow*stride + off], zero where the input is padding.</summary>
    struct Im2ColRow : ITapRow
    {
        public float[] X; public int XOff; public float[] Col; public int RS, Ld, ColOff, OW, Stride;
        public void Row(int c, int tap, int oh, int xRow, int lo, int hi, int off)
        {
            var d = Col.AsSpan((c * RS + tap) * Ld + ColOff + oh * OW, OW);
            if (xRow < 0) { d.Clear(); return; }
            d[..lo].Clear(); d[hi..].Clear();
            int xs = XOff + xRow + off;
            if (hi <= lo) return;
            if (Stride == 1) X.AsSpan(xs + lo, hi - lo).CopyTo(d[lo..hi]);
            else if (Stride == 2 && Avx512F.IsSupported) GatherEven(X, xs + 2 * lo, d[lo..hi]);
            else for (int ow = lo; ow < hi; ow++) d[ow] = X[xs + ow * Stride];
        }
    }

    /// <summary>
    /// d[i] = x[start + 2i] (stride-2 im2col rows): per 16 outputs, two masked 16-float loads and one even-lane
    /// permute, instead of 16 bounds-checked scalar reads. Masked loads never touch memory outside x's row.
    /// </summary>
    static unsafe void GatherEven(float[] x, int start, Span<float> d)
    {
        var even = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        var iota = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        var z = Vector512<float>.Zero;
        int n = d.Length, last = 2 * (n - 1);   // the last x index read, relative to start
        fixed (float* px = x)
        fixed (float* pd = d)
            for (int i = 0; i < n; i += 16)
            {
                float* s = px + start + 2 * i;
                int rel = 2 * i;   // x index of lane 0 relative to start
                var mLo = Vector512.LessThanOrEqual(iota, Vector512.Create(last - rel)).AsSingle();
                var mHi = Vector512.LessThanOrEqual(iota, Vector512.Create(last - rel - 16)).AsSingle();
                var v = Avx512F.PermuteVar16x32x2(Avx512F.MaskLoad(s, mLo, z), even, Avx512F.MaskLoad(s + 16, mHi, z));
                var mOut = Vector512.LessThan(iota, Vector512.Create(n - i)).AsSingle();
                Avx512F.MaskStore(pd + i, mOut, v);
            }
    }

    /// <summary>x[xRow + ow*stride + off] += col[(c*RS + tap)*P + oh*OW + ow] over the valid columns.</summary>
    struct Col2ImRow : ITapRow
    {
        public float[] X; public int XOff; public float[] Col; public int RS, Ld, ColOff, OW, Stride;
        public void Row(int c, int tap, int oh, int xRow, int lo, int hi, int off)
        {
            if (xRow < 0 || hi <= lo) return;
            var src = Col.AsSpan((c * RS + tap) * Ld + ColOff + oh * OW, OW);
            int xs = XOff + xRow + off;
            if (Stride == 1)
            {
                var d = X.AsSpan(xs + lo, hi - lo);
                TensorPrimitives.Add(d, src[lo..hi], d);
            }
            else for (int ow = lo; ow < hi; ow++) X[xs + ow * Stride] += src[ow];
        }
    }

    /// <summary>One sample's columns into col rows of stride ld (default P), starting at column colOff.</summary>
    static void Im2Col(in ConvShape s, Buf x, float[] col, int ld = -1, int colOff = 0)
    {
        var row = new Im2ColRow { X = x.A, XOff = x.Off, Col = col, RS = s.R * s.S, Ld = ld < 0 ? s.OutH * s.OutW : ld, ColOff = colOff, OW = s.OutW, Stride = s.StrideW };
        ForEachTapRow(s, s.CPerGroup, ref row);
    }

    /// <summary>Accumulates one sample's columns (col rows of stride ld, default P, from column colOff) into dx.</summary>
    static void Col2Im(in ConvShape s, float[] col, Buf dx, int ld = -1, int colOff = 0)
    {
        var row = new Col2ImRow { X = dx.A, XOff = dx.Off, Col = col, RS = s.R * s.S, Ld = ld < 0 ? s.OutH * s.OutW : ld, ColOff = colOff, OW = s.OutW, Stride = s.StrideW };
        ForEachTapRow(s, s.CPerGroup, ref row);
    }

    // ---------------------------------------------------------------- depthwise (C/G == 1, K == G == C)

    /// <summary>
    /// Forward (Scatter = false): y[n,c] row += w[c,tap] * shifted x[n,c] row. Backward-data (Scatter = true): the
    /// transpose, dx[n,c] shifted row += w[c,tap] * dy[n,c] row. X is the input-side plane, Y the output-side plane.
    /// </summary>
    struct DwTapRow : ITapRow
    {
        public float[] X, Y, Wt; public int XOff, YOff, WOff, OW, Stride; public bool Scatter;
        public void Row(int c, int tap, int oh, int xRow, int lo, int hi, int off)
        {
            if (xRow < 0 || hi <= lo) return;
            float wv = Wt[WOff + tap];
            int xs = XOff + xRow + off, ys = YOff + oh * OW;
            if (Stride == 1)
            {
                Span<float> xr = X.AsSpan(xs + lo, hi - lo), yr = Y.AsSpan(ys + lo, hi - lo);
                if (Scatter) TensorPrimitives.FusedMultiplyAdd(yr, wv, xr, xr);
                else TensorPrimitives.FusedMultiplyAdd(xr, wv, yr, yr);
            }
            else if (Scatter) for (int ow = lo; ow < hi; ow++) X[xs + ow * Stride] += wv * Y[ys + ow];
            else for (int ow = lo; ow < hi; ow++) Y[ys + ow] += wv * X[xs + ow * Stride];
        }
    }

    /// <summary>acc[tap] += sum over the row of dy * shifted x (double accumulation).</summary>
    struct DwBackwardWeightsRow : ITapRow
    {
        public float[] X, Y; public double[] Acc; public int XOff, YOff, OW, Stride;
        public void Row(int c, int tap, int oh, int xRow, int lo, int hi, int off)
        {
            if (xRow < 0 || hi <= lo) return;
            int xs = XOff + xRow + off, ys = YOff + oh * OW;
            if (Stride == 1) Acc[tap] += TensorPrimitives.Dot(X.AsSpan(xs + lo, hi - lo), Y.AsSpan(ys + lo, hi - lo));
            else
            {
                float a = 0;
                for (int ow = lo; ow < hi; ow++) a += X[xs + ow * Stride] * Y[ys + ow];
                Acc[tap] += a;
            }
        }
    }

    /// <summary>The shape of one depthwise plane: a single channel, a single group.</summary>
    static ConvShape Plane(in ConvShape s) => s with { N = 1, C = 1, K = 1, Groups = 1 };

    void DepthwiseForward(ConvShape s, Buf x, Buf w, Buf? bias, Buf y, bool relu)
    {
        int hw = s.H * s.W, p = s.OutH * s.OutW, rs = s.R * s.S;
        var plane = Plane(s);
        For(s.N * s.C, (long)p * rs, i =>
        {
            int c = i % s.C;
            var yp = y.Span((long)i * p, p);
            yp.Fill(bias is { } b ? b[c] : 0f);
            var row = new DwTapRow { X = x.A, XOff = x.Off + i * hw, Y = y.A, YOff = y.Off + i * p, Wt = w.A, WOff = w.Off + c * rs, OW = s.OutW, Stride = s.StrideW };
            ForEachTapRow(plane, 1, ref row);
            if (relu) TensorPrimitives.Max(yp, 0f, yp);
        });
    }

    void DepthwiseBackwardData(ConvShape s, Buf dy, Buf w, Buf dx)
    {
        int hw = s.H * s.W, p = s.OutH * s.OutW, rs = s.R * s.S;
        var plane = Plane(s);
        For(s.N * s.C, (long)p * rs, i =>
        {
            int c = i % s.C;
            dx.Span((long)i * hw, hw).Clear();
            var row = new DwTapRow { X = dx.A, XOff = dx.Off + i * hw, Y = dy.A, YOff = dy.Off + i * p, Wt = w.A, WOff = w.Off + c * rs, OW = s.OutW, Stride = s.StrideW, Scatter = true };
            ForEachTapRow(plane, 1, ref row);
        });
    }

    void DepthwiseBackwardWeights(ConvShape s, Buf x, Buf dy, Buf dw)
    {
        int hw = s.H * s.W, p = s.OutH * s.OutW, rs = s.R * s.S;
        var plane = Plane(s);
        For(s.C, (long)s.N * p * rs, c =>
        {
            var row = new DwBackwardWeightsRow { X = x.A, Y = dy.A, Acc = new double[rs], OW = s.OutW, Stride = s.StrideW };
            for (int n = 0; n < s.N; n++)
            {
                int i = n * s.C + c;
                row.XOff = x.Off + i * hw; row.YOff = dy.Off + i * p;
                ForEachTapRow(plane, 1, ref row);
            }
            for (int t = 0; t < rs; t++) dw[c * rs + t] = (float)row.Acc[t];
        });
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
}
