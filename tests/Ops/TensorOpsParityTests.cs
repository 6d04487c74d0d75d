using Perturb.Engine;
using Perturb.Kernels;

namespace Perturb.Tests.Ops;

/// <summary>
/// The general-tensor ops (IBackend.Tensor.cs) on both backends against plain double references written here:
/// every element-wise function and its derivative, every broadcast binary op and the gradients of both operands
/// (summed over the broadcast axes), every reduction and its backward, and strided copies (transpose, strided slice).
/// Guarded views catch writes outside a tensor; NaN-filled outputs catch elements left unwritten.
/// </summary>
[Collection("ops")]
public class TensorOpsParityTests
{
    static (double F, double D) RefUnary(UnaryOp op, double a, double b, double x) => TensorRef.Unary(op, a, b, x);
    static double RefBin(BroadcastOp op, double a, double b) => TensorRef.Bin(op, a, b);
    static double RefBinD(BroadcastOp op, int which, double a, double b) => TensorRef.BinD(op, which, a, b);
    static int[] Unravel(int e, int[] dims) => TensorRef.Unravel(e, dims);
    static int At(int[] idx, int[] dims) => TensorRef.At(idx, dims);
    static int Prod(int[] s) => TensorRef.Prod(s);

    // ---------------------------------------------------------------- tests

    public static IEnumerable<object[]> Backends() => new[] { new object[] { TestBackends.Cpu }, new object[] { TestBackends.IlgpuCpu } };

    /// <summary>Every function and its derivative on 37 values in its domain; tolerances cover float32 (erf's approximation is within 1.2e-7).</summary>
    [Theory, MemberData(nameof(Backends))]
    public void UnaryOps(string backend)
    {
        using var h = new OpHarness(backend);
        const int n = 37;
        foreach (UnaryOp op in Enum.GetValues<UnaryOp>())
        {
            bool positive = op is UnaryOp.Sqrt or UnaryOp.Log or UnaryOp.Reciprocal or UnaryOp.Pow;
            var x = Ref.Rand(n, 10 + (int)op, positive ? 0.2 : -3, positive ? 3 : 3);
            if (!positive) { x[0] = 0.5; x[1] = -0.25; }
            var (a, b) = op switch
            {
                UnaryOp.HardSigmoid => (1 / 6.0, 0.5), UnaryOp.Elu => (0.7, 0), UnaryOp.Selu => (1.6732632423543772, 1.0507009873554805),
                UnaryOp.Pow => (2.5, 0), _ => (0.0, 0.0),
            };
            var xs = Ref.F(x).Select(v => (double)v).ToArray();   // the float inputs the backend sees
            var want = xs.Select(v => RefUnary(op, a, b, v).F).ToArray();
            var dy = Ref.Rand(n, 50 + (int)op);
            var wantD = xs.Select((v, i) => (double)(float)dy[i] * RefUnary(op, a, b, v).D).ToArray();
            var tx = h.V(x, n); var ty = h.Out(true, n);
            h.Op("unary_fwd", () => h.Be.UnaryForward(op, (float)a, (float)b, tx, ty));
            Ref.AssertClose(want, h.GetF(ty), 2e-6, 1e-6, $"{backend} {op} forward");
            var tdy = h.V(dy, n); var tdx = h.Out(true, n);
            h.Op("unary_bwd", () => h.Be.UnaryBackward(op, (float)a, (float)b, tx, tdy, tdx));
            Ref.AssertClose(wantD, h.GetF(tdx), 5e-6, 2e-6, $"{backend} {op} backward");
        }
        h.CheckGuards();
    }

