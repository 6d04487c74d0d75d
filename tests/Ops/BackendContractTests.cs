using System.Reflection;
using Perturb.Engine;

namespace Perturb.Tests.Ops;

/// <summary>
/// The backend contract is one: for every op of <see cref="IBackend"/> (found by reflection, so a new op without a
/// case here fails <see cref="EveryOpHasACase"/>), the CPU backend and the ILGPU kernels on the CPU accelerator
/// record the same calls and flops for the same call, and reject the same bad arguments with the same message,
/// before any work is counted.
/// </summary>
[Collection("ops")]
public class BackendContractTests
{
    /// <summary>Deterministic small inputs on one backend: values in [-1, 1), labels, a positive vector.</summary>
    public sealed class Inputs(OpHarness h)
    {
        int _seed;
        public Tensor T(int n) => h.T(Ref.Rand(n, ++_seed), n);
        public Tensor Pos(int n) => h.T(Ref.Rand(n, ++_seed, 0.5, 1.5), n);
        public Tensor Lab(int n, int classes) => h.T(Ref.Labels(n, classes, ++_seed), n);
        public Tensor Mask(int n) => h.T(Ref.Labels(n, 2, ++_seed), n);
        public Tensor Of(params double[] v) => h.T(v, v.Length);
    }

    static readonly ConvShape Cs = new(2, 2, 5, 5, 3, 3, 3, PadH: 1, PadW: 1);
    static readonly PoolShape Ps = new(2, 2, 5, 5, 3, 3, 2, 2, PadH: 1, PadW: 1);
    static readonly WarpMap Wm = WarpMap.RotateScaleTranslate(20, 1.1, 0.3, -0.2, 2, 2);
    const int N = 2, C = 3, HW = 4, Len = N * C * HW, Rows = 3, Cols = 4;

