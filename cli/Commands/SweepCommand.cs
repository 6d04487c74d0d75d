using System.CommandLine;
using Perturb.Engine;
using Perturb.Engine.Sweep;

namespace Perturb.Cli;

/// <summary><c>perturb sweep sweep.json [--out results.jsonl] [--shard K/N|auto] [--device D]</c>: see docs/sweeps.md.</summary>
public static class SweepCommand
{
    public static Command Build(CliIO io)
    {
        var spec = new Argument<string>("spec") { Description = "the sweep spec (sweep.json): models x data sets x attacks x grids; see docs/sweeps.md" };
        var outp = new Option<string?>("--out")
        {
            Description = "results .jsonl, appended cell by cell and resumed on a rerun (default: results.jsonl next to the spec; " +
                          "a shard writes NAME.shard-K-of-N.jsonl)",
        };
        var shard = new Option<string?>("--shard")
        {
            Description = "run shard K of N (1-based: the cells with index % N == K-1), or auto: from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT " +
                          $"or JOB_COMPLETION_INDEX/{SweepShard.CountVariable}",
        };
        var device = new Option<string?>("--device") { Description = "compute device (overrides the spec's): auto, cuda, cpu, ilgpu-cpu" };
        var c = new Command("sweep", "run a resumable, shardable attack sweep from a spec file, one JSON line per result row");
        c.Arguments.Add(spec);
        foreach (var o in new Option[] { outp, shard, device }) c.Options.Add(o);
        c.SetAction(pr =>
        {
            var specPath = pr.GetValue(spec)!;
            var dev = pr.GetValue(device);
            if (dev != null && !Devices.Kinds.Contains(dev)) throw new PerturbException($"--device: unknown device '{dev}' (choose {string.Join(", ", Devices.Kinds)})", 2);
            var sh = pr.GetValue(shard) is { } s ? SweepShard.Parse(s) : SweepShard.Whole;
            var sp = SweepSpec.Load(specPath);
            var baseOut = pr.GetValue(outp) ?? Path.Combine(Path.GetDirectoryName(Path.GetFullPath(specPath))!, "results.jsonl");
            var outPath = sh.FileName(baseOut);
            var sum = SweepRunner.Run(sp, new SweepOptions { OutPath = outPath, Shard = sh, Device = dev, Log = io.Err.WriteLine });
            io.Out.WriteLine($"sweep: {sum.Ran.Count} cells run, {sum.Skipped} already done, {sum.Cells} in {(sh.IsWhole ? "the sweep" : "shard " + sh)} -> {sum.OutPath}");
            return sum.Cancelled ? 1 : 0;
        });
        return c;
    }
}
