using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Perturb.Perf;

/// <summary>
/// The machine's float32 fused-multiply-add peak, measured: every logical core runs a loop of 12 independent
/// FusedMultiplyAdd chains on the widest accelerated vector (Vector512, else Vector256, else Vector128), which hides
/// the FMA latency, so the loop is bound by FMA throughput alone. GFLOP/s = 2 * lanes * fmas / seconds.
/// </summary>
public static class Peak
{
    public const int Chains = 12;
    const int Inner = 1024; // FMAs per chain between clock checks

    public static int Lanes =>
        Vector512.IsHardwareAccelerated ? Vector512<float>.Count :
        Vector256.IsHardwareAccelerated ? Vector256<float>.Count : Vector128<float>.Count;

    public static string SimdName =>
        Vector512.IsHardwareAccelerated ? "AVX-512 (Vector512, 16 floats)" :
        Vector256.IsHardwareAccelerated ? "AVX2 (Vector256, 8 floats)" : "128-bit (Vector128, 4 floats)";

    /// <summary>
    /// Runs all cores at once for about <paramref name="seconds"/> in all, split into <paramref name="windows"/>
    /// windows; returns the best window's GFLOP/s (float32, FMA = 2 flops). The best window is the peak: on a shared
    /// machine other processes only ever take cycles away.
    /// </summary>
    public static double Measure(double seconds, int windows = 5, int threads = 0)
    {
        if (threads <= 0) threads = Environment.ProcessorCount;
        Run(0.02, 0.999f); // compile the loop before timing it
        double best = 0;
        for (int w = 0; w < windows; w++) best = Math.Max(best, Window(seconds / windows, threads));
        return best;
    }

    static double Window(double seconds, int threads)
    {
        long[] fmas = new long[threads];
        var start = new Barrier(threads + 1);
        var ts = new Thread[threads];
        float sink = 0;
        for (int t = 0; t < threads; t++)
        {
            int id = t;
            ts[t] = new Thread(() =>
            {
                start.SignalAndWait();
                var (count, s) = Run(seconds, 0.9999f);
                fmas[id] = count;
                if (s == 12345.678f) Volatile.Write(ref sink, s); // keeps the result alive
            }) { IsBackground = true, Priority = ThreadPriority.Highest };
            ts[t].Start();
        }
        start.SignalAndWait();
        long t0 = Stopwatch.GetTimestamp();
        foreach (var th in ts) th.Join();
        double el = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        long total = fmas.Sum();
        return 2.0 * Lanes * total / el / 1e9;
    }

    /// <summary>One thread's loop: returns the number of vector FMAs done and a value derived from the chains.</summary>
    static (long, float) Run(double seconds, float mul)
    {
        if (Vector512.IsHardwareAccelerated) return Run<V512, Vector512<float>>(seconds, mul);
        if (Vector256.IsHardwareAccelerated) return Run<V256, Vector256<float>>(seconds, mul);
        return Run<V128, Vector128<float>>(seconds, mul);
    }

    /// <summary>
    /// 12 independent chains c_i = c_i * a + b (a just below 1, so the values stay finite and converge), written once
    /// for every vector width; the JIT specialises it per struct type argument and inlines the FMA.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static (long, float) Run<TOps, TV>(double seconds, float mul) where TOps : struct, IVecOps<TV> where TV : struct
    {
        TV a = TOps.Splat(mul), b = TOps.Splat(1e-4f);
        TV c0 = TOps.Splat(0.1f), c1 = TOps.Splat(0.2f), c2 = TOps.Splat(0.3f), c3 = TOps.Splat(0.4f),
            c4 = TOps.Splat(0.5f), c5 = TOps.Splat(0.6f), c6 = TOps.Splat(0.7f), c7 = TOps.Splat(0.8f),
            c8 = TOps.Splat(0.9f), c9 = TOps.Splat(1.0f), c10 = TOps.Splat(1.1f), c11 = TOps.Splat(1.2f);
        long n = 0;
        long end = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency);
        do
        {
            for (int i = 0; i < Inner; i++)
            {
                c0 = TOps.Fma(c0, a, b); c1 = TOps.Fma(c1, a, b); c2 = TOps.Fma(c2, a, b); c3 = TOps.Fma(c3, a, b);
                c4 = TOps.Fma(c4, a, b); c5 = TOps.Fma(c5, a, b); c6 = TOps.Fma(c6, a, b); c7 = TOps.Fma(c7, a, b);
                c8 = TOps.Fma(c8, a, b); c9 = TOps.Fma(c9, a, b); c10 = TOps.Fma(c10, a, b); c11 = TOps.Fma(c11, a, b);
            }
            n += (long)Inner * Chains;
        } while (Stopwatch.GetTimestamp() < end);
        var s = TOps.Add(TOps.Add(TOps.Add(TOps.Add(c0, c1), TOps.Add(c2, c3)), TOps.Add(TOps.Add(c4, c5), TOps.Add(c6, c7))),
            TOps.Add(TOps.Add(c8, c9), TOps.Add(c10, c11)));
        return (n, TOps.Sum(s));
    }

    interface IVecOps<TV> where TV : struct
    {
        static abstract TV Splat(float v);
        static abstract TV Fma(TV x, TV a, TV b);
        static abstract TV Add(TV x, TV y);
        static abstract float Sum(TV x);
    }

    struct V512 : IVecOps<Vector512<float>>
    {
        public static Vector512<float> Splat(float v) => Vector512.Create(v);
        public static Vector512<float> Fma(Vector512<float> x, Vector512<float> a, Vector512<float> b) => Vector512.FusedMultiplyAdd(x, a, b);
        public static Vector512<float> Add(Vector512<float> x, Vector512<float> y) => x + y;
        public static float Sum(Vector512<float> x) => Vector512.Sum(x);
    }

    struct V256 : IVecOps<Vector256<float>>
    {
        public static Vector256<float> Splat(float v) => Vector256.Create(v);
        public static Vector256<float> Fma(Vector256<float> x, Vector256<float> a, Vector256<float> b) => Vector256.FusedMultiplyAdd(x, a, b);
        public static Vector256<float> Add(Vector256<float> x, Vector256<float> y) => x + y;
        public static float Sum(Vector256<float> x) => Vector256.Sum(x);
    }

    struct V128 : IVecOps<Vector128<float>>
    {
        public static Vector128<float> Splat(float v) => Vector128.Create(v);
        public static Vector128<float> Fma(Vector128<float> x, Vector128<float> a, Vector128<float> b) => Vector128.FusedMultiplyAdd(x, a, b);
        public static Vector128<float> Add(Vector128<float> x, Vector128<float> y) => x + y;
        public static float Sum(Vector128<float> x) => Vector128.Sum(x);
    }
}