    /// <summary>One valid call per op, keyed by the IBackend method name.</summary>
    static readonly Dictionary<string, Action<IBackend, Inputs>> Valid = new()
    {
        ["Copy"] = (be, i) => be.Copy(i.T(7), i.T(7)),
        ["Fill"] = (be, i) => be.Fill(i.T(7), 2f),
        ["Gemm"] = (be, i) => be.Gemm(true, false, 3, 4, 5, 1.5f, i.T(15), i.T(20), 0.5f, i.T(12)),
        ["ConvForward"] = (be, i) => be.ConvForward(Cs, i.T(2 * 2 * 25), i.T(3 * 2 * 9), i.T(3), i.T(2 * 3 * 25)),
        ["ConvBackwardData"] = (be, i) => be.ConvBackwardData(Cs, i.T(2 * 3 * 25), i.T(3 * 2 * 9), i.T(2 * 2 * 25)),
        ["ConvBackwardWeights"] = (be, i) => be.ConvBackwardWeights(Cs, i.T(2 * 2 * 25), i.T(2 * 3 * 25), i.T(3 * 2 * 9), i.T(3)),
        ["BiasAdd"] = (be, i) => be.BiasAdd(i.T(Len), i.T(C), N, C, HW),
        ["BiasGrad"] = (be, i) => be.BiasGrad(i.T(Len), i.T(C), N, C, HW),
        ["ActivationForward"] = (be, i) => be.ActivationForward(Activation.LeakyRelu, 0.1f, i.T(Len), i.T(Len)),
        ["ActivationBackward"] = (be, i) => be.ActivationBackward(Activation.Tanh, 0f, null, i.T(Len), i.T(Len), i.T(Len)),
        ["MaxPoolForward"] = (be, i) => be.MaxPoolForward(Ps, i.T(2 * 2 * 25), i.T(2 * 2 * 9)),
        ["MaxPoolBackward"] = (be, i) => be.MaxPoolBackward(Ps, i.T(2 * 2 * 25), i.T(2 * 2 * 9), i.T(2 * 2 * 25)),
        ["AvgPoolForward"] = (be, i) => be.AvgPoolForward(Ps, i.T(2 * 2 * 25), i.T(2 * 2 * 9)),
        ["AvgPoolBackward"] = (be, i) => be.AvgPoolBackward(Ps, i.T(2 * 2 * 9), i.T(2 * 2 * 25)),
        ["GlobalAvgPoolForward"] = (be, i) => be.GlobalAvgPoolForward(i.T(Len), i.T(N * C), N, C, HW),
        ["GlobalAvgPoolBackward"] = (be, i) => be.GlobalAvgPoolBackward(i.T(N * C), i.T(Len), N, C, HW),
        ["BatchNormForwardTrain"] = (be, i) => be.BatchNormForwardTrain(i.T(Len), i.T(C), i.T(C), i.T(Len), i.T(C), i.T(C), i.T(C), i.Pos(C), 0.1f, 1e-5f, N, C, HW),
        ["BatchNormBackward"] = (be, i) => be.BatchNormBackward(i.T(Len), i.T(Len), i.T(C), i.T(C), i.Pos(C), i.T(Len), i.T(C), null, N, C, HW),
        ["ChannelAffine"] = (be, i) => be.ChannelAffine(i.T(Len), i.T(C), i.T(C), i.T(Len), N, C, HW),
        ["ChannelAffineBackward"] = (be, i) => be.ChannelAffineBackward(i.T(Len), i.T(C), i.T(Len), i.T(Len), i.T(C), i.T(C), N, C, HW),
        ["Softmax"] = (be, i) => be.Softmax(i.T(Rows * Cols), i.T(Rows * Cols), Rows, Cols),
        ["LogSoftmax"] = (be, i) => be.LogSoftmax(i.T(Rows * Cols), i.T(Rows * Cols), Rows, Cols),
        ["SoftmaxBackward"] = (be, i) => be.SoftmaxBackward(i.T(Rows * Cols), i.T(Rows * Cols), i.T(Rows * Cols), Rows, Cols),
        ["CrossEntropy"] = (be, i) => be.CrossEntropy(i.T(Rows * Cols), i.Lab(Rows, Cols), i.T(Rows), i.T(Rows * Cols), i.T(Rows), Rows, Cols),
        ["CwMarginLoss"] = (be, i) => be.CwMarginLoss(i.T(Rows * Cols), i.Lab(Rows, Cols), i.T(Rows), i.T(Rows * Cols), i.T(Rows), true, 0.5f, Rows, Cols),
        ["BceWithLogits"] = (be, i) => be.BceWithLogits(i.T(Rows), i.Mask(Rows), i.T(Rows), i.T(Rows), i.T(Rows), Rows),
        ["DlrLoss"] = (be, i) => be.DlrLoss(i.T(Rows * Cols), i.Lab(Rows, Cols), i.Lab(Rows, Cols), i.T(Rows), i.T(Rows * Cols), i.T(Rows), true, Rows, Cols),
        ["Add"] = (be, i) => be.Add(i.T(7), i.T(7), i.T(7)),
        ["AddRelu"] = (be, i) => be.AddRelu(i.T(7), i.T(7), i.T(7)),
        ["Mul"] = (be, i) => be.Mul(i.T(7), i.T(7), i.T(7)),
        ["Axpy"] = (be, i) => be.Axpy(0.5f, i.T(7), i.T(7)),
        ["Scale"] = (be, i) => be.Scale(0.5f, i.T(7), i.T(7)),
        ["Clamp"] = (be, i) => be.Clamp(i.T(7), -0.5f, 0.5f, i.T(7)),
        ["Sign"] = (be, i) => be.Sign(i.T(7), i.T(7)),
        ["Lerp"] = (be, i) => be.Lerp(i.T(7), i.T(7), 0.25f, i.T(7)),
        ["Div"] = (be, i) => be.Div(i.T(7), i.Pos(7), i.T(7)),
        ["Greater"] = (be, i) => be.Greater(i.T(7), i.T(7), i.T(7)),
        ["Abs"] = (be, i) => be.Abs(i.T(7), i.T(7)),
        ["Where"] = (be, i) => be.Where(i.Mask(Rows), i.T(Rows * Cols), i.T(Rows * Cols), i.T(Rows * Cols), Rows, Cols),
        ["MulRows"] = (be, i) => be.MulRows(i.T(Rows * Cols), i.T(Rows), i.T(Rows * Cols), Rows, Cols),
        ["AddRows"] = (be, i) => be.AddRows(i.T(Rows * Cols), i.T(Rows), i.T(Rows * Cols), Rows, Cols),
        ["ChannelCopy"] = (be, i) => be.ChannelCopy(i.T(2 * 3 * 4), 3, 1, i.T(2 * 5 * 4), 5, 2, 2, 2, 4, true),
        ["ReduceRows"] = (be, i) => be.ReduceRows(Reduction.L2, i.T(Rows * Cols), i.T(Rows), Rows, Cols),
        ["ArgmaxRows"] = (be, i) => be.ArgmaxRows(i.T(Rows * Cols), i.T(Rows), Rows, Cols),
        ["RandomUniform"] = (be, i) => be.RandomUniform(i.T(9), 5, 7),
        ["RandomNormal"] = (be, i) => be.RandomNormal(i.T(9), 5, 7, 1f, 2f),
        ["DropoutForward"] = (be, i) => be.DropoutForward(i.T(9), i.T(9), i.T(9), 0.3f, 5, 7),
        ["SgdUpdate"] = (be, i) => be.SgdUpdate(i.T(7), i.T(7), i.T(7), 0.1f, 0.9f, 1e-4f, true),
        ["AdamUpdate"] = (be, i) => be.AdamUpdate(i.T(7), i.T(7), i.T(7), i.Pos(7), 1e-3f, 0.9f, 0.999f, 1e-8f, 1e-4f, 3),
        ["AttackStepLinf"] = (be, i) => be.AttackStepLinf(i.T(Rows * Cols), i.T(Rows * Cols), i.T(Rows * Cols), i.Pos(Rows), i.Pos(Rows), Rows, Cols),
        ["AttackStepL2"] = (be, i) => be.AttackStepL2(i.T(Rows * Cols), i.T(Rows * Cols), i.T(Rows * Cols), i.Pos(Rows), i.Pos(Rows), Rows, Cols),
        ["JsmaStep"] = (be, i) => be.JsmaStep(i.T(Rows * Cols), i.T(Rows * Cols), i.Mask(Rows * Cols), i.Of(1, 0, 1), i.T(Rows * Cols), i.T(Rows), 1f, Rows, Cols),
        ["WarpAffine"] = (be, i) => be.WarpAffine(i.T(Len), i.T(Len), N * C, 2, 2, Wm, 1.5f, 0.5f),
        ["WarpAffineAdjoint"] = (be, i) => be.WarpAffineAdjoint(i.T(Len), i.T(Len), N * C, 2, 2, Wm, 0.5f, 1f),
        ["ScatterRows"] = (be, i) => be.ScatterRows(i.T(2 * 5), i.Of(1, 0, 1), i.Of(0, 4, -1, 2, 3, 3), i.T(6), i.T(3 * 5), 2, 3, 5, 2),
        ["PatchApply"] = (be, i) => be.PatchApply(i.T(2 * 9), i.Of(1, 1, 0, 1, 1, 1, 0, 1, 1), i.Of(0, 1, 2, 0.96, 0.28), i.T(2 * 16), 1, 2, 4, 4, 3),
        ["PatchApplyAdjoint"] = (be, i) => be.PatchApplyAdjoint(i.T(2 * 16), i.Of(1, 1, 0, 1, 1, 1, 0, 1, 1), i.Of(0, 1, 2, 0.96, 0.28), i.T(2 * 9), 1, 2, 4, 4, 3),
        ["UnaryForward"] = (be, i) => be.UnaryForward(UnaryOp.HardSwish, 0, 0, i.T(Len), i.T(Len)),
        ["UnaryBackward"] = (be, i) => be.UnaryBackward(UnaryOp.Gelu, 0, 0, i.T(Len), i.T(Len), i.T(Len)),
        ["BroadcastForward"] = (be, i) => be.BroadcastForward(BroadcastOp.Mul, i.T(Len), i.T(N * C), i.T(Len), Strided.Binary(new[] { N, C, HW }, new[] { N, C, 1 }, new[] { N, C, HW })),
        ["BroadcastBackward"] = (be, i) =>
        {
            var (keep, red) = Strided.BinaryGrad(new[] { N, C, HW }, new[] { N, C, 1 }, new[] { N, C, HW }, 1);
            be.BroadcastBackward(BroadcastOp.Div, 1, i.T(Len), i.Pos(N * C), i.T(Len), i.T(N * C), keep, red);
        },
        ["StridedCopy"] = (be, i) => be.StridedCopy(i.T(Len), i.T(Len), Strided.Make(new[] { N, HW, C }, new[] { C * HW, 1, HW }, new[] { C * HW, C, 1 })),
        ["ReduceAxes"] = (be, i) =>
        {
            var (keep, red) = Strided.Reduce(new[] { N, C, HW }, new[] { 2 });
            be.ReduceAxes(ReduceOp.L2, i.T(Len), i.T(N * C), keep, red);
        },
        ["ReduceAxesBackward"] = (be, i) =>
        {
            var (keep, red) = Strided.Reduce(new[] { N, C, HW }, new[] { 1 });
            be.ReduceAxesBackward(ReduceOp.Max, i.T(Len), i.T(N * HW), i.T(N * HW), i.T(Len), keep, red);
        },
    };

