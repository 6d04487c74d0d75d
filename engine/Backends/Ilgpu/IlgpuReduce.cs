using ILGPU;
using ILGPU.Runtime;
using Perturb.Kernels;
using KD = Perturb.Kernels.Reduce;
using V1 = ILGPU.ArrayView<float>;

namespace Perturb.Engine.Backends;

/// <summary>Per-row reductions and argmax (kernels/Reduce.cs), one group per row. The CPU twin is CpuReduce.cs.</summary>
public sealed partial class IlgpuBackend
{
    Action<KernelConfig, V1, V1, int, int, float>? _rows;
    Action<KernelConfig, V1, V1, int>? _argmax;

    void RowsRaw(V1 x, V1 outp, int rows, int cols, int kind, float scale) =>
        (_rows ??= _acc.LoadStreamKernel<V1, V1, int, int, float>(KD.Rows))(PerRow(rows), x, outp, cols, kind, scale);

    protected override void ReduceRowsCore(Reduction kind, Tensor x, Tensor outp, int rows, int cols)
    {
        RowsRaw(V(x), V(outp), rows, cols, (int)kind, 1f);
    }

    protected override void ArgmaxRowsCore(Tensor x, Tensor outp, int rows, int cols)
    {
        (_argmax ??= _acc.LoadStreamKernel<V1, V1, int>(KD.Argmax))(PerRow(rows), V(x), V(outp), cols);
    }
}
