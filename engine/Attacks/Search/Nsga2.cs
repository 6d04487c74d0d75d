using Perturb.Engine.Data;

namespace Perturb.Engine.Attacks.Search;

/// <summary>
/// The pieces of NSGA-II (Deb, Pratap, Agarwal, Meyarivan 2002) for minimisation: Pareto dominance, the fast
/// non-dominated sort, crowding distance, the crowded binary tournament, survivor selection by (rank, crowding),
/// simulated binary crossover (SBX) and polynomial mutation, both in their bounded forms (Deb and Agrawal 1995; the
/// NSGA-II reference code). Objective vectors are rows of <c>f</c> (every row the same length). Ties are broken by
/// index, so every function is deterministic given its random stream.
/// </summary>
public static class Nsga2
{
    /// <summary>Whether <paramref name="a"/> dominates <paramref name="b"/>: no worse in every objective, better in one.</summary>
    public static bool Dominates(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        bool better = false;
        for (int m = 0; m < a.Length; m++)
        {
            if (a[m] > b[m]) return false;
            if (a[m] < b[m]) better = true;
        }
        return better;
    }

    /// <summary>
    /// Fast non-dominated sort: the fronts in order (front 0 is non-dominated), each front's indices ascending, and
    /// the rank (front number) of every point.
    /// </summary>
    public static (List<int[]> Fronts, int[] Rank) Sort(double[][] f)
    {
        int n = f.Length;
        var dominated = new List<int>[n];   // points i dominates
        var count = new int[n];             // how many points dominate i
        var rank = new int[n];
        var current = new List<int>();
        for (int i = 0; i < n; i++)
        {
            dominated[i] = new List<int>();
            for (int j = 0; j < n; j++)
            {
                if (i == j) continue;
                if (Dominates(f[i], f[j])) dominated[i].Add(j);
                else if (Dominates(f[j], f[i])) count[i]++;
            }
            if (count[i] == 0) current.Add(i);
        }
        var fronts = new List<int[]>();
        int r = 0;
        while (current.Count > 0)
        {
            current.Sort();
            fronts.Add(current.ToArray());
            var next = new List<int>();
            foreach (int i in current)
            {
                rank[i] = r;
                foreach (int j in dominated[i])
                    if (--count[j] == 0) next.Add(j);
            }
            current = next;
            r++;
        }
        return (fronts, rank);
    }

    /// <summary>
    /// Crowding distance of each member of <paramref name="front"/> (aligned with it): per objective, the members sorted
    /// by value (ties by index), the two ends get infinity, and every other member adds (next - previous) / (max - min);
    /// an objective with max == min adds nothing.
    /// </summary>
    public static double[] Crowding(double[][] f, int[] front)
    {
        int n = front.Length;
        var dist = new double[n];
        if (n == 0) return dist;
        int mCount = f[front[0]].Length;
        var order = new int[n];
        for (int m = 0; m < mCount; m++)
        {
            for (int k = 0; k < n; k++) order[k] = k;
            Array.Sort(order, (a, b) => { int c = f[front[a]][m].CompareTo(f[front[b]][m]); return c != 0 ? c : front[a].CompareTo(front[b]); });
            double lo = f[front[order[0]]][m], hi = f[front[order[n - 1]]][m];
            dist[order[0]] = double.PositiveInfinity;
            dist[order[n - 1]] = double.PositiveInfinity;
            if (!(hi > lo)) continue;
            for (int k = 1; k < n - 1; k++)
                dist[order[k]] += (f[front[order[k + 1]]][m] - f[front[order[k - 1]]][m]) / (hi - lo);
        }
        return dist;
    }

    /// <summary>Rank and crowding distance of every point (crowding computed within its front).</summary>
    public static (int[] Rank, double[] Crowd) RankAndCrowding(double[][] f)
    {
        var (fronts, rank) = Sort(f);
        var crowd = new double[f.Length];
        foreach (var fr in fronts)
        {
            var d = Crowding(f, fr);
            for (int k = 0; k < fr.Length; k++) crowd[fr[k]] = d[k];
        }
        return (rank, crowd);
    }

