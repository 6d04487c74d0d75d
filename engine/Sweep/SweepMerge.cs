using System.Text;
using System.Text.Json.Nodes;
using Perturb.Engine.IO;
using Perturb.Engine.Report;

namespace Perturb.Engine.Sweep;

/// <summary>
/// Joins result files (shards of one sweep, or reruns) into one. Rows are grouped by cell; a cell found in several
/// files must have the same rows (ignoring the timing figures seconds and images_per_second, which differ between
/// runs) and is kept once, from the first file that has it; different rows are an error naming both files.
/// Order: with a spec, its cell order (the order of an unsharded run), then unknown cells; without one, cells sorted
/// by id (ordinal). Within a cell, rows keep their file order. Rows without a cell id are kept, after the rest.
/// </summary>
public static class SweepMerge
{
    public sealed record Result(List<ResultRow> Rows, int Cells, int DuplicateCells, IReadOnlyList<string> MissingCells);

    public static Result Merge(IReadOnlyList<string> inputs, SweepSpec? spec = null)
    {
        if (inputs.Count == 0) throw new PerturbException("merge: give at least one results file", 2);
        var cells = new Dictionary<string, (List<ResultRow> Rows, string File)>();
        var noCell = new List<ResultRow>();
        int dups = 0;
        foreach (var path in inputs)
        {
            if (!File.Exists(path)) throw new PerturbException($"{path}: no such results file", 2);
            var rows = ResultRow.ReadFile(path);
            var here = new Dictionary<string, List<ResultRow>>();
            var order = new List<string>();
            foreach (var r in rows)
            {
                if (r.Cell == null) { noCell.Add(r); continue; }
                if (!here.TryGetValue(r.Cell, out var l)) { here[r.Cell] = l = new(); order.Add(r.Cell); }
                l.Add(r);
            }
            foreach (var id in order)
            {
                here[id] = OnceEach(here[id], id, path, ref dups);
                if (cells.TryGetValue(id, out var prev))
                {
                    if (Key(prev.Rows) != Key(here[id]))
                        throw new PerturbException($"merge: cell '{id}' differs between {prev.File} and {path} (different results for the same cell; keep one of them)");
                    dups++;
                    continue;
                }
                cells[id] = (here[id], path);
            }
        }

        IEnumerable<string> ids;
        var missing = new List<string>();
        if (spec != null)
        {
            var known = spec.Cells.Select(c => c.Id).ToList();
            foreach (var c in spec.Cells)
                if (!cells.TryGetValue(c.Id, out var got) || got.Rows.Count != c.ExpectedRows) missing.Add(c.Id);
            var set = known.ToHashSet();
            ids = known.Where(cells.ContainsKey).Concat(cells.Keys.Where(k => !set.Contains(k)).OrderBy(k => k, StringComparer.Ordinal));
        }
        else ids = cells.Keys.OrderBy(k => k, StringComparer.Ordinal);
        var all = ids.SelectMany(id => cells[id].Rows).Concat(noCell).ToList();
        return new Result(all, cells.Count, dups, missing);
    }

    /// <summary>
    /// A cell written twice into one file (two sweeps on one --out, or a file concatenated with itself) has each budget
    /// twice: the copies must agree and are kept once; copies that differ are an error naming the file and cell.
    /// </summary>
    static List<ResultRow> OnceEach(List<ResultRow> rows, string id, string path, ref int dups)
    {
        var first = new Dictionary<double, ResultRow>();
        var kept = new List<ResultRow>();
        bool repeated = false;
        foreach (var r in rows)
        {
            double e = r.Eps ?? double.NaN; // NaN keys compare equal in a Dictionary<double, ...>
            if (first.TryGetValue(e, out var f))
            {
                if (Key(new() { f }) != Key(new() { r }))
                    throw new PerturbException($"merge: {path}: cell '{id}' appears more than once with different results (two runs wrote into one file; keep one of them)");
                repeated = true;
                continue;
            }
            first[e] = r;
            kept.Add(r);
        }
        if (repeated) dups++;
        return kept;
    }

    /// <summary>A cell's rows as comparable text, without the timing figures.</summary>
    static string Key(List<ResultRow> rows)
    {
        var sb = new StringBuilder();
        foreach (var r in rows)
        {
            var j = r.ToJson();
            j.Remove("seconds"); j.Remove("images_per_second");
            sb.Append(j.ToJsonString()).Append('\n');
        }
        return sb.ToString();
    }

    /// <summary>Writes rows as .jsonl, atomically (temporary name, then rename).</summary>
    public static void WriteJsonl(string path, IEnumerable<ResultRow> rows)
    {
        var sb = new StringBuilder();
        foreach (var r in rows) sb.Append(r.ToJson().ToJsonString()).Append('\n');
        AtomicFile.WriteText(path, sb.ToString());
    }
}
