using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Perturb.Engine.Backends;

/// <summary>
/// Direct forward convolution (groups 1, AVX-512): the GEMM turned around so that nothing is gathered. The vector
/// lanes run over 32 output channels (two zmm of packed weights, [CRS][32] per block of 32 channels, packed once per weight version)
/// and the broadcasts over <see cref="DirectPixels"/> output pixels, each read straight from a zero-padded copy of
/// the sample at offset pixel + tap: pix[i] = oh*strideH*Wp + ow*strideW, tap(c, r, s) = c*Hp*Wp + r*dilH*Wp + s*dilW.
/// Stride and dilation only change the offsets, so a stride-2 convolution costs what a stride-1 one does, with no
/// im2col panel and no even-lane permutes (the implicit GEMM's packer). 14 pixels x 2 vectors = 28 accumulators; the
/// tile is stored through a [14][32] scratch, two 8-lane gathers per channel, with the bias and ReLU epilogue.
/// Samples run in groups whose padded copies (C x Hp x Wp each, side by side) stay in cache while every channel
/// block and pixel tile reads them; a tile may hold pixels of two samples of its group, so small outputs fill the tiles.
/// </summary>
public sealed partial class CpuBackend
{
    /// <summary>Output pixels per tile of the direct convolution.</summary>
    const int DirectPixels = 14;

    [ThreadStatic] static float[]? t_dirPad, t_dirTile;

    static bool DirectApplies(in ConvShape s) => s.Groups == 1 && Avx512F.IsSupported;

    unsafe void ConvForwardDirect(ConvShape s, Buf xb, Tensor w, Buf? bb, Buf yb, bool relu)
    {
        int crs = s.C * s.R * s.S, p = s.OutH * s.OutW;
        int hp = s.H + 2 * s.PadH, wp = s.W + 2 * s.PadW, plane = hp * wp, sampleLen = s.C * plane;
        int blocks = (s.K + 31) / 32, nb = DirectSamples(s, p, sampleLen);
        int span = nb * p, tiles = (span + DirectPixels - 1) / DirectPixels;
        // weights [block][crs][32], channels past K zero (cached per weight version); tap offsets into a padded sample
        var wpk = DirectWeights(s, w, false)[0];
        var taps = new int[crs];
        for (int c = 0, k = 0; c < s.C; c++)
            for (int r = 0; r < s.R; r++)
                for (int q = 0; q < s.S; q++, k++)
                    taps[k] = c * plane + r * s.DilH * wp + q * s.DilW;
        // pixel offsets over the nb samples of a group (padded copies side by side); the last tile repeats the
        // group's last pixel (its results are not stored)
        var pix = new int[tiles * DirectPixels];
        for (int i = 0; i < pix.Length; i++)
        {
            int e = Math.Min(i, span - 1), n = e / p, q = e - n * p, oh = q / s.OutW, ow = q - oh * s.OutW;
            pix[i] = n * sampleLen + oh * s.StrideH * wp + ow * s.StrideW;
        }
        // group g: samples [g*nb, g*nb + cnt); channel blocks [kb0, kb1)
        void Group(int g, float[] pad, int kb0, int kb1)
        {
            int n0 = g * nb, cnt = Math.Min(nb, s.N - n0), valid = cnt * p;
            var tile = t_dirTile ??= GC.AllocateUninitializedArray<float>(DirectPixels * 32, pinned: true);
            fixed (float* px = pad, pw = wpk, pt = tile)
            fixed (int* ptap = taps, ppix = pix)
                for (int kb = kb0; kb < kb1; kb++)
                {
                    float* wblk = pw + (long)kb * crs * 32;
                    int kn = Math.Min(32, s.K - kb * 32);
                    for (int t = 0; t * DirectPixels < valid; t++)
                    {
                        DirectKernel(crs, px, ptap, ppix + t * DirectPixels, wblk, pt);
                        // the tile's pixels [e0, e1) of the group, stored per sample
                        for (int e0 = t * DirectPixels, e1 = Math.Min(valid, e0 + DirectPixels); e0 < e1;)
                        {
                            int n = e0 / p, q = e0 - n * p, len = Math.Min(e1 - e0, p - q);
                            StoreDirectTile(pt + (e0 - t * DirectPixels) * 32, len, kn, yb, ((long)(n0 + n) * s.K + kb * 32) * p + q, p, bb, kb * 32, relu);
                            e0 += len;
                        }
                    }
                }
        }
        DirectGroups(s.N, nb, (long)nb * sampleLen, blocks,
            (n0, cnt, pad) => PadSamples(xb, s.C, s.H, s.W, s.PadH, s.PadW, hp, wp, n0, cnt, pad), Group);
    }

