using System.CommandLine;
using Perturb.Engine;
using Perturb.Engine.IO;
using Perturb.Engine.Report;
using Perturb.Engine.Sweep;

namespace Perturb.Cli;

/// <summary><c>perturb merge A.jsonl B.jsonl ... --out all.jsonl [--csv all.csv] [--spec sweep.json]</c>: see docs/sweeps.md.</summary>
public static class MergeCommand
{
    public static Command Build(CliIO io)
    {
        var inputs = new Argument<string[]>("results") { Description = "result files to join (.jsonl shards of a sweep, or results.json)", Arity = ArgumentArity.OneOrMore };
        var outp = new Option<string>("--out") { Description = "the merged .jsonl (written atomically)", Required = true };
        var csv = new Option<string?>("--csv") { Description = "also write the merged rows as CSV" };
        var spec = new Option<string?>("--spec")
        {
            Description = "the sweep spec: order the cells as an unsharded run would, and fail if a cell is missing or unfinished (default: cells sorted by id)",
        };
        var c = new Command("merge", "join shard results into one file: a cell found twice is kept once if its rows agree, else an error");
        c.Arguments.Add(inputs);
        foreach (var o in new Option[] { outp, csv, spec }) c.Options.Add(o);
        c.SetAction(pr =>
        {
            var files = pr.GetValue(inputs)!;
            var sp = pr.GetValue(spec) is { } s ? SweepSpec.Load(s, checkFiles: false) : null;
            var r = SweepMerge.Merge(files, sp);
            if (r.MissingCells.Count > 0)
                throw new PerturbException($"merge: {r.MissingCells.Count} cells of {sp!.Path} are missing or unfinished (first: '{r.MissingCells[0]}'); run the missing shards first");
            var o = pr.GetValue(outp)!;
            SweepMerge.WriteJsonl(o, r.Rows);
            if (pr.GetValue(csv) is { } cp) AtomicFile.WriteText(cp, ResultRow.ToCsv(r.Rows));
            io.Out.WriteLine($"merge: {r.Rows.Count} rows of {r.Cells} cells from {files.Length} files" +
                (r.DuplicateCells > 0 ? $" ({r.DuplicateCells} duplicate cells kept once)" : "") + $" -> {o}");
            return 0;
        });
        return c;
    }
}
