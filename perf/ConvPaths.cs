using System.Text.Json.Nodes;
using Perturb.Engine;
using Perturb.Engine.Backends;

namespace Perturb.Perf;

/// <summary>
/// conv-paths: every CpuBackend path that can run a harness conv shape (forward and backward-data), timed against
/// each other in one process. Each round times one call of every path in turn, so a load that comes and goes on a
/// shared machine lands on all of them alike; the figure is each path's median over the rounds, and its JSON detail
/// carries its ratio to the path the backend picks by itself (auto). gemm-alone is the bare GEMM of the im2col path.
/// </summary>
public static class ConvPaths
{
    sealed record Run1(string Name, CpuBackend.ConvPath Path, Action Work);

    public static void Run(CpuBackend be, Report r, Options o, int n, int rounds)
    {
        Benches.Progress($"conv-paths (batch {n}, {rounds} alternating rounds)");
        ulong seed = 99;
        Tensor Rand(params int[] shape) { var t = be.Allocate(shape); be.RandomUniform(t, seed++, 0); return t; }
        foreach (var (name, s) in Benches.ConvShapes(n))
        {
            if (o.Shape != null && !name.Contains(o.Shape, StringComparison.Ordinal)) continue;
            using var x = Rand(s.N, s.C, s.H, s.W);
            using var w = Rand(s.K, s.CPerGroup, s.R, s.S);
            using var y = be.Allocate(s.N, s.K, s.OutH, s.OutW);
            using var dy = Rand(s.N, s.K, s.OutH, s.OutW);
            using var dx = be.Allocate(s.N, s.C, s.H, s.W);
            var ops = new (string Op, Action Work)[]
            {
                ("fwd", () => be.ConvForward(s, x, w, null, y)),
                ("bwd-data", () => be.ConvBackwardData(s, dy, w, dx)),
            }.Where(v => o.Op == null || v.Op == o.Op).ToArray();
            var paths = Enum.GetValues<CpuBackend.ConvPath>().Where(c => c == CpuBackend.ConvPath.Auto ||
                CpuBackend.PathApplies(c, s) && (o.Paths == null || o.Paths.Contains(c.ToString().ToLowerInvariant()))).ToList();
            // The bare GEMM that im2col runs (K x P x CRS per sample, in blocks of about 768 columns) on ready
            // operands: the ceiling of any im2col path, for reference.
            int crs = s.CPerGroup * s.R * s.S, p = s.OutH * s.OutW, nb = Math.Max(1, Math.Min(s.N, (768 + p - 1) / p));
            using var ga = Rand(s.K, crs);
            using var gb = Rand(crs, nb * p);
            using var gc = be.Allocate(s.K, nb * p);
            Action gemm = () => { for (int i = 0; i < s.N; i += nb) be.Gemm(false, false, s.K, nb * p, crs, 1f, ga, gb, 0f, gc); };
            foreach (var (op, work0) in ops)
            {
                var all = paths.Select(c => new Run1(c.ToString().ToLowerInvariant(), c, work0))
                    .Append(new Run1("gemm-alone", CpuBackend.ConvPath.Auto, gemm)).ToArray();
                var times = all.Select(_ => new List<double>()).ToArray();
                foreach (var v in all) { be.ForcePath = v.Path; v.Work(); v.Work(); }
                for (int round = 0; round < rounds; round++)
                    for (int i = 0; i < all.Length; i++)
                    {
                        be.ForcePath = all[i].Path;
                        double t0 = Timing.Now();
                        all[i].Work();
                        times[i].Add(Timing.Now() - t0);
                    }
                be.ForcePath = CpuBackend.ConvPath.Auto;
                double autoG = 0;
                for (int i = 0; i < all.Length; i++)
                {
                    var t = times[i].OrderBy(v => v).ToList();
                    double med = t.Count % 2 == 1 ? t[t.Count / 2] : 0.5 * (t[t.Count / 2 - 1] + t[t.Count / 2]);
                    double g = s.Flops / med / 1e9;
                    if (i == 0) autoG = g;
                    r.Add(new Figure("convpath", $"{name} {op} {all[i].Name} N={n}", g, "GFLOP/s", g, new JsonObject
                    {
                        ["median_s"] = med, ["min_s"] = t[0], ["reps"] = t.Count, ["flops"] = s.Flops,
                        ["path"] = all[i].Name, ["op"] = op, ["ratio_to_auto"] = g / autoG,
                    }));
                }
            }
        }
    }
}
