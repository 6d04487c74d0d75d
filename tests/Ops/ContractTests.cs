using Perturb.Engine;

namespace Perturb.Tests.Ops;

/// <summary>
/// Contract checks shared by all ops: a tensor shorter than the sizes demand is rejected with ArgumentException (before
/// any work), and the counters. (Every parity test also checks, through <see cref="OpHarness.Op"/>, that each op call
/// hits its counter exactly once.)
/// </summary>
[Collection("ops")]
public class ContractTests
{
    public static IEnumerable<object[]> ShortCases()
    {
        foreach (var be in new[] { TestBackends.Cpu, TestBackends.IlgpuCpu })
            foreach (var name in ShortTensorCases.Keys)
                yield return new object[] { be, name };
    }

    static readonly ConvShape Cs = new(2, 3, 6, 6, 4, 3, 3, PadH: 1, PadW: 1);
    static readonly PoolShape Ps = new(2, 3, 6, 6, 2, 2, 2, 2);

    /// <summary>Each case makes one argument one element too short (or the stated sizes too big for the tensors).</summary>
    static readonly Dictionary<string, Action<IBackend, Func<int, Tensor>>> ShortTensorCases = new()
    {
        ["gemm C short"] = (be, T) => be.Gemm(false, false, 3, 4, 5, 1, T(15), T(20), 0, T(11)),
        ["gemm A short"] = (be, T) => be.Gemm(true, false, 3, 4, 5, 1, T(14), T(20), 0, T(12)),
        ["gemm B short"] = (be, T) => be.Gemm(false, true, 3, 4, 5, 1, T(15), T(19), 0, T(12)),
        ["conv_fwd y short"] = (be, T) => be.ConvForward(Cs, T(2 * 3 * 36), T(4 * 3 * 9), null, T(2 * 4 * 36 - 1)),
        ["conv_fwd w short"] = (be, T) => be.ConvForward(Cs, T(2 * 3 * 36), T(4 * 3 * 9 - 1), T(4), T(2 * 4 * 36)),
        ["conv_fwd bias short"] = (be, T) => be.ConvForward(Cs, T(2 * 3 * 36), T(4 * 3 * 9), T(3), T(2 * 4 * 36)),
        ["conv_bwd_data dx short"] = (be, T) => be.ConvBackwardData(Cs, T(2 * 4 * 36), T(4 * 3 * 9), T(2 * 3 * 36 - 1)),
        ["conv_bwd_weights dw short"] = (be, T) => be.ConvBackwardWeights(Cs, T(2 * 3 * 36), T(2 * 4 * 36), T(4 * 3 * 9 - 1), null),
        ["bias_add bias short"] = (be, T) => be.BiasAdd(T(24), T(2), 2, 3, 4),
        ["bias_grad dy short"] = (be, T) => be.BiasGrad(T(23), T(3), 2, 3, 4),
        ["act_fwd y short"] = (be, T) => be.ActivationForward(Activation.Relu, 0, T(10), T(9)),
        ["act_bwd dx short"] = (be, T) => be.ActivationBackward(Activation.Relu, 0, T(10), null, T(10), T(9)),
        ["maxpool_fwd x short"] = (be, T) => be.MaxPoolForward(Ps, T(2 * 3 * 36 - 1), T(2 * 3 * 9)),
        ["maxpool_bwd dx short"] = (be, T) => be.MaxPoolBackward(Ps, T(2 * 3 * 36), T(2 * 3 * 9), T(2 * 3 * 36 - 1)),
        ["avgpool_fwd y short"] = (be, T) => be.AvgPoolForward(Ps, T(2 * 3 * 36), T(2 * 3 * 9 - 1)),
        ["avgpool_bwd dy short"] = (be, T) => be.AvgPoolBackward(Ps, T(2 * 3 * 9 - 1), T(2 * 3 * 36)),
        ["gap_fwd y short"] = (be, T) => be.GlobalAvgPoolForward(T(24), T(5), 2, 3, 4),
        ["gap_bwd dx short"] = (be, T) => be.GlobalAvgPoolBackward(T(6), T(23), 2, 3, 4),
        ["bn_fwd_train gamma short"] = (be, T) => be.BatchNormForwardTrain(T(24), T(2), T(3), T(24), T(3), T(3), T(3), T(3), 0.1f, 1e-5f, 2, 3, 4),
        ["bn_fwd_train x short"] = (be, T) => be.BatchNormForwardTrain(T(23), T(3), T(3), T(24), T(3), T(3), T(3), T(3), 0.1f, 1e-5f, 2, 3, 4),
        ["bn_bwd dx short"] = (be, T) => be.BatchNormBackward(T(24), T(24), T(3), T(3), T(3), T(23), null, null, 2, 3, 4),
        ["channel_affine shift short"] = (be, T) => be.ChannelAffine(T(24), T(3), T(2), T(24), 2, 3, 4),
        ["channel_affine_bwd dscale short"] = (be, T) => be.ChannelAffineBackward(T(24), T(3), T(24), T(24), T(2), T(3), 2, 3, 4),
        ["softmax x short"] = (be, T) => be.Softmax(T(11), T(12), 3, 4),
        ["log_softmax y short"] = (be, T) => be.LogSoftmax(T(12), T(11), 3, 4),
        ["softmax_bwd dx short"] = (be, T) => be.SoftmaxBackward(T(12), T(12), T(11), 3, 4),
        ["ce_loss labels short"] = (be, T) => be.CrossEntropy(T(12), T(2), T(3), T(12), T(3), 3, 4),
        ["ce_loss dlogits short"] = (be, T) => be.CrossEntropy(T(12), T(3), T(3), T(11), T(3), 3, 4),
        ["cw_loss gradScale short"] = (be, T) => be.CwMarginLoss(T(12), T(3), T(3), T(12), T(2), false, 0, 3, 4),
        ["dlr_loss targets short"] = (be, T) => be.DlrLoss(T(12), T(3), T(2), T(3), T(12), T(3), true, 3, 4),
        ["dlr_loss dlogits short"] = (be, T) => be.DlrLoss(T(12), T(3), T(3), T(3), T(11), T(3), false, 3, 4),
        ["bce_loss loss short"] = (be, T) => be.BceWithLogits(T(5), T(5), T(4), null, T(5), 5),
        ["channel_copy dst short"] = (be, T) => be.ChannelCopy(T(2 * 3 * 4), 3, 0, T(2 * 5 * 4 - 1), 5, 2, 3, 2, 4, false),
        ["channel_copy src short"] = (be, T) => be.ChannelCopy(T(2 * 3 * 4 - 1), 3, 0, T(2 * 5 * 4), 5, 2, 3, 2, 4, false),
        ["reduce outp short"] = (be, T) => be.ReduceRows(Reduction.L2, T(12), T(2), 3, 4),
        ["argmax x short"] = (be, T) => be.ArgmaxRows(T(11), T(3), 3, 4),
        ["attack_step_linf eps short"] = (be, T) => be.AttackStepLinf(T(12), T(12), T(12), T(3), T(2), 3, 4),
        ["attack_step_l2 grad short"] = (be, T) => be.AttackStepL2(T(12), T(12), T(11), T(3), T(3), 3, 4),
        ["unary_fwd y short"] = (be, T) => be.UnaryForward(UnaryOp.Erf, 0, 0, T(12), T(11)),
        ["unary_bwd dy short"] = (be, T) => be.UnaryBackward(UnaryOp.Erf, 0, 0, T(12), T(11), T(12)),
        ["broadcast_fwd b short"] = (be, T) => be.BroadcastForward(BroadcastOp.Add, T(24), T(5), T(24), Strided.Binary(new[] { 2, 3, 4 }, new[] { 2, 3, 1 }, new[] { 2, 3, 4 })),
        ["broadcast_bwd dx short"] = (be, T) =>
        {
            var (keep, red) = Strided.BinaryGrad(new[] { 2, 3, 4 }, new[] { 2, 3, 1 }, new[] { 2, 3, 4 }, 1);
            be.BroadcastBackward(BroadcastOp.Mul, 1, T(24), T(6), T(24), T(5), keep, red);
        },
        ["strided_copy src short"] = (be, T) => be.StridedCopy(T(23), T(24), Strided.Make(new[] { 2, 4, 3 }, new[] { 12, 1, 4 }, new[] { 12, 3, 1 })),
        ["reduce_axes x short"] = (be, T) =>
        {
            var (keep, red) = Strided.Reduce(new[] { 2, 3, 4 }, new[] { 2 });
            be.ReduceAxes(ReduceOp.Sum, T(23), T(6), keep, red);
        },
        ["reduce_axes_bwd dx short"] = (be, T) =>
        {
            var (keep, red) = Strided.Reduce(new[] { 2, 3, 4 }, new[] { 1 });
            be.ReduceAxesBackward(ReduceOp.Mean, T(24), T(8), T(8), T(23), keep, red);
        },
    };