    /// <summary>Members of IBackend that are not ops: memory management and identity. They count nothing.</summary>
    static readonly HashSet<string> NotOps = ["Allocate", "FromArray", "ToArray", "Upload", "Synchronize", "Free", "Dispose"];

    static IEnumerable<string> InterfaceOps() =>
        typeof(IBackend).GetMethods(BindingFlags.Public | BindingFlags.Instance)
            .Where(m => !m.IsSpecialName && !NotOps.Contains(m.Name)).Select(m => m.Name).Distinct();

    [Fact]
    public void EveryOpHasACase()
    {
        var missing = InterfaceOps().Where(n => !Valid.ContainsKey(n)).ToList();
        Assert.True(missing.Count == 0, $"IBackend ops without a contract case: {string.Join(", ", missing)}");
        var stale = Valid.Keys.Where(k => !InterfaceOps().Contains(k)).ToList();
        Assert.True(stale.Count == 0, $"contract cases for no IBackend op: {string.Join(", ", stale)}");
    }

    public static IEnumerable<object[]> OpNames() => Valid.Keys.Select(k => new object[] { k });

    /// <summary>(op name, calls, flops) counted by one call, as a sorted list.</summary>
    static List<(string Op, long Calls, long Flops)> Counted(string backend, Action<IBackend, Inputs> call)
    {
        using var h = new OpHarness(backend);
        var inputs = new Inputs(h);
        var c = h.Be.Counters;
        var before = c.AllCalls.Keys.ToDictionary(k => k, k => (c.Calls(k), c.Flops(k)));
        call(h.Be, inputs);
        h.Be.Synchronize();
        var list = new List<(string, long, long)>();
        foreach (var k in c.AllCalls.Keys)
        {
            var (c0, f0) = before.TryGetValue(k, out var b) ? b : (0, 0);
            if (c.Calls(k) != c0) list.Add((k, c.Calls(k) - c0, c.Flops(k) - f0));
        }
        return list.OrderBy(t => t.Item1).ToList();
    }

