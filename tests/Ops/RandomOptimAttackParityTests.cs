using Perturb.Engine;
using Philox = Perturb.Kernels.Philox;

namespace Perturb.Tests.Ops;

/// <summary>Philox random numbers, dropout, optimiser updates and fused attack steps against <see cref="Ref"/>.</summary>
[Collection("ops")]
public class RandomOptimAttackParityTests
{
    // ------------------------------------------------------------------ Philox

    /// <summary>Random123's kat_vectors for philox4x32 10: (counter, key) -> four words.</summary>
    [Theory]
    [InlineData(0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u)]
    [InlineData(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu)]
    [InlineData(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u, 0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u)]
    public void PhiloxKnownAnswer(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1, uint e0, uint e1, uint e2, uint e3)
    {
        var (w0, w1, w2, w3) = Philox.Block(c0, c1, c2, c3, k0, k1);
        Assert.Equal((e0, e1, e2, e3), (w0, w1, w2, w3));
    }

    /// <summary>Philox.Uniform follows the IBackend definition: key (lo, hi of seed), counter (lo, hi of offset + i, 0, 0), (w0 &gt;&gt; 8)*2^-24.</summary>
    [Fact]
    public void PhiloxUniformMatchesDefinition()
    {
        ulong seed = 0x0123456789ABCDEFUL, offset = 0xFFFFFFFFUL - 2;
        for (long i = 0; i < 6; i++)
        {
            ulong c = offset + (ulong)i;
            var (w0, _, _, _) = Philox.Block((uint)c, (uint)(c >> 32), 0, 0, 0x89ABCDEFu, 0x01234567u);
            Assert.Equal((w0 >> 8) / 16777216.0, (double)Philox.Uniform(seed, offset, i));
        }
        Assert.Equal((0x6627e8d5u >> 8) / 16777216.0, (double)Philox.Uniform(0, 0, 0));
    }

    public static IEnumerable<object[]> UniformCases()
    {
        foreach (var be in new[] { TestBackends.Cpu, TestBackends.IlgpuCpu })
        {
            yield return new object[] { be, 0UL, 0UL, 1000 };
            yield return new object[] { be, 0x0123456789ABCDEFUL, 0xFFFFFFFFUL - 300, 777 };   // counter crosses into its high word
            yield return new object[] { be, 42UL, 1UL << 40, 1 };
        }
    }

    /// <summary>Bit-identical to Philox.Uniform, written through a view with an offset (index i is relative to the view).</summary>
    [Theory, MemberData(nameof(UniformCases))]
    public void RandomUniformIsBitExact(string backend, ulong seed, ulong offset, int n)
    {
        using var h = new OpHarness(backend);
        var t = h.Out(true, n);
        h.Op("rand_uniform", () => h.Be.RandomUniform(t, seed, offset));
        var got = h.GetF(t);
        Ref.AssertBitEqual(Ref.Uniform(n, seed, offset), got, $"{backend} rand_uniform seed={seed:x} offset={offset:x}");
        Assert.All(got, u => Assert.InRange(u, 0f, 0.99999995f));
        h.CheckGuards();
    }

    [Fact]
    public void RandomUniformIsBitIdenticalAcrossBackends()
    {
        using var c = new OpHarness(TestBackends.Cpu);
        using var g = new OpHarness(TestBackends.IlgpuCpu);
        var tc = c.Out(false, 513); var tg = g.Out(false, 513);
        c.Op("rand_uniform", () => c.Be.RandomUniform(tc, 987654321UL, 12345UL));
        g.Op("rand_uniform", () => g.Be.RandomUniform(tg, 987654321UL, 12345UL));
        Ref.AssertBitEqual(c.GetF(tc), g.GetF(tg), "rand_uniform cpu vs ilgpu-cpu");
    }

    /// <summary>
    /// Element-wise against Box-Muller in double on the same words (rtol 1e-4, atol 1e-4: float log/cos), then sample
    /// mean and std of 4096 values within 5 standard errors.
    /// </summary>
    [Theory, InlineData(TestBackends.Cpu), InlineData(TestBackends.IlgpuCpu)]
    public void RandomNormal(string backend)
    {
        using var h = new OpHarness(backend);
        const int n = 4096; const float mean = 2f, std = 3f; const ulong seed = 2024, offset = 99;
        var t = h.Out(true, n);
        h.Op("rand_normal", () => h.Be.RandomNormal(t, seed, offset, mean, std));
        var got = h.GetF(t);
        Ref.AssertClose(Ref.Normal(n, seed, offset, mean, std), got, 1e-4, 1e-4, $"{backend} rand_normal");

        double m = got.Average(v => (double)v), sd = Math.Sqrt(got.Sum(v => (v - m) * (v - m)) / (n - 1));
        Assert.InRange(m, mean - 5 * std / Math.Sqrt(n), mean + 5 * std / Math.Sqrt(n));
        Assert.InRange(sd, std * (1 - 5 / Math.Sqrt(2.0 * n)), std * (1 + 5 / Math.Sqrt(2.0 * n)));

        var t01 = h.Out(false, 64);
        h.Op("rand_normal", () => h.Be.RandomNormal(t01, seed, offset));
        Ref.AssertClose(Ref.Normal(64, seed, offset), h.GetF(t01), 1e-4, 1e-4, $"{backend} rand_normal default mean/std");
        h.CheckGuards();
    }