    /// <summary>
    /// NSGA-II survivor selection: the <paramref name="count"/> indices kept, whole fronts in order, then the last
    /// front's members by crowding distance, largest first (ties by index). Returned in ascending index order.
    /// </summary>
    public static int[] Select(double[][] f, int count)
    {
        var (fronts, _) = Sort(f);
        var keep = new List<int>(count);
        foreach (var fr in fronts)
        {
            if (keep.Count + fr.Length <= count) { keep.AddRange(fr); if (keep.Count == count) break; continue; }
            var d = Crowding(f, fr);
            var order = Enumerable.Range(0, fr.Length).OrderByDescending(k => d[k]).ThenBy(k => fr[k]).ToArray();
            for (int k = 0; keep.Count < count; k++) keep.Add(fr[order[k]]);
            break;
        }
        keep.Sort();
        return keep.ToArray();
    }

    /// <summary>Crowded binary tournament: two uniform draws; the lower rank wins, then the larger crowding, then the first.</summary>
    public static int Tournament(int[] rank, double[] crowd, SplitMix64 rng)
    {
        int a = rng.NextInt(rank.Length), b = rng.NextInt(rank.Length);
        if (rank[a] != rank[b]) return rank[a] < rank[b] ? a : b;
        return crowd[b] > crowd[a] ? b : a;
    }

    /// <summary>
    /// Bounded SBX on two parents, in place (they become the children): each gene crosses with probability 0.5 using
    /// distribution index <paramref name="eta"/>; children are clipped to [lo, hi] and swapped with probability 0.5.
    /// </summary>
    public static void Sbx(Span<float> p1, Span<float> p2, ReadOnlySpan<float> lo, ReadOnlySpan<float> hi, double eta, SplitMix64 rng)
    {
        double pw = 1 / (eta + 1);
        for (int k = 0; k < p1.Length; k++)
        {
            if (rng.NextDouble() > 0.5) continue;
            double y1 = Math.Min(p1[k], p2[k]), y2 = Math.Max(p1[k], p2[k]), l = lo[k], h = hi[k];
            if (y2 - y1 < 1e-12 || h - l < 1e-12) continue;
            double u = rng.NextDouble();
            double c1 = 0.5 * (y1 + y2 - Spread(1 + 2 * (y1 - l) / (y2 - y1), u) * (y2 - y1));
            double c2 = 0.5 * (y1 + y2 + Spread(1 + 2 * (h - y2) / (y2 - y1), u) * (y2 - y1));
            c1 = Math.Clamp(c1, l, h); c2 = Math.Clamp(c2, l, h);
            if (rng.NextDouble() < 0.5) (c1, c2) = (c2, c1);
            p1[k] = (float)c1; p2[k] = (float)c2;
        }

        double Spread(double beta, double u)
        {
            double alpha = 2 - Math.Pow(beta, -(eta + 1));
            return u <= 1 / alpha ? Math.Pow(u * alpha, pw) : Math.Pow(1 / (2 - u * alpha), pw);
        }
    }

    /// <summary>Bounded polynomial mutation, in place: each gene with probability <paramref name="rate"/>, index <paramref name="eta"/>.</summary>
    public static void Mutate(Span<float> g, ReadOnlySpan<float> lo, ReadOnlySpan<float> hi, double rate, double eta, SplitMix64 rng)
    {
        double pw = 1 / (eta + 1);
        for (int k = 0; k < g.Length; k++)
        {
            if (rng.NextDouble() >= rate) continue;
            double l = lo[k], h = hi[k], y = g[k];
            if (h - l < 1e-12) continue;
            double d1 = (y - l) / (h - l), d2 = (h - y) / (h - l), u = rng.NextDouble(), dq;
            if (u < 0.5) dq = Math.Pow(2 * u + (1 - 2 * u) * Math.Pow(1 - d1, eta + 1), pw) - 1;
            else dq = 1 - Math.Pow(2 * (1 - u) + 2 * (u - 0.5) * Math.Pow(1 - d2, eta + 1), pw);
            g[k] = (float)Math.Clamp(y + dq * (h - l), l, h);
        }
    }
}