    [Theory, MemberData(nameof(OpNames))]
    public void BothBackendsCountTheSameCallsAndFlops(string op)
    {
        var cpu = Counted(TestBackends.Cpu, Valid[op]);
        var ilgpu = Counted(TestBackends.IlgpuCpu, Valid[op]);
        Assert.True(cpu.Count == 1 && cpu[0].Calls == 1, $"{op} on cpu counted {Show(cpu)}, expected one call of one op");
        Assert.True(cpu.SequenceEqual(ilgpu), $"{op}: cpu counted {Show(cpu)}, ilgpu-cpu {Show(ilgpu)}");
        if (op is not ("Copy" or "Fill" or "StridedCopy")) Assert.True(cpu[0].Flops > 0, $"{op} counted no flops");
    }

    static string Show(List<(string Op, long Calls, long Flops)> l) => l.Count == 0 ? "nothing" : string.Join("; ", l.Select(t => $"{t.Op} x{t.Calls} {t.Flops} flops"));

    /// <summary>Bad calls beyond the too-short tensors of <see cref="ContractTests"/>: values, sizes, shapes.</summary>
    static readonly Dictionary<string, Action<IBackend, Inputs>> Bad = new()
    {
        ["ce_loss label = cols"] = (be, i) => be.CrossEntropy(i.T(Rows * Cols), i.Of(0, Cols, 1), i.T(Rows), i.T(Rows * Cols), i.T(Rows), Rows, Cols),
        ["ce_loss label negative"] = (be, i) => be.CrossEntropy(i.T(Rows * Cols), i.Of(-1, 0, 1), i.T(Rows), null, i.T(Rows), Rows, Cols),
        ["ce_loss label fractional"] = (be, i) => be.CrossEntropy(i.T(Rows * Cols), i.Of(0, 1.5, 1), i.T(Rows), null, i.T(Rows), Rows, Cols),
        ["ce_loss label NaN"] = (be, i) => be.CrossEntropy(i.T(Rows * Cols), i.Of(0, 1, double.NaN), i.T(Rows), null, i.T(Rows), Rows, Cols),
        ["cw_loss label huge"] = (be, i) => be.CwMarginLoss(i.T(Rows * Cols), i.Of(0, 1e9, 1), i.T(Rows), i.T(Rows * Cols), i.T(Rows), false, 0, Rows, Cols),
        ["cw_loss one column"] = (be, i) => be.CwMarginLoss(i.T(Rows), i.Of(0, 0, 0), i.T(Rows), null, i.T(Rows), false, 0, Rows, 1),
        ["dlr_loss target huge"] = (be, i) => be.DlrLoss(i.T(Rows * Cols), i.Of(0, 1, 2), i.Of(1, 1e9, 0), i.T(Rows), i.T(Rows * Cols), i.T(Rows), true, Rows, Cols),
        ["dlr_loss one column"] = (be, i) => be.DlrLoss(i.T(Rows), i.Of(0, 0, 0), i.Of(0, 0, 0), i.T(Rows), null, i.T(Rows), false, Rows, 1),
        ["maxpool pad > half window"] = (be, i) => be.MaxPoolForward(new PoolShape(1, 1, 5, 5, 2, 2, 1, 1, PadH: 2), i.T(25), i.T(100)),
        ["avgpool_bwd pad > half window"] = (be, i) => be.AvgPoolBackward(new PoolShape(1, 1, 5, 5, 3, 3, 1, 1, PadW: 2), i.T(100), i.T(25)),
        ["pool zero stride"] = (be, i) => be.AvgPoolForward(new PoolShape(1, 1, 5, 5, 2, 2, 0, 1), i.T(25), i.T(100)),
        ["conv groups do not divide"] = (be, i) => be.ConvForward(new ConvShape(1, 3, 4, 4, 2, 1, 1, Groups: 2), i.T(48), i.T(6), null, i.T(32)),
        ["conv empty output"] = (be, i) => be.ConvBackwardData(new ConvShape(1, 1, 2, 2, 1, 3, 3), i.T(1), i.T(9), i.T(4)),
        ["gemm negative size"] = (be, i) => be.Gemm(false, false, -1, 2, 2, 1, i.T(4), i.T(4), 0, i.T(4)),
        ["add lengths differ"] = (be, i) => be.Add(i.T(7), i.T(8), i.T(7)),
        ["add_relu lengths differ"] = (be, i) => be.AddRelu(i.T(7), i.T(7), i.T(8)),
        ["axpy lengths differ"] = (be, i) => be.Axpy(1, i.T(8), i.T(7)),
        ["div lengths differ"] = (be, i) => be.Div(i.T(7), i.T(7), i.T(8)),
        ["abs lengths differ"] = (be, i) => be.Abs(i.T(7), i.T(6)),
        ["where mask short"] = (be, i) => be.Where(i.T(2), i.T(12), i.T(12), i.T(12), 3, 4),
        ["where b short"] = (be, i) => be.Where(i.T(3), i.T(12), i.T(11), i.T(12), 3, 4),
        ["mul_rows v short"] = (be, i) => be.MulRows(i.T(12), i.T(2), i.T(12), 3, 4),
        ["add_rows negative cols"] = (be, i) => be.AddRows(i.T(12), i.T(3), i.T(12), 3, -4),
        ["clamp lengths differ"] = (be, i) => be.Clamp(i.T(7), 0, 1, i.T(6)),
        ["act_fwd lengths differ"] = (be, i) => be.ActivationForward(Activation.Relu, 0, i.T(7), i.T(8)),
        ["act_bwd sigmoid without y"] = (be, i) => be.ActivationBackward(Activation.Sigmoid, 0, i.T(7), null, i.T(7), i.T(7)),
        ["act_fwd unknown activation"] = (be, i) => be.ActivationForward((Activation)99, 0, i.T(7), i.T(7)),
        ["reduce unknown kind"] = (be, i) => be.ReduceRows((Reduction)99, i.T(12), i.T(3), 3, 4),
        ["softmax negative rows"] = (be, i) => be.Softmax(i.T(12), i.T(12), -1, 4),
        ["bias_add negative inner"] = (be, i) => be.BiasAdd(i.T(12), i.T(3), 1, 3, -4),
        ["channel_copy out of range"] = (be, i) => be.ChannelCopy(i.T(24), 3, 2, i.T(40), 5, 0, 2, 2, 4, false),
        ["channel_affine_bwd dscale without x"] = (be, i) => be.ChannelAffineBackward(i.T(Len), i.T(C), i.T(Len), null, i.T(C), null, N, C, HW),
        ["adam step 0"] = (be, i) => be.AdamUpdate(i.T(7), i.T(7), i.T(7), i.T(7), 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 0),
        ["sgd lengths differ"] = (be, i) => be.SgdUpdate(i.T(7), i.T(7), i.T(6), 0.1f, 0.9f, 0, false),
        ["dropout p > 1"] = (be, i) => be.DropoutForward(i.T(9), i.T(9), i.T(9), 1.5f, 5, 7),
        ["dropout p NaN"] = (be, i) => be.DropoutForward(i.T(9), i.T(9), i.T(9), float.NaN, 5, 7),
        ["warp_affine y short"] = (be, i) => be.WarpAffine(i.T(Len), i.T(Len - 1), N * C, 2, 2, Wm, 1f, 0f),
        ["warp_affine singular map"] = (be, i) => be.WarpAffine(i.T(Len), i.T(Len), N * C, 2, 2, new WarpMap(1, 2, 0, 2, 4, 0), 1f, 0f),
        ["warp_affine NaN map"] = (be, i) => be.WarpAffine(i.T(Len), i.T(Len), N * C, 2, 2, Wm with { C = float.NaN }, 1f, 0f),
        ["warp_affine_adjoint in place"] = (be, i) => { var t = i.T(Len); be.WarpAffineAdjoint(t, t, N * C, 2, 2, Wm, 1f, 0f); },
        ["warp_affine_adjoint negative planes"] = (be, i) => be.WarpAffineAdjoint(i.T(Len), i.T(Len), -1, 2, 2, Wm, 1f, 0f),
        ["scatter_rows y short"] = (be, i) => be.ScatterRows(i.T(10), i.T(3), i.T(6), i.T(6), i.T(14), 2, 3, 5, 2),
        ["scatter_rows val short"] = (be, i) => be.ScatterRows(i.T(10), i.T(3), i.T(6), i.T(5), i.T(15), 2, 3, 5, 2),
        ["scatter_rows negative edits"] = (be, i) => be.ScatterRows(i.T(10), i.T(3), i.T(6), i.T(6), i.T(15), 2, 3, 5, -1),
        ["scatter_rows in place"] = (be, i) => { var t = i.T(15); be.ScatterRows(t, i.T(3), i.T(6), i.T(6), t, 2, 3, 5, 2); },
        ["patch_apply place short"] = (be, i) => be.PatchApply(i.T(18), i.T(9), i.T(9), i.T(64), 2, 2, 4, 4, 3),
        ["patch_apply mask short"] = (be, i) => be.PatchApply(i.T(18), i.T(8), i.T(10), i.T(64), 2, 2, 4, 4, 3),
        ["patch_apply patch inside x"] = (be, i) => { var t = i.T(64); be.PatchApply(t.Slice(0, 18), i.T(9), i.T(10), t, 2, 2, 4, 4, 3); },
        ["patch_apply_adjoint dpatch short"] = (be, i) => be.PatchApplyAdjoint(i.T(64), i.T(9), i.T(10), i.T(17), 2, 2, 4, 4, 3),
        ["patch_apply_adjoint negative size"] = (be, i) => be.PatchApplyAdjoint(i.T(64), i.T(9), i.T(10), i.T(18), 2, 2, 4, 4, -3),
        ["jsma_step theta 0"] = (be, i) => be.JsmaStep(i.T(12), i.T(12), i.T(12), i.T(3), i.T(12), i.T(3), 0f, 3, 4),
        ["jsma_step changed short"] = (be, i) => be.JsmaStep(i.T(12), i.T(12), i.T(12), i.T(3), i.T(12), i.T(2), 1f, 3, 4),
        ["attack_step_l2 step short"] = (be, i) => be.AttackStepL2(i.T(12), i.T(12), i.T(12), i.T(2), i.T(3), 3, 4),
        ["upload wrong length"] = (be, i) => be.Upload(i.T(3), new float[4]),
        ["from_array wrong length"] = (be, _) => be.FromArray(new float[5], 2, 3).Dispose(),
        ["allocate negative"] = (be, _) => be.Allocate(2, -1).Dispose(),
    };

