using System.Diagnostics;
using System.Globalization;
using Perturb.Engine.Attacks;
using Perturb.Engine.Data;
using Perturb.Engine.IO;
using Perturb.Engine.Nn;
using Perturb.Engine.Report;

namespace Perturb.Engine.Sweep;

/// <summary>Shard K of N (1-based K): the cells whose index modulo N is K - 1.</summary>
public readonly record struct SweepShard(int K, int N)
{
    public static readonly SweepShard Whole = new(1, 1);
    public bool IsWhole => N == 1;
    public bool Owns(int cellIndex) => cellIndex % N == K - 1;
    public override string ToString() => $"{K}/{N}";

    /// <summary>Environment variable with the shard count for Kubernetes Indexed Jobs (JOB_COMPLETION_INDEX is 0-based).</summary>
    public const string CountVariable = "PERTURB_SHARD_COUNT";

    /// <summary>"K/N" (1 &lt;= K &lt;= N), or "auto" (see <see cref="FromEnvironment"/>).</summary>
    public static SweepShard Parse(string s, Func<string, string?>? env = null)
    {
        if (s == "auto") return FromEnvironment(env ?? Environment.GetEnvironmentVariable);
        var p = s.Split('/');
        if (p.Length == 2 && int.TryParse(p[0], NumberStyles.None, CultureInfo.InvariantCulture, out int k)
            && int.TryParse(p[1], NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n >= 1 && k >= 1 && k <= n)
            return new SweepShard(k, n);
        throw new PerturbException($"--shard: expected K/N with 1 <= K <= N (e.g. 2/4) or auto, got '{s}'", 2);
    }

    /// <summary>
    /// The shard from the scheduler: Slurm job arrays (SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT, and
    /// SLURM_ARRAY_TASK_MIN so that --array=0-3 and --array=1-4 both work), else a Kubernetes Indexed Job
    /// (JOB_COMPLETION_INDEX, 0-based, with the count in PERTURB_SHARD_COUNT).
    /// </summary>
    public static SweepShard FromEnvironment(Func<string, string?> env)
    {
        static int? Int(string? v) => int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int i) ? i : null;
        if (env("SLURM_ARRAY_TASK_ID") is { } sid)
        {
            int? id = Int(sid), count = Int(env("SLURM_ARRAY_TASK_COUNT")), min = Int(env("SLURM_ARRAY_TASK_MIN")) ?? 0;
            if (id == null || count is null or < 1)
                throw new PerturbException($"--shard auto: SLURM_ARRAY_TASK_ID={sid} needs an integer SLURM_ARRAY_TASK_COUNT (got '{env("SLURM_ARRAY_TASK_COUNT")}'); use a contiguous --array=0-(N-1)", 2);
            int k = id.Value - min.Value + 1;
            if (k < 1 || k > count) throw new PerturbException($"--shard auto: Slurm task {id} (min {min}) is outside {count} tasks; use a contiguous --array range", 2);
            return new SweepShard(k, count.Value);
        }
        if (env("JOB_COMPLETION_INDEX") is { } jid)
        {
            int? idx = Int(jid), count = Int(env(CountVariable));
            if (idx is null or < 0 || count is null or < 1 || idx >= count)
                throw new PerturbException($"--shard auto: JOB_COMPLETION_INDEX={jid} needs {CountVariable} set to the Job's completions (got '{env(CountVariable)}')", 2);
            return new SweepShard(idx.Value + 1, count.Value);
        }
        throw new PerturbException("--shard auto: neither SLURM_ARRAY_TASK_ID (Slurm job array) nor JOB_COMPLETION_INDEX (Kubernetes Indexed Job) is set", 2);
    }

    /// <summary>The shard's file: "results.jsonl" becomes "results.shard-2-of-4.jsonl"; the whole sweep keeps the name.</summary>
    public string FileName(string path)
    {
        if (IsWhole) return path;
        var ext = Path.GetExtension(path);
        var stem = path[..^ext.Length];
        return $"{stem}.shard-{K}-of-{N}{ext}";
    }
}

