using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Perturb.Perf;

/// <summary>
/// The machine's float32 fused-multiply-add peak, measured: every logical core runs a loop of 12 independent
/// FusedMultiplyAdd chains on the widest accelerated vector (Vector512, else Vector256), which hides
/// the FMA latency, so the loop is bound by FMA throughput alone. GFLOP/s = 2 * lanes * fmas / seconds.
/// </summary>
public static class Peak
{
    public const int Chains = 12;
    const int Inner = 16384; // FMAs per chain between clock checks (a clock read can cost microseconds in a VM)

    public static int Lanes =>
        Vector512.IsHardwareAccelerated ? Vector512<float>.Count : Vector256<float>.Count;

    public static string SimdName =>
        Vector512.IsHardwareAccelerated ? "AVX-512 (Vector512, 16 floats)" :
        Vector256.IsHardwareAccelerated ? "AVX2 (Vector256, 8 floats)" : "no 256-bit SIMD (Vector256 emulated)";

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

    /// <summary>
    /// One thread's loop: runs for <paramref name="seconds"/> from its own start; the FMAs of each block are added
    /// to <paramref name="slices"/>[(now - t0) / sliceTicks] when slices is given. Returns a value derived from the chains.
    /// 12 independent chains c_i = c_i * a + b (a just below 1, so the values stay finite and converge).
    /// Written out per vector width, with the FMA block in a call-free method (see <see cref="Block512"/>).
    /// </summary>
    static float Run(double seconds, float mul, long t0, long sliceTicks, long[]? slices) =>
        Vector512.IsHardwareAccelerated ? Run512(seconds, mul, t0, sliceTicks, slices) : Run256(seconds, mul, t0, sliceTicks, slices);

