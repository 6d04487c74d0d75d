using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Perturb.Engine.Backends;

/// <summary>
/// Winograd F(2x2, 3x3) for the stride-1, undilated, ungrouped 3x3 convolutions (Lavin and Gray, 2015): each 2x2
/// block of output ("tile") is computed from the 4x4 input patch d under it as
///
///   Y = A^T [ (G g G^T) (.) (B^T d B) ] A,    summed over input channels c inside the brackets, per (k, c) kernel g
///
///   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],  A^T = [1 1 1 0; 0 1 -1 -1]
///
/// The sum over c is 16 GEMMs, one per transformed position xi in the 4x4 tile:
///   M[xi][k, t] = sum_c U[xi][k, c] V[xi][c, t]     U = G g G^T (K x C, packed once), V = B^T d B (C x tiles)
/// which is 16 multiplies per tile instead of 36: 2.25x fewer flops than the direct or im2col convolution.
/// Layouts (per chunk of tc tiles, tile t = (n*TH + ty)*TW + tx): V[xi][c][t], M[xi][k][t], both row-major.
///
/// Backward-data of such a convolution is the same convolution of dy with the kernel flipped in both axes and
/// with C and K swapped, padded 2 - pad (dx[c] = sum_k dy[k] * flip(w[k, c])): it runs through the same code with
/// the other weight transform.
///
/// The transformed, packed weights are cached per weight tensor (keyed on its version box) and rebuilt when its
/// <see cref="Tensor.Version"/> moves (any op given the weights bumps it; the conv ops only read them).
/// Accuracy: the transforms add and halve only, so the result differs from the direct sum by rounding (about
/// 1e-6 relative to the sum of |terms| in float32); tests check 1e-4 relative to the double reference.
/// </summary>
public sealed partial class CpuBackend
{
    /// <summary>
    /// PERTURB_WINOGRAD=0 runs every convolution through im2col + GEMM, PERTURB_WINOGRAD=2 runs Winograd as
    /// F(2x2,3x3) only (for comparison); unset or anything else: F(4x4,3x3) where AVX-512 is present.
    /// </summary>
    internal static bool WinogradEnabled { get; set; } = Environment.GetEnvironmentVariable("PERTURB_WINOGRAD") != "0";

    /// <summary>Whether the automatic path may take F(4x4,3x3) (not when PERTURB_WINOGRAD=2).</summary>
    internal static bool WinogradF4Enabled { get; set; } = Environment.GetEnvironmentVariable("PERTURB_WINOGRAD") != "2";

    /// <summary>Channels below which im2col (one GEMM with C*9 deep products) is as fast: the stem conv (C = 1, 3).</summary>
    const int WinogradMinChannels = 16;

    static bool WinogradApplies(in ConvShape s) =>
        s.R == 3 && s.S == 3 && s.StrideH == 1 && s.StrideW == 1 && s.DilH == 1 && s.DilW == 1
        && s.Groups == 1 && s.PadH <= 2 && s.PadW <= 2 && s.C >= WinogradMinChannels && s.K >= WinogradMinChannels
        && s.N > 0;

    /// <summary>
    /// The transformed weights of one weight tensor, for one direction and tile size T (output tiles T x T, T = 2
    /// or 4), packed as (T + 2)^2 GEMM A operands.
    /// </summary>
    sealed class WinogradWeights
    {
        public required long Version;
        public required int Offset, KOut, CIn, T;
        public required float[] Buf;
        public required PackedA[] U;
    }

    /// <summary>Forward [0] and backward-data [1] transforms of one weight tensor for F(2x2,3x3), [2] and [3] for F(4x4,3x3).</summary>
    sealed class WinogradSlot { public readonly WinogradWeights?[] Dir = new WinogradWeights?[4]; }

    /// <summary>The kernel transform G (A x 3, A = T + 2) of F(TxT, 3x3), row-major: F(2x2) at points 0, 1, -1, inf; F(4x4) at 0, 1, -1, 2, -2, inf.</summary>
    static readonly double[] G2 = { 1, 0, 0, 0.5, 0.5, 0.5, 0.5, -0.5, 0.5, 0, 0, 1 };
    static readonly double[] G4 =
    {
        1.0 / 4, 0, 0,
        -1.0 / 6, -1.0 / 6, -1.0 / 6,
        -1.0 / 6, 1.0 / 6, -1.0 / 6,
        1.0 / 24, 1.0 / 12, 1.0 / 6,
        1.0 / 24, -1.0 / 12, 1.0 / 6,
        0, 0, 1,
    };

