using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Perturb.Engine.Backends;

/// <summary>
/// The transforms of Winograd F(4x4, 3x3) with the vector lanes over 16 images (AVX-512; the weight transform, the
/// GEMMs and the transforms' arithmetic are those of CpuWinogradF4.cs). The tile-row transforms there put the tiles
/// of one tile row in the lanes: 7 of 16 lanes at 28x28 outputs, 4 at 14x14, 2 at 7x7 and 1 at 4x4, with a permute
/// per column stage. Here lane j is image n0 + j at the same tile position, so every lane is used at any image size,
/// no permutes are needed, and all 16 lanes of a position share its borders:
///
///   input, per channel of a group of 16 images: the 16 planes transposed (16 x 16 blocks in registers) into a padded
///   plane of 16-lane pixels xt[(4 TH + 2) x (4 TW + 2)] (borders zero), then each 6x6 patch of it through B^T d B as
///   whole vectors, the 36 results stored as 16 consecutive tiles of V[xi][c][t];
///   output, per output channel: the 36 M vectors of a position through A^T M A (+ bias, ReLU) into a staging plane
///   yt[4 TH x 4 TW] of 16-lane pixels, then transposed back 16 pixels at a time into the 16 images' planes.
///
/// Tiles of a chunk are ordered (group, ty, tx, image in group), so the GEMMs between the transforms are unchanged.
/// A batch runs its groups of 16 images this way and the images past the last full group through the tile-row
/// transforms (WinogradConv).
/// </summary>
public sealed partial class CpuBackend
{
    /// <summary>Images per vector of the image-lane transforms (the lanes of a Vector512 of floats).</summary>
    const int LaneImages = 16;

    [ThreadStatic] static float[]? t_wgXt, t_wgYt;

    /// <summary>A 64-byte aligned pointer into a pinned array grown to at least size floats (plus the alignment slack).</summary>
    static unsafe float* Aligned(ref float[]? a, long size)
    {
        var buf = Grow(ref a, size + 16);
        float* p = (float*)Unsafe.AsPointer(ref buf[0]);   // pinned (GC.AllocateUninitializedArray(pinned: true))
        return (float*)(((nint)p + 63) & ~(nint)63);
    }

    /// <summary>
    /// Moves channel ch of the 16 images from img on (planes [h x w] of a [N, chans, h, w] tensor) to or from a plane of
    /// 16-lane pixels (lanes: rows ld pixels apart, the image's pixel (r, c) at (r0 + r, c0 + c), which must lie inside
    /// it), 16 pixels at a time through <see cref="Transpose16"/>. toLanes: planes -> lanes, the pixels past a plane's
    /// end written to spare; else lanes -> planes, those read from spare, which must then hold a zero vector.
    /// </summary>
    static unsafe void PlanesLanes(bool toLanes, float* tensor, int img, int chans, int ch, int h, int w, float* lanes, int ld, int r0, int c0,
        float* spare)
    {
        int hw = h * w;
        long stride = (long)chans * hw;
        float* t0 = tensor + ((long)img * chans + ch) * hw;
        var planes = stackalloc float*[16];
        var pixels = stackalloc float*[16];
        var all = Vector512<float>.AllBitsSet;
        int r = 0, c = 0;
        for (int p0 = 0; p0 < hw; p0 += 16)
        {
            int cnt = Math.Min(16, hw - p0);
            for (int j = 0; j < 16; j++)
            {
                planes[j] = t0 + j * stride + p0;
                pixels[j] = spare;
                if (j >= cnt) continue;
                pixels[j] = lanes + ((long)(r0 + r) * ld + c0 + c) * 16;
                if (++c == w) { c = 0; r++; }
            }
            var part = cnt == 16 ? all : Lanes(0, cnt);
            if (toLanes) Transpose16(planes, part, pixels, all);
            else Transpose16(pixels, all, planes, part);
        }
    }

