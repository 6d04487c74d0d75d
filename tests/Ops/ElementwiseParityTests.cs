using Perturb.Engine;

namespace Perturb.Tests.Ops;

/// <summary>Memory ops, element-wise ops, channel copy and per-row reductions against <see cref="Ref"/>.</summary>
[Collection("ops")]
public class ElementwiseParityTests
{
    const int N = 37;   // odd, not a multiple of any vector width

    /// <summary>Allocate is zero-filled; Upload and ToArray on a view touch only the view's range; Name is the device name used here.</summary>
    [Theory, InlineData(TestBackends.Cpu), InlineData(TestBackends.IlgpuCpu)]
    public void MemoryOps(string backend)
    {
        using var h = new OpHarness(backend);
        Assert.Equal(backend, h.Be.Name);
        using var z = h.Be.Allocate(3, 5, 7);
        Assert.Equal(105, z.Length);
        Assert.Equal(new[] { 3, 5, 7 }, z.Shape);
        Ref.AssertClose(new double[105], h.GetF(z), 0, 0, $"{backend} Allocate is zero-filled");

        var x = Ref.Rand(N, 4);
        var v = h.V(Ref.Full(N, 9), N);
        h.Be.Upload(v, Ref.F(x));
        Ref.AssertClose(x, h.GetF(v), 0, 0, $"{backend} Upload/ToArray through a view");
        var t = h.T(x, N);
        Ref.AssertClose(x, h.GetF(t), 0, 0, $"{backend} FromArray/ToArray");
        Ref.AssertClose(x.Skip(N - 12).ToArray(), h.GetF(h.T(x, 37, 1).Slice(N - 12, 12)), 0, 0, $"{backend} ToArray of a slice");
        h.CheckGuards();
    }

    [Theory, InlineData(TestBackends.Cpu), InlineData(TestBackends.IlgpuCpu)]
    public void CopyAndFill(string backend)
    {
        using var h = new OpHarness(backend);
        var x = Ref.Rand(N, 1);
        var tx = h.V(x, N); var ty = h.Out(true, N);
        h.Op("copy", () => h.Be.Copy(tx, ty));
        Ref.AssertClose(x, h.GetF(ty), 0, 0, $"{backend} copy");
        h.Op("fill", () => h.Be.Fill(ty, -2.5f));
        Ref.AssertClose(Ref.Full(N, -2.5), h.GetF(ty), 0, 0, $"{backend} fill");
        h.CheckGuards();
    }