    /// <summary>Both operands broadcast, one operand broadcast along the outer axes, and equal shapes; both gradients.</summary>
    [Theory, MemberData(nameof(Backends))]
    public void BinaryOpsBroadcastForwardAndBackward(string backend)
    {
        using var h = new OpHarness(backend);
        var cases = new (int[] A, int[] B)[]
        {
            (new[] { 2, 3, 1, 5 }, new[] { 2, 1, 4, 5 }),   // both broadcast
            (new[] { 2, 3, 4, 5 }, new[] { 1, 3, 1, 1 }),   // per-channel constant shape
            (new[] { 2, 6, 1, 1 }, new[] { 2, 6, 3, 3 }),   // squeeze-excitation
            (new[] { 3, 7 }, new[] { 3, 7 }),
        };
        int seed = 0;
        foreach (var (sa, sb) in cases)
            foreach (BroadcastOp op in Enum.GetValues<BroadcastOp>())
            {
                seed++;
                var sy = Strided.BroadcastShape(sa, sb)!;
                bool pos = op == BroadcastOp.Pow;
                var a = Ref.Rand(Prod(sa), seed, pos ? 0.3 : -2, 2); var b = Ref.Rand(Prod(sb), seed + 100, pos ? 0.5 : -2, 2);
                if (op == BroadcastOp.Div) b = b.Select(v => Math.Abs(v) + 0.5).ToArray();
                if (op is BroadcastOp.Max or BroadcastOp.Min && a.Length > 3 && b.Length > 3) a[1] = (float)b[1];   // a tie (same position when shapes match)
                var af = Ref.F(a).Select(v => (double)v).ToArray(); var bf = Ref.F(b).Select(v => (double)v).ToArray();
                var dy = Ref.Rand(Prod(sy), seed + 200); var dyf = Ref.F(dy).Select(v => (double)v).ToArray();
                var want = new double[Prod(sy)]; var da = new double[a.Length]; var db = new double[b.Length];
                for (int e = 0; e < want.Length; e++)
                {
                    var idx = Unravel(e, sy);
                    int ia = At(idx, sa), ib = At(idx, sb);
                    want[e] = RefBin(op, af[ia], bf[ib]);
                    da[ia] += dyf[e] * RefBinD(op, 0, af[ia], bf[ib]);
                    db[ib] += dyf[e] * RefBinD(op, 1, af[ia], bf[ib]);
                }
                var ta = h.V(a, sa); var tb = h.V(b, sb); var ty = h.Out(true, sy); var tdy = h.V(dy, sy);
                string what = $"{backend} {op} {Tensor.ShapeString(sa)} with {Tensor.ShapeString(sb)}";
                h.Op("broadcast_fwd", () => h.Be.BroadcastForward(op, ta, tb, ty, Strided.Binary(sa, sb, sy)), Prod(sy));
                Ref.AssertClose(want, h.GetF(ty), 2e-6, 1e-6, what + " forward");
                for (int which = 0; which < 2; which++)
                {
                    var (keep, red) = Strided.BinaryGrad(sa, sb, sy, which);
                    var tdx = h.Out(true, which == 0 ? sa : sb);
                    int w = which;
                    h.Op("broadcast_bwd", () => h.Be.BroadcastBackward(op, w, ta, tb, tdy, tdx, keep, red));
                    Ref.AssertClose(which == 0 ? da : db, h.GetF(tdx), 1e-5, 1e-5, what + $" gradient of operand {which}");
                }
            }
        h.CheckGuards();
    }

    /// <summary>Every reduction over inner, outer, several and all non-batch axes of [2, 3, 4, 5]; backward against its derivative.</summary>
    [Theory, MemberData(nameof(Backends))]
    public void ReductionsForwardAndBackward(string backend)
    {
        using var h = new OpHarness(backend);
        var sx = new[] { 2, 3, 4, 5 };
        int seed = 0;
        foreach (var axes in new[] { new[] { 3 }, new[] { 1 }, new[] { 1, 3 }, new[] { 2, 3 }, new[] { 1, 2, 3 } })
            foreach (ReduceOp op in Enum.GetValues<ReduceOp>())
            {
                var x = Ref.Rand(Prod(sx), ++seed, -2, 2); var xf = Ref.F(x).Select(v => (double)v).ToArray();
                var sy = sx.Select((d, i) => axes.Contains(i) ? 1 : d).ToArray();
                var want = new double[Prod(sy)]; var cnt = new int[want.Length];
                var arg = Enumerable.Repeat(-1, want.Length).ToArray();
                for (int e = 0; e < xf.Length; e++)
                {
                    int o = At(Unravel(e, sx), sy), c = cnt[o]++;
                    double v = xf[e];
                    switch (op)
                    {
                        case ReduceOp.Max: if (c == 0 || v > want[o]) { want[o] = v; arg[o] = e; } break;
                        case ReduceOp.Min: if (c == 0 || v < want[o]) { want[o] = v; arg[o] = e; } break;
                        case ReduceOp.L2: want[o] += v * v; break;
                        default: want[o] += v; break;
                    }
                }
                for (int o = 0; o < want.Length; o++)
                    want[o] = op == ReduceOp.L2 ? Math.Sqrt(want[o]) : op == ReduceOp.Mean ? want[o] / cnt[o] : want[o];
                var dy = Ref.Rand(want.Length, seed + 500); var dyf = Ref.F(dy).Select(v => (double)v).ToArray();
                var dx = new double[xf.Length];
                for (int e = 0; e < xf.Length; e++)
                {
                    int o = At(Unravel(e, sx), sy);
                    dx[e] = op switch
                    {
                        ReduceOp.Sum => dyf[o], ReduceOp.Mean => dyf[o] / cnt[o], ReduceOp.L2 => dyf[o] * xf[e] / want[o],
                        _ => arg[o] == e ? dyf[o] : 0,
                    };
                }
                var (keep, red) = Strided.Reduce(sx, axes);
                var tx = h.V(x, sx); var ty = h.Out(true, sy); var tdy = h.V(dy, sy); var tdx = h.Out(true, sx);
                string what = $"{backend} {op} over [{string.Join(", ", axes)}]";
                h.Op("reduce_axes", () => h.Be.ReduceAxes(op, tx, ty, keep, red));
                Ref.AssertClose(want, h.GetF(ty), 1e-5, 1e-5, what);
                h.Op("reduce_axes_bwd", () => h.Be.ReduceAxesBackward(op, tx, ty, tdy, tdx, keep, red));
                Ref.AssertClose(dx, h.GetF(tdx), 1e-5, 1e-5, what + " backward");
            }
        h.CheckGuards();
    }

