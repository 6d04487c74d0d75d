using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Perturb.Engine.Backends;

/// <summary>
/// Packed, cache-blocked, register-blocked SGEMM in the GotoBLAS/BLIS style:
///
///   C[m x n] = alpha * op(A)[m x k] * op(B)[k x n] + beta * C        (row-major, leading dimensions lda, ldb, ldc)
///
///   for jc in n step NC:                      B block  [KC x NC] packed into NR-column micro-panels (stays in L2)
///     for pc in k step KC:
///       for ic in m step MC:                  A block  [MC x KC] packed into MR-row micro-panels, scaled by alpha
///         for ir in MC step MR:               A micro-panel [MR x KC] stays in L1
///           for jr in NC step NR:             micro-kernel: MR x NR accumulators in registers, kc rank-1 updates
///
/// Packed A micro-panel layout: [kc][MR] (row index fastest); packed B micro-panel: [kc][NR]. Rows and columns past
/// the matrix edge are packed as zeros and the kernel writes those tiles to a scratch tile that is then merged.
/// beta is applied on the first KC block only (later blocks accumulate); beta == 0 never reads C.
/// Threads: the top-level call splits the larger of m and n into one contiguous MR/NR-aligned slice per thread.
/// </summary>
public sealed partial class CpuBackend
{
    internal const int MR = 12, NR = 32, KC = 256, MC = MR * 32, NC = NR * 16;
    /// <summary>Below this many flops a GEMM runs on the calling thread.</summary>
    const long GemmParallelFlops = 1L << 22;

    /// <summary>Per-thread packing buffers (64-byte aligned, grown on demand, kept for the thread's lifetime).</summary>
    sealed unsafe class GemmScratch
    {
        public float* PackA = (float*)NativeMemory.AlignedAlloc((nuint)(MC * KC * sizeof(float)), 64);
        public float* PackB = (float*)NativeMemory.AlignedAlloc((nuint)(KC * NC * sizeof(float)), 64);
        public float* Tile = (float*)NativeMemory.AlignedAlloc((nuint)(MR * NR * sizeof(float)), 64);
        ~GemmScratch() { NativeMemory.AlignedFree(PackA); NativeMemory.AlignedFree(PackB); NativeMemory.AlignedFree(Tile); }
    }

    [ThreadStatic] static GemmScratch? t_gemm;

    protected override void GemmCore(bool transA, bool transB, int m, int n, int k, float alpha, Tensor a, Tensor b, float beta, Tensor c)
    {
        var ab = B(a);
        var bb = B(b);
        var cb = B(c);
        GemmParallel(transA, transB, m, n, k, alpha, ab, transA ? m : k, bb, transB ? k : n, beta, cb, n, true);
    }

    /// <summary>GEMM on (storage, offset) operands, split over the threads when <paramref name="threads"/> and large.</summary>
    unsafe void GemmParallel(bool ta, bool tb, int m, int n, int k, float alpha, Buf a, int lda, Buf b, int ldb, float beta, Buf c, int ldc, bool threads,
        PackedA packed = default, BSource? bsrc = null)
    {
        int parts = threads ? (int)Math.Min(_threads, 2L * m * n * k / GemmParallelFlops) : 1;
        bool splitN = n >= m;
        int units = splitN ? (n + NR - 1) / NR : (m + MR - 1) / MR;
        parts = Math.Min(parts, units);
        if (parts <= 1)
        {
            fixed (float* pa = a.A, pb = b.A, pc = c.A)
                GemmST(ta, tb, m, n, k, alpha, pa + a.Off, lda, pb + b.Off, ldb, beta, pc + c.Off, ldc, packed, bsrc);
            return;
        }
        Parallel.For(0, parts, _po, t =>
        {
            int u0 = (int)((long)units * t / parts), u1 = (int)((long)units * (t + 1) / parts);
            fixed (float* pa0 = a.A, pb0 = b.A, pc0 = c.A)
            {
                float* pa = pa0 + a.Off, pb = pb0 + b.Off, pc = pc0 + c.Off;
                if (splitN)
                {
                    int j0 = u0 * NR, j1 = Math.Min(n, u1 * NR);
                    GemmST(ta, tb, m, j1 - j0, k, alpha, pa, lda, pb + (tb ? (long)j0 * ldb : j0), ldb, beta, pc + j0, ldc, packed, bsrc, j0);
                }
                else
                {
                    int i0 = u0 * MR, i1 = Math.Min(m, u1 * MR);
                    GemmST(ta, tb, i1 - i0, n, k, alpha, pa + (ta ? i0 : (long)i0 * lda), lda, pb, ldb, beta, pc + (long)i0 * ldc, ldc,
                        packed with { Row0 = packed.Row0 + i0 }, bsrc);
                }
            }
        });
    }