    /// <summary>Each op out of place, then with the output aliasing an input where the op allows it. Exact to 1 float rounding: rtol 1e-6, atol 1e-7.</summary>
    [Theory, InlineData(TestBackends.Cpu), InlineData(TestBackends.IlgpuCpu)]
    public void ElementwiseOps(string backend)
    {
        const double rt = 1e-6, at = 1e-7;
        using var h = new OpHarness(backend);
        var a = Ref.Rand(N, 2, -2, 2); var b = Ref.Rand(N, 3, -2, 2);
        a[0] = 0; a[1] = -0.0; b[2] = 0;
        var ta = h.V(a, N); var tb = h.V(b, N);

        var ty = h.Out(true, N);
        h.Op("add", () => h.Be.Add(ta, tb, ty));
        Ref.AssertClose(Ref.Add(a, b), h.GetF(ty), rt, at, $"{backend} add");
        var ta2 = h.V(a, N);
        h.Op("add", () => h.Be.Add(ta2, tb, ta2));
        Ref.AssertClose(Ref.Add(a, b), h.GetF(ta2), rt, at, $"{backend} add (y aliases a)");

        ty = h.Out(true, N);
        h.Op("mul", () => h.Be.Mul(ta, tb, ty));
        Ref.AssertClose(Ref.Mul(a, b), h.GetF(ty), rt, at, $"{backend} mul");
        var tb2 = h.V(b, N);
        h.Op("mul", () => h.Be.Mul(ta, tb2, tb2));
        Ref.AssertClose(Ref.Mul(a, b), h.GetF(tb2), rt, at, $"{backend} mul (y aliases b)");

        var ty3 = h.V(b, N);
        h.Op("axpy", () => h.Be.Axpy(-0.75f, ta, ty3));
        Ref.AssertClose(Ref.Axpy(-0.75, a, b), h.GetF(ty3), rt, at, $"{backend} axpy");

        ty = h.Out(true, N);
        h.Op("scale", () => h.Be.Scale(1.5f, ta, ty));
        Ref.AssertClose(Ref.Scale(1.5, a), h.GetF(ty), rt, at, $"{backend} scale");
        var ta3 = h.V(a, N);
        h.Op("scale", () => h.Be.Scale(-3f, ta3, ta3));
        Ref.AssertClose(Ref.Scale(-3, a), h.GetF(ta3), rt, at, $"{backend} scale in place");

        ty = h.Out(true, N);
        h.Op("clamp", () => h.Be.Clamp(ta, -0.5f, 1.25f, ty));
        Ref.AssertClose(Ref.Clamp(a, -0.5, 1.25), h.GetF(ty), 0, 0, $"{backend} clamp");
        var ta4 = h.V(a, N);
        h.Op("clamp", () => h.Be.Clamp(ta4, 0f, 1f, ta4));
        Ref.AssertClose(Ref.Clamp(a, 0, 1), h.GetF(ta4), 0, 0, $"{backend} clamp in place");

        ty = h.Out(true, N);
        h.Op("sign", () => h.Be.Sign(ta, ty));
        Ref.AssertClose(Ref.Sign(a), h.GetF(ty), 0, 0, $"{backend} sign (with +0 and -0 inputs)");
        var ta5 = h.V(a, N);
        h.Op("sign", () => h.Be.Sign(ta5, ta5));
        Ref.AssertClose(Ref.Sign(a), h.GetF(ta5), 0, 0, $"{backend} sign in place");

        ty = h.Out(true, N);
        h.Op("lerp", () => h.Be.Lerp(ta, tb, 0.3f, ty));
        Ref.AssertClose(Ref.Lerp(a, b, 0.3f), h.GetF(ty), 1e-6, 1e-6, $"{backend} lerp");
        var ta6 = h.V(a, N); var tb6 = h.V(b, N);
        h.Op("lerp", () => h.Be.Lerp(ta6, tb, -0.5f, ta6));
        Ref.AssertClose(Ref.Lerp(a, b, -0.5), h.GetF(ta6), 1e-6, 1e-6, $"{backend} lerp (y aliases a)");
        h.Op("lerp", () => h.Be.Lerp(ta, tb6, 1.25f, tb6));
        Ref.AssertClose(Ref.Lerp(a, b, 1.25), h.GetF(tb6), 1e-6, 1e-6, $"{backend} lerp (y aliases b)");
        h.CheckGuards();
    }

    /// <summary>
    /// add_relu (the residual sum and its ReLU in one pass) against the double reference max(a + b, 0) (rtol 1e-6,
    /// atol 1e-7, as add), out of place into a NaN-filled output and aliasing an input, guards checked; and bit for bit
    /// against the composition it replaces, add then act_fwd ReLU, on the same backend (sums of exactly 0 and of -0
    /// included: both give +0).
    /// </summary>
    [Theory, InlineData(TestBackends.Cpu), InlineData(TestBackends.IlgpuCpu)]
    public void AddReluIsAddThenRelu(string backend)
    {
        using var h = new OpHarness(backend);
        var a = Ref.Rand(N, 31, -2, 2); var b = Ref.Rand(N, 32, -2, 2);
        a[0] = 0; b[0] = 0; a[1] = -0.0; b[1] = -0.0; a[2] = 0.75; b[2] = -0.75;
        var ta = h.V(a, N); var tb = h.V(b, N);
        var want = Ref.Add(Ref.D(Ref.F(a)), Ref.D(Ref.F(b))).Select(v => Math.Max(v, 0)).ToArray();

        var ty = h.Out(true, N);
        h.Op("add_relu", () => h.Be.AddRelu(ta, tb, ty), flops: 2 * N);
        Ref.AssertClose(want, h.GetF(ty), 1e-6, 1e-7, $"{backend} add_relu");
        var sum = h.Out(true, N); var relu = h.Out(true, N);
        h.Op("add", () => h.Be.Add(ta, tb, sum));
        h.Op("act_fwd", () => h.Be.ActivationForward(Activation.Relu, 0f, sum, relu));
        Ref.AssertBitEqual(h.GetF(relu), h.GetF(ty), $"{backend} add_relu against add then relu");
        var ta2 = h.V(a, N);
        h.Op("add_relu", () => h.Be.AddRelu(ta2, tb, ta2));
        Ref.AssertBitEqual(h.GetF(ty), h.GetF(ta2), $"{backend} add_relu (y aliases a)");
        h.CheckGuards();
    }

