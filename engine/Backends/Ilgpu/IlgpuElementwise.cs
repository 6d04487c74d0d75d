using ILGPU;
using ILGPU.Runtime;
using Perturb.Kernels;
using KE = Perturb.Kernels.Elementwise;
using V1 = ILGPU.ArrayView<float>;

namespace Perturb.Engine.Backends;

/// <summary>Element-wise ops and channel copy (kernels/Elementwise.cs), one thread per element. The CPU twin is CpuElementwise.cs.</summary>
public sealed partial class IlgpuBackend
{
    Action<Index1D, V1, V1, V1>? _add, _mul, _div, _greater, _addRelu;
    Action<Index1D, V1, V1, V1, V1, int>? _where;
    Action<Index1D, V1, V1, V1, int>? _mulRows, _addRows;
    Action<Index1D, float, V1, V1>? _axpy, _scale;
    Action<Index1D, V1, float, float, V1>? _clamp;
    Action<Index1D, V1, V1>? _sign, _abs;
    Action<Index1D, V1, V1, float, V1>? _lerp;
    Action<Index1D, V1, int, int, V1, int, int, int, int, int>? _chCopy;

    protected override void BinaryCore(BinaryOp kind, Tensor a, Tensor b, Tensor y)
    {
        var k = kind switch
        {
            BinaryOp.Add => _add ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1>(KE.Add),
            BinaryOp.Mul => _mul ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1>(KE.Mul),
            BinaryOp.Div => _div ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1>(KE.Div),
            BinaryOp.Greater => _greater ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1>(KE.Greater),
            BinaryOp.AddRelu => _addRelu ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1>(KE.AddRelu),
            _ => throw new InvalidOperationException($"binary op {kind} has no ILGPU kernel"),
        };
        k(y.Length, V(a), V(b), V(y));
    }

    protected override void AbsCore(Tensor x, Tensor y)
    {
        (_abs ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1>(KE.Abs))(y.Length, V(x), V(y));
    }

    protected override void WhereCore(Tensor m, Tensor a, Tensor b, Tensor y, int rows, int cols)
    {
        (_where ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, int>(KE.Where))(rows * cols, V(m), V(a), V(b), V(y), cols);
    }

    protected override void RowBroadcastCore(BinaryOp kind, Tensor x, Tensor v, Tensor y, int rows, int cols)
    {
        var k = kind switch
        {
            BinaryOp.Mul => _mulRows ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, int>(KE.MulRows),
            BinaryOp.Add => _addRows ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, int>(KE.AddRows),
            _ => throw new InvalidOperationException($"row broadcast {kind} has no ILGPU kernel"),
        };
        k(rows * cols, V(x), V(v), V(y), cols);
    }

    protected override void AxpyCore(float alpha, Tensor x, Tensor y)
    {
        (_axpy ??= _acc.LoadAutoGroupedStreamKernel<Index1D, float, V1, V1>(KE.Axpy))(y.Length, alpha, V(x), V(y));
    }

    protected override void ScaleCore(float alpha, Tensor x, Tensor y)
    {
        (_scale ??= _acc.LoadAutoGroupedStreamKernel<Index1D, float, V1, V1>(KE.Scale))(y.Length, alpha, V(x), V(y));
    }

    protected override void ClampCore(Tensor x, float lo, float hi, Tensor y)
    {
        (_clamp ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, float, float, V1>(KE.Clamp))(y.Length, V(x), lo, hi, V(y));
    }

    protected override void SignCore(Tensor x, Tensor y)
    {
        (_sign ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1>(KE.Sign))(y.Length, V(x), V(y));
    }

    protected override void LerpCore(Tensor a, Tensor b, float t, Tensor y)
    {
        (_lerp ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, float, V1>(KE.Lerp))(y.Length, V(a), V(b), t, V(y));
    }

    protected override void ChannelCopyCore(Tensor src, int srcC, int srcOff, Tensor dst, int dstC, int dstOff, int count, int outer, int inner, bool accumulate)
    {
        long n = (long)outer * count * inner;
        (_chCopy ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, int, int, V1, int, int, int, int, int>(KE.ChannelCopy))(
            (int)n, V(src), srcC, srcOff, V(dst), dstC, dstOff, count, inner, accumulate ? 1 : 0);
    }
}
