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
            // a run: columns [dOff, dOff + len) of the panel are output row oh, columns ow0.. of sample n
            var rn = stackalloc int[NR]; var roh = stackalloc int[NR]; var row0 = stackalloc int[NR];
            var rlen = stackalloc int[NR]; var rd = stackalloc int[NR];
            for (int jr = 0; jr < nc; jr += NR)
            {
                int nr = Math.Min(NR, nc - jr), runs = 0;
                for (int j = jc + jr, end = j + nr; j < end; runs++)
                {
                    int n = j / _p, pos = j - n * _p, oh = pos / ow_, ow = pos - oh * ow_;
                    int len = Math.Min(ow_ - ow, end - j);
                    rn[runs] = n; roh[runs] = oh; row0[runs] = ow; rlen[runs] = len; rd[runs] = j - (jc + jr);
                    j += len;
                }
                float* d = dst + (long)jr * kc;
                for (int pp = 0; pp < kc; pp++, d += NR)
                {
                    int prow = pc + pp, c = prow / _rs, tap = prow - c * _rs, r = tap / s.S, q = tap - r * s.S;
                    if (nr < NR) new Span<float>(d + nr, NR - nr).Clear();
                    int offW = q * s.DilW - s.PadW, offH = r * s.DilH - s.PadH;
                    for (int u = 0; u < runs; u++)
                    {
                        float* dd = d + rd[u];
                        int ih = roh[u] * s.StrideH + offH;
                        if (ih < 0 || ih >= s.H) { new Span<float>(dd, rlen[u]).Clear(); continue; }
                        float* xr = _x + (((long)rn[u] * s.C + c) * s.H + ih) * s.W;
                        GatherRow(xr, row0[u] * s.StrideW + offW, s.StrideW, rlen[u], s.W, dd);
                    }
                }
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
