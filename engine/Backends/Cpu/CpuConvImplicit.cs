using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Perturb.Engine.Backends;

/// <summary>
/// Forward convolution as an implicit GEMM: the sample-blocked product Y [K, nb*P] = W [K, CRS] x col [CRS, nb*P]
/// of <see cref="ConvForwardBlocked"/>, but the GEMM's B packer gathers col's entries straight from x into its
/// NR-column micro-panels (<see cref="Im2ColSource"/>), so the column matrix is never written out and read back.
/// Per packed row (c, r, s) a panel's 32 columns are runs of output columns that share (sample, output row):
/// each run reads input row ih = oh*strideH - padH + r*dilH at columns ow*strideW + s*dilW - padW, by masked
/// loads (zero outside the row, so padding costs nothing) and, for stride 2, an even-lane permute.
/// </summary>
public sealed partial class CpuBackend
{
    /// <summary>col [CRS, cnt*P] of cnt samples from x (sample 0 at X), packed on demand for GemmST.</summary>
    sealed unsafe class Im2ColSource : BSource
    {
        readonly ConvShape _s;
        readonly float* _x;
        readonly int _p, _rs;

        public Im2ColSource(in ConvShape s, float* x) { _s = s; _x = x; _p = s.OutH * s.OutW; _rs = s.R * s.S; }

        public override void Pack(int pc, int jc, int kc, int nc, float* dst)
        {
            var s = _s;
            int ow_ = s.OutW;
            // a run: columns [dOff, dOff + len) of the panel are output row oh, columns ow0.. of sample n; its input
            // rows start at xoff + (c*H + offH)*W for channel c and kernel row offset offH (ih = ih0 + offH)
            var xoff = stackalloc long[NR]; var ih0 = stackalloc int[NR]; var col0 = stackalloc int[NR];
            var rlen = stackalloc int[NR]; var rd = stackalloc int[NR];
            // Stride 2 with three undilated taps a row: the taps q = 0, 1, 2 of one (c, r) are consecutive panel rows
            // and read the same input row at offsets 0, 1, 2, so one pair of loads serves all three (even lanes,
            // odd lanes, even lanes one further).
            bool triple = Avx512F.IsSupported && s.StrideW == 2 && s.DilW == 1 && s.S == 3;
            for (int jr = 0; jr < nc; jr += NR)
            {
                int nr = Math.Min(NR, nc - jr), runs = 0;
                for (int j = jc + jr, end = j + nr; j < end; runs++)
                {
                    int n = j / _p, pos = j - n * _p, oh = pos / ow_, ow = pos - oh * ow_;
                    int len = Math.Min(ow_ - ow, end - j);
                    ih0[runs] = oh * s.StrideH; xoff[runs] = ((long)n * s.C * s.H + ih0[runs]) * s.W;
                    col0[runs] = ow * s.StrideW - s.PadW; rlen[runs] = len; rd[runs] = j - (jc + jr);
                    j += len;
                }
                float* d = dst + (long)jr * kc;
                int c = pc / _rs, tap = pc - c * _rs, r = tap / s.S, q = tap - r * s.S;
                for (int pp = 0; pp < kc;)
                {
                    int offH = r * s.DilH - s.PadH;
                    long rowOff = ((long)c * s.H + offH) * s.W;
                    int rows = triple && q == 0 && pp + 3 <= kc ? 3 : 1;
                    if (nr < NR) for (int i = 0; i < rows; i++) new Span<float>(d + i * NR + nr, NR - nr).Clear();
                    for (int u = 0; u < runs; u++)
                    {
                        float* dd = d + rd[u];
                        int ih = ih0[u] + offH;
                        if (ih < 0 || ih >= s.H)
                        {
                            for (int i = 0; i < rows; i++) new Span<float>(dd + i * NR, rlen[u]).Clear();
                            continue;
                        }
                        float* xr = _x + xoff[u] + rowOff;
                        if (rows == 3) GatherRow3(xr, col0[u], rlen[u], s.W, dd);
                        else GatherRow(xr, col0[u] + q * s.DilW, s.StrideW, rlen[u], s.W, dd);
                    }
                    pp += rows; d += rows * NR;
                    if ((q += rows) >= s.S) { q = 0; if (++r == s.R) { r = 0; c++; } }
                }
            }
        }
    }

    /// <summary>
    /// The three stride-2 taps of one input row: d[q*NR + i] = xr[b + q + 2i] for q = 0, 1, 2 and i &lt; len, 0 where
    /// the index lies outside [0, w). AVX-512 only.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static unsafe void GatherRow3(float* xr, int b, int len, int w, float* d)
    {
        var z = Vector512<float>.Zero;
        var even = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        var odd = even + Vector512<int>.One;
        var even2 = even + Vector512.Create(2);   // lane 15 would be index 32: past the pair, taken from a third load
        for (int i0 = 0; i0 < len; i0 += 16)
        {
            int src = b + 2 * i0;
            var mOut = Lanes(0, len - i0);
            var lo = Avx512F.MaskLoad(xr + src, Lanes(-src, w - src), z);
            var hi = Avx512F.MaskLoad(xr + src + 16, Lanes(-src - 16, w - src - 16), z);
            Avx512F.MaskStore(d + i0, mOut, Avx512F.PermuteVar16x32x2(lo, even, hi));
            Avx512F.MaskStore(d + NR + i0, mOut, Avx512F.PermuteVar16x32x2(lo, odd, hi));
            if (len - i0 < 16) Avx512F.MaskStore(d + 2 * NR + i0, mOut, Avx512F.PermuteVar16x32x2(lo, even2, hi));
            else
            {
                var lo2 = Avx512F.MaskLoad(xr + src + 2, Lanes(-src - 2, w - src - 2), z);
                var hi2 = Avx512F.MaskLoad(xr + src + 18, Lanes(-src - 18, w - src - 18), z);
                Avx512F.MaskStore(d + 2 * NR + i0, mOut, Avx512F.PermuteVar16x32x2(lo2, even, hi2));
            }
        }
    }

    /// <summary>d[i] = xr[b + i*stride] for i &lt; len, 0 where b + i*stride lies outside [0, w).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static unsafe void GatherRow(float* xr, int b, int stride, int len, int w, float* d)
    {
        if (Avx512F.IsSupported && stride <= 2)
        {
            var z = Vector512<float>.Zero;
            var even = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            for (int i0 = 0; i0 < len; i0 += 16)
            {
                int src = b + stride * i0;   // row index of lane 0
                var mOut = Lanes(0, len - i0);
                if (stride == 1)
                    Avx512F.MaskStore(d + i0, mOut, Avx512F.MaskLoad(xr + src, Lanes(-src, w - src), z));
                else
                {
                    var lo = Avx512F.MaskLoad(xr + src, Lanes(-src, w - src), z);
                    var hi = Avx512F.MaskLoad(xr + src + 16, Lanes(-src - 16, w - src - 16), z);
                    Avx512F.MaskStore(d + i0, mOut, Avx512F.PermuteVar16x32x2(lo, even, hi));
                }
            }
            return;
        }
        for (int i = 0; i < len; i++)
        {
            int iw = b + i * stride;
            d[i] = iw >= 0 && iw < w ? xr[iw] : 0f;
        }
    }
}