    /// <summary>
    /// Loads 16 vectors from src[j] (lanes where loadMask is set, 0 elsewhere), transposes them as a 16 x 16 block of
    /// floats (unpack, unpack as pairs, two 128-bit shuffles; all in registers) and stores vector i to dst[i] (lanes
    /// where storeMask is set).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static unsafe void Transpose16(float** src, Vector512<float> loadMask, float** dst, Vector512<float> storeMask)
    {
        var z = Vector512<float>.Zero;
        // rows 4i..4i+3: column q of each 128-bit block into u[4i + q]
        var (u0, u1, u2, u3) = T4(Avx512F.MaskLoad(src[0], loadMask, z), Avx512F.MaskLoad(src[1], loadMask, z), Avx512F.MaskLoad(src[2], loadMask, z), Avx512F.MaskLoad(src[3], loadMask, z));
        var (u4, u5, u6, u7) = T4(Avx512F.MaskLoad(src[4], loadMask, z), Avx512F.MaskLoad(src[5], loadMask, z), Avx512F.MaskLoad(src[6], loadMask, z), Avx512F.MaskLoad(src[7], loadMask, z));
        var (u8, u9, u10, u11) = T4(Avx512F.MaskLoad(src[8], loadMask, z), Avx512F.MaskLoad(src[9], loadMask, z), Avx512F.MaskLoad(src[10], loadMask, z), Avx512F.MaskLoad(src[11], loadMask, z));
        var (u12, u13, u14, u15) = T4(Avx512F.MaskLoad(src[12], loadMask, z), Avx512F.MaskLoad(src[13], loadMask, z), Avx512F.MaskLoad(src[14], loadMask, z), Avx512F.MaskLoad(src[15], loadMask, z));
        // out[4L + q] = block L of u[q], u[4 + q], u[8 + q], u[12 + q]
        Blocks(u0, u4, u8, u12, dst, 0, storeMask);
        Blocks(u1, u5, u9, u13, dst, 1, storeMask);
        Blocks(u2, u6, u10, u14, dst, 2, storeMask);
        Blocks(u3, u7, u11, u15, dst, 3, storeMask);
    }

    /// <summary>Each 128-bit block of the rows a, b, c, d transposed as a 4 x 4: column q of the blocks into result q.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static (Vector512<float>, Vector512<float>, Vector512<float>, Vector512<float>) T4(Vector512<float> a, Vector512<float> b, Vector512<float> c, Vector512<float> d)
    {
        var t0 = Avx512F.UnpackLow(a, b).AsDouble(); var t1 = Avx512F.UnpackHigh(a, b).AsDouble();
        var t2 = Avx512F.UnpackLow(c, d).AsDouble(); var t3 = Avx512F.UnpackHigh(c, d).AsDouble();
        return (Avx512F.UnpackLow(t0, t2).AsSingle(), Avx512F.UnpackHigh(t0, t2).AsSingle(),
            Avx512F.UnpackLow(t1, t3).AsSingle(), Avx512F.UnpackHigh(t1, t3).AsSingle());
    }

    /// <summary>dst[4L + q] = block L of u0, u1, u2, u3 for L = 0..3.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static unsafe void Blocks(Vector512<float> u0, Vector512<float> u1, Vector512<float> u2, Vector512<float> u3, float** dst, int q, Vector512<float> m)
    {
        var v0 = Avx512F.Shuffle4x128(u0, u1, 0x44);
        var v1 = Avx512F.Shuffle4x128(u0, u1, 0xEE);
        var w0 = Avx512F.Shuffle4x128(u2, u3, 0x44);
        var w1 = Avx512F.Shuffle4x128(u2, u3, 0xEE);
        Avx512F.MaskStore(dst[q], m, Avx512F.Shuffle4x128(v0, w0, 0x88));
        Avx512F.MaskStore(dst[4 + q], m, Avx512F.Shuffle4x128(v0, w0, 0xDD));
        Avx512F.MaskStore(dst[8 + q], m, Avx512F.Shuffle4x128(v1, w1, 0x88));
        Avx512F.MaskStore(dst[12 + q], m, Avx512F.Shuffle4x128(v1, w1, 0xDD));
    }