    static readonly ConditionalWeakTable<Tensor.VersionBox, WinogradSlot> s_winograd = new();
    long _winogradBuilds;
    /// <summary>How many weight transforms this backend has built, for tests of the cache.</summary>
    internal long WinogradBuilds => Interlocked.Read(ref _winogradBuilds);

    unsafe WinogradWeights WinogradFor(Tensor w, int k, int c, bool backward, int t)
    {
        var slot = s_winograd.GetValue(w.Ver, _ => new WinogradSlot());
        int d = (backward ? 1 : 0) + (t == 4 ? 2 : 0);
        long ver = w.Version;
        int kOut = backward ? c : k, cIn = backward ? k : c;
        var e = slot.Dir[d];
        if (e != null && e.Version == ver && e.Offset == w.Offset && e.KOut == kOut && e.CIn == cIn) return e;
        lock (slot)
        {
            e = slot.Dir[d];
            if (e != null && e.Version == ver && e.Offset == w.Offset && e.KOut == kOut && e.CIn == cIn) return e;
            var src = (float[])w.Storage;
            int a = t + 2, planes = a * a;
            var gm = t == 4 ? G4 : G2;
            long kc = (long)kOut * cIn;
            var u = GC.AllocateUninitializedArray<float>((int)(planes * kc));
            // U[xi = i*A + j][ko, ci] = (G g G^T)[i, j] in double, g = w[k, c] (forward) or flip(w[k = ci, c = ko]) (backward).
            Span<double> g = stackalloc double[9];
            Span<double> gg = stackalloc double[18];   // G g: A x 3
            for (int ko = 0; ko < kOut; ko++)
                for (int ci = 0; ci < cIn; ci++)
                {
                    int kk = backward ? ci : ko, cc = backward ? ko : ci;
                    int b0 = w.Offset + (kk * c + cc) * 9;
                    for (int i = 0; i < 9; i++) g[i] = src[b0 + (backward ? 8 - i : i)];
                    KernelTransform(gm, a, g, gg, u, kc, (long)ko * cIn + ci);
                }
            var (buf, packs) = PackPlanes(u, planes, kc, false, cIn, kOut, cIn);
            e = new WinogradWeights { Version = ver, Offset = w.Offset, KOut = kOut, CIn = cIn, T = t, Buf = buf, U = packs };
            slot.Dir[d] = e;
            Interlocked.Increment(ref _winogradBuilds);
            return e;
        }
    }

    /// <summary>
    /// u[(i*a + j)*kc + o] = (G g G^T)[i, j] in double for a 3x3 kernel g (row-major) and an a x 3 kernel transform G
    /// (row-major); gg (a x 3) is scratch.
    /// </summary>
    static void KernelTransform(double[] gm, int a, ReadOnlySpan<double> g, Span<double> gg, float[] u, long kc, long o)
    {
        for (int i = 0; i < a; i++)
            for (int j = 0; j < 3; j++)
                gg[i * 3 + j] = gm[i * 3] * g[j] + gm[i * 3 + 1] * g[3 + j] + gm[i * 3 + 2] * g[6 + j];
        for (int i = 0; i < a; i++)
            for (int j = 0; j < a; j++)
                u[(i * a + j) * kc + o] = (float)(gg[i * 3] * gm[j * 3] + gg[i * 3 + 1] * gm[j * 3 + 1] + gg[i * 3 + 2] * gm[j * 3 + 2]);
    }

    /// <summary>The planes u[xi*kc ..] (each [rows, lda] row-major) packed as GEMM A operands op(plane) (m x k).</summary>
    static unsafe (float[] Buf, PackedA[] Packs) PackPlanes(float[] u, int planes, long kc, bool transposed, int lda, int m, int k)
    {
        long per = PackedALength(m, k);
        var buf = GC.AllocateUninitializedArray<float>((int)(planes * per), pinned: true);
        var packs = new PackedA[planes];
        fixed (float* pu = u)
        fixed (float* pb = buf)
            for (int xi = 0; xi < planes; xi++)
                packs[xi] = PackAll(transposed, pu + xi * kc, lda, m, k, 1f, pb + xi * per);
        return (buf, packs);
    }