    [Fact]
    public void ReferenceNormalMatchesPhiloxNormal()
    {
        var r = Ref.Normal(256, 7, 3);
        var p = Enumerable.Range(0, 256).Select(i => Philox.Normal(7, 3, i)).ToArray();
        Ref.AssertClose(r, p, 1e-4, 1e-4, "Philox.Normal vs Ref.Normal");
    }

    /// <summary>Mask and output exact up to one rounding (rtol 1e-6, atol 0); p = 1 drops everything (mask 0, not NaN).</summary>
    [Theory, InlineData(TestBackends.Cpu, 0.3f), InlineData(TestBackends.Cpu, 0f), InlineData(TestBackends.Cpu, 0.9f), InlineData(TestBackends.Cpu, 1f),
              InlineData(TestBackends.IlgpuCpu, 0.3f), InlineData(TestBackends.IlgpuCpu, 0f), InlineData(TestBackends.IlgpuCpu, 1f)]
    public void Dropout(string backend, float p)
    {
        using var h = new OpHarness(backend);
        const int n = 301; const ulong seed = 555, offset = 1000;
        var x = Ref.Rand(n, 3);
        var (y, mask) = Ref.Dropout(x, p, seed, offset);
        var tx = h.V(x, n); var ty = h.Out(true, n); var tm = h.Out(true, n);
        h.Op("dropout", () => h.Be.DropoutForward(tx, ty, tm, p, seed, offset));
        Ref.AssertClose(mask, h.GetF(tm), 1e-6, 0, $"{backend} dropout p={p} mask");
        Ref.AssertClose(y, h.GetF(ty), 1e-6, 0, $"{backend} dropout p={p} y");
        if (p > 0) Assert.Contains(0.0, mask);
        h.CheckGuards();
    }

    // ------------------------------------------------------------------ optimisers

    public static IEnumerable<object[]> SgdCases()
    {
        foreach (var be in new[] { TestBackends.Cpu, TestBackends.IlgpuCpu })
        {
            yield return new object[] { be, 0f, 0f, false };
            yield return new object[] { be, 0.9f, 0f, false };
            yield return new object[] { be, 0.9f, 0.01f, true };
            yield return new object[] { be, 0f, 5e-4f, false };
            yield return new object[] { be, 0.5f, 0.1f, false };
        }
    }

    /// <summary>Three steps with fresh gradients, chaining w and v on the backend and in the reference; rtol 1e-5, atol 1e-6.</summary>
    [Theory, MemberData(nameof(SgdCases))]
    public void Sgd(string backend, float momentum, float wd, bool nesterov)
    {
        using var h = new OpHarness(backend);
        const int n = 53; const float lr = 0.05f;
        var w = Ref.Rand(n, 1); var v = new double[n];
        var tw = h.V(w, n); var tv = h.V(v, n);
        for (int step = 1; step <= 3; step++)
        {
            var g = Ref.Rand(n, 10 + step);
            var tg = h.V(g, n);
            h.Op("sgd", () => h.Be.SgdUpdate(tw, tg, tv, lr, momentum, wd, nesterov));
            (w, v) = Ref.Sgd(w, g, v, lr, momentum, wd, nesterov);
            string what = $"{backend} sgd momentum={momentum} wd={wd} nesterov={nesterov} step {step}";
            Ref.AssertClose(w, h.GetF(tw), 1e-5, 1e-6, what + " w");
            Ref.AssertClose(v, h.GetF(tv), 1e-5, 1e-6, what + " v");
            w = Ref.D(h.GetF(tw)); v = Ref.D(h.GetF(tv));   // continue from the backend's floats
        }
        h.CheckGuards();
    }

    [Theory, InlineData(TestBackends.Cpu, 0f), InlineData(TestBackends.Cpu, 0.01f),
              InlineData(TestBackends.IlgpuCpu, 0f), InlineData(TestBackends.IlgpuCpu, 0.01f)]
    public void Adam(string backend, float wd)
    {
        using var h = new OpHarness(backend);
        const int n = 53; const float lr = 1e-2f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
        var w = Ref.Rand(n, 2); var m = new double[n]; var v = new double[n];
        var tw = h.V(w, n); var tm = h.V(m, n); var tv = h.V(v, n);
        for (int step = 1; step <= 3; step++)
        {
            var g = Ref.Rand(n, 20 + step);
            if (step == 1) g[5] = 0;   // zero gradient: update 0/(0+eps) = 0
            var tg = h.V(g, n);
            h.Op("adam", () => h.Be.AdamUpdate(tw, tg, tm, tv, lr, b1, b2, eps, wd, step));
            (w, m, v) = Ref.Adam(w, g, m, v, lr, b1, b2, eps, wd, step);
            string what = $"{backend} adam wd={wd} step {step}";
            Ref.AssertClose(w, h.GetF(tw), 1e-5, 1e-6, what + " w");
            Ref.AssertClose(m, h.GetF(tm), 1e-5, 1e-7, what + " m");
            Ref.AssertClose(v, h.GetF(tv), 1e-5, 1e-9, what + " v");
            w = Ref.D(h.GetF(tw)); m = Ref.D(h.GetF(tm)); v = Ref.D(h.GetF(tv));
        }
        h.CheckGuards();
    }