    struct Chains512 { public Vector512<float> C0, C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11; }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static float Run512(double seconds, float mul, long t0, long sliceTicks, long[]? slices)
    {
        var a = Vector512.Create(mul); var b = Vector512.Create(1e-4f);
        var st = new Chains512();
        st.C0 = Vector512.Create(0.1f); st.C1 = Vector512.Create(0.2f); st.C2 = Vector512.Create(0.3f); st.C3 = Vector512.Create(0.4f);
        st.C4 = Vector512.Create(0.5f); st.C5 = Vector512.Create(0.6f); st.C6 = Vector512.Create(0.7f); st.C7 = Vector512.Create(0.8f);
        st.C8 = Vector512.Create(0.9f); st.C9 = Vector512.Create(1.0f); st.C10 = Vector512.Create(1.1f); st.C11 = Vector512.Create(1.2f);
        long end = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency), now;
        do
        {
            Block512(ref st, a, b);
            now = Stopwatch.GetTimestamp();
            AddToSlice(slices, now, t0, sliceTicks);
        } while (now < end);
        return Vector512.Sum(st.C0 + st.C1 + st.C2 + st.C3 + st.C4 + st.C5 + st.C6 + st.C7 + st.C8 + st.C9 + st.C10 + st.C11);
    }

    /// <summary>
    /// The FMA block, in its own method with no call inside: vector registers are caller-saved, so chains kept live
    /// across the clock read are spilled to the stack by the JIT for the whole loop (measured: 3.5x slower).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void Block512(ref Chains512 s, Vector512<float> a, Vector512<float> b)
    {
        var c0 = s.C0; var c1 = s.C1; var c2 = s.C2; var c3 = s.C3; var c4 = s.C4; var c5 = s.C5;
        var c6 = s.C6; var c7 = s.C7; var c8 = s.C8; var c9 = s.C9; var c10 = s.C10; var c11 = s.C11;
        for (int i = 0; i < Inner; i++)
        {
                c0 = Vector512.FusedMultiplyAdd(c0, a, b);
                c1 = Vector512.FusedMultiplyAdd(c1, a, b);
                c2 = Vector512.FusedMultiplyAdd(c2, a, b);
                c3 = Vector512.FusedMultiplyAdd(c3, a, b);
                c4 = Vector512.FusedMultiplyAdd(c4, a, b);
                c5 = Vector512.FusedMultiplyAdd(c5, a, b);
                c6 = Vector512.FusedMultiplyAdd(c6, a, b);
                c7 = Vector512.FusedMultiplyAdd(c7, a, b);
                c8 = Vector512.FusedMultiplyAdd(c8, a, b);
                c9 = Vector512.FusedMultiplyAdd(c9, a, b);
                c10 = Vector512.FusedMultiplyAdd(c10, a, b);
                c11 = Vector512.FusedMultiplyAdd(c11, a, b);
        }
        s.C0 = c0; s.C1 = c1; s.C2 = c2; s.C3 = c3; s.C4 = c4; s.C5 = c5; s.C6 = c6; s.C7 = c7; s.C8 = c8; s.C9 = c9; s.C10 = c10; s.C11 = c11;
    }

    struct Chains256 { public Vector256<float> C0, C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11; }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static float Run256(double seconds, float mul, long t0, long sliceTicks, long[]? slices)
    {
        var a = Vector256.Create(mul); var b = Vector256.Create(1e-4f);
        var st = new Chains256();
        st.C0 = Vector256.Create(0.1f); st.C1 = Vector256.Create(0.2f); st.C2 = Vector256.Create(0.3f); st.C3 = Vector256.Create(0.4f);
        st.C4 = Vector256.Create(0.5f); st.C5 = Vector256.Create(0.6f); st.C6 = Vector256.Create(0.7f); st.C7 = Vector256.Create(0.8f);
        st.C8 = Vector256.Create(0.9f); st.C9 = Vector256.Create(1.0f); st.C10 = Vector256.Create(1.1f); st.C11 = Vector256.Create(1.2f);
        long end = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency), now;
        do
        {
            Block256(ref st, a, b);
            now = Stopwatch.GetTimestamp();
            AddToSlice(slices, now, t0, sliceTicks);
        } while (now < end);
        return Vector256.Sum(st.C0 + st.C1 + st.C2 + st.C3 + st.C4 + st.C5 + st.C6 + st.C7 + st.C8 + st.C9 + st.C10 + st.C11);
    }

    /// <summary>
    /// The FMA block, in its own method with no call inside: vector registers are caller-saved, so chains kept live
    /// across the clock read are spilled to the stack by the JIT for the whole loop (measured: 3.5x slower).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void Block256(ref Chains256 s, Vector256<float> a, Vector256<float> b)
    {
        var c0 = s.C0; var c1 = s.C1; var c2 = s.C2; var c3 = s.C3; var c4 = s.C4; var c5 = s.C5;
        var c6 = s.C6; var c7 = s.C7; var c8 = s.C8; var c9 = s.C9; var c10 = s.C10; var c11 = s.C11;
        for (int i = 0; i < Inner; i++)
        {
                c0 = Vector256.FusedMultiplyAdd(c0, a, b);
                c1 = Vector256.FusedMultiplyAdd(c1, a, b);
                c2 = Vector256.FusedMultiplyAdd(c2, a, b);
                c3 = Vector256.FusedMultiplyAdd(c3, a, b);
                c4 = Vector256.FusedMultiplyAdd(c4, a, b);
                c5 = Vector256.FusedMultiplyAdd(c5, a, b);
                c6 = Vector256.FusedMultiplyAdd(c6, a, b);
                c7 = Vector256.FusedMultiplyAdd(c7, a, b);
                c8 = Vector256.FusedMultiplyAdd(c8, a, b);
                c9 = Vector256.FusedMultiplyAdd(c9, a, b);
                c10 = Vector256.FusedMultiplyAdd(c10, a, b);
                c11 = Vector256.FusedMultiplyAdd(c11, a, b);
        }
        s.C0 = c0; s.C1 = c1; s.C2 = c2; s.C3 = c3; s.C4 = c4; s.C5 = c5; s.C6 = c6; s.C7 = c7; s.C8 = c8; s.C9 = c9; s.C10 = c10; s.C11 = c11;
    }

    static void AddToSlice(long[]? slices, long now, long t0, long sliceTicks)
    {
        if (slices == null) return;
        long k = (now - t0) / sliceTicks;
        if (k >= 0 && k < slices.Length) slices[k] += (long)Inner * Chains;
    }
}
