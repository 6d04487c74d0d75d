using ILGPU;

namespace Perturb.Kernels;

/// <summary>
/// Arguments of one (strided, batched) matrix product. op(A)[i, p] = a[z*ABatch + i*As0 + p*As1],
/// op(B)[p, j] = b[z*BBatch + p*Bs0 + j*Bs1], C[i, j] = c[z*CBatch + i*Ldc + j], z = batch index (Grid.IdxZ).
/// A transposed operand is just swapped strides, so one kernel serves all four transpose cases.
/// </summary>
public struct GemmArgs
{
    public int M, N, K;
    public int As0, As1, Bs0, Bs1, Ldc;
    public int ABatch, BBatch, CBatch;
    public float Alpha, Beta;
}

public static class Gemm
{
    /// <summary>Output tile edge (rows and columns of C per group).</summary>
    public const int Tile = 64;
    /// <summary>Depth of the K slice staged in shared memory per iteration.</summary>
    public const int TileK = 16;
    /// <summary>Threads per group edge: the group is Threads x Threads, each thread owning a 4x4 micro-tile.</summary>
    public const int Threads = 16;

    // C[i,j] = alpha * sum_p op(A)[i,p] * op(B)[p,j] + beta * C[i,j]   (beta == 0: C's old value is never read)
    //
    // Group (16,16) computes the 64x64 tile starting at row Grid.IdxY*64, column Grid.IdxX*64 of batch Grid.IdxZ.
    // Per 16-deep K slice, the 256 threads stage As[p][i] (16 x 64) and Bs[p][j] (16 x 64) in shared memory, zero-padded
    // outside m/n/k. Thread (tx, ty) owns rows ty + 16*u and columns tx + 16*v (u, v < 4), interleaved so neighbouring
    // threads touch neighbouring shared words; its 16 partial sums stay in registers.
    public static void TiledGemm(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, GemmArgs g)
    {
        var As = SharedMemory.Allocate<float>(TileK * Tile);
        var Bs = SharedMemory.Allocate<float>(TileK * Tile);
        int tx = Group.IdxX, ty = Group.IdxY, tid = ty * Threads + tx;
        int row0 = Grid.IdxY * Tile, col0 = Grid.IdxX * Tile, z = Grid.IdxZ;
        long aBase = (long)z * g.ABatch, bBase = (long)z * g.BBatch, cBase = (long)z * g.CBatch;

        float c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
        float c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;

        for (int k0 = 0; k0 < g.K; k0 += TileK)
        {
            // stage the A slice: 1024 values, 4 per thread; walk the contiguous direction fastest
            for (int l = 0; l < 4; l++)
            {
                int idx = tid + l * 256, i, p;
                if (g.As1 == 1) { p = idx % TileK; i = idx / TileK; } else { i = idx % Tile; p = idx / Tile; }
                int gi = row0 + i, gp = k0 + p;
                As[p * Tile + i] = gi < g.M && gp < g.K ? a[aBase + (long)gi * g.As0 + (long)gp * g.As1] : 0f;
            }
            // stage the B slice likewise
            for (int l = 0; l < 4; l++)
            {
                int idx = tid + l * 256, j, p;
                if (g.Bs1 == 1) { j = idx % Tile; p = idx / Tile; } else { p = idx % TileK; j = idx / TileK; }
                int gj = col0 + j, gp = k0 + p;
                Bs[p * Tile + j] = gj < g.N && gp < g.K ? b[bBase + (long)gp * g.Bs0 + (long)gj * g.Bs1] : 0f;
            }
            Group.Barrier();
            for (int p = 0; p < TileK; p++)
            {
                int o = p * Tile;
                float a0 = As[o + ty], a1 = As[o + ty + 16], a2 = As[o + ty + 32], a3 = As[o + ty + 48];
                float b0 = Bs[o + tx], b1 = Bs[o + tx + 16], b2 = Bs[o + tx + 32], b3 = Bs[o + tx + 48];
                c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
                c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
                c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
                c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
            }
            Group.Barrier();
        }

        int r = row0 + ty, q = col0 + tx;
        Store(c, g, cBase, r, q, c00); Store(c, g, cBase, r, q + 16, c01); Store(c, g, cBase, r, q + 32, c02); Store(c, g, cBase, r, q + 48, c03);
        Store(c, g, cBase, r + 16, q, c10); Store(c, g, cBase, r + 16, q + 16, c11); Store(c, g, cBase, r + 16, q + 32, c12); Store(c, g, cBase, r + 16, q + 48, c13);
        Store(c, g, cBase, r + 32, q, c20); Store(c, g, cBase, r + 32, q + 16, c21); Store(c, g, cBase, r + 32, q + 32, c22); Store(c, g, cBase, r + 32, q + 48, c23);
        Store(c, g, cBase, r + 48, q, c30); Store(c, g, cBase, r + 48, q + 16, c31); Store(c, g, cBase, r + 48, q + 32, c32); Store(c, g, cBase, r + 48, q + 48, c33);
    }

    // C[i,j] = alpha*acc + beta*C[i,j] when (i, j) lies inside m x n; beta == 0 writes alpha*acc without reading C.
    static void Store(ArrayView<float> c, GemmArgs g, long cBase, int i, int j, float acc)
    {
        if (i >= g.M || j >= g.N) return;
        long at = cBase + (long)i * g.Ldc + j;
        c[at] = g.Beta == 0f ? g.Alpha * acc : g.Alpha * acc + g.Beta * c[at];
    }
}
