using ILGPU;
using ILGPU.Runtime;
using Perturb.Kernels;
using KL = Perturb.Kernels.Loss;
using V1 = ILGPU.ArrayView<float>;

namespace Perturb.Engine.Backends;

/// <summary>Softmax family and per-sample losses (kernels/Loss.cs), one thread per row. The CPU twin is CpuLoss.cs.</summary>
public sealed partial class IlgpuBackend
{
    Action<Index1D, V1, V1, int>? _softmax, _logSoftmax;
    Action<Index1D, V1, V1, V1, int>? _softmaxBwd;
    Action<Index1D, V1, V1, V1, V1, V1, int, int>? _ce;
    Action<Index1D, V1, V1, V1, V1, V1, int, int, float, int>? _cw;
    Action<Index1D, V1, V1, V1, V1, V1, int>? _bce;
    Action<Index1D, V1, V1, V1, V1, V1, V1, int, int, int>? _dlr;

    protected override void SoftmaxCore(Tensor x, Tensor y, int rows, int cols, bool log)
    {
        if (log) (_logSoftmax ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, int>(KL.LogSoftmax))(rows, V(x), V(y), cols);
        else (_softmax ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, int>(KL.Softmax))(rows, V(x), V(y), cols);
    }

    protected override void SoftmaxBackwardCore(Tensor y, Tensor dy, Tensor dx, int rows, int cols)
    {
        (_softmaxBwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, int>(KL.SoftmaxBackward))(rows, V(y), V(dy), V(dx), cols);
    }

    protected override void CrossEntropyCore(Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, int rows, int cols)
    {
        (_ce ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, V1, int, int>(KL.CrossEntropy))(rows,
            V(logits), V(labels), V(loss), VOrDummy(dlogits), dlogits is null ? _dummy.View : V(gradScale), cols, dlogits is null ? 0 : 1);
    }

    protected override void CwMarginLossCore(Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, bool targeted, float kappa, int rows, int cols)
    {
        (_cw ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, V1, int, int, float, int>(KL.CwMargin))(rows,
            V(logits), V(labels), V(loss), VOrDummy(dlogits), dlogits is null ? _dummy.View : V(gradScale), cols, targeted ? 1 : 0, kappa, dlogits is null ? 0 : 1);
    }

    protected override void BceWithLogitsCore(Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, int rows)
    {
        (_bce ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, V1, int>(KL.BceWithLogits))(rows,
            V(logits), V(labels), V(loss), VOrDummy(dlogits), dlogits is null ? _dummy.View : V(gradScale), dlogits is null ? 0 : 1);
    }

    protected override void DlrLossCore(Tensor logits, Tensor labels, Tensor targets, Tensor loss, Tensor? dlogits, Tensor gradScale, bool targeted, int rows, int cols)
    {
        (_dlr ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, V1, V1, int, int, int>(KL.Dlr))(rows,
            V(logits), V(labels), targeted ? V(targets) : _dummy.View, V(loss), VOrDummy(dlogits), dlogits is null ? _dummy.View : V(gradScale),
            cols, targeted ? 1 : 0, dlogits is null ? 0 : 1);
    }
}