    /// <summary>Values a select or a mask must pass through unchanged: NaN, infinities, signed zeros, 1e10, 1e-10, a denormal.</summary>
    static readonly double[] Specials = [double.NaN, double.PositiveInfinity, double.NegativeInfinity, 0.0, -0.0, 1e10, -1e10, 1e-10, 1e-40, 3.5, -2.25];

    /// <summary>
    /// div, greater, abs out of place and aliased, over random values and <see cref="Specials"/> on both sides (so
    /// x/0, 0/0, inf/inf and NaN comparisons occur). div: IEEE float division is correctly rounded, so the double
    /// reference rounded to float is exact (rtol 1e-7); greater and abs exact (abs bitwise).
    /// </summary>
    [Theory, InlineData(TestBackends.Cpu), InlineData(TestBackends.IlgpuCpu)]
    public void DivGreaterAbs(string backend)
    {
        using var h = new OpHarness(backend);
        var a = Ref.Rand(N, 21, -3, 3); var b = Ref.Rand(N, 22, -3, 3);
        for (int i = 0; i < Specials.Length; i++) { a[i] = Specials[i]; b[N - 1 - i] = Specials[i]; b[i] = Specials[(i + 3) % Specials.Length]; }
        var ta = h.V(a, N); var tb = h.V(b, N);

        var ty = h.Out(true, N);
        h.Op("div", () => h.Be.Div(ta, tb, ty), flops: N);
        Ref.AssertClose(Ref.Div(Ref.D(Ref.F(a)), Ref.D(Ref.F(b))).Select(v => (double)(float)v).ToArray(), h.GetF(ty), 1e-7, 0, $"{backend} div");
        var tb2 = h.V(b, N);
        h.Op("div", () => h.Be.Div(ta, tb2, tb2));
        Ref.AssertClose(Ref.D(h.GetF(ty)), h.GetF(tb2), 0, 0, $"{backend} div (y aliases b)");

        ty = h.Out(true, N);
        h.Op("greater", () => h.Be.Greater(ta, tb, ty), flops: N);
        Ref.AssertClose(Ref.Greater(a, b), h.GetF(ty), 0, 0, $"{backend} greater (NaN compares false)");
        var ta2 = h.V(a, N);
        h.Op("greater", () => h.Be.Greater(ta2, tb, ta2));
        Ref.AssertClose(Ref.Greater(a, b), h.GetF(ta2), 0, 0, $"{backend} greater (y aliases a)");

        ty = h.Out(true, N);
        h.Op("abs", () => h.Be.Abs(ta, ty), flops: N);
        Ref.AssertBitEqual(Ref.Abs(Ref.F(a)), h.GetF(ty), $"{backend} abs");
        var ta3 = h.V(a, N);
        h.Op("abs", () => h.Be.Abs(ta3, ta3));
        Ref.AssertBitEqual(Ref.Abs(Ref.F(a)), h.GetF(ta3), $"{backend} abs in place");
        h.CheckGuards();
    }