    internal static IEnumerable<string> ShortCaseNames => ShortTensorCases.Keys;
    internal static void RunShortCase(string name, IBackend be, Func<int, Tensor> T) => ShortTensorCases[name](be, T);

    [Theory, MemberData(nameof(ShortCases))]
    public void TooShortTensorThrowsArgumentException(string backend, string name)
    {
        using var h = new OpHarness(backend);
        Tensor T(int n) => h.T(new double[n], n);
        var e = Assert.ThrowsAny<ArgumentException>(() => ShortTensorCases[name](h.Be, T));
        Assert.False(string.IsNullOrWhiteSpace(e.Message));
    }

    /// <summary>Flop counts named in IBackend: gemm 2*m*n*k, conv_fwd ConvShape.Flops; and Reset clears.</summary>
    [Theory, InlineData(TestBackends.Cpu), InlineData(TestBackends.IlgpuCpu)]
    public void CountersCountCallsAndFlops(string backend)
    {
        using var h = new OpHarness(backend);
        var a = h.T(Ref.Rand(6, 1), 2, 3); var b = h.T(Ref.Rand(12, 2), 3, 4); var c = h.Out(false, 2, 4);
        long calls0 = h.Be.Counters.Calls("gemm"), flops0 = h.Be.Counters.Flops("gemm");
        for (int i = 0; i < 3; i++) h.Be.Gemm(false, false, 2, 4, 3, 1, a, b, 0, c);
        Assert.Equal(calls0 + 3, h.Be.Counters.Calls("gemm"));
        Assert.Equal(flops0 + 3 * 2 * 2 * 4 * 3, h.Be.Counters.Flops("gemm"));

        var s = new ConvShape(1, 2, 5, 5, 3, 3, 3, PadH: 1, PadW: 1);
        var x = h.T(Ref.Rand(50, 3), 1, 2, 5, 5); var w = h.T(Ref.Rand(54, 4), 3, 2, 3, 3); var y = h.Out(false, 1, 3, 5, 5);
        h.Op("conv_fwd", () => h.Be.ConvForward(s, x, w, null, y), flops: s.Flops);
        Assert.Equal(2L * 3 * 25 * 2 * 9, s.Flops);
    }
}