    /// <summary>
    /// alpha*op(A) packed once for several GEMMs that share it (a convolution's weights across samples): for each KC
    /// block of k, MPad = m rounded up to MR rows of micro-panels, block b's panel for row i at P + b*MPad*KC + i*kc.
    /// Row0 is the first row a (row-split) sub-GEMM uses. P == 0: none, the GEMM packs A itself.
    /// </summary>
    internal readonly record struct PackedA(nint P, int MPad, int Row0);

    /// <summary>Length in floats of a <see cref="PackedA"/> buffer for an m x k operand.</summary>
    internal static long PackedALength(int m, int k) => (long)RoundUp(m, MR) * RoundUp(Math.Max(k, 1), KC);

    static int RoundUp(int v, int q) => (v + q - 1) / q * q;

    /// <summary>Packs alpha*op(A)[m x k] into the <see cref="PackedA"/> layout at dst.</summary>
    internal static unsafe PackedA PackAll(bool ta, float* a, int lda, int m, int k, float alpha, float* dst)
    {
        int mPad = RoundUp(m, MR);
        for (int pc = 0; pc < k; pc += KC)
            PackA(ta, a, lda, 0, pc, m, Math.Min(KC, k - pc), alpha, dst + (long)(pc / KC) * mPad * KC);
        return new PackedA((nint)dst, mPad, 0);
    }

    /// <summary>
    /// Packs blocks of a GEMM's B operand that is not a matrix in memory (a convolution's input, im2col done while
    /// packing): Pack writes op(B)[pc..pc+kc, jc..jc+nc] as <see cref="PackB"/> would, NR-column micro-panels [kc][NR].
    /// </summary>
    internal abstract unsafe class BSource
    {
        public abstract void Pack(int pc, int jc, int kc, int nc, float* dst);
    }