    [ThreadStatic] static float[]? t_wgV, t_wgM;

    static float[] Grow(ref float[]? a, long size)
    {
        if (a == null || a.Length < size) a = GC.AllocateUninitializedArray<float>((int)size, pinned: true);
        return a;
    }

    /// <summary>
    /// y[N, K, OH, OW] = conv3x3(x[N, C, H, W]) (+ bias) with stride 1 and pads (ph, pw) through Winograd F(TxT,3x3)
    /// (T = ww.T) on the packed transformed weights ww (K x C). Overwrites every element of y; relu: y = max(y, 0)
    /// in the output transform. F(4x4) with imageLanes runs the groups of 16 images through the image-lane
    /// transforms (CpuWinogradImages.cs) and the images after the last full group through the tile-row transforms.
    /// </summary>
    unsafe void WinogradConv(int n, int c, int h, int wd, int k, int ph, int pw, Buf x, WinogradWeights ww, Buf? bias, Buf y, bool relu,
        bool imageLanes = true)
    {
        int t = ww.T, oh = h + 2 * ph - 2, ow = wd + 2 * pw - 2;
        int th = (oh + t - 1) / t, tw = (ow + t - 1) / t;
        long tiles = (long)n * th * tw;
        var g = new WgGeom(c, h, wd, k, ph, pw, oh, ow, th, tw, relu, t);
        int planes = g.Planes;
        // Chunks of about capTiles tiles (V and M of a chunk: 16 MB), in units of 32 tiles, or of groups of 16 images.
        int capTiles = Math.Max(32, 4194304 / planes / (c + k) / 32 * 32);
        int groups = imageLanes && t == 4 && Avx512F.IsSupported ? n / LaneImages : 0;
        long groupTiles = (long)LaneImages * th * tw, rest0 = groups * groupTiles;
        if (groups > 0)
            WinogradChunks(g, true, groups, groupTiles, capTiles, x, ww, bias, y, (u0, uc) => (u0 * LaneImages, uc * groupTiles));
        if (tiles > rest0)
            WinogradChunks(g, false, (tiles - rest0 + 31) / 32, 32, capTiles, x, ww, bias, y,
                (u0, uc) => (rest0 + u0 * 32, Math.Min(uc * 32, tiles - rest0 - u0 * 32)));
    }

    /// <summary>
    /// Runs units of work (32 tiles, or a group of 16 images) in chunks of about capTiles tiles: one chunk per thread at
    /// a time when there are at least as many units as threads (a multiple of the thread count of chunks of about
    /// equal size: 7 chunks on 2 threads would leave one idle for a seventh of the call), else one chunk at a time with
    /// every phase split over the threads. at(u0, uc) gives a chunk's (first, tile count): with images its first
    /// image (units are groups of 16 images), else its first tile (units of 32 tiles, tile-row transforms).
    /// </summary>
    unsafe void WinogradChunks(WgGeom g, bool images, long units, long unitTiles, int capTiles, Buf x, WinogradWeights ww, Buf? bias, Buf y,
        Func<long, long, (long First, long Tiles)> at)
    {
        int planes = g.Planes;
        long capUnits = Math.Max(1, capTiles / unitTiles);
        void Run(long u0, long uc, bool split)
        {
            var (first, tcl) = at(u0, uc);
            int tc = (int)tcl;
            var v = Grow(ref t_wgV, (long)planes * VPlaneLen(g.C, tc, images));
            var m = Grow(ref t_wgM, (long)planes * PlaneLen(g.K, tc));
            fixed (float* pv = v, pm = m, px = x.A, py = y.A)
                WinogradChunk(g, images, first, tc, px + x.Off, ww, bias, py + y.Off, pv, pm, split);
        }
        if (_threads > 1 && units >= _threads)
        {
            long chunks0 = (units + capUnits - 1) / capUnits;
            chunks0 = (chunks0 + _threads - 1) / _threads * _threads;
            long per = (units + chunks0 - 1) / chunks0;
            int chunks = (int)((units + per - 1) / per);
            Parallel.For(0, chunks, _po, i => Run(i * per, Math.Min(per, units - i * per), false));
        }
        else
            for (long u0 = 0; u0 < units; u0 += capUnits) Run(u0, Math.Min(capUnits, units - u0), _threads > 1);
    }