    /// <summary>A transpose of [2, 3, 4, 5] by (0, 3, 1, 2) and a strided slice with an offset, both exact.</summary>
    [Theory, MemberData(nameof(Backends))]
    public void StridedCopies(string backend)
    {
        using var h = new OpHarness(backend);
        var sx = new[] { 2, 3, 4, 5 };
        var x = Ref.Rand(Prod(sx), 7);
        var perm = new[] { 0, 3, 1, 2 };
        var sy = perm.Select(p => sx[p]).ToArray();
        var want = new double[x.Length];
        for (int e = 0; e < want.Length; e++)
        {
            var iy = Unravel(e, sy); var ix = new int[4];
            for (int d = 0; d < 4; d++) ix[perm[d]] = iy[d];
            want[e] = (float)x[At(ix, sx)];
        }
        var cs = Strided.Contiguous(sx);
        var tx = h.V(x, sx); var ty = h.Out(true, sy);
        h.Op("strided_copy", () => h.Be.StridedCopy(tx, ty, Strided.Make(sy, perm.Select(p => cs[p]).ToArray(), Strided.Contiguous(sy))));
        Ref.AssertClose(want, h.GetF(ty), 0, 0, $"{backend} transpose");

        // x[:, 1:3, 0:4:2, 1:5:3] → [2, 2, 2, 2]
        var ss = new[] { 2, 2, 2, 2 };
        var want2 = new double[Prod(ss)];
        for (int e = 0; e < want2.Length; e++)
        {
            var i = Unravel(e, ss);
            want2[e] = (float)x[At(new[] { i[0], 1 + i[1], 2 * i[2], 1 + 3 * i[3] }, sx)];
        }
        var s1 = new[] { cs[0], cs[1], 2 * cs[2], 3 * cs[3] };
        var tz = h.Out(true, ss);
        h.Op("strided_copy", () => h.Be.StridedCopy(tx, tz, Strided.Make(ss, s1, Strided.Contiguous(ss), null, cs[1] + cs[3], 0)));
        Ref.AssertClose(want2, h.GetF(tz), 0, 0, $"{backend} strided slice");
        h.CheckGuards();
    }

    /// <summary>An iteration that would reach past a tensor is refused before any work.</summary>
    [Theory, MemberData(nameof(Backends))]
    public void OutOfRangeIterationIsRefused(string backend)
    {
        using var h = new OpHarness(backend);
        var x = h.T(Ref.Rand(12, 1), 12); var y = h.Out(false, 12);
        var s = Strided.Make(new[] { 12 }, new[] { 2 }, new[] { 1 });
        Assert.Throws<ArgumentException>(() => h.Be.StridedCopy(x, y, s));
    }

    /// <summary>Negative strides (Slice with negative steps): a reversal is copied exactly; one that starts too early is refused.</summary>
    [Theory, MemberData(nameof(Backends))]
    public void NegativeStridesReverseAndAreBounded(string backend)
    {
        using var h = new OpHarness(backend);
        var x = Ref.Rand(12, 3);
        var tx = h.V(x, 3, 4); var ty = h.Out(true, 3, 4);
        // y[i, j] = x[2 - i, 3 - j]
        h.Op("strided_copy", () => h.Be.StridedCopy(tx, ty, Strided.Make(new[] { 3, 4 }, new[] { -4, -1 }, new[] { 4, 1 }, null, 11, 0)));
        Ref.AssertClose(x.Reverse().Select(v => (double)(float)v).ToArray(), h.GetF(ty), 0, 0, $"{backend} reversal");
        h.CheckGuards();
        var y = h.Out(false, 12);
        Assert.Throws<ArgumentException>(() => h.Be.StridedCopy(tx, y, Strided.Make(new[] { 12 }, new[] { -1 }, new[] { 1 }, null, 10, 0)));
    }
}
