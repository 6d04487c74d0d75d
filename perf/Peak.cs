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
    const int Inner = 16384; // FMAs per chain between clock checks (a clock read can cost microseconds in a VM)

    public static int Lanes =>
        Vector512.IsHardwareAccelerated ? Vector512<float>.Count :
        Vector256.IsHardwareAccelerated ? Vector256<float>.Count : Vector128<float>.Count;

    public static string SimdName =>
        Vector512.IsHardwareAccelerated ? "AVX-512 (Vector512, 16 floats)" :
        Vector256.IsHardwareAccelerated ? "AVX2 (Vector256, 8 floats)" : "128-bit (Vector128, 4 floats)";

    /// <summary>
    /// Runs all cores at once for about <paramref name="seconds"/>; returns GFLOP/s (float32, FMA = 2 flops) of the
    /// best 20 ms slice: every thread adds its FMAs to the slice of a clock shared by all threads, and the slice with
    /// the most FMAs over all threads together wins. On a shared machine other processes only ever take cycles
    /// away, so the best simultaneous slice is the machine's peak.
    /// </summary>
    public static double Measure(double seconds, int threads = 0)
    {
        if (threads <= 0) threads = int.TryParse(Environment.GetEnvironmentVariable("PERTURB_PEAK_THREADS"), out int nt) && nt > 0 ? nt : Environment.ProcessorCount;
        Run(0.02, 0.999f, 0, 1, null); // compile the loop before timing it
        long sliceTicks = Stopwatch.Frequency / 50;
        int slices = Math.Max(1, (int)(seconds * 50));
        var counts = new long[threads][];
        var start = new Barrier(threads + 1);
        var ts = new Thread[threads];
        long t0 = 0;
        for (int t = 0; t < threads; t++)
        {
            int id = t;
            counts[id] = new long[slices + 1];
            ts[t] = new Thread(() =>
            {
                start.SignalAndWait();
                Run(seconds, 0.9999f, Volatile.Read(ref t0), sliceTicks, counts[id]);
            }) { IsBackground = true, Priority = ThreadPriority.Highest };
            ts[t].Start();
        }
        Volatile.Write(ref t0, Stopwatch.GetTimestamp());
        start.SignalAndWait();
        foreach (var th in ts) th.Join();
        long best = 0;
        for (int s = 0; s < slices; s++) best = Math.Max(best, counts.Sum(c => c[s]));
        return 2.0 * Lanes * best / ((double)sliceTicks / Stopwatch.Frequency) / 1e9;
    }

    /// <summary>One thread's loop: returns the number of vector FMAs done and a value derived from the chains.</summary>
    /// <summary>
    /// One thread's loop: runs for <paramref name="seconds"/> from its own start; the FMAs of each block are added
    /// to <paramref name="slices"/>[(now - t0) / sliceTicks] when slices is given. Returns a value derived from the chains.
    /// </summary>
    static float Run(double seconds, float mul, long t0, long sliceTicks, long[]? slices)
    {
        if (Vector512.IsHardwareAccelerated) return Run<V512, Vector512<float>>(seconds, mul, t0, sliceTicks, slices);
        if (Vector256.IsHardwareAccelerated) return Run<V256, Vector256<float>>(seconds, mul, t0, sliceTicks, slices);
        return Run<V128, Vector128<float>>(seconds, mul, t0, sliceTicks, slices);
    }

    /// <summary>
    /// 12 independent chains c_i = c_i * a + b (a just below 1, so the values stay finite and converge), written once
    /// for every vector width; the JIT specialises it per struct type argument and inlines the FMA.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static float Run<TOps, TV>(double seconds, float mul, long t0, long sliceTicks, long[]? slices) where TOps : struct, IVecOps<TV> where TV : struct
    {
        TV a = TOps.Splat(mul), b = TOps.Splat(1e-4f);
        TV c0 = TOps.Splat(0.1f), c1 = TOps.Splat(0.2f), c2 = TOps.Splat(0.3f), c3 = TOps.Splat(0.4f),
            c4 = TOps.Splat(0.5f), c5 = TOps.Splat(0.6f), c6 = TOps.Splat(0.7f), c7 = TOps.Splat(0.8f),
            c8 = TOps.Splat(0.9f), c9 = TOps.Splat(1.0f), c10 = TOps.Splat(1.1f), c11 = TOps.Splat(1.2f);
        long now = Stopwatch.GetTimestamp();
        long end = now + (long)(seconds * Stopwatch.Frequency);
        do
        {
            for (int i = 0; i < Inner; i++)
            {
                c0 = TOps.Fma(c0, a, b); c1 = TOps.Fma(c1, a, b); c2 = TOps.Fma(c2, a, b); c3 = TOps.Fma(c3, a, b);
                c4 = TOps.Fma(c4, a, b); c5 = TOps.Fma(c5, a, b); c6 = TOps.Fma(c6, a, b); c7 = TOps.Fma(c7, a, b);
                c8 = TOps.Fma(c8, a, b); c9 = TOps.Fma(c9, a, b); c10 = TOps.Fma(c10, a, b); c11 = TOps.Fma(c11, a, b);
            }
            now = Stopwatch.GetTimestamp();
            if (slices != null)
            {
                long k = (now - t0) / sliceTicks;
                if (k >= 0 && k < slices.Length) slices[k] += (long)Inner * Chains;
            }
        } while (now < end);
        var s = TOps.Add(TOps.Add(TOps.Add(TOps.Add(c0, c1), TOps.Add(c2, c3)), TOps.Add(TOps.Add(c4, c5), TOps.Add(c6, c7))),
            TOps.Add(TOps.Add(c8, c9), TOps.Add(c10, c11)));
        return TOps.Sum(s);
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