    /// <summary>
    /// Floats between the xi planes of V or M: rows x tc plus one cache line, so that the 16 planes a transform
    /// reads or writes together do not all map to one L1 set when rows x tc is a power of two.
    /// </summary>
    static long PlaneLen(int rows, int tc) => (long)rows * tc + 16;

    /// <summary>
    /// Floats between the xi planes of V: row-major rows x tc (<see cref="PlaneLen"/>), or for the image-lane
    /// transforms (images) already in the GEMM's packed B layout, NR-tile panels [rows][NR] one after another.
    /// </summary>
    static long VPlaneLen(int rows, int tc, bool images) => images ? (long)rows * RoundUp(tc, NR) + 16 : PlaneLen(rows, tc);

    /// <summary>Geometry of one Winograd call; Relu: the output transform writes max(y, 0).</summary>
    readonly record struct WgGeom(int C, int H, int W, int K, int PH, int PW, int OH, int OW, int TH, int TW, bool Relu, int T)
    {
        /// <summary>Transformed positions per tile: (T + 2)^2 = 16 for F(2x2,3x3), 36 for F(4x4,3x3).</summary>
        public int Planes => (T + 2) * (T + 2);
    }

    /// <summary>
    /// One chunk through the three phases: images: tc / (16 TH TW) groups of 16 images from image first on
    /// (image-lane transforms); else the tc tiles from tile first on (tile-row transforms).
    /// </summary>
    unsafe void WinogradChunk(WgGeom g, bool images, long first, int tc, float* x, WinogradWeights ww, Buf? bias, float* y, float* v, float* m, bool split)
    {
        nint xp = (nint)x, yp = (nint)y, vp = (nint)v, mp = (nint)m;
        bool vec = Avx512F.IsSupported && g.TW <= 15, f4 = g.T == 4;
        long t0 = images ? 0 : first;
        int img0 = images ? (int)first : 0, groups = images ? (int)(tc / ((long)LaneImages * g.TH * g.TW)) : 0;
        Split(split, g.C, cc =>
        {
            if (images) { InputTransformImages(g, img0, groups, tc, cc.Item1, cc.Item2, (float*)xp, (float*)vp); return; }
            for (int ci = cc.Item1; ci < cc.Item2; ci++)
                if (f4) InputTransformF4(g, t0, tc, ci, (float*)xp, (float*)vp);
                else if (vec) InputTransform512(g, t0, tc, ci, (float*)xp, (float*)vp);
                else InputTransform(g, t0, tc, ci, (float*)xp, (float*)vp);
        });
        long vPlane = VPlaneLen(g.C, tc, images);
        Split(split, g.Planes, xs =>
        {
            for (int xi = xs.Item1; xi < xs.Item2; xi++)
                if (images)
                    GemmST(false, false, g.K, tc, g.C, 1f, null, 0, null, 0, 0f, (float*)mp + xi * PlaneLen(g.K, tc), tc, ww.U[xi],
                        bPanels: (float*)vp + xi * vPlane, panelStride: (long)g.C * NR);
                else
                    GemmST(false, false, g.K, tc, g.C, 1f, null, 0, (float*)vp + xi * vPlane, tc, 0f,
                        (float*)mp + xi * PlaneLen(g.K, tc), tc, ww.U[xi]);
        });
        Split(split, g.K, ks =>
        {
            if (images) { OutputTransformImages(g, img0, groups, tc, ks.Item1, ks.Item2, (float*)mp, bias, (float*)yp); return; }
            for (int ki = ks.Item1; ki < ks.Item2; ki++)
                if (f4) OutputTransformF4(g, t0, tc, ki, (float*)mp, bias is { } b4 ? b4[ki] : 0f, (float*)yp);
                else if (vec) OutputTransform512(g, t0, tc, ki, (float*)mp, bias is { } b ? b[ki] : 0f, (float*)yp);
                else OutputTransform(g, t0, tc, ki, (float*)mp, bias is { } b2 ? b2[ki] : 0f, (float*)yp);
        });
    }