    // B^T (6 x 6) of F(4x4, 3x3), applied to the rows (or columns) d0..d5 of a patch; rows 1, 2 and rows 3, 4 share
    // their sums, so each pair comes from one pass over d1..d4.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static (Vector512<float>, Vector512<float>) BtRows12(Vector512<float> d1, Vector512<float> d2, Vector512<float> d3, Vector512<float> d4) =>
        (Avx512F.FusedMultiplyAddNegated(Vector512.Create(4f), d1 + d2, d4 + d3), Avx512F.FusedMultiplyAdd(Vector512.Create(4f), d1 - d2, d4 - d3));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static (Vector512<float>, Vector512<float>) BtRows34(Vector512<float> d1, Vector512<float> d2, Vector512<float> d3, Vector512<float> d4)
    {
        Vector512<float> a = d3 - d1, b = d4 - d2;
        return (Avx512F.FusedMultiplyAdd(Vector512.Create(2f), a, b), Avx512F.FusedMultiplyAddNegated(Vector512.Create(2f), a, b));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> BtRow0(Vector512<float> d0, Vector512<float> d2, Vector512<float> d4) =>
        Avx512F.FusedMultiplyAdd(Vector512.Create(4f), d0, Avx512F.FusedMultiplyAddNegated(Vector512.Create(5f), d2, d4));

    /// <summary>o[c * st] = (e B)[c] for the six columns c of one row e0..e5 of B^T d.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static unsafe void BtStore(Vector512<float> e0, Vector512<float> e1, Vector512<float> e2, Vector512<float> e3, Vector512<float> e4, Vector512<float> e5, float* o, long st)
    {
        var (r1, r2) = BtRows12(e1, e2, e3, e4);
        var (r3, r4) = BtRows34(e1, e2, e3, e4);
        Vector512.Store(BtRow0(e0, e2, e4), o);
        Vector512.Store(r1, o + st);
        Vector512.Store(r2, o + 2 * st);
        Vector512.Store(r3, o + 3 * st);
        Vector512.Store(r4, o + 4 * st);
        Vector512.Store(BtRow0(e1, e3, e5), o + 5 * st);
    }

    /// <summary>
    /// The 36 planes o[xi * st] of B^T d B for the 6x6 patch of 16-lane pixels at p (rows rs floats apart), in three
    /// passes of two rows of B^T d each (rows 1 and 2, 3 and 4, 0 and 5), so no row is kept past its pass.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static unsafe void InTile(float* p, long rs, float* o, long st)
    {
        var (a0, b0) = BtRows12(Vector512.Load(p + rs), Vector512.Load(p + 2 * rs), Vector512.Load(p + 3 * rs), Vector512.Load(p + 4 * rs));
        var (a1, b1) = BtRows12(Vector512.Load(p + 16 + rs), Vector512.Load(p + 16 + 2 * rs), Vector512.Load(p + 16 + 3 * rs), Vector512.Load(p + 16 + 4 * rs));
        var (a2, b2) = BtRows12(Vector512.Load(p + 32 + rs), Vector512.Load(p + 32 + 2 * rs), Vector512.Load(p + 32 + 3 * rs), Vector512.Load(p + 32 + 4 * rs));
        var (a3, b3) = BtRows12(Vector512.Load(p + 48 + rs), Vector512.Load(p + 48 + 2 * rs), Vector512.Load(p + 48 + 3 * rs), Vector512.Load(p + 48 + 4 * rs));
        var (a4, b4) = BtRows12(Vector512.Load(p + 64 + rs), Vector512.Load(p + 64 + 2 * rs), Vector512.Load(p + 64 + 3 * rs), Vector512.Load(p + 64 + 4 * rs));
        var (a5, b5) = BtRows12(Vector512.Load(p + 80 + rs), Vector512.Load(p + 80 + 2 * rs), Vector512.Load(p + 80 + 3 * rs), Vector512.Load(p + 80 + 4 * rs));
        BtStore(a0, a1, a2, a3, a4, a5, o + 6 * st, st);
        BtStore(b0, b1, b2, b3, b4, b5, o + 12 * st, st);
        (a0, b0) = BtRows34(Vector512.Load(p + rs), Vector512.Load(p + 2 * rs), Vector512.Load(p + 3 * rs), Vector512.Load(p + 4 * rs));
        (a1, b1) = BtRows34(Vector512.Load(p + 16 + rs), Vector512.Load(p + 16 + 2 * rs), Vector512.Load(p + 16 + 3 * rs), Vector512.Load(p + 16 + 4 * rs));
        (a2, b2) = BtRows34(Vector512.Load(p + 32 + rs), Vector512.Load(p + 32 + 2 * rs), Vector512.Load(p + 32 + 3 * rs), Vector512.Load(p + 32 + 4 * rs));
        (a3, b3) = BtRows34(Vector512.Load(p + 48 + rs), Vector512.Load(p + 48 + 2 * rs), Vector512.Load(p + 48 + 3 * rs), Vector512.Load(p + 48 + 4 * rs));
        (a4, b4) = BtRows34(Vector512.Load(p + 64 + rs), Vector512.Load(p + 64 + 2 * rs), Vector512.Load(p + 64 + 3 * rs), Vector512.Load(p + 64 + 4 * rs));
        (a5, b5) = BtRows34(Vector512.Load(p + 80 + rs), Vector512.Load(p + 80 + 2 * rs), Vector512.Load(p + 80 + 3 * rs), Vector512.Load(p + 80 + 4 * rs));
        BtStore(a0, a1, a2, a3, a4, a5, o + 18 * st, st);
        BtStore(b0, b1, b2, b3, b4, b5, o + 24 * st, st);
        for (int h = 0; h < 2; h++)   // row 0 from d0, d2, d4; row 5 from d1, d3, d5
        {
            float* q = p + h * rs;
            BtStore(BtRow0(Vector512.Load(q), Vector512.Load(q + 2 * rs), Vector512.Load(q + 4 * rs)),
                BtRow0(Vector512.Load(q + 16), Vector512.Load(q + 16 + 2 * rs), Vector512.Load(q + 16 + 4 * rs)),
                BtRow0(Vector512.Load(q + 32), Vector512.Load(q + 32 + 2 * rs), Vector512.Load(q + 32 + 4 * rs)),
                BtRow0(Vector512.Load(q + 48), Vector512.Load(q + 48 + 2 * rs), Vector512.Load(q + 48 + 4 * rs)),
                BtRow0(Vector512.Load(q + 64), Vector512.Load(q + 64 + 2 * rs), Vector512.Load(q + 64 + 4 * rs)),
                BtRow0(Vector512.Load(q + 80), Vector512.Load(q + 80 + 2 * rs), Vector512.Load(q + 80 + 4 * rs)),
                o + h * 30 * st, st);
        }
    }

    // A^T (4 x 6) of F(4x4, 3x3): rows 0 and 2 share m1 + m2 and m3 + m4, rows 1 and 3 share m1 - m2 and m3 - m4.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static (Vector512<float>, Vector512<float>) AtRows02(Vector512<float> m0, Vector512<float> m1, Vector512<float> m2, Vector512<float> m3, Vector512<float> m4)
    {
        Vector512<float> p12 = m1 + m2, p34 = m3 + m4;
        return (m0 + p12 + p34, Avx512F.FusedMultiplyAdd(Vector512.Create(4f), p34, p12));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static (Vector512<float>, Vector512<float>) AtRows13(Vector512<float> m1, Vector512<float> m2, Vector512<float> m3, Vector512<float> m4, Vector512<float> m5)
    {
        Vector512<float> d12 = m1 - m2, d34 = m3 - m4;
        return (Avx512F.FusedMultiplyAdd(Vector512.Create(2f), d34, d12), Avx512F.FusedMultiplyAdd(Vector512.Create(8f), d34, d12) + m5);
    }

    /// <summary>o[0, 16, 32, 48] = (s A)[j] + bias (then max(., 0) when relu) for one row s0..s5 of A^T M.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static unsafe void AtStore(Vector512<float> s0, Vector512<float> s1, Vector512<float> s2, Vector512<float> s3, Vector512<float> s4, Vector512<float> s5,
        Vector512<float> bias, bool relu, float* o)
    {
        var (y0, y2) = AtRows02(s0, s1, s2, s3, s4);
        var (y1, y3) = AtRows13(s1, s2, s3, s4, s5);
        y0 += bias; y1 += bias; y2 += bias; y3 += bias;
        if (relu)
        {
            var z = Vector512<float>.Zero;
            y0 = Vector512.Max(y0, z); y1 = Vector512.Max(y1, z); y2 = Vector512.Max(y2, z); y3 = Vector512.Max(y3, z);
        }
        Vector512.Store(y0, o); Vector512.Store(y1, o + 16); Vector512.Store(y2, o + 32); Vector512.Store(y3, o + 48);
    }

    /// <summary>
    /// The 4x4 outputs A^T M A (+ bias, ReLU) of one position from its 36 planes q[xi * st], into the 16-lane pixels
    /// o (rows rs floats apart): rows 0 and 2 in one pass over M's rows 0..4, rows 1 and 3 in one over rows 1..5.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static unsafe void OutTile(float* q, long st, Vector512<float> bias, bool relu, float* o, long rs)
    {
        for (int h = 0; h < 2; h++)
        {
            Vector512<float> a0, a1, a2, a3, a4, a5, b0, b1, b2, b3, b4, b5;
            if (h == 0)
            {
                (a0, b0) = AtRows02(Vector512.Load(q), Vector512.Load(q + 6 * st), Vector512.Load(q + 12 * st), Vector512.Load(q + 18 * st), Vector512.Load(q + 24 * st));
                (a1, b1) = AtRows02(Vector512.Load(q + st), Vector512.Load(q + 7 * st), Vector512.Load(q + 13 * st), Vector512.Load(q + 19 * st), Vector512.Load(q + 25 * st));
                (a2, b2) = AtRows02(Vector512.Load(q + 2 * st), Vector512.Load(q + 8 * st), Vector512.Load(q + 14 * st), Vector512.Load(q + 20 * st), Vector512.Load(q + 26 * st));
                (a3, b3) = AtRows02(Vector512.Load(q + 3 * st), Vector512.Load(q + 9 * st), Vector512.Load(q + 15 * st), Vector512.Load(q + 21 * st), Vector512.Load(q + 27 * st));
                (a4, b4) = AtRows02(Vector512.Load(q + 4 * st), Vector512.Load(q + 10 * st), Vector512.Load(q + 16 * st), Vector512.Load(q + 22 * st), Vector512.Load(q + 28 * st));
                (a5, b5) = AtRows02(Vector512.Load(q + 5 * st), Vector512.Load(q + 11 * st), Vector512.Load(q + 17 * st), Vector512.Load(q + 23 * st), Vector512.Load(q + 29 * st));
            }
            else
            {
                (a0, b0) = AtRows13(Vector512.Load(q + 6 * st), Vector512.Load(q + 12 * st), Vector512.Load(q + 18 * st), Vector512.Load(q + 24 * st), Vector512.Load(q + 30 * st));
                (a1, b1) = AtRows13(Vector512.Load(q + 7 * st), Vector512.Load(q + 13 * st), Vector512.Load(q + 19 * st), Vector512.Load(q + 25 * st), Vector512.Load(q + 31 * st));
                (a2, b2) = AtRows13(Vector512.Load(q + 8 * st), Vector512.Load(q + 14 * st), Vector512.Load(q + 20 * st), Vector512.Load(q + 26 * st), Vector512.Load(q + 32 * st));
                (a3, b3) = AtRows13(Vector512.Load(q + 9 * st), Vector512.Load(q + 15 * st), Vector512.Load(q + 21 * st), Vector512.Load(q + 27 * st), Vector512.Load(q + 33 * st));
                (a4, b4) = AtRows13(Vector512.Load(q + 10 * st), Vector512.Load(q + 16 * st), Vector512.Load(q + 22 * st), Vector512.Load(q + 28 * st), Vector512.Load(q + 34 * st));
                (a5, b5) = AtRows13(Vector512.Load(q + 11 * st), Vector512.Load(q + 17 * st), Vector512.Load(q + 23 * st), Vector512.Load(q + 29 * st), Vector512.Load(q + 35 * st));
            }
            // pass 0: output rows 0 and 2; pass 1: rows 1 and 3
            AtStore(a0, a1, a2, a3, a4, a5, bias, relu, o + h * rs);
            AtStore(b0, b1, b2, b3, b4, b5, bias, relu, o + (2 + h) * rs);
        }
    }

    /// <summary>
    /// V[xi][ci][t] for the channels [c0, c1) of the groups [0, groups) of 16 images from img0 on (tile t = (group,
    /// ty, tx, image) of the chunk, tc tiles; V in the GEMM's packed B layout). x is 0 outside the image.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static unsafe void InputTransformImages(in WgGeom g, int img0, int groups, int tc, int c0, int c1, float* x, float* v)
    {
        int wp = 4 * g.TW + 2, hp = 4 * g.TH + 2, pos = g.TH * g.TW;
        long stride = VPlaneLen(g.C, tc, true), rs = (long)wp * 16;
        float* xt = Aligned(ref t_wgXt, (long)hp * wp * 16 + 16);
        new Span<float>(xt, hp * wp * 16 + 16).Clear();   // the borders stay zero; the interior is rewritten per channel
        float* sink = xt + (long)hp * wp * 16;            // where the pixels past the plane's end go
        for (int gi = 0; gi < groups; gi++)
            for (int ci = c0; ci < c1; ci++)
            {
                PlanesLanes(true, x, img0 + LaneImages * gi, g.C, ci, g.H, g.W, xt, wp, g.PH, g.PW, sink);
                float* vc = v + (long)ci * NR;
                for (int ty = 0; ty < g.TH; ty++)
                    for (int tx = 0; tx < g.TW; tx++)
                    {
                        long tl = (long)(gi * pos + ty * g.TW + tx) * 16;   // the first of its 16 tiles: panel tl / NR, half tl % NR
                        InTile(xt + (4 * ty * rs + 4 * tx * 16), rs, vc + tl / NR * g.C * NR + tl % NR, stride);
                    }
            }
    }

    /// <summary>
    /// y[n, ki] = A^T M A (+ bias, then max(., 0) when g.Relu) for the output channels [k0, k1) of the groups [0, groups)
    /// of 16 images from img0 on, inside the output only.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static unsafe void OutputTransformImages(in WgGeom g, int img0, int groups, int tc, int k0, int k1, float* m, Buf? bias, float* y)
    {
        int owp = 4 * g.TW, pos = g.TH * g.TW;
        long stride = PlaneLen(g.K, tc), rs = (long)owp * 16;
        float* yt = Aligned(ref t_wgYt, (long)4 * g.TH * owp * 16 + 16);
        float* zeros = yt + (long)4 * g.TH * owp * 16;   // read for the pixels past the plane's end
        Vector512.Store(Vector512<float>.Zero, zeros);
        bool relu = g.Relu;
        for (int gi = 0; gi < groups; gi++)
            for (int ki = k0; ki < k1; ki++)
            {
                var bv = Vector512.Create(bias is { } b ? b[ki] : 0f);
                float* mk = m + (long)ki * tc + (long)gi * pos * 16;
                for (int ty = 0; ty < g.TH; ty++)
                    for (int tx = 0; tx < g.TW; tx++)
                        OutTile(mk + (long)(ty * g.TW + tx) * 16, stride, bv, relu, yt + (4 * ty * rs + 4 * tx * 16), rs);
                PlanesLanes(false, y, img0 + LaneImages * gi, g.K, ki, g.OH, g.OW, yt, owp, 0, 0, zeros);
            }
    }
}