    // ------------------------------------------------------------------ fused attack steps

    const int Rows = 4, Cols = 50;
    static readonly double[] Eps = { 0.03, 0.1, 0.5, 0.0 };
    static readonly double[] Step = { 0.01, 0.2, 0.05, 0.1 };   // row 1: step > eps, projection active; row 3: eps 0

    static double[] X0()
    {
        var x0 = Ref.Rand(Rows * Cols, 31, 0, 1);
        x0[0] = 0; x0[1] = 1; x0[Cols + 3] = 0; x0[Cols + 4] = 1; x0[2 * Cols + 5] = 0.99f;
        return x0;
    }

    static double[] Grad(int it)
    {
        var g = Ref.Rand(Rows * Cols, 40 + it);
        g[2] = 0; g[Cols + 7] = 0;
        if (it == 0) for (int j = 0; j < Cols; j++) g[2 * Cols + j] = 0;   // row 2 zero gradient on the first step
        return g;
    }

    static void CheckBudget(float[] xadv, double[] x0, bool l2, int it, string backend)
    {
        for (int r = 0; r < Rows; r++)
        {
            double sq = 0;
            for (int j = 0; j < Cols; j++)
            {
                int i = r * Cols + j; double d = xadv[i] - x0[i];
                Assert.True(xadv[i] >= 0 && xadv[i] <= 1, $"{backend} step {it}: xadv[{i}] = {xadv[i]} outside [0,1]");
                if (!l2) Assert.True(Math.Abs(d) <= Eps[r] + 1e-6, $"{backend} step {it}: |xadv - x0|[{i}] = {Math.Abs(d)} > eps {Eps[r]}");
                sq += d * d;
            }
            if (l2) Assert.True(Math.Sqrt(sq) <= Eps[r] * (1 + 1e-5), $"{backend} step {it}: row {r} L2 {Math.Sqrt(sq)} > eps {Eps[r]}");
        }
    }

    /// <summary>Three L-inf steps from x0 with per-sample step and eps; rtol 1e-6, atol 1e-6; budget and [0,1] respected.</summary>
    [Theory, InlineData(TestBackends.Cpu), InlineData(TestBackends.IlgpuCpu)]
    public void AttackStepLinf(string backend)
    {
        using var h = new OpHarness(backend);
        var x0 = X0(); var xadv = (double[])x0.Clone();
        var tx = h.V(xadv, Rows, Cols); var tx0 = h.V(x0, Rows, Cols); var ts = h.V(Step, Rows); var te = h.V(Eps, Rows);
        for (int it = 0; it < 3; it++)
        {
            var g = Grad(it); var tg = h.V(g, Rows, Cols);
            h.Op("attack_step_linf", () => h.Be.AttackStepLinf(tx, tx0, tg, ts, te, Rows, Cols));
            xadv = Ref.AttackStepLinf(xadv, x0, g, Ref.D(Ref.F(Step)), Ref.D(Ref.F(Eps)), Rows, Cols);
            var got = h.GetF(tx);
            Ref.AssertClose(xadv, got, 1e-6, 1e-6, $"{backend} attack_step_linf step {it}");
            CheckBudget(got, x0, false, it, backend);
            xadv = Ref.D(got);
        }
        h.CheckGuards();
    }

    /// <summary>Three L2 steps (row 2 has a zero gradient at first: ||d|| = 0, no scaling); rtol 1e-5, atol 1e-6; budget respected.</summary>
    [Theory, InlineData(TestBackends.Cpu), InlineData(TestBackends.IlgpuCpu)]
    public void AttackStepL2(string backend)
    {
        using var h = new OpHarness(backend);
        var x0 = X0(); var xadv = (double[])x0.Clone();
        var tx = h.V(xadv, Rows, Cols); var tx0 = h.V(x0, Rows, Cols); var ts = h.V(Step, Rows); var te = h.V(Eps, Rows);
        for (int it = 0; it < 3; it++)
        {
            var g = Grad(it); var tg = h.V(g, Rows, Cols);
            h.Op("attack_step_l2", () => h.Be.AttackStepL2(tx, tx0, tg, ts, te, Rows, Cols));
            xadv = Ref.AttackStepL2(xadv, x0, g, Ref.D(Ref.F(Step)), Ref.D(Ref.F(Eps)), Rows, Cols);
            var got = h.GetF(tx);
            Ref.AssertClose(xadv, got, 1e-5, 1e-6, $"{backend} attack_step_l2 step {it}");
            CheckBudget(got, x0, true, it, backend);
            xadv = Ref.D(got);
        }
        h.CheckGuards();
    }
}