    /// <summary>
    /// Backward-data of any convolution of groups 1 by the same kernel, one stride phase at a time: the input pixels
    /// (ih, iw) = (a + strideH*i, b + strideW*j) of phase (a, b) receive only the taps r with a + padH - r*dilH
    /// divisible by strideH (and likewise q), each from dy at (i + dr, j + dq), dr = (a + padH - r*dilH) / strideH. So
    /// every phase is a small dense convolution of a padded copy of dy (vectors over 32 input channels, broadcasts over
    /// 14 phase pixels, the forward's kernel), with no col2im and every dx element written once (phases without taps
    /// written zero). Stride 2 with a 3x3 kernel: phases of 1, 2, 2 and 4 taps per output channel.
    /// </summary>
    unsafe void ConvBackwardDataDirect(ConvShape s, Buf dyb, Tensor w, Buf dxb)
    {
        int sh = s.StrideH, sw = s.StrideW, hw = s.H * s.W;
        var rowTaps = PhaseTaps(sh, s.PadH, s.DilH, s.R);
        var colTaps = PhaseTaps(sw, s.PadW, s.DilW, s.S);
        int PhaseLen(int a, int st, int size) => a < size ? (size - a + st - 1) / st : 0;
        (int pad, int len) Extent(List<(int Tap, int D)>[] taps, int st, int size, int outSize)
        {
            int lo = 0, hi = outSize;
            for (int a = 0; a < st; a++)
                foreach (var (_, d) in taps[a])
                {
                    lo = Math.Min(lo, d);
                    hi = Math.Max(hi, PhaseLen(a, st, size) - 1 + d + 1);
                }
            return (-lo, hi - lo);
        }
        var (top, hp) = Extent(rowTaps, sh, s.H, s.OutH);
        var (left, wp) = Extent(colTaps, sw, s.W, s.OutW);
        int plane = hp * wp, sampleLen = s.K * plane, cblocks = (s.C + 31) / 32;
        int nb = DirectSamples(s, Math.Max(1, PhaseLen(0, sh, s.H) * PhaseLen(0, sw, s.W)), sampleLen);
        // per phase: tap offsets into a padded dy sample, weights [cblock][taps][32], pixel offsets over a group
        var phases = new List<(int Ha, int Wb, int[] Taps, float[] W, int[] Pix, long[] Dst)>();
        var packs = DirectWeights(s, w, true);
        for (int a = 0; a < sh; a++)
            for (int b = 0; b < sw; b++)
            {
                int ha = PhaseLen(a, sh, s.H), wbn = PhaseLen(b, sw, s.W);
                if (ha == 0 || wbn == 0) continue;
                var rt = rowTaps[a]; var ct = colTaps[b];
                int nt = s.K * rt.Count * ct.Count;
                var taps = new int[nt];
                var wpk = packs[a * sw + b];
                for (int k = 0, t = 0; k < s.K; k++)
                    foreach (var (r, dr) in rt)
                        foreach (var (q, dq) in ct)
                            taps[t++] = k * plane + dr * wp + dq;
                int span = nb * ha * wbn, tiles = (span + DirectPixels - 1) / DirectPixels;
                var pix = new int[tiles * DirectPixels];
                var dst = new long[span];   // each pixel's element of channel 0 in dx, from the group's first sample
                for (int e = 0; e < pix.Length; e++)
                {
                    int v = Math.Min(e, span - 1), n = v / (ha * wbn), rem = v - n * ha * wbn, i = rem / wbn, j = rem - i * wbn;
                    pix[e] = n * sampleLen + (top + i) * wp + left + j;
                    if (e < span) dst[e] = (long)n * s.C * hw + (long)(a + sh * i) * s.W + b + sw * j;
                }
                phases.Add((ha, wbn, taps, wpk, pix, dst));
            }
        void Group(int g, float[] pad, int cb0, int cb1)
        {
            int n0 = g * nb, cnt = Math.Min(nb, s.N - n0);
            var tile = t_dirTile ??= GC.AllocateUninitializedArray<float>(DirectPixels * 32, pinned: true);
            foreach (var ph in phases)
            {
                int valid = cnt * ph.Ha * ph.Wb, nt = ph.Taps.Length;
                fixed (float* px = pad, pw = ph.W, pt = tile, pdx0 = dxb.A)
                fixed (int* ptap = ph.Taps, ppix = ph.Pix)
                {
                    float* pdx = pdx0 + dxb.Off;
                    for (int cb = cb0; cb < cb1; cb++)
                    {
                        int cn = Math.Min(32, s.C - cb * 32);
                        float* g0 = pdx + ((long)n0 * s.C + cb * 32) * hw;
                        for (int t = 0; t * DirectPixels < valid; t++)
                        {
                            if (nt > 0) DirectKernel(nt, px, ptap, ppix + t * DirectPixels, pw + (long)cb * nt * 32, pt);
                            else new Span<float>(pt, DirectPixels * 32).Clear();
                            for (int e = t * DirectPixels, e1 = Math.Min(valid, e + DirectPixels); e < e1; e++)
                            {
                                float* d = g0 + ph.Dst[e], src = pt + (e - t * DirectPixels) * 32;
                                for (int c = 0; c < cn; c++, d += hw) *d = src[c];
                            }
                        }
                    }
                }
            }
        }
        DirectGroups(s.N, nb, (long)nb * sampleLen, cblocks,
            (n0, cnt, pad) => PadSamples(dyb, s.K, s.OutH, s.OutW, top, left, hp, wp, n0, cnt, pad), Group);
    }

