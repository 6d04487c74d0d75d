using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Perturb.Engine.Backends;

/// <summary>
/// The transforms of Winograd F(4x4, 3x3) (AVX-512 only; the driver, weight transform and GEMMs are those of
/// F(2x2, 3x3) in CpuWinograd.cs). Each 4x4 output tile comes from the 6x6 input patch d under it:
///
///   Y = A^T [ (G g G^T) (.) (B^T d B) ] A      36 multiplies per 16 outputs (F(2x2): 16 per 4, direct: 9 per 1)
///
///   B^T = [4  0 -5  0 1 0]     A^T = [1 1  1 1  1 0]      G = [ 1/4     0    0 ]
///         [0 -4 -4  1 1 0]           [0 1 -1 2 -2 0]          [-1/6  -1/6 -1/6 ]
///         [0  4 -4 -1 1 0]           [0 1  1 4  4 0]          [-1/6   1/6 -1/6 ]
///         [0 -2 -1  2 1 0]           [0 1 -1 8 -8 1]          [ 1/24 1/12  1/6 ]
///         [0  2 -1 -2 1 0]                                    [ 1/24 -1/12 1/6 ]
///         [0  4  0 -5 0 1]                                    [ 0      0    1  ]
///
/// Lanes are tiles of one tile row (these transforms run batches under 16 and the images after the last full group
/// of 16; the groups run with the lanes over images, CpuWinogradImages.cs). Input: the six input rows under a segment of up to 7 tiles (32 columns, two
/// vectors, masked loads, zero outside x) get B^T's row stage as whole vectors; the column stage takes columns
/// 4tx + c of each as one two-source permute (lane j = tile j of the segment). Output: up to 8 tiles a segment, the
/// 36 M planes (lane = tile) through A^T's two stages, then the four 4-column pieces of each output row
/// interleaved by permutes into two vectors, stored masked to the output width.
/// Accuracy: the points +-2 make the transforms scale terms by up to 5 (input) and 8 (output), so the rounding error
/// is about ten times F(2x2)'s; tests check it against the double reference (WinogradTests).
/// </summary>
public sealed partial class CpuBackend
{
    static readonly Vector512<int> Idx4 = Vector512.Create(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);

    unsafe struct InRowF4 : ITileRow
    {
        public WgGeom G; public float* X, V; public int Ci; public long Stride;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Row(int img, int ty, int a, int b, long local0)
        {
            var z = Vector512<float>.Zero;
            float* xc = X + ((long)img * G.C + Ci) * G.H * G.W;
            var lo = stackalloc Vector512<float>[6];
            var hi = stackalloc Vector512<float>[6];
            var i0 = Idx4; var i1 = i0 + Vector512<int>.One; var i2 = i1 + Vector512<int>.One;
            var i3 = i2 + Vector512<int>.One; var i4 = i3 + Vector512<int>.One; var i5 = i4 + Vector512<int>.One;
            var four = Vector512.Create(4f); var five = Vector512.Create(5f); var two = Vector512.Create(2f);
            for (int s0 = a; s0 < b; s0 += 7)
            {
                int nt = Math.Min(7, b - s0), col0 = 4 * s0 - G.PW;
                var mLo = Lanes(-col0, G.W - col0);
                var mHi = Lanes(-col0 - 16, G.W - col0 - 16);
                for (int r = 0; r < 6; r++)
                {
                    int row = 4 * ty - G.PH + r;
                    if (row < 0 || row >= G.H) { lo[r] = z; hi[r] = z; continue; }
                    float* p = xc + row * G.W + col0;
                    lo[r] = Avx512F.MaskLoad(p, mLo, z);
                    hi[r] = Avx512F.MaskLoad(p + 16, mHi, z);
                }
                var m = Lanes(0, nt);
                float* o = V + local0 + s0;
                for (int h = 0; h < 2; h++)
                {
                    var d = h == 0 ? lo : hi;
                    // row stage B^T d, in place: rows 0..5
                    var d0 = d[0]; var d1 = d[1]; var d2 = d[2]; var d3 = d[3]; var d4 = d[4]; var d5 = d[5];
                    d[0] = Avx512F.FusedMultiplyAdd(four, d0, Avx512F.FusedMultiplyAddNegated(five, d2, d4));
                    d[1] = Avx512F.FusedMultiplyAddNegated(four, d1 + d2, d4 + d3);
                    d[2] = Avx512F.FusedMultiplyAdd(four, d1 - d2, d4 - d3);
                    d[3] = Avx512F.FusedMultiplyAdd(two, d3 - d1, d4 - d2);
                    d[4] = Avx512F.FusedMultiplyAddNegated(two, d3 - d1, d4 - d2);
                    d[5] = Avx512F.FusedMultiplyAdd(four, d1, Avx512F.FusedMultiplyAddNegated(five, d3, d5));
                }
                for (int i = 0; i < 6; i++)
                {
                    var ql = lo[i]; var qh = hi[i];
                    var e0 = Avx512F.PermuteVar16x32x2(ql, i0, qh);
                    var e1 = Avx512F.PermuteVar16x32x2(ql, i1, qh);
                    var e2 = Avx512F.PermuteVar16x32x2(ql, i2, qh);
                    var e3 = Avx512F.PermuteVar16x32x2(ql, i3, qh);
                    var e4 = Avx512F.PermuteVar16x32x2(ql, i4, qh);
                    var e5 = Avx512F.PermuteVar16x32x2(ql, i5, qh);
                    float* oi = o + i * 6 * Stride;
                    Avx512F.MaskStore(oi, m, Avx512F.FusedMultiplyAdd(four, e0, Avx512F.FusedMultiplyAddNegated(five, e2, e4)));
                    Avx512F.MaskStore(oi + Stride, m, Avx512F.FusedMultiplyAddNegated(four, e1 + e2, e4 + e3));
                    Avx512F.MaskStore(oi + 2 * Stride, m, Avx512F.FusedMultiplyAdd(four, e1 - e2, e4 - e3));
                    Avx512F.MaskStore(oi + 3 * Stride, m, Avx512F.FusedMultiplyAdd(two, e3 - e1, e4 - e2));
                    Avx512F.MaskStore(oi + 4 * Stride, m, Avx512F.FusedMultiplyAddNegated(two, e3 - e1, e4 - e2));
                    Avx512F.MaskStore(oi + 5 * Stride, m, Avx512F.FusedMultiplyAdd(four, e1, Avx512F.FusedMultiplyAddNegated(five, e3, e5)));
                }
            }
        }
    }

