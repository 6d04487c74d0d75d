using KS = Perturb.Kernels.Scatter;

namespace Perturb.Engine.Backends;

/// <summary>Candidate images, one row per work item: the source row copied, then its edits in order (the kernels' own index rules, <see cref="KS.Source"/>, <see cref="KS.Target"/>). The kernel twin is IlgpuScatter.cs.</summary>
public sealed partial class CpuBackend
{
    protected override void ScatterRowsCore(Tensor x, Tensor src, Tensor idx, Tensor val, Tensor y, int images, int rows, int cols, int edits)
    {
        var xs = B(x); var ss = B(src); var ks = B(idx); var vs = B(val); var ys = B(y);
        For(rows, cols + edits, r =>
        {
            var row = ys.Span((long)r * cols, cols);
            int s = KS.Source(ss[r], images);
            if (s >= 0) xs.Span((long)s * cols, cols).CopyTo(row);
            else row.Fill(float.NaN);
            long e0 = (long)r * edits;
            for (int j = 0; j < edits; j++)
            {
                int k = KS.Target(ks[e0 + j], cols);
                if (k >= 0) row[k] = vs[e0 + j];
            }
        });
    }
}