    /// <summary>
    /// Runs group(g, pad, b0, b1) for every group g of nb of the n samples, pad holding the group's padded copy
    /// (written by fill(first sample, count, pad)) and [b0, b1) the channel blocks to compute: the groups in parallel,
    /// each thread on its own copy, when there are groups for every thread; else one group after another on the
    /// calling thread's copy, its channel blocks split over the threads.
    /// </summary>
    void DirectGroups(int n, int nb, long padLen, int blocks, Action<int, int, float[]> fill, Action<int, float[], int, int> group)
    {
        int groups = (n + nb - 1) / nb;
        if (_threads > 1 && groups >= _threads)
        {
            Parallel.For(0, groups, _po, g =>
            {
                var pad = Grow(ref t_dirPad, padLen);
                fill(g * nb, Math.Min(nb, n - g * nb), pad);
                group(g, pad, 0, blocks);
            });
            return;
        }
        var own = Grow(ref t_dirPad, padLen);
        int parts = Math.Min(_threads, blocks);
        for (int g = 0; g < groups; g++)
        {
            fill(g * nb, Math.Min(nb, n - g * nb), own);
            if (parts <= 1) group(g, own, 0, blocks);
            else Parallel.For(0, parts, _po, i => group(g, own, blocks * i / parts, blocks * (i + 1) / parts));
        }
    }

    static readonly WeightForms<float[][]> s_direct = new();