    /// <summary>body over [0, count) in one range, or split into one contiguous range per thread.</summary>
    void Split(bool split, int count, Action<(int, int)> body)
    {
        if (!split || count < 2) { body((0, count)); return; }
        int parts = Math.Min(_threads, count);
        Parallel.For(0, parts, _po, p => body(((int)((long)count * p / parts), (int)((long)count * (p + 1) / parts))));
    }

    /// <summary>V[xi][ci][t - t0] = (B^T d B)[xi] for the tiles [t0, t0 + tc) of channel ci; d is 0 outside x.</summary>
    static unsafe void InputTransform(in WgGeom g, long t0, int tc, int ci, float* x, float* v)
    {
        int hw = g.H * g.W, tpi = g.TH * g.TW;
        long cstride = PlaneLen(g.C, tc);
        float* vc = v + (long)ci * tc;
        float* d = stackalloc float[16];
        int img = (int)(t0 / tpi), rem = (int)(t0 % tpi), ty = rem / g.TW, tx = rem % g.TW;
        for (int t = 0; t < tc; t++)
        {
            float* xc = x + ((long)img * g.C + ci) * hw;
            int r0 = 2 * ty - g.PH, c0 = 2 * tx - g.PW;
            if (r0 >= 0 && r0 + 4 <= g.H && c0 >= 0 && c0 + 4 <= g.W)
            {
                float* s = xc + r0 * g.W + c0;
                for (int a = 0; a < 4; a++, s += g.W) { d[a * 4] = s[0]; d[a * 4 + 1] = s[1]; d[a * 4 + 2] = s[2]; d[a * 4 + 3] = s[3]; }
            }
            else
                for (int a = 0; a < 4; a++)
                {
                    int r = r0 + a;
                    bool rowIn = r >= 0 && r < g.H;
                    for (int b = 0; b < 4; b++)
                    {
                        int col = c0 + b;
                        d[a * 4 + b] = rowIn && col >= 0 && col < g.W ? xc[r * g.W + col] : 0f;
                    }
                }
            // rows: B^T d
            for (int b = 0; b < 4; b++)
            {
                float d0 = d[b], d1 = d[4 + b], d2 = d[8 + b], d3 = d[12 + b];
                d[b] = d0 - d2; d[4 + b] = d1 + d2; d[8 + b] = d2 - d1; d[12 + b] = d1 - d3;
            }
            // columns: (B^T d) B
            float* o = vc + t;
            for (int a = 0; a < 4; a++)
            {
                float e0 = d[a * 4], e1 = d[a * 4 + 1], e2 = d[a * 4 + 2], e3 = d[a * 4 + 3];
                o[(a * 4 + 0) * cstride] = e0 - e2;
                o[(a * 4 + 1) * cstride] = e1 + e2;
                o[(a * 4 + 2) * cstride] = e2 - e1;
                o[(a * 4 + 3) * cstride] = e1 - e3;
            }
            if (++tx == g.TW) { tx = 0; if (++ty == g.TH) { ty = 0; img++; } }
        }
    }

    /// <summary>y[n, ki, 2ty + i, 2tx + j] = (A^T M A)[i, j] + bias for the tiles [t0, t0 + tc), inside the output only.</summary>
    static unsafe void OutputTransform(in WgGeom g, long t0, int tc, int ki, float* m, float bias, float* y)
    {
        int ohw = g.OH * g.OW, tpi = g.TH * g.TW;
        long kstride = PlaneLen(g.K, tc);
        float* mk = m + (long)ki * tc;
        int img = (int)(t0 / tpi), rem = (int)(t0 % tpi), ty = rem / g.TW, tx = rem % g.TW;
        for (int t = 0; t < tc; t++)
        {
            float* q = mk + t;
            // A^T M: two rows s0 = m0 + m1 + m2, s1 = m1 - m2 - m3 (rows of the 4x4 M)
            float s00 = q[0] + q[4 * kstride] + q[8 * kstride], s10 = q[4 * kstride] - q[8 * kstride] - q[12 * kstride];
            float s01 = q[kstride] + q[5 * kstride] + q[9 * kstride], s11 = q[5 * kstride] - q[9 * kstride] - q[13 * kstride];
            float s02 = q[2 * kstride] + q[6 * kstride] + q[10 * kstride], s12 = q[6 * kstride] - q[10 * kstride] - q[14 * kstride];
            float s03 = q[3 * kstride] + q[7 * kstride] + q[11 * kstride], s13 = q[7 * kstride] - q[11 * kstride] - q[15 * kstride];
            float* yk = y + ((long)img * g.K + ki) * ohw;
            int r = 2 * ty, col = 2 * tx;
            float y00 = s00 + s01 + s02 + bias, y01 = s01 - s02 - s03 + bias;
            float y10 = s10 + s11 + s12 + bias, y11 = s11 - s12 - s13 + bias;
            if (g.Relu) { y00 = MathF.Max(y00, 0f); y01 = MathF.Max(y01, 0f); y10 = MathF.Max(y10, 0f); y11 = MathF.Max(y11, 0f); }
            float* row = yk + r * g.OW + col;
            if (r + 1 < g.OH && col + 1 < g.OW)
            {
                row[0] = y00; row[1] = y01; row[g.OW] = y10; row[g.OW + 1] = y11;
            }
            else
            {
                row[0] = y00;
                if (col + 1 < g.OW) row[1] = y01;
                if (r + 1 < g.OH) { row[g.OW] = y10; if (col + 1 < g.OW) row[g.OW + 1] = y11; }
            }
            if (++tx == g.TW) { tx = 0; if (++ty == g.TH) { ty = 0; img++; } }
        }
    }