public sealed class SweepOptions
{
    /// <summary>The results .jsonl (already named for the shard).</summary>
    public required string OutPath { get; init; }
    public SweepShard Shard { get; init; } = SweepShard.Whole;
    /// <summary>Overrides the spec's device.</summary>
    public string? Device { get; init; }
    /// <summary>Progress lines (the CLI sends them to stderr).</summary>
    public Action<string>? Log { get; init; }
    /// <summary>Checked before each cell: a cancelled sweep stops between cells (the finished ones are saved).</summary>
    public CancellationToken Cancel { get; init; }
    /// <summary>Test hook: called after each cell's rows are on disk.</summary>
    public Action<SweepCell>? AfterCell { get; init; }
    /// <summary>Opens the device; the default is <see cref="Devices.Create"/>. Tests pass a CpuBackend.</summary>
    public Func<string, IBackend>? OpenDevice { get; init; }
}

public sealed record SweepSummary(string OutPath, int Cells, int Skipped, IReadOnlyList<string> Ran, bool Cancelled);

/// <summary>
/// Runs a <see cref="SweepSpec"/>'s cells (those of one shard) in order, appending each finished cell's rows to the
/// results .jsonl at once; a rerun skips the finished cells. Data sets and models load once, before the first cell,
/// and are shared by every cell that uses them.
/// </summary>
public static class SweepRunner
{
    public static SweepSummary Run(SweepSpec spec, SweepOptions o)
    {
        var log = o.Log ?? (_ => { });
        var mine = spec.Cells.Where(c => o.Shard.Owns(c.Index)).ToList();
        using var held = ResultsLog.Lock(o.OutPath);
        var state = ResultsLog.Recover(o.OutPath, spec.Cells.ToDictionary(c => c.Id), spec.Split);
        if (state.CutBytes > 0)
            log($"{o.OutPath}: cut {state.CutBytes} bytes of an interrupted write ({state.CutRows} rows of an unfinished cell, and any torn line)");
        if (state.ForeignRows > 0)
            log($"{o.OutPath}: {state.ForeignRows} rows belong to no cell of {spec.Path}; kept as they are");
        var pending = mine.Where(c => !state.Done.ContainsKey(c.Id)).ToList();
        log($"sweep {spec.Path}: {spec.Cells.Count} cells" + (o.Shard.IsWhole ? "" : $", shard {o.Shard}: {mine.Count} cells")
            + $", {mine.Count - pending.Count} already done, {pending.Count} to run -> {o.OutPath}");
        var ran = new List<string>();
        if (pending.Count == 0) return new SweepSummary(o.OutPath, mine.Count, mine.Count, ran, false);

        // Everything the pending cells need loads before the first cell runs, so a bad model or data set stops the
        // sweep before any work.
        string device = o.Device ?? spec.Device;
        using var be = (o.OpenDevice ?? Devices.Create)(device);
        var data = new Dictionary<string, Dataset>();
        var trains = new Dictionary<string, Dataset>();
        var models = new Dictionary<string, Model>();
        var batches = new Dictionary<string, int>();
        var oldLog = BatchGuard.Log;
        BatchGuard.Log = o.Log;
        try
        {
            foreach (var name in pending.Select(c => c.Data).Distinct())
            {
                var cell = pending.First(c => c.Data == name);
                Dataset d;
                try { d = DataSources.LoadSplit(cell.DataSpec, spec.Split, spec.DataSeed); }
                catch (PerturbException e) { throw new PerturbException($"{spec.Path}: data '{name}': {e.Message}", e.ExitCode); }
                data[name] = spec.N > 0 ? d.Take(spec.N) : d;
            }
            // The patch learns on the training split, and poisoning trains on it: all of it (n limits the evaluated images).
            foreach (var name in pending.Where(c => NeedsTrainSplit(c)).Select(c => c.Data).Distinct())
            {
                var cell = pending.First(c => c.Data == name);
                try { trains[name] = DataSources.LoadSplit(cell.DataSpec, "train", spec.DataSeed); }
                catch (PerturbException e) { throw new PerturbException($"{spec.Path}: data '{name}': {e.Message}", e.ExitCode); }
            }
            foreach (var name in pending.Where(c => c.Arch == null).Select(c => c.Model).Distinct())
            {
                var cell = pending.First(c => c.Model == name);
                try { models[name] = ModelFile.Load(cell.ModelPath, be); }
                catch (PerturbException e) { throw new PerturbException($"{spec.Path}: model '{name}': {e.Message}", e.ExitCode); }
                models[name].Eval();
                if (spec.BatchSize == null)
                {
                    batches[name] = BatchGuard.DefaultBatch(models[name], be.MemoryBytes);
                    log($"batch size for {name}: {batches[name]} (auto, from {be.MemoryBytes / (1024.0 * 1024 * 1024):F1} GiB of {be.Name} memory)");
                }
            }
            foreach (var pair in pending.Where(c => c.Arch == null).Select(c => (c.Model, c.Data)).Distinct())
            {
                var m = models[pair.Model]; var d = data[pair.Data];
                var shape = new[] { d.Channels, d.Height, d.Width };
                if (!m.InputShape.SequenceEqual(shape))
                    throw new PerturbException($"{spec.Path}: model '{pair.Model}' takes {Tensor.ShapeString(m.InputShape)} images but data '{pair.Data}' has {Tensor.ShapeString(shape)}", 2);
                var cellsHere = pending.Where(c => c.Model == pair.Model && c.Data == pair.Data).ToList();
                bool segModel = Presets.IsSegmentation(m);
                if (cellsHere.FirstOrDefault(c => (ExperimentRegistry.Find(c.Attack) == null && AttackRegistry.Get(c.Attack).IsSegmentation) != segModel) is { } odd)
                    throw new PerturbException($"{spec.Path}: attack '{odd.Attack}' " + (segModel
                        ? $"attacks classifiers, but model '{pair.Model}' segments (class logits per pixel); use seg-fgsm, seg-pgd, dag or asma"
                        : $"attacks segmentation models, but model '{pair.Model}' is a classifier"), 2);
                if (segModel)
                {
                    if (d.Masks == null) throw new PerturbException($"{spec.Path}: data '{pair.Data}' has no masks for the segmentation model '{pair.Model}' (e.g. histology-seg)", 2);
                    if (d.NumMaskClasses > m.OutputShape[0])
                        throw new PerturbException($"{spec.Path}: model '{pair.Model}' has {m.OutputShape[0]} classes per pixel but the masks of data '{pair.Data}' have {d.NumMaskClasses}", 2);
                    continue;
                }
                if (d.NumClasses > m.NumClasses)
                    throw new PerturbException($"{spec.Path}: model '{pair.Model}' has {m.NumClasses} classes but data '{pair.Data}' has {d.NumClasses}", 2);
            }

            int skipped = 0;
            for (int i = 0; i < mine.Count; i++)
            {
                var cell = mine[i];
                if (state.Done.ContainsKey(cell.Id)) { skipped++; continue; }
                if (o.Cancel.IsCancellationRequested)
                {
                    log($"sweep stopped after {ran.Count} cells; rerun the same command to go on");
                    return new SweepSummary(o.OutPath, mine.Count, skipped, ran, true);
                }
                log($"cell {i + 1}/{mine.Count} (skipped {skipped} done): {cell.Id}");
                var run = batches.TryGetValue(cell.Model, out int mb) ? cell with { MaxBatch = mb } : cell;
                var rows = ExperimentRegistry.Find(cell.Attack) is { } exp
                    ? RunExperiment(spec, run, exp, be, cell.Arch == null ? models[cell.Model] : null, data[cell.Data], trains.GetValueOrDefault(cell.Data))
                    : RunCell(spec, run, models[cell.Model], data[cell.Data], be.Name);
                ResultsLog.Append(o.OutPath, rows);
                ran.Add(cell.Id);
                foreach (var r in rows.Where(r => r.IsSegmentation))
                    log($"  {cell.Attack}{(r.Eps is { } se ? " eps=" + se.ToString("0.0#####", CultureInfo.InvariantCulture) : "")}: nucleus Dice clean {r.CleanAccuracy:F3}, attacked {r.RobustAccuracy:F3}, success {Pct(r.SuccessRate)}, " +
                        $"nuclei {r.Param("count_before"):F1} -> {r.Param("count_after"):F1} ({r.Seconds:F1}s, {r.N} images)");
                foreach (var r in rows.Where(r => !r.IsSegmentation))
                    log($"  {cell.Attack}{(r.Eps is { } e ? " eps=" + e.ToString("0.0#####", CultureInfo.InvariantCulture) : "")}: clean {Pct(r.CleanAccuracy)}, robust {Pct(r.RobustAccuracy)}, success {Pct(r.SuccessRate)}, mean L2 {r.MeanL2:F4}" +
                        (double.IsFinite(r.MeanQueries) ? $", mean queries {r.MeanQueries:F0}" : "") + $" ({r.Seconds:F1}s, {r.N} images)");
                o.AfterCell?.Invoke(cell);
            }
            return new SweepSummary(o.OutPath, mine.Count, skipped, ran, false);
        }
        finally
        {
            BatchGuard.Log = oldLog;
            foreach (var m in models.Values) m.Dispose();
        }
    }