    /// <summary>
    /// The direct path's packed weights of w for shape s, built once per weight version (<see cref="WeightForms{T}"/>):
    /// forward, one [block of 32 output channels][C*R*S][32] array; backward-data, one array per stride phase
    /// (a*strideW + b), [block of 32 input channels][taps of the phase, k-major][32].
    /// </summary>
    float[][] DirectWeights(in ConvShape s, Tensor w, bool backward) =>
        s_direct.Get(this, w, s, backward, ref _directBuilds, static (be, s, w, backward) => be.PackDirectWeights(s, w, backward));

    float[][] PackDirectWeights(in ConvShape s, Tensor w, bool backward)
    {
        var wb = B(w);
        var sh = s;
        float[][] packs;
        if (!backward)
        {
            int crs = s.C * s.R * s.S, blocks = (s.K + 31) / 32;
            var wpk = GC.AllocateUninitializedArray<float>(blocks * crs * 32, pinned: true);
            For(blocks, 32L * crs, kb =>
            {
                for (int j = 0; j < 32; j++)
                {
                    int ko = kb * 32 + j;
                    for (int k = 0; k < crs; k++) wpk[((long)kb * crs + k) * 32 + j] = ko < sh.K ? wb[(long)ko * crs + k] : 0f;
                }
            });
            packs = new[] { wpk };
        }
        else
        {
            var rowTaps = PhaseTaps(s.StrideH, s.PadH, s.DilH, s.R);
            var colTaps = PhaseTaps(s.StrideW, s.PadW, s.DilW, s.S);
            int cblocks = (s.C + 31) / 32;
            packs = new float[s.StrideH * s.StrideW][];
            for (int a = 0; a < s.StrideH; a++)
                for (int b = 0; b < s.StrideW; b++)
                {
                    var rt = rowTaps[a]; var ct = colTaps[b];
                    int nt = s.K * rt.Count * ct.Count;
                    var wpk = GC.AllocateUninitializedArray<float>(cblocks * nt * 32, pinned: true);
                    For(cblocks, 32L * nt, cb =>
                    {
                        for (int j = 0; j < 32; j++)
                        {
                            int c = cb * 32 + j, t = 0;
                            for (int k = 0; k < sh.K; k++)
                                foreach (var (r, _) in rt)
                                    foreach (var (q, _) in ct)
                                        wpk[((long)cb * nt + t++) * 32 + j] = c < sh.C ? wb[(((long)k * sh.C + c) * sh.R + r) * sh.S + q] : 0f;
                        }
                    });
                    packs[a * s.StrideW + b] = wpk;
                }
        }
        return packs;
    }

    long _directBuilds;
    /// <summary>How many direct-path weight packings this backend has built, for tests of the cache.</summary>
    internal long DirectBuilds => Interlocked.Read(ref _directBuilds);

    /// <summary>
    /// For each stride phase a of one axis: the taps r whose a + pad - r*dil is a multiple of the stride, with the
    /// dy offset (a + pad - r*dil) / stride.
    /// </summary>
    static List<(int Tap, int D)>[] PhaseTaps(int stride, int pad, int dil, int taps)
    {
        var lists = new List<(int, int)>[stride];
        for (int a = 0; a < stride; a++)
        {
            lists[a] = new();
            for (int r = 0; r < taps; r++)
            {
                int e = a + pad - r * dil;
                if (((e % stride) + stride) % stride == 0) lists[a].Add((r, e / stride));
            }
        }
        return lists;
    }

    /// <summary>
    /// Samples per group of the direct convolution: the count from 1 to 8 whose pixels fill the 14-pixel tiles best
    /// (7x7 outputs: 2 samples, 98 pixels in 7 tiles; 4x4: 7 samples, 112 in 8), while the group's padded copies
    /// stay within 512 KiB and there are groups for every thread.
    /// </summary>
    int DirectSamples(in ConvShape s, int p, int sampleLen)
    {
        int best = 1;
        double bestWaste = double.MaxValue;
        for (int nb = 1; nb <= 8; nb++)
        {
            if (nb > 1 && ((long)nb * sampleLen * 4 > (512 << 10) || nb > (s.N + _threads - 1) / _threads)) break;
            long span = (long)nb * p, used = (span + DirectPixels - 1) / DirectPixels * DirectPixels;
            double waste = (double)(used - span) / span;
            if (waste < bestWaste - 1e-9) { best = nb; bestWaste = waste; }
        }
        return best;
    }