    // ---------------------------------------------------------------- AVX-512 transforms (tile rows of up to 15 tiles)

    // The vector transforms work on one tile row (image n, tile row ty, tiles tx in [a, b)) at a time, lane j = tile
    // tx = j. A padded input row (32 lanes: columns -PW .. 31 - PW, zero outside x) is two vectors; B^T's column
    // stage needs columns 2tx .. 2tx + 3, which are the even/odd lanes of that pair, shifted: one two-source permute
    // each. Masked loads and stores keep every access inside [a, b) and inside the image.

    static readonly Vector512<int> Iota = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Lanes(int lo, int hi) =>
        (Vector512.GreaterThanOrEqual(Iota, Vector512.Create(lo)) & Vector512.LessThan(Iota, Vector512.Create(hi))).AsSingle();

    /// <summary>Visits the tile rows that the tiles [t0, t0 + tc) cover: (image, ty, first tx, end tx, local index of tx = 0).</summary>
    static void TileRows<T>(in WgGeom g, long t0, int tc, ref T body) where T : struct, ITileRow
    {
        int tpi = g.TH * g.TW;
        long t = t0, end = t0 + tc;
        while (t < end)
        {
            int img = (int)(t / tpi), rem = (int)(t % tpi), ty = rem / g.TW, a = rem % g.TW;
            int b = (int)Math.Min(g.TW, a + (end - t));
            body.Row(img, ty, a, b, t - a - t0);
            t += b - a;
        }
    }

    interface ITileRow { void Row(int img, int ty, int a, int b, long local0); }

    unsafe struct InRow512 : ITileRow
    {
        public WgGeom G; public float* X, V; public int Ci; public long Stride;
        public Vector512<float> MLo, MHi;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Row(int img, int ty, int a, int b, long local0)
        {
            var z = Vector512<float>.Zero;
            Span<Vector512<float>> lo = stackalloc Vector512<float>[4], hi = stackalloc Vector512<float>[4];
            float* xc = X + ((long)img * G.C + Ci) * G.H * G.W;
            for (int r = 0; r < 4; r++)
            {
                int row = 2 * ty - G.PH + r;
                if (row < 0 || row >= G.H) { lo[r] = z; hi[r] = z; continue; }
                float* p = xc + row * G.W - G.PW;
                lo[r] = Avx512F.MaskLoad(p, MLo, z);
                hi[r] = Avx512F.MaskLoad(p + 16, MHi, z);
            }
            var m = Lanes(a, b);
            float* o = V + local0;
            var iE = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            var iO = iE + Vector512<int>.One;
            var iE1 = iE + Vector512.Create(2);
            var iO1 = iE + Vector512.Create(3);
            for (int i = 0; i < 4; i++)
            {
                // row stage of B^T d: rows (0 - 2, 1 + 2, 2 - 1, 1 - 3)
                Vector512<float> ql, qh;
                switch (i)
                {
                    case 0: ql = lo[0] - lo[2]; qh = hi[0] - hi[2]; break;
                    case 1: ql = lo[1] + lo[2]; qh = hi[1] + hi[2]; break;
                    case 2: ql = lo[2] - lo[1]; qh = hi[2] - hi[1]; break;
                    default: ql = lo[1] - lo[3]; qh = hi[1] - hi[3]; break;
                }
                var e = Avx512F.PermuteVar16x32x2(ql, iE, qh);
                var od = Avx512F.PermuteVar16x32x2(ql, iO, qh);
                var e1 = Avx512F.PermuteVar16x32x2(ql, iE1, qh);
                var o1 = Avx512F.PermuteVar16x32x2(ql, iO1, qh);
                Avx512F.MaskStore(o + (i * 4 + 0) * Stride, m, e - e1);
                Avx512F.MaskStore(o + (i * 4 + 1) * Stride, m, od + e1);
                Avx512F.MaskStore(o + (i * 4 + 2) * Stride, m, e1 - od);
                Avx512F.MaskStore(o + (i * 4 + 3) * Stride, m, od - o1);
            }
        }
    }