    /// <summary>
    /// where is a select, bit-exact for any values: rows of <see cref="Specials"/> and random values, masks 0, 1, -1,
    /// NaN (non-zero) and -0 (zero); per-row (cols 7) and element-wise (cols 1), out of place and as keep-best in place.
    /// </summary>
    [Theory, InlineData(TestBackends.Cpu, 7), InlineData(TestBackends.Cpu, 1), InlineData(TestBackends.IlgpuCpu, 7), InlineData(TestBackends.IlgpuCpu, 1)]
    public void WhereIsExactForAnyValues(string backend, int cols)
    {
        using var h = new OpHarness(backend);
        const int rows = 9;
        var a = Ref.Rand(rows * cols, 31, -1e10, 1e10); var b = Ref.Rand(rows * cols, 32, -1e-10, 1e-10);
        for (int i = 0; i < Specials.Length && i < rows * cols; i++) { a[i] = Specials[i]; b[rows * cols - 1 - i] = Specials[i]; }
        var m = new double[] { 0, 1, -1, double.NaN, -0.0, 1e-30, 0, 2, 0 };
        var tm = h.V(m, rows); var ta = h.V(a, rows, cols); var tb = h.V(b, rows, cols);
        var expected = Ref.Where(Ref.F(m), Ref.F(a), Ref.F(b), rows, cols);

        var ty = h.Out(true, rows, cols);
        h.Op("where", () => h.Be.Where(tm, ta, tb, ty, rows, cols), flops: rows * cols);
        Ref.AssertBitEqual(expected, h.GetF(ty), $"{backend} where cols={cols}");
        var best = h.V(b, rows, cols);
        h.Op("where", () => h.Be.Where(tm, ta, best, best, rows, cols));
        Ref.AssertBitEqual(expected, h.GetF(best), $"{backend} where into b (keep-best)");
        var cand = h.V(a, rows, cols);
        h.Op("where", () => h.Be.Where(tm, cand, tb, cand, rows, cols));
        Ref.AssertBitEqual(expected, h.GetF(cand), $"{backend} where into a");
        h.CheckGuards();
    }

    /// <summary>y[r, c] = x[r, c] * v[r] and + v[r], out of place and in place; exact to one rounding.</summary>
    [Theory, InlineData(TestBackends.Cpu), InlineData(TestBackends.IlgpuCpu)]
    public void RowBroadcast(string backend)
    {
        using var h = new OpHarness(backend);
        const int rows = 5, cols = 37;
        var x = Ref.Rand(rows * cols, 41, -2, 2); var v = Ref.Rand(rows, 42, -3, 3);
        v[1] = 0; v[2] = -0.0;
        var tx = h.V(x, rows, cols); var tv = h.V(v, rows);
        foreach (bool mul in new[] { true, false })
        {
            string op = mul ? "mul_rows" : "add_rows";
            void Run(Tensor src, Tensor dst) { if (mul) h.Be.MulRows(src, tv, dst, rows, cols); else h.Be.AddRows(src, tv, dst, rows, cols); }
            var ty = h.Out(true, rows, cols);
            h.Op(op, () => Run(tx, ty), flops: rows * cols);
            Ref.AssertClose(Ref.RowBroadcast(mul, x, v, rows, cols), h.GetF(ty), 1e-7, 0, $"{backend} {op}");
            var tx2 = h.V(x, rows, cols);
            h.Op(op, () => Run(tx2, tx2));
            Ref.AssertClose(Ref.RowBroadcast(mul, x, v, rows, cols), h.GetF(tx2), 1e-7, 0, $"{backend} {op} in place");
        }
        h.CheckGuards();
    }

    public static IEnumerable<object[]> ChannelCopyCases()
    {
        foreach (var be in new[] { TestBackends.Cpu, TestBackends.IlgpuCpu })
            foreach (var acc in new[] { false, true })
            {
                yield return new object[] { be, acc, 5, 1, 4, 2, 2, 2, 3 };   // a middle slice into the end
                yield return new object[] { be, acc, 3, 0, 7, 3, 3, 3, 4 };   // whole source into the middle (Concat)
                yield return new object[] { be, acc, 6, 4, 2, 0, 2, 1, 5 };   // outer 1
                yield return new object[] { be, acc, 2, 1, 3, 1, 1, 4, 1 };   // inner 1
            }
    }