    unsafe struct OutRowF4 : ITileRow
    {
        public WgGeom G; public float* M, Y; public int Ki; public long Stride; public float Bias;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Row(int img, int ty, int a, int b, long local0)
        {
            var z = Vector512<float>.Zero;
            var s = stackalloc Vector512<float>[24];   // A^T M: s[i*6 + c], i < 4, c < 6
            var two = Vector512.Create(2f); var four = Vector512.Create(4f); var eight = Vector512.Create(8f);
            var bv = Vector512.Create(Bias);
            var iPair = Vector512.Create(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
            var iQuad = Vector512.Create(0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
            var iQuad1 = iQuad + Vector512.Create(8);
            float* yk = Y + ((long)img * G.K + Ki) * G.OH * G.OW;
            for (int s0 = a; s0 < b; s0 += 8)
            {
                int nt = Math.Min(8, b - s0);
                var m = Lanes(0, nt);
                float* q = M + local0 + s0;
                for (int c = 0; c < 6; c++)
                {
                    var m0 = Avx512F.MaskLoad(q + c * Stride, m, z);
                    var m1 = Avx512F.MaskLoad(q + (6 + c) * Stride, m, z);
                    var m2 = Avx512F.MaskLoad(q + (12 + c) * Stride, m, z);
                    var m3 = Avx512F.MaskLoad(q + (18 + c) * Stride, m, z);
                    var m4 = Avx512F.MaskLoad(q + (24 + c) * Stride, m, z);
                    var m5 = Avx512F.MaskLoad(q + (30 + c) * Stride, m, z);
                    Vector512<float> p12 = m1 + m2, d12 = m1 - m2, p34 = m3 + m4, d34 = m3 - m4;
                    s[c] = m0 + p12 + p34;
                    s[6 + c] = Avx512F.FusedMultiplyAdd(two, d34, d12);
                    s[12 + c] = Avx512F.FusedMultiplyAdd(four, p34, p12);
                    s[18 + c] = Avx512F.FusedMultiplyAdd(eight, d34, d12) + m5;
                }
                int c0 = 4 * s0, width = Math.Min(4 * nt, G.OW - c0);
                var mOut0 = Lanes(0, width);
                var mOut1 = Lanes(0, width - 16);
                for (int i = 0; i < 4; i++)
                {
                    int row = 4 * ty + i;
                    if (row >= G.OH) break;
                    var r = s + i * 6;
                    Vector512<float> p12 = r[1] + r[2], d12 = r[1] - r[2], p34 = r[3] + r[4], d34 = r[3] - r[4];
                    var y0 = r[0] + p12 + p34 + bv;
                    var y1 = Avx512F.FusedMultiplyAdd(two, d34, d12) + bv;
                    var y2 = Avx512F.FusedMultiplyAdd(four, p34, p12) + bv;
                    var y3 = Avx512F.FusedMultiplyAdd(eight, d34, d12) + r[5] + bv;
                    if (G.Relu) { y0 = Vector512.Max(y0, z); y1 = Vector512.Max(y1, z); y2 = Vector512.Max(y2, z); y3 = Vector512.Max(y3, z); }
                    // lane t of yj is column 4t + j: pairs (y0, y1), (y2, y3), then quads
                    var z01 = Avx512F.PermuteVar16x32x2(y0, iPair, y1);
                    var z23 = Avx512F.PermuteVar16x32x2(y2, iPair, y3);
                    float* p = yk + (long)row * G.OW + c0;
                    Avx512F.MaskStore(p, mOut0, Avx512F.PermuteVar16x32x2(z01, iQuad, z23));
                    if (width > 16) Avx512F.MaskStore(p + 16, mOut1, Avx512F.PermuteVar16x32x2(z01, iQuad1, z23));
                }
            }
        }
    }

    static unsafe void InputTransformF4(in WgGeom g, long t0, int tc, int ci, float* x, float* v)
    {
        var row = new InRowF4 { G = g, X = x, V = v + (long)ci * tc, Ci = ci, Stride = PlaneLen(g.C, tc) };
        TileRows(g, t0, tc, ref row);
    }

    static unsafe void OutputTransformF4(in WgGeom g, long t0, int tc, int ki, float* m, float bias, float* y)
    {
        var row = new OutRowF4 { G = g, M = m + (long)ki * tc, Y = y, Ki = ki, Stride = PlaneLen(g.K, tc), Bias = bias };
        TileRows(g, t0, tc, ref row);
    }
}