    unsafe struct OutRow512 : ITileRow
    {
        public WgGeom G; public float* M, Y; public int Ki; public long Stride; public float Bias;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Row(int img, int ty, int a, int b, long local0)
        {
            var z = Vector512<float>.Zero;
            var m = Lanes(a, b);
            float* q = M + local0;
            var s0 = stackalloc Vector512<float>[4];
            var s1 = stackalloc Vector512<float>[4];
            for (int j = 0; j < 4; j++)
            {
                var q0 = Avx512F.MaskLoad(q + j * Stride, m, z);
                var q1 = Avx512F.MaskLoad(q + (4 + j) * Stride, m, z);
                var q2 = Avx512F.MaskLoad(q + (8 + j) * Stride, m, z);
                var q3 = Avx512F.MaskLoad(q + (12 + j) * Stride, m, z);
                s0[j] = q0 + q1 + q2;
                s1[j] = q1 - q2 - q3;
            }
            var bv = Vector512.Create(Bias);
            var iLo = Vector512.Create(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
            var iHi = iLo + Vector512.Create(8);
            // output columns 2tx, 2tx + 1 for tx in [a, b), inside the output width
            var col = Iota;
            var mLo = (Vector512.GreaterThanOrEqual(col, Vector512.Create(2 * a)) & Vector512.LessThan(col, Vector512.Create(Math.Min(2 * b, G.OW)))).AsSingle();
            col += Vector512.Create(16);
            var mHi = (Vector512.GreaterThanOrEqual(col, Vector512.Create(2 * a)) & Vector512.LessThan(col, Vector512.Create(Math.Min(2 * b, G.OW)))).AsSingle();
            float* yr = Y + ((long)img * G.K + Ki) * G.OH * G.OW + 2 * ty * G.OW;
            for (int i = 0; i < 2; i++)
            {
                if (2 * ty + i >= G.OH) break;
                var s = i == 0 ? s0 : s1;
                var y0 = s[0] + s[1] + s[2] + bv;
                var y1 = s[1] - s[2] - s[3] + bv;
                if (G.Relu) { y0 = Vector512.Max(y0, z); y1 = Vector512.Max(y1, z); }
                float* p = yr + i * G.OW;
                Avx512F.MaskStore(p, mLo, Avx512F.PermuteVar16x32x2(y0, iLo, y1));
                Avx512F.MaskStore(p + 16, mHi, Avx512F.PermuteVar16x32x2(y0, iHi, y1));
            }
        }
    }

    static unsafe void InputTransform512(in WgGeom g, long t0, int tc, int ci, float* x, float* v)
    {
        var row = new InRow512
        {
            G = g, X = x, V = v + (long)ci * tc, Ci = ci, Stride = PlaneLen(g.C, tc),
            MLo = Lanes(g.PW, g.PW + g.W), MHi = Lanes(g.PW - 16, g.PW + g.W - 16),
        };
        TileRows(g, t0, tc, ref row);
    }

    static unsafe void OutputTransform512(in WgGeom g, long t0, int tc, int ki, float* m, float bias, float* y)
    {
        var row = new OutRow512 { G = g, M = m + (long)ki * tc, Y = y, Ki = ki, Stride = PlaneLen(g.K, tc), Bias = bias };
        TileRows(g, t0, tc, ref row);
    }
}