    /// <summary>Channels outside the copied range must keep their values; exact (accumulate: rtol 1e-6).</summary>
    [Theory, MemberData(nameof(ChannelCopyCases))]
    public void ChannelCopy(string backend, bool accumulate, int srcC, int srcOff, int dstC, int dstOff, int count, int outer, int inner)
    {
        using var h = new OpHarness(backend);
        var src = Ref.Rand(outer * srcC * inner, srcC + dstC);
        var dst = Ref.Rand(outer * dstC * inner, 2 * srcC + dstC);
        var ts = h.V(src, outer, srcC, inner); var td = h.V(dst, outer, dstC, inner);
        h.Op("channel_copy", () => h.Be.ChannelCopy(ts, srcC, srcOff, td, dstC, dstOff, count, outer, inner, accumulate));
        Ref.AssertClose(Ref.ChannelCopy(src, srcC, srcOff, dst, dstC, dstOff, count, outer, inner, accumulate), h.GetF(td),
            1e-6, 1e-7, $"{backend} channel_copy accumulate={accumulate} src {outer}x{srcC}x{inner}+{srcOff} -> dst {outer}x{dstC}x{inner}+{dstOff}, {count} ch");
        h.CheckGuards();
    }

    /// <summary>Rows: random; all negative; with zeros; all zero; one huge value. Sum rtol 1e-5, atol 1e-5; the others rtol 1e-6.</summary>
    static (double[] x, int rows, int cols) ReduceInput()
    {
        const int rows = 6, cols = 9;
        var x = Ref.Rand(rows * cols, 12, -2, 2);
        for (int j = 0; j < cols; j++) x[cols + j] = -Math.Abs(x[cols + j]) - 0.5;           // row 1 all negative
        x[2 * cols + 1] = 0; x[2 * cols + 4] = -0.0; x[2 * cols + 8] = 0;                       // row 2 some zeros
        for (int j = 0; j < cols; j++) x[3 * cols + j] = 0;                                     // row 3 all zero
        x[4 * cols + 6] = -1000;                                                                 // row 4: |min| > max
        x[5 * cols + 2] = 1e-30f;                                                                // row 5: tiny but non-zero (L0 counts it)
        return (x, rows, cols);
    }

    public static IEnumerable<object[]> ReduceCases()
    {
        foreach (var be in new[] { TestBackends.Cpu, TestBackends.IlgpuCpu })
            foreach (var k in Enum.GetValues<Reduction>())
                yield return new object[] { be, k };
    }

    [Theory, MemberData(nameof(ReduceCases))]
    public void ReduceRows(string backend, Reduction kind)
    {
        using var h = new OpHarness(backend);
        var (x, rows, cols) = ReduceInput();
        var tx = h.V(x, rows, cols); var to = h.Out(true, rows);
        h.Op("reduce", () => h.Be.ReduceRows(kind, tx, to, rows, cols));
        double rt = kind == Reduction.Sum ? 1e-5 : 1e-6, at = kind == Reduction.Sum ? 1e-5 : 0;
        Ref.AssertClose(Ref.ReduceRows(kind, x, rows, cols), h.GetF(to), rt, at, $"{backend} reduce {kind}");
        h.CheckGuards();
    }

    /// <summary>Ties go to the first maximum; all-equal and all-negative rows; exact.</summary>
    [Theory, InlineData(TestBackends.Cpu), InlineData(TestBackends.IlgpuCpu)]
    public void ArgmaxRows(string backend)
    {
        using var h = new OpHarness(backend);
        const int cols = 5;
        var x = new double[]
        {
            1, 3, 3, 0, 2,
            -1, -1, -1, -1, -1,
            -5, -4, -3, -2, -1,
            7, 0, 7, 0, 7,
            0.5, 0.25, 0.125, 0.75, 0.75,
        };
        x = x.Concat(Ref.Rand(3 * cols, 13)).ToArray();
        int rows = x.Length / cols;
        var expected = Ref.ArgmaxRows(x, rows, cols);
        Assert.Equal(new double[] { 1, 0, 4, 0, 3 }, expected[..5]);
        var tx = h.V(x, rows, cols); var to = h.Out(true, rows);
        h.Op("argmax", () => h.Be.ArgmaxRows(tx, to, rows, cols));
        Ref.AssertClose(expected, h.GetF(to), 0, 0, $"{backend} argmax");
        h.CheckGuards();
    }
}