    /// <summary>
    /// Single-threaded packed GEMM. op(A)[i,p] = ta ? a[p*lda+i] : a[i*lda+p]; op(B)[p,j] = tb ? b[j*ldb+p] : b[p*ldb+j].
    /// With <paramref name="packed"/> set, A (and alpha) come from it and a is not read. With <paramref name="bsrc"/>
    /// set, B comes from it (its columns from <paramref name="bcol0"/> on) and b is not read. With
    /// <paramref name="bPanels"/> set, B is already packed there as NR-column panels of all k rows ([k][NR] each,
    /// panel j at bPanels + j * panelStride; columns past n may hold anything) and neither b nor bsrc is read.
    /// </summary>
    internal static unsafe void GemmST(bool ta, bool tb, int m, int n, int k, float alpha, float* a, int lda, float* b, int ldb, float beta, float* c, int ldc,
        PackedA packed = default, BSource? bsrc = null, int bcol0 = 0, float* bPanels = null, long panelStride = 0)
    {
        if (m <= 0 || n <= 0) return;
        if (k == 0 || alpha == 0f)
        {
            for (int i = 0; i < m; i++)
            {
                var row = new Span<float>(c + (long)i * ldc, n);
                if (beta == 0f) row.Clear();
                else if (beta != 1f) System.Numerics.Tensors.TensorPrimitives.Multiply(row, beta, row);
            }
            return;
        }
        var ws = t_gemm ??= new GemmScratch();
        float* packA = ws.PackA, packB = ws.PackB, tile = ws.Tile;
        for (int jc = 0; jc < n; jc += NC)
        {
            int nc = Math.Min(NC, n - jc);
            for (int pc = 0; pc < k; pc += KC)
            {
                int kc = Math.Min(KC, k - pc);
                float bet = pc == 0 ? beta : 1f;
                long bStep = (long)NR * kc;
                float* bBlock = packB;
                if (bPanels != null) { bBlock = bPanels + jc / NR * panelStride + (long)pc * NR; bStep = panelStride; }
                else if (bsrc != null) bsrc.Pack(pc, bcol0 + jc, kc, nc, packB);
                else PackB(tb, b, ldb, pc, jc, kc, nc, packB);
                for (int ic = 0; ic < m; ic += MC)
                {
                    int mc = Math.Min(MC, m - ic);
                    float* aBlock = packA;
                    if (packed.P != 0) aBlock = (float*)packed.P + (long)(pc / KC) * packed.MPad * KC + (long)(packed.Row0 + ic) * kc;
                    else PackA(ta, a, lda, ic, pc, mc, kc, alpha, packA);
                    for (int ir = 0; ir < mc; ir += MR)
                    {
                        int mr = Math.Min(MR, mc - ir);
                        float* ap = aBlock + (long)ir * kc;
                        for (int jr = 0; jr < nc; jr += NR)
                        {
                            int nr = Math.Min(NR, nc - jr);
                            float* bp = bBlock + jr / NR * bStep;
                            float* cp = c + (long)(ic + ir) * ldc + jc + jr;
                            if (mr == MR && nr == NR) Kernel(kc, ap, bp, cp, ldc, bet);
                            else
                            {
                                Kernel(kc, ap, bp, tile, NR, 0f);
                                MergeTile(tile, cp, ldc, mr, nr, bet);
                            }
                        }
                    }
                }
            }
        }
    }

    /// <summary>c[r, j] = beta*c[r, j] + tile[r, j] for the valid mr x nr corner of an edge tile.</summary>
    static unsafe void MergeTile(float* tile, float* c, int ldc, int mr, int nr, float beta)
    {
        for (int r = 0; r < mr; r++)
        {
            float* t = tile + r * NR, cr = c + (long)r * ldc;
            if (beta == 0f) for (int j = 0; j < nr; j++) cr[j] = t[j];
            else for (int j = 0; j < nr; j++) cr[j] = beta * cr[j] + t[j];
        }
    }

    /// <summary>Packs alpha * op(A)[ic..ic+mc, pc..pc+kc] into MR-row micro-panels [kc][MR], zero-padding the last.</summary>
    static unsafe void PackA(bool ta, float* a, int lda, int ic, int pc, int mc, int kc, float alpha, float* dst)
    {
        for (int ir = 0; ir < mc; ir += MR)
        {
            int mr = Math.Min(MR, mc - ir);
            float* d = dst + (long)ir * kc;
            if (ta)
            {
                // op(A)[i, p] = a[p*lda + i]: contiguous along the rows of the micro-panel.
                float* s = a + (long)pc * lda + ic + ir;
                for (int p = 0; p < kc; p++, s += lda, d += MR)
                {
                    int r = 0;
                    for (; r < mr; r++) d[r] = alpha * s[r];
                    for (; r < MR; r++) d[r] = 0f;
                }
            }
            else
            {
                // op(A)[i, p] = a[i*lda + p]: contiguous along k; write each row strided by MR.
                for (int r = 0; r < mr; r++)
                {
                    float* s = a + (long)(ic + ir + r) * lda + pc;
                    for (int p = 0; p < kc; p++) d[p * MR + r] = alpha * s[p];
                }
                for (int r = mr; r < MR; r++)
                    for (int p = 0; p < kc; p++) d[p * MR + r] = 0f;
            }
        }
    }

