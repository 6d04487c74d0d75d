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

    /// <summary>r[i][j] = r[j][i] for the 16 x 16 floats in r[0..16): unpack, unpack as pairs, two 128-bit shuffles.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static unsafe void Transpose16(Vector512<float>* r)
    {
        // rows 4i..4i+3, column q of each 128-bit block: u[4i + q]
        for (int i = 0; i < 16; i += 4) Transpose4In128(r + i);
        // out[4L + q] = block L of u[q], u[4 + q], u[8 + q], u[12 + q]
        for (int q = 0; q < 4; q++)
        {
            Vector512<float> u0 = r[q], u1 = r[4 + q], u2 = r[8 + q], u3 = r[12 + q];
            var v0 = Avx512F.Shuffle4x128(u0, u1, 0x44);
            var v1 = Avx512F.Shuffle4x128(u0, u1, 0xEE);
            var w0 = Avx512F.Shuffle4x128(u2, u3, 0x44);
            var w1 = Avx512F.Shuffle4x128(u2, u3, 0xEE);
            r[q] = Avx512F.Shuffle4x128(v0, w0, 0x88);
            r[4 + q] = Avx512F.Shuffle4x128(v0, w0, 0xDD);
            r[8 + q] = Avx512F.Shuffle4x128(v1, w1, 0x88);
            r[12 + q] = Avx512F.Shuffle4x128(v1, w1, 0xDD);
        }
    }

    /// <summary>Rows r[0..4): each 128-bit block transposed as a 4 x 4 (column q of the block into r[q]).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static unsafe void Transpose4In128(Vector512<float>* r)
    {
        Vector512<float> a = r[0], b = r[1], c = r[2], d = r[3];
        var t0 = Avx512F.UnpackLow(a, b).AsDouble(); var t1 = Avx512F.UnpackHigh(a, b).AsDouble();
        var t2 = Avx512F.UnpackLow(c, d).AsDouble(); var t3 = Avx512F.UnpackHigh(c, d).AsDouble();
        r[0] = Avx512F.UnpackLow(t0, t2).AsSingle();
        r[1] = Avx512F.UnpackHigh(t0, t2).AsSingle();
        r[2] = Avx512F.UnpackLow(t1, t3).AsSingle();
        r[3] = Avx512F.UnpackHigh(t1, t3).AsSingle();
    }

    /// <summary>
    /// V[xi][ci][t] for the channels [c0, c1) of the groups [0, groups) of 16 images from img0 on (tile t = (group,
    /// ty, tx, image) of the chunk, tc tiles). x is 0 outside the image.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static unsafe void InputTransformImages(in WgGeom g, int img0, int groups, int tc, int c0, int c1, float* x, float* v)
    {
        int hw = g.H * g.W, wp = 4 * g.TW + 2, hp = 4 * g.TH + 2, pos = g.TH * g.TW;
        long stride = VPlaneLen(g.C, tc, true), istr = (long)g.C * hw;
        float* xt = Aligned(ref t_wgXt, (long)hp * wp * 16);
        new Span<float>(xt, hp * wp * 16).Clear();   // the borders stay zero; the interior is rewritten per channel
        var r = stackalloc Vector512<float>[16];
        var d = stackalloc Vector512<float>[36];
        var z = Vector512<float>.Zero;
        var four = Vector512.Create(4f); var five = Vector512.Create(5f); var two = Vector512.Create(2f);
        for (int gi = 0; gi < groups; gi++)
            for (int ci = c0; ci < c1; ci++)
            {
                float* x0 = x + ((long)(img0 + LaneImages * gi) * g.C + ci) * hw;
                for (int p0 = 0; p0 < hw; p0 += 16)
                {
                    int cnt = Math.Min(16, hw - p0);
                    if (cnt == 16) for (int j = 0; j < 16; j++) r[j] = Vector512.Load(x0 + j * istr + p0);
                    else
                    {
                        var mk = Lanes(0, cnt);
                        for (int j = 0; j < 16; j++) r[j] = Avx512F.MaskLoad(x0 + j * istr + p0, mk, z);
                    }
                    Transpose16(r);
                    int h = p0 / g.W, w = p0 - h * g.W;
                    for (int q = 0; q < cnt; q++)
                    {
                        Vector512.Store(r[q], xt + ((long)(h + g.PH) * wp + w + g.PW) * 16);
                        if (++w == g.W) { w = 0; h++; }
                    }
                }
                float* vc = v + (long)ci * NR;
                for (int ty = 0; ty < g.TH; ty++)
                    for (int tx = 0; tx < g.TW; tx++)
                    {
                        float* pch = xt + ((long)(4 * ty) * wp + 4 * tx) * 16;
                        long rs = (long)wp * 16;
                        // row stage B^T d, column by column: d[i*6 + s]
                        for (int s = 0; s < 6; s++)
                        {
                            float* q = pch + s * 16;
                            var d0 = Vector512.Load(q); var d1 = Vector512.Load(q + rs); var d2 = Vector512.Load(q + 2 * rs);
                            var d3 = Vector512.Load(q + 3 * rs); var d4 = Vector512.Load(q + 4 * rs); var d5 = Vector512.Load(q + 5 * rs);
                            d[s] = Avx512F.FusedMultiplyAdd(four, d0, Avx512F.FusedMultiplyAddNegated(five, d2, d4));
                            d[6 + s] = Avx512F.FusedMultiplyAddNegated(four, d1 + d2, d4 + d3);
                            d[12 + s] = Avx512F.FusedMultiplyAdd(four, d1 - d2, d4 - d3);
                            d[18 + s] = Avx512F.FusedMultiplyAdd(two, d3 - d1, d4 - d2);
                            d[24 + s] = Avx512F.FusedMultiplyAddNegated(two, d3 - d1, d4 - d2);
                            d[30 + s] = Avx512F.FusedMultiplyAdd(four, d1, Avx512F.FusedMultiplyAddNegated(five, d3, d5));
                        }
                        long tl = (long)(gi * pos + ty * g.TW + tx) * 16;   // the first of its 16 tiles: panel tl / NR, half tl % NR
                        float* o = vc + tl / NR * g.C * NR + tl % NR;
                        for (int i = 0; i < 6; i++)
                        {
                            var e = d + i * 6;
                            Vector512<float> e0 = e[0], e1 = e[1], e2 = e[2], e3 = e[3], e4 = e[4], e5 = e[5];
                            float* oi = o + i * 6 * stride;
                            Vector512.Store(Avx512F.FusedMultiplyAdd(four, e0, Avx512F.FusedMultiplyAddNegated(five, e2, e4)), oi);
                            Vector512.Store(Avx512F.FusedMultiplyAddNegated(four, e1 + e2, e4 + e3), oi + stride);
                            Vector512.Store(Avx512F.FusedMultiplyAdd(four, e1 - e2, e4 - e3), oi + 2 * stride);
                            Vector512.Store(Avx512F.FusedMultiplyAdd(two, e3 - e1, e4 - e2), oi + 3 * stride);
                            Vector512.Store(Avx512F.FusedMultiplyAddNegated(two, e3 - e1, e4 - e2), oi + 4 * stride);
                            Vector512.Store(Avx512F.FusedMultiplyAdd(four, e1, Avx512F.FusedMultiplyAddNegated(five, e3, e5)), oi + 5 * stride);
                        }
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
        int ohw = g.OH * g.OW, owp = 4 * g.TW, pos = g.TH * g.TW;
        long stride = PlaneLen(g.K, tc), ostr = (long)g.K * ohw;
        float* yt = Aligned(ref t_wgYt, (long)4 * g.TH * owp * 16);
        var r = stackalloc Vector512<float>[16];
        var s = stackalloc Vector512<float>[24];   // A^T M: s[i*6 + c], i < 4, c < 6
        var z = Vector512<float>.Zero;
        var two = Vector512.Create(2f); var four = Vector512.Create(4f); var eight = Vector512.Create(8f);
        for (int gi = 0; gi < groups; gi++)
            for (int ki = k0; ki < k1; ki++)
            {
                var bv = Vector512.Create(bias is { } b ? b[ki] : 0f);
                float* mk = m + (long)ki * tc + (long)gi * pos * 16;
                for (int ty = 0; ty < g.TH; ty++)
                    for (int tx = 0; tx < g.TW; tx++)
                    {
                        float* q = mk + (long)(ty * g.TW + tx) * 16;
                        for (int c = 0; c < 6; c++)
                        {
                            var m0 = Vector512.Load(q + c * stride);
                            var m1 = Vector512.Load(q + (6 + c) * stride);
                            var m2 = Vector512.Load(q + (12 + c) * stride);
                            var m3 = Vector512.Load(q + (18 + c) * stride);
                            var m4 = Vector512.Load(q + (24 + c) * stride);
                            var m5 = Vector512.Load(q + (30 + c) * stride);
                            Vector512<float> p12 = m1 + m2, d12 = m1 - m2, p34 = m3 + m4, d34 = m3 - m4;
                            s[c] = m0 + p12 + p34;
                            s[6 + c] = Avx512F.FusedMultiplyAdd(two, d34, d12);
                            s[12 + c] = Avx512F.FusedMultiplyAdd(four, p34, p12);
                            s[18 + c] = Avx512F.FusedMultiplyAdd(eight, d34, d12) + m5;
                        }
                        for (int i = 0; i < 4; i++)
                        {
                            var e = s + i * 6;
                            Vector512<float> p12 = e[1] + e[2], d12 = e[1] - e[2], p34 = e[3] + e[4], d34 = e[3] - e[4];
                            var y0 = e[0] + p12 + p34 + bv;
                            var y1 = Avx512F.FusedMultiplyAdd(two, d34, d12) + bv;
                            var y2 = Avx512F.FusedMultiplyAdd(four, p34, p12) + bv;
                            var y3 = Avx512F.FusedMultiplyAdd(eight, d34, d12) + e[5] + bv;
                            if (g.Relu) { y0 = Vector512.Max(y0, z); y1 = Vector512.Max(y1, z); y2 = Vector512.Max(y2, z); y3 = Vector512.Max(y3, z); }
                            float* p = yt + ((long)(4 * ty + i) * owp + 4 * tx) * 16;
                            Vector512.Store(y0, p); Vector512.Store(y1, p + 16); Vector512.Store(y2, p + 32); Vector512.Store(y3, p + 48);
                        }
                    }
                float* y0p = y + ((long)(img0 + LaneImages * gi) * g.K + ki) * ohw;
                for (int p0 = 0; p0 < ohw; p0 += 16)
                {
                    int cnt = Math.Min(16, ohw - p0);
                    int h = p0 / g.OW, w = p0 - h * g.OW;
                    for (int j = 0; j < 16; j++)
                    {
                        if (j < cnt)
                        {
                            r[j] = Vector512.Load(yt + ((long)h * owp + w) * 16);
                            if (++w == g.OW) { w = 0; h++; }
                        }
                        else r[j] = z;
                    }
                    Transpose16(r);
                    if (cnt == 16) for (int j = 0; j < 16; j++) Vector512.Store(r[j], y0p + j * ostr + p0);
                    else
                    {
                        var mk2 = Lanes(0, cnt);
                        for (int j = 0; j < 16; j++) Avx512F.MaskStore(y0p + j * ostr + p0, mk2, r[j]);
                    }
                }
            }
    }
}
