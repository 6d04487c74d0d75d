using ILGPU;
using ILGPU.Algorithms;

namespace Perturb.Kernels;

/// <summary>
/// The integer codes of the per-row reductions (sum, max and the norms). Perturb.Engine.Reduction is defined from
/// these.
/// </summary>
public static class ReduceKind
{
    public const int Sum = 0, Max = 1, L0 = 2, L2 = 3, Linf = 4;
}

/// <summary>
/// Row reductions: one group of <see cref="GroupSize"/> threads per row (Grid.IdxX = row), each thread striding over
/// the row, then a shared-memory tree. The group helpers below are also used by Norm, AttackStep.
/// </summary>
public static class Reduce
{
    /// <summary>Threads per group for every one-group-per-row kernel. A power of two.</summary>
    public const int GroupSize = 256;

    // Returns sum over the group's threads of v, to every thread. sh has GroupSize slots; all threads must call it.
    public static float GroupSum(ArrayView<float> sh, float v)
    {
        int t = Group.IdxX;
        sh[t] = v;
        Group.Barrier();
        for (int s = GroupSize / 2; s > 0; s >>= 1)
        {
            if (t < s) sh[t] += sh[t + s];
            Group.Barrier();
        }
        float r = sh[0];
        Group.Barrier();
        return r;
    }

    // Returns max over the group's threads of v, to every thread.
    public static float GroupMax(ArrayView<float> sh, float v)
    {
        int t = Group.IdxX;
        sh[t] = v;
        Group.Barrier();
        for (int s = GroupSize / 2; s > 0; s >>= 1)
        {
            if (t < s) sh[t] = XMath.Max(sh[t], sh[t + s]);
            Group.Barrier();
        }
        float r = sh[0];
        Group.Barrier();
        return r;
    }

    // out[r] = scale * reduce_j x[r*cols + j], kind a ReduceKind: Sum, Max, L0 (count |v| > 0), L2 (sqrt sum v^2), Linf (max |v|).
    // x viewed as [rows, cols]; group per row.
    public static void Rows(ArrayView<float> x, ArrayView<float> outp, int cols, int kind, float scale)
    {
        var sh = SharedMemory.Allocate<float>(GroupSize);
        int row = Grid.IdxX;
        long b = (long)row * cols;
        bool isMax = kind == ReduceKind.Max || kind == ReduceKind.Linf;
        float acc = isMax ? float.NegativeInfinity : 0f;
        for (int j = Group.IdxX; j < cols; j += GroupSize)
        {
            float v = x[b + j];
            if (kind == ReduceKind.Sum) acc += v;
            else if (kind == ReduceKind.Max) acc = XMath.Max(acc, v);
            else if (kind == ReduceKind.L0) acc += XMath.Abs(v) > 0f ? 1f : 0f;
            else if (kind == ReduceKind.L2) acc += v * v;
            else acc = XMath.Max(acc, XMath.Abs(v));
        }
        float r = isMax ? GroupMax(sh, acc) : GroupSum(sh, acc);
        if (kind == ReduceKind.L2) r = XMath.Sqrt(r);
        if (kind == ReduceKind.Linf && cols == 0) r = 0f;
        if (Group.IdxX == 0) outp[row] = r * scale;
    }

    // out[r] = smallest j with x[r, j] == max_j x[r, j] (first maximum), as a float. Group per row; the tree keeps
    // (value, index) pairs and prefers the larger value, then the smaller index.
    public static void Argmax(ArrayView<float> x, ArrayView<float> outp, int cols)
    {
        var sv = SharedMemory.Allocate<float>(GroupSize);
        var si = SharedMemory.Allocate<int>(GroupSize);
        int row = Grid.IdxX, t = Group.IdxX;
        long b = (long)row * cols;
        float bv = float.NegativeInfinity; int bi = int.MaxValue;
        for (int j = t; j < cols; j += GroupSize)
        {
            float v = x[b + j];
            if (bi == int.MaxValue || v > bv) { bv = v; bi = j; }
        }
        sv[t] = bv; si[t] = bi;
        Group.Barrier();
        for (int s = GroupSize / 2; s > 0; s >>= 1)
        {
            if (t < s)
            {
                float ov = sv[t + s]; int oi = si[t + s];
                if (oi != int.MaxValue && (si[t] == int.MaxValue || ov > sv[t] || (ov == sv[t] && oi < si[t]))) { sv[t] = ov; si[t] = oi; }
            }
            Group.Barrier();
        }
        if (t == 0) outp[row] = si[0] == int.MaxValue ? 0f : si[0];
    }

    // db[c] = sum over n < outer, i < inner of dy[(n*channels + c)*inner + i]. Group per channel (Grid.IdxX = c).
    public static void BiasGrad(ArrayView<float> dy, ArrayView<float> db, int outer, int channels, int inner)
    {
        var sh = SharedMemory.Allocate<float>(GroupSize);
        int c = Grid.IdxX;
        long total = (long)outer * inner;
        float acc = 0f;
        for (long e = Group.IdxX; e < total; e += GroupSize)
        {
            long n = e / inner, i = e % inner;
            acc += dy[(n * channels + c) * inner + i];
        }
        float r = GroupSum(sh, acc);
        if (Group.IdxX == 0) db[c] = r;
    }
}
