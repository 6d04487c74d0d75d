using ILGPU;

namespace Perturb.Kernels;

/// <summary>
/// Candidate images for the search attacks (IBackend.ScatterRows): copies of source images with a few values set.
/// Layout: x [images, cols], y [rows, cols], src [rows], idx and val [rows, edits]; integers are stored as floats.
/// The CPU twin (engine/Backends/Cpu/CpuScatter.cs) calls <see cref="Source"/> and <see cref="Target"/> too.
/// </summary>
public static class Scatter
{
    /// <summary>The source image of a row, or -1 when s is not in [0, images) (NaN included).</summary>
    public static int Source(float s, int images) => s >= 0f && s < images ? (int)s : -1;

    /// <summary>The index an edit writes, or -1 when k is not in [0, cols) (NaN included): the edit is skipped.</summary>
    public static int Target(float k, int cols) => k >= 0f && k < cols ? (int)k : -1;

    // y[r, c] = x[src[r], c], NaN when src[r] is out of range (the edits still apply); i indexes [rows, cols]
    public static void CopyRows(Index1D i, ArrayView<float> x, ArrayView<float> src, ArrayView<float> y, int images, int cols)
    {
        int r = i / cols, c = i - r * cols;
        int s = Source(src[r], images);
        y[i] = s >= 0 ? x[(long)s * cols + c] : float.NaN;
    }

    // y[r, idx[r, j]] = val[r, j] for j = 0 .. edits-1 in order (one thread per row: a later edit wins, deterministic)
    public static void SetValues(Index1D r, ArrayView<float> idx, ArrayView<float> val, ArrayView<float> y, int cols, int edits)
    {
        long e0 = (long)(int)r * edits;
        for (int j = 0; j < edits; j++)
        {
            int k = Target(idx[e0 + j], cols);
            if (k >= 0) y[(long)(int)r * cols + k] = val[e0 + j];
        }
    }
}