    /// <summary>
    /// pad[j, c, i + top, w + left] = src[n0 + j, c, i, w] (ch channels of h x w) for j &lt; cnt, zero around, each
    /// padded plane hp x wp.
    /// </summary>
    static void PadSamples(Buf src, int ch, int h, int w, int top, int left, int hp, int wp, int n0, int cnt, float[] pad)
    {
        int hw = h * w, plane = hp * wp;
        for (int j = 0; j < cnt; j++)
            for (int c = 0; c < ch; c++)
            {
                var dst = pad.AsSpan((j * ch + c) * plane, plane);
                dst[..(top * wp)].Clear();
                dst[((top + h) * wp)..].Clear();
                var sp = src.Span(((long)(n0 + j) * ch + c) * hw, hw);
                for (int i = 0; i < h; i++)
                {
                    var row = dst.Slice((top + i) * wp, wp);
                    row[..left].Clear();
                    sp.Slice(i * w, w).CopyTo(row[left..]);
                    row[(left + w)..].Clear();
                }
            }
    }

    /// <summary>
    /// tile[i][0..32] = sum over k &lt; crs of x[pix[i] + taps[k]] * w[k][0..32] for the 14 pixels of one tile.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static unsafe void DirectKernel(int crs, float* x, int* taps, int* pix, float* w, float* tile)
    {
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector512<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        Vector512<float> c60 = default, c61 = default, c70 = default, c71 = default, c80 = default, c81 = default;
        Vector512<float> c90 = default, c91 = default, ca0 = default, ca1 = default, cb0 = default, cb1 = default;
        Vector512<float> cc0 = default, cc1 = default, cd0 = default, cd1 = default;
        // native-width offsets: no sign extension per broadcast (half of them live on the stack: 28 accumulators)
        nint p0 = pix[0], p1 = pix[1], p2 = pix[2], p3 = pix[3], p4 = pix[4], p5 = pix[5], p6 = pix[6];
        nint p7 = pix[7], p8 = pix[8], p9 = pix[9], pa = pix[10], pb = pix[11], pc = pix[12], pd = pix[13];
        for (int k = 0; k < crs; k++, w += 32)
        {
            float* xa = x + taps[k];
            var b0 = Vector512.Load(w);
            var b1 = Vector512.Load(w + 16);
            Vector512<float> a;
            a = Vector512.Create(xa[p0]); c00 = Avx512F.FusedMultiplyAdd(a, b0, c00); c01 = Avx512F.FusedMultiplyAdd(a, b1, c01);
            a = Vector512.Create(xa[p1]); c10 = Avx512F.FusedMultiplyAdd(a, b0, c10); c11 = Avx512F.FusedMultiplyAdd(a, b1, c11);
            a = Vector512.Create(xa[p2]); c20 = Avx512F.FusedMultiplyAdd(a, b0, c20); c21 = Avx512F.FusedMultiplyAdd(a, b1, c21);
            a = Vector512.Create(xa[p3]); c30 = Avx512F.FusedMultiplyAdd(a, b0, c30); c31 = Avx512F.FusedMultiplyAdd(a, b1, c31);
            a = Vector512.Create(xa[p4]); c40 = Avx512F.FusedMultiplyAdd(a, b0, c40); c41 = Avx512F.FusedMultiplyAdd(a, b1, c41);
            a = Vector512.Create(xa[p5]); c50 = Avx512F.FusedMultiplyAdd(a, b0, c50); c51 = Avx512F.FusedMultiplyAdd(a, b1, c51);
            a = Vector512.Create(xa[p6]); c60 = Avx512F.FusedMultiplyAdd(a, b0, c60); c61 = Avx512F.FusedMultiplyAdd(a, b1, c61);
            a = Vector512.Create(xa[p7]); c70 = Avx512F.FusedMultiplyAdd(a, b0, c70); c71 = Avx512F.FusedMultiplyAdd(a, b1, c71);
            a = Vector512.Create(xa[p8]); c80 = Avx512F.FusedMultiplyAdd(a, b0, c80); c81 = Avx512F.FusedMultiplyAdd(a, b1, c81);
            a = Vector512.Create(xa[p9]); c90 = Avx512F.FusedMultiplyAdd(a, b0, c90); c91 = Avx512F.FusedMultiplyAdd(a, b1, c91);
            a = Vector512.Create(xa[pa]); ca0 = Avx512F.FusedMultiplyAdd(a, b0, ca0); ca1 = Avx512F.FusedMultiplyAdd(a, b1, ca1);
            a = Vector512.Create(xa[pb]); cb0 = Avx512F.FusedMultiplyAdd(a, b0, cb0); cb1 = Avx512F.FusedMultiplyAdd(a, b1, cb1);
            a = Vector512.Create(xa[pc]); cc0 = Avx512F.FusedMultiplyAdd(a, b0, cc0); cc1 = Avx512F.FusedMultiplyAdd(a, b1, cc1);
            a = Vector512.Create(xa[pd]); cd0 = Avx512F.FusedMultiplyAdd(a, b0, cd0); cd1 = Avx512F.FusedMultiplyAdd(a, b1, cd1);
        }
        c00.Store(tile); c01.Store(tile + 16); c10.Store(tile + 32); c11.Store(tile + 48);
        c20.Store(tile + 64); c21.Store(tile + 80); c30.Store(tile + 96); c31.Store(tile + 112);
        c40.Store(tile + 128); c41.Store(tile + 144); c50.Store(tile + 160); c51.Store(tile + 176);
        c60.Store(tile + 192); c61.Store(tile + 208); c70.Store(tile + 224); c71.Store(tile + 240);
        c80.Store(tile + 256); c81.Store(tile + 272); c90.Store(tile + 288); c91.Store(tile + 304);
        ca0.Store(tile + 320); ca1.Store(tile + 336); cb0.Store(tile + 352); cb1.Store(tile + 368);
        cc0.Store(tile + 384); cc1.Store(tile + 400); cd0.Store(tile + 416); cd1.Store(tile + 432);
    }