    public static IEnumerable<object[]> BadNames() =>
        Bad.Keys.Select(k => new object[] { k }).Concat(ContractTests.ShortCaseNames.Select(k => new object[] { "short: " + k }));

    static string Rejection(string backend, string name)
    {
        using var h = new OpHarness(backend);
        var inputs = new Inputs(h);
        var calls0 = h.Be.Counters.AllCalls;
        var e = Assert.ThrowsAny<ArgumentException>(() =>
        {
            if (name.StartsWith("short: ", StringComparison.Ordinal)) ContractTests.RunShortCase(name[7..], h.Be, n => inputs.T(n));
            else Bad[name](h.Be, inputs);
        });
        var calls1 = h.Be.Counters.AllCalls;
        Assert.True(calls0.Count == calls1.Count && calls0.All(kv => calls1[kv.Key] == kv.Value), $"{backend}: '{name}' counted work before rejecting it");
        Assert.False(string.IsNullOrWhiteSpace(e.Message));
        Assert.DoesNotContain('\n', e.Message);
        return e.Message;
    }

    [Theory, MemberData(nameof(BadNames))]
    public void BothBackendsRejectABadArgumentWithTheSameMessage(string name)
    {
        string cpu = Rejection(TestBackends.Cpu, name), ilgpu = Rejection(TestBackends.IlgpuCpu, name);
        Assert.Equal(cpu, ilgpu);
    }

    [Theory, InlineData(TestBackends.Cpu), InlineData(TestBackends.IlgpuCpu)]
    public void LabelErrorNamesTheRowAndTheRange(string backend)
    {
        var m = Rejection(backend, "ce_loss label = cols");
        Assert.Equal($"ce_loss: label {Cols} of row 1 is not a class index in [0, {Cols})", m);
    }

    [Fact]
    public void ATensorOfTheOtherBackendIsRejected()
    {
        using var cpu = new OpHarness(TestBackends.Cpu);
        using var ilgpu = new OpHarness(TestBackends.IlgpuCpu);
        var a = cpu.T(Ref.Rand(4, 1), 4); var b = ilgpu.T(Ref.Rand(4, 2), 4);
        var e1 = Assert.ThrowsAny<ArgumentException>(() => cpu.Be.Add(a, b, a));
        Assert.Contains("belongs to backend ilgpu-cpu", e1.Message);
        var e2 = Assert.ThrowsAny<ArgumentException>(() => ilgpu.Be.Copy(b, a));
        Assert.Contains("belongs to backend cpu", e2.Message);
    }
}