    /// <summary>Packs op(B)[pc..pc+kc, jc..jc+nc] into NR-column micro-panels [kc][NR], zero-padding the last.</summary>
    static unsafe void PackB(bool tb, float* b, int ldb, int pc, int jc, int kc, int nc, float* dst)
    {
        for (int jr = 0; jr < nc; jr += NR)
        {
            int nr = Math.Min(NR, nc - jr);
            float* d = dst + (long)jr * kc;
            if (!tb)
            {
                // op(B)[p, j] = b[p*ldb + j]: a panel row is NR contiguous floats.
                float* s = b + (long)pc * ldb + jc + jr;
                if (nr == NR && Vector512.IsHardwareAccelerated)
                {
                    for (int p = 0; p < kc; p++, s += ldb, d += NR)
                    {
                        Vector512.Store(Vector512.Load(s), d);
                        Vector512.Store(Vector512.Load(s + 16), d + 16);
                    }
                }
                else
                {
                    for (int p = 0; p < kc; p++, s += ldb, d += NR)
                    {
                        int j = 0;
                        for (; j < nr; j++) d[j] = s[j];
                        for (; j < NR; j++) d[j] = 0f;
                    }
                }
            }
            else
            {
                // op(B)[p, j] = b[j*ldb + p]: contiguous along k; write each column strided by NR.
                for (int j = 0; j < nr; j++)
                {
                    float* s = b + (long)(jc + jr + j) * ldb + pc;
                    for (int p = 0; p < kc; p++) d[p * NR + j] = s[p];
                }
                for (int j = nr; j < NR; j++)
                    for (int p = 0; p < kc; p++) d[p * NR + j] = 0f;
            }
        }
    }

    static unsafe void Kernel(int kc, float* a, float* b, float* c, int ldc, float beta)
    {
        if (Avx512F.IsSupported) Kernel512(kc, a, b, c, ldc, beta);
        else KernelPortable(kc, a, b, c, ldc, beta);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static unsafe void Store512(float* c, Vector512<float> v0, Vector512<float> v1, float beta)
    {
        if (beta == 0f) { Vector512.Store(v0, c); Vector512.Store(v1, c + 16); }
        else if (beta == 1f) { Vector512.Store(Vector512.Load(c) + v0, c); Vector512.Store(Vector512.Load(c + 16) + v1, c + 16); }
        else
        {
            var bv = Vector512.Create(beta);
            Vector512.Store(Vector512.Load(c) * bv + v0, c);
            Vector512.Store(Vector512.Load(c + 16) * bv + v1, c + 16);
        }
    }

    /// <summary>The AVX-512 micro-kernel: C[12 x 32] (ldc) = beta*C + sum over kc of packed A (MR per step) x packed B (32 per step).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static unsafe void Kernel512(int kc, float* a, float* b, float* c, int ldc, float beta)
    {
        Vector512<float> c00 = default, c01 = default;
        Vector512<float> c10 = default, c11 = default;
        Vector512<float> c20 = default, c21 = default;
        Vector512<float> c30 = default, c31 = default;
        Vector512<float> c40 = default, c41 = default;
        Vector512<float> c50 = default, c51 = default;
        Vector512<float> c60 = default, c61 = default;
        Vector512<float> c70 = default, c71 = default;
        Vector512<float> c80 = default, c81 = default;
        Vector512<float> c90 = default, c91 = default;
        Vector512<float> c100 = default, c101 = default;
        Vector512<float> c110 = default, c111 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            Vector512<float> av;
            av = Vector512.Create(a[0]); c00 = Avx512F.FusedMultiplyAdd(av, b0, c00); c01 = Avx512F.FusedMultiplyAdd(av, b1, c01);
            av = Vector512.Create(a[1]); c10 = Avx512F.FusedMultiplyAdd(av, b0, c10); c11 = Avx512F.FusedMultiplyAdd(av, b1, c11);
            av = Vector512.Create(a[2]); c20 = Avx512F.FusedMultiplyAdd(av, b0, c20); c21 = Avx512F.FusedMultiplyAdd(av, b1, c21);
            av = Vector512.Create(a[3]); c30 = Avx512F.FusedMultiplyAdd(av, b0, c30); c31 = Avx512F.FusedMultiplyAdd(av, b1, c31);
            av = Vector512.Create(a[4]); c40 = Avx512F.FusedMultiplyAdd(av, b0, c40); c41 = Avx512F.FusedMultiplyAdd(av, b1, c41);
            av = Vector512.Create(a[5]); c50 = Avx512F.FusedMultiplyAdd(av, b0, c50); c51 = Avx512F.FusedMultiplyAdd(av, b1, c51);
            av = Vector512.Create(a[6]); c60 = Avx512F.FusedMultiplyAdd(av, b0, c60); c61 = Avx512F.FusedMultiplyAdd(av, b1, c61);
            av = Vector512.Create(a[7]); c70 = Avx512F.FusedMultiplyAdd(av, b0, c70); c71 = Avx512F.FusedMultiplyAdd(av, b1, c71);
            av = Vector512.Create(a[8]); c80 = Avx512F.FusedMultiplyAdd(av, b0, c80); c81 = Avx512F.FusedMultiplyAdd(av, b1, c81);
            av = Vector512.Create(a[9]); c90 = Avx512F.FusedMultiplyAdd(av, b0, c90); c91 = Avx512F.FusedMultiplyAdd(av, b1, c91);
            av = Vector512.Create(a[10]); c100 = Avx512F.FusedMultiplyAdd(av, b0, c100); c101 = Avx512F.FusedMultiplyAdd(av, b1, c101);
            av = Vector512.Create(a[11]); c110 = Avx512F.FusedMultiplyAdd(av, b0, c110); c111 = Avx512F.FusedMultiplyAdd(av, b1, c111);
            a += 12; b += 32;
        }
        Store512(c + 0 * ldc, c00, c01, beta);
        Store512(c + 1 * ldc, c10, c11, beta);
        Store512(c + 2 * ldc, c20, c21, beta);
        Store512(c + 3 * ldc, c30, c31, beta);
        Store512(c + 4 * ldc, c40, c41, beta);
        Store512(c + 5 * ldc, c50, c51, beta);
        Store512(c + 6 * ldc, c60, c61, beta);
        Store512(c + 7 * ldc, c70, c71, beta);
        Store512(c + 8 * ldc, c80, c81, beta);
        Store512(c + 9 * ldc, c90, c91, beta);
        Store512(c + 10 * ldc, c100, c101, beta);
        Store512(c + 11 * ldc, c110, c111, beta);
    }

