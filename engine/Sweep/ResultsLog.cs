using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Perturb.Engine.Report;

namespace Perturb.Engine.Sweep;

/// <summary>
/// The append-only .jsonl a sweep writes: one <see cref="ResultRow"/> per line, a cell's rows appended together in one
/// write, flushed and fsynced. <see cref="Recover"/> reads it back after a crash: a torn final line, and a cell whose
/// rows are not all there, are cut off the end of the file (truncated back to the last complete cell).
/// </summary>
public static class ResultsLog
{
    /// <summary>What a results file holds: the rows of each finished cell, and notes on what was cut off.</summary>
    public sealed record State(Dictionary<string, List<ResultRow>> Done, long CutBytes, int CutRows, int ForeignRows);

    /// <summary>
    /// Reads <paramref name="path"/> (a missing file is empty), checks it against the cells, truncates an unfinished
    /// tail, and returns the finished cells. Rows of cells the spec does not have are kept and counted. An unfinished
    /// cell that is not at the end, or a cell with too many rows, means the file was not written by this sweep alone:
    /// that is an error naming the file and the cell.
    /// </summary>
    public static State Recover(string path, IReadOnlyDictionary<string, SweepCell> cells, string? split = null)
    {
        var done = new Dictionary<string, List<ResultRow>>();
        if (!File.Exists(path)) return new State(done, 0, 0, 0);
        byte[] bytes;
        bytes = IO.SafeFiles.ReadAllBytes(path, "results file");

        // Complete lines (ending in '\n') with their end offsets; a last line without '\n' is torn.
        var rows = new List<(ResultRow Row, long End, int Line)>();
        long pos = 0; int lineNo = 0;
        while (pos < bytes.Length)
        {
            int nl = Array.IndexOf(bytes, (byte)'\n', (int)pos);
            if (nl < 0) break; // torn final line
            lineNo++;
            var text = Encoding.UTF8.GetString(bytes, (int)pos, nl - (int)pos).Trim();
            long end = nl + 1;
            pos = end;
            if (text.Length == 0) continue;
            JsonNode? node;
            try { node = JsonNode.Parse(text); }
            catch (JsonException e) { throw new PerturbException($"{path}:{lineNo}: not valid JSON ({e.Message}); the file is damaged, not just cut off"); }
            if (node is not JsonObject o) throw new PerturbException($"{path}:{lineNo}: expected a JSON object");
            rows.Add((ResultRow.FromJson(o, $"{path}:{lineNo}"), end, lineNo));
        }
        long keep = rows.Count == 0 ? 0 : rows[^1].End;

        var byCell = new Dictionary<string, List<(ResultRow Row, long End, int Line)>>();
        int foreign = 0;
        foreach (var r in rows)
        {
            if (r.Row.Cell == null || !cells.ContainsKey(r.Row.Cell)) { foreign++; continue; }
            if (!byCell.TryGetValue(r.Row.Cell, out var l)) byCell[r.Row.Cell] = l = new();
            l.Add(r);
        }
        // Cut unfinished cells off the end (a crash between the lines of one append).
        int cutRows = 0;
        while (rows.Count > 0)
        {
            var last = rows[^1];
            if (last.Row.Cell == null || !byCell.TryGetValue(last.Row.Cell, out var l) || l.Count >= cells[last.Row.Cell].ExpectedRows) break;
            foreach (var r in l) rows.Remove(r);
            cutRows += l.Count;
            byCell.Remove(last.Row.Cell);
            keep = rows.Count == 0 ? 0 : rows[^1].End;
        }
        foreach (var (id, l) in byCell)
        {
            var cell = cells[id];
            if (l.Count != cell.ExpectedRows)
                throw new PerturbException($"{path}:{l[0].Line}: cell '{id}' has {l.Count} rows, expected {cell.ExpectedRows}; the file holds rows of another run (use another --out, or remove those lines)");
            Consistent(path, l[0].Line, cell, l.Select(x => x.Row).ToList(), split);
            done[id] = l.Select(x => x.Row).ToList();
        }

        long cut = bytes.Length - keep;
        if (cut > 0)
        {
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.Read);
            fs.SetLength(keep);
            fs.Flush(true);
        }
        return new State(done, cut, cutRows, foreign);
    }

    /// <summary>A finished cell's rows must be the ones this spec asks for (same budgets, split and seed).</summary>
    static void Consistent(string path, int line, SweepCell cell, List<ResultRow> rows, string? split)
    {
        var want = cell.Eps?.Select(e => (double?)e).OrderBy(e => e).ToArray() ?? Enumerable.Repeat<double?>(null, cell.ExpectedRows).ToArray();
        var got = rows.Select(r => r.Eps is { } e ? (double?)(float)e : null).OrderBy(e => e).ToArray();
        if (!want.SequenceEqual(got))
            throw new PerturbException($"{path}:{line}: cell '{cell.Id}' has budgets [{string.Join(", ", got)}] but the spec asks for [{string.Join(", ", want)}]; the spec changed since these rows were written (use another --out)");
        if (split != null && rows.Any(r => r.Split != split))
            throw new PerturbException($"{path}:{line}: cell '{cell.Id}' was run on the {rows[0].Split} split but the spec says {split} (use another --out)");
        if (rows.Any(r => r.Seed != cell.Seed))
            throw new PerturbException($"{path}:{line}: cell '{cell.Id}' was run with seed {rows[0].Seed} but the spec says {cell.Seed} (use another --out)");
    }

    /// <summary>
    /// Takes the exclusive lock of a results file (a lock file beside it, <c>NAME.lock</c>, held open with no sharing
    /// for as long as the returned handle lives): a second sweep on the same file fails at once with a clear error
    /// instead of writing every cell a second time. The lock file is left in place; it holds nothing.
    /// </summary>
    public static IDisposable Lock(string path)
    {
        var full = Path.GetFullPath(path);
        var lockPath = full + ".lock";
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            return new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e) when ((e.HResult & 0xFFFF) == 32 || e.Message.Contains("another process", StringComparison.Ordinal))
        {
            throw new PerturbException($"{path}: another sweep is writing this results file (its lock {lockPath} is held); wait for it to finish, or give this one another --out");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new PerturbException($"{path}: cannot create the lock file {lockPath}: {e.Message}"); }
    }

    /// <summary>Appends all of a cell's rows in one write, then flushes and fsyncs: a crash leaves whole cells, or a torn tail.</summary>
    public static void Append(string path, IEnumerable<ResultRow> rows)
    {
        var sb = new StringBuilder();
        foreach (var r in rows) sb.Append(r.ToJson().ToJsonString()).Append('\n');
        var bytes = Encoding.UTF8.GetBytes(sb.ToString());
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(dir);
        using var fs = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read);
        fs.Write(bytes);
        fs.Flush(true);
    }
}