    /// <summary>
    /// y[y0 + j*p + i] = epilogue(tile[i][j]) for the np pixels and kn channels of a tile: the 14 pixel values of a
    /// channel gathered in two halves (stride 32 in the tile), bias of channel k0 + j added, ReLU when relu.
    /// </summary>
    static unsafe void StoreDirectTile(float* tile, int np, int kn, Buf yb, long y0, int p, Buf? bb, int k0, bool relu)
    {
        var idxLo = Vector256.Create(0, 32, 64, 96, 128, 160, 192, 224);
        var idxHi = Vector256.Create(256, 288, 320, 352, 384, 416, 0, 0);
        var m = Lanes(0, np);
        var mLo = m.GetLower(); var mHi = m.GetUpper();
        fixed (float* py = yb.A)
        {
            float* y = py + yb.Off + y0;
            for (int j = 0; j < kn; j++, y += p)
            {
                var v = Vector512.Create(Avx2.GatherMaskVector256(Vector256<float>.Zero, tile + j, idxLo, mLo, 4),
                    Avx2.GatherMaskVector256(Vector256<float>.Zero, tile + j, idxHi, mHi, 4));
                if (bb is { } b) v += Vector512.Create(b[k0 + j]);
                if (relu) v = Vector512.Max(v, Vector512<float>.Zero);
                Avx512F.MaskStore(y, m, v);
            }
        }
    }
}
