using ILGPU;
using ILGPU.Runtime;
using KS = Perturb.Kernels.Scatter;
using V1 = ILGPU.ArrayView<float>;

namespace Perturb.Engine.Backends;

/// <summary>Candidate images (kernels/Scatter.cs): one thread per value for the copy, then one per row for its edits. The CPU twin is CpuScatter.cs.</summary>
public sealed partial class IlgpuBackend
{
    Action<Index1D, V1, V1, V1, int, int>? _scatterCopy;
    Action<Index1D, V1, V1, V1, int, int>? _scatterSet;

    protected override void ScatterRowsCore(Tensor x, Tensor src, Tensor idx, Tensor val, Tensor y, int images, int rows, int cols, int edits)
    {
        (_scatterCopy ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, int, int>(KS.CopyRows))(rows * cols, V(x), V(src), V(y), images, cols);
        if (edits > 0)
            (_scatterSet ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, int, int>(KS.SetValues))(rows, V(idx), V(val), V(y), cols, edits);
    }
}
