using System.Diagnostics;

namespace Perturb.Perf;

/// <summary>
/// Timing of one repeated piece of work: warm-up calls, then a number of timed calls, median kept. The clock is the
/// wall clock, or with <see cref="CpuClock"/> (perf --clock cpu) the CPU time of the whole process, which a loaded
/// machine inflates far less than wall time (it still slows each core through shared caches and SMT siblings).
/// </summary>
public sealed record Timing(double MedianS, double MinS, int Reps)
{
    /// <summary>Time the process's CPU seconds instead of wall seconds (--clock cpu).</summary>
    public static bool CpuClock { get; set; }

    /// <summary>Seconds on the clock in use (wall or process CPU).</summary>
    public static double Now() => CpuClock ? Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds : Stopwatch.GetTimestamp() / (double)Stopwatch.Frequency;

    /// <summary>
    /// Runs <paramref name="work"/> <paramref name="warmup"/> times untimed, then times it until either
    /// <paramref name="maxReps"/> calls or the time budget is spent (at least <paramref name="minReps"/> calls).
    /// <paramref name="sync"/> (the backend's Synchronize) is called before each clock stop.
    /// </summary>
    public static Timing Measure(Action work, Action sync, int warmup, int minReps, int maxReps, double budgetS)
    {
        for (int i = 0; i < warmup; i++) work();
        sync();
        var times = new List<double>();
        var total = Stopwatch.StartNew();
        while (times.Count < maxReps && (times.Count < minReps || total.Elapsed.TotalSeconds < budgetS))
        {
            double t0 = Now();
            work();
            sync();
            times.Add(Now() - t0);
        }
        times.Sort();
        int n = times.Count;
        double median = n % 2 == 1 ? times[n / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
        return new Timing(median, times[0], n);
    }
}