    /// <summary>
    /// Fallback micro-kernel without AVX-512: Vector256 (hardware or software), two rows x 32 columns at a time,
    /// eight accumulators, so it also fits the sixteen registers of AVX2.
    /// </summary>
    static unsafe void KernelPortable(int kc, float* a, float* b, float* c, int ldc, float beta)
    {
        for (int r = 0; r < MR; r += 2)
        {
            Vector256<float> x0 = default, x1 = default, x2 = default, x3 = default;
            Vector256<float> y0 = default, y1 = default, y2 = default, y3 = default;
            float* ap = a + r, bp = b;
            for (int p = 0; p < kc; p++, ap += MR, bp += NR)
            {
                var b0 = Vector256.Load(bp); var b1 = Vector256.Load(bp + 8);
                var b2 = Vector256.Load(bp + 16); var b3 = Vector256.Load(bp + 24);
                var u = Vector256.Create(ap[0]); var v = Vector256.Create(ap[1]);
                x0 += u * b0; x1 += u * b1; x2 += u * b2; x3 += u * b3;
                y0 += v * b0; y1 += v * b1; y2 += v * b2; y3 += v * b3;
            }
            Store256(c + (long)r * ldc, x0, x1, x2, x3, beta);
            Store256(c + (long)(r + 1) * ldc, y0, y1, y2, y3, beta);
        }
    }

    static unsafe void Store256(float* c, Vector256<float> v0, Vector256<float> v1, Vector256<float> v2, Vector256<float> v3, float beta)
    {
        Span<Vector256<float>> v = [v0, v1, v2, v3];
        for (int q = 0; q < 4; q++)
        {
            float* cq = c + 8 * q;
            var o = beta == 0f ? v[q] : Vector256.Load(cq) * Vector256.Create(beta) + v[q];
            Vector256.Store(o, cq);
        }
    }
}