    static string Pct(double v) => double.IsFinite(v) ? (100 * v).ToString("F1", CultureInfo.InvariantCulture) + "%" : "-";

    static bool NeedsTrainSplit(SweepCell c) => ExperimentRegistry.Find(c.Attack)?.Needs is ExperimentNeeds.ModelAndTrainSplit or ExperimentNeeds.Architecture;

    /// <summary>Runs one experiment cell (patch, fooling, poisoning): its rows, each with the cell id.</summary>
    public static List<ResultRow> RunExperiment(SweepSpec spec, SweepCell cell, ExperimentInfo exp, IBackend be, Model? model, Dataset d, Dataset? train)
    {
        var settings = exp.Create(cell.Settings);
        var rows = exp.Run(settings, new ExperimentInput(be, model, train, d, cell.Model, cell.Data, spec.Split, cell.Arch));
        return rows.Select(r => r with { Cell = cell.Id, Split = spec.Split }).ToList(); // fooling uses no split, but its row belongs to the cell
    }

    /// <summary>Runs one cell: all its budgets in one attack run; one row per budget.</summary>
    public static List<ResultRow> RunCell(SweepSpec spec, SweepCell cell, Model model, Dataset d, string device)
    {
        var info = AttackRegistry.Get(cell.Attack);
        if (info.IsSegmentation)
        {
            var sa = info.CreateSegmentation(cell.Settings, cell.MaxBatch);
            var sr = sa.Run(model, d.X, d.Masks, Attacks.Segmentation.SegGoal.Parse(cell.Targeted), cell.Eps);
            return ResultRow.FromSegAttack(sr, sa, cell.Model, cell.Data, spec.Split, device).Select(r => r with { Cell = cell.Id }).ToList();
        }
        var attack = info.Create(cell.Settings, cell.MaxBatch);
        var goal = AttackGoal.Parse(cell.Targeted, d.Count, cell.Seed);
        var r = attack.Run(model, d.X, d.Labels, goal, cell.Eps);
        return ResultRow.FromAttack(r, cell.Model, cell.Data, spec.Split, device, cell.Id).ToList();
    }
}
