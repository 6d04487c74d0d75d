using System.Diagnostics;

namespace Perturb.Perf;

/// <summary>Wall-clock timing of one repeated piece of work: warm-up calls, then a number of timed calls, median kept.</summary>
public sealed record Timing(double MedianS, double MinS, int Reps)
{
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
            long t0 = Stopwatch.GetTimestamp();
            work();
            sync();
            times.Add(Stopwatch.GetElapsedTime(t0).TotalSeconds);
        }
        times.Sort();
        int n = times.Count;
        double median = n % 2 == 1 ? times[n / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
        return new Timing(median, times[0], n);
    }
}
