using System.Diagnostics;
using System.Text.RegularExpressions;
using Perturb.Engine.Report;
using SharpYaml.Model;
using Path = System.IO.Path;

namespace Perturb.Tests.Sweep;

/// <summary>
/// A fact that needs a Slurm it can start (Debian's slurm-wlm and munge, run as root). Skipped with the reason
/// elsewhere, unless CI is "true": there it runs (and fails without them).
/// </summary>
public sealed class SlurmFactAttribute : FactAttribute
{
    public SlurmFactAttribute()
    {
        if (Environment.GetEnvironmentVariable("CI") == "true") return;
        if (SlurmTests.Missing() is { } m) Skip = m;
    }
}

/// <summary>The sweeps page's Slurm job array on a real one-node Slurm, and its Kubernetes manifests on paper.</summary>
public sealed class SlurmTests : TempDirTest, IClassFixture<SweepFixture>
{
    readonly SweepFixture _fx;
    public SlurmTests(SweepFixture fx) { _fx = fx; }

    static string RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Engine.sln"))) return d.FullName;
        throw new InvalidOperationException("Engine.sln not found above the test binaries");
    }

    static bool OnPath(string exe) =>
        (Environment.GetEnvironmentVariable("PATH") + ":/usr/sbin").Split(':', StringSplitOptions.RemoveEmptyEntries).Any(p => File.Exists(Path.Combine(p, exe)));

    public static string? Missing()
    {
        var m = new[] { "sbatch", "slurmctld", "slurmd", "munged" }.Where(e => !OnPath(e)).ToList();
        if (m.Count > 0) return $"Slurm is absent ({string.Join(", ", m)} not found; apt-get install slurm-wlm munge); with CI=true this test runs and fails instead";
        if (Environment.UserName != "root") return "starting a Slurm cluster (.ci/slurm-cluster.sh) needs root; with CI=true this test runs and fails instead";
        return null;
    }

    /// <summary>The fenced block of the given language that follows the first line containing <paramref name="after"/>.</summary>
    static string Block(string doc, string after, string lang)
    {
        int at = doc.IndexOf(after, StringComparison.Ordinal);
        Assert.True(at >= 0, $"docs/sweeps.md has no '{after}'");
        int open = doc.IndexOf("```" + lang + "\n", at, StringComparison.Ordinal);
        int close = doc.IndexOf("\n```", open + 4 + lang.Length, StringComparison.Ordinal);
        return doc[(open + 4 + lang.Length)..(close + 1)];
    }

    static (int Code, string Out) Sh(string cmd, string dir, IDictionary<string, string> env, int timeoutMs = 120_000)
    {
        var psi = new ProcessStartInfo("bash", new[] { "-c", cmd }) { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var (k, v) in env) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var o = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(timeoutMs)) { p.Kill(true); throw new TimeoutException($"'{cmd}' ran past {timeoutMs} ms"); }
        return (p.ExitCode, o + err.Result);
    }

    [SlurmFact]
    public void DocumentedArrayWithARequeuedTaskMergesToTheUnshardedRun()
    {
        var root = RepoRoot();
        var doc = File.ReadAllText(Path.Combine(root, "docs", "sweeps.md"));
        var clusterDir = Path.Combine(Path.GetTempPath(), "perturb-slurm-test");
        var env = new Dictionary<string, string>
        {
            ["SLURM_CONF"] = Path.Combine(clusterDir, "slurm.conf"),
            // The jobs find `perturb` (the apphost built beside the tests) on the PATH they inherit from sbatch.
            ["PATH"] = AppContext.BaseDirectory.TrimEnd('/') + ":" + Environment.GetEnvironmentVariable("PATH") + ":/usr/sbin",
            ["DOTNET_ROOT"] = Environment.GetEnvironmentVariable("DOTNET_ROOT") ?? Path.GetDirectoryName(Environment.ProcessPath!)!,
        };
        var (code, log) = Sh($"'{root}/.ci/slurm-cluster.sh' start '{clusterDir}'", Dir, env);
        Assert.True(code == 0, log);
        try { RunArray(doc, env); }
        finally { Sh($"'{root}/.ci/slurm-cluster.sh' stop '{clusterDir}'", Dir, env); }
    }

    void RunArray(string doc, Dictionary<string, string> env)
    {
        int code; string log;

        // 8 cells (2 models x fgsm, pgd at two step counts, one-pixel): shard 2 of 3 holds cells 1, 4 and 7, the
        // last (model b's one-pixel) a search that takes a few seconds, so that the task can be caught with a cell written.
        _fx.CopyModels(Dir);
        var spec = SweepFixture.SpecJson().Replace("\"norm\": [\"linf\"]}}", "\"norm\": [\"linf\"]}},\n    {\"name\": \"one-pixel\", \"pixels\": 3, \"population\": 40, \"iterations\": 20}");
        Assert.Contains("one-pixel", spec);
        File.WriteAllText(Path.Combine(Dir, "sweep.json"), spec);
        var sbatch = Block(doc, "`sweep.sbatch`:", "bash");
        Assert.Contains("--shard auto", sbatch);
        File.WriteAllText(Path.Combine(Dir, "sweep.sbatch"), sbatch);
        var submit = Block(doc, "`submit.sh`", "bash");
        const string line = "sbatch --parsable sweep.sbatch";
        Assert.Contains(line, submit);
        submit = submit.Replace(line, "sbatch --parsable --array=0-2 --gres=none --cpus-per-task=1 sweep.sbatch") + "echo \"array=$jid\"\n";
        (code, log) = Sh(submit, Dir, env);
        Assert.True(code == 0, log);
        var jid = Regex.Match(log, @"array=(\d+)").Groups[1].Value;
        var mergeId = log.Split('\n', StringSplitOptions.RemoveEmptyEntries).First(l => Regex.IsMatch(l.Trim(), @"^\d+$")).Trim();

        // Requeue task 1 while it runs, once its first cell is in its shard file.
        var shard = Path.Combine(Dir, "results", "results.shard-2-of-3.jsonl");
        var sw = Stopwatch.StartNew();
        int cellsAtRequeue = -1;
        while (sw.Elapsed < TimeSpan.FromMinutes(5))
        {
            var state = Sh($"squeue -h -j {jid}_1 -o %T", Dir, env).Out.Trim();
            int cells = File.Exists(shard) ? ResultRow.ReadFile(shard).Select(r => r.Cell).Distinct().Count() : 0;
            if (state == "RUNNING" && cells is >= 1 and < 3)
            {
                (code, log) = Sh($"scontrol requeue {jid}_1", Dir, env);
                Assert.True(code == 0, log);
                cellsAtRequeue = cells;
                // Slurm counts the requeue on the task's record; read it now, while the record is surely there.
                string show = "";
                var waitShow = Stopwatch.StartNew();
                while (waitShow.Elapsed < TimeSpan.FromSeconds(60) && !Regex.IsMatch(show = Sh($"scontrol show job {jid}_1", Dir, env).Out, @"Restarts=[1-9]")) Thread.Sleep(250);
                Assert.Matches(@"Restarts=[1-9]", show);
                break;
            }
            Assert.True(cells < 3, $"task 1 finished before the test could requeue it (state '{state}')");
            Thread.Sleep(100);
        }
        Assert.True(cellsAtRequeue >= 1, "task 1 never ran with a cell written");

        // Wait for the merge job to leave the queue.
        while (sw.Elapsed < TimeSpan.FromMinutes(8) && Sh($"squeue -h -j {jid},{mergeId} -o %i", Dir, env).Out.Trim().Length > 0) Thread.Sleep(500);
        Console.Error.WriteLine($"slurm test: array and merge done at {sw.Elapsed.TotalSeconds:F0} s");
        var merged = Path.Combine(Dir, "results", "all.jsonl");
        var logs = string.Join("\n", Directory.GetFiles(Path.Combine(Dir, "logs")).Select(f => f + ":\n" + File.ReadAllText(f)));
        Assert.True(File.Exists(merged), "no merged file; logs:\n" + logs);
        var task1Log = File.ReadAllText(Path.Combine(Dir, "logs", $"sweep-{jid}_1.log"));
        // The restarted task resumed from its file: it skipped at least the cells written when the requeue was sent (the
        // task may write one more before Slurm's signal lands), and not all three of its cells.
        var skipped = Regex.Match(task1Log, @"\(skipped (\d+) done\)");
        Assert.True(skipped.Success, "the restarted task did not resume from its shard file; its log:\n" + task1Log);
        int skippedN = int.Parse(skipped.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(skippedN >= cellsAtRequeue && skippedN < 3, $"the restarted task skipped {skippedN} cells; {cellsAtRequeue} were written at the requeue");

        // The unsharded run of the same spec, in this process.
        var whole = Path.Combine(Dir, "whole.jsonl");
        var (c2, o2, e2) = CliRunner.Run("sweep", Path.Combine(Dir, "sweep.json"), "--out", whole);
        Assert.True(c2 == 0, e2 + o2);
        Assert.Equal(8, ResultRow.ReadFile(whole).Select(r => r.Cell).Distinct().Count());
        Assert.Equal(SweepFixture.Comparable(ResultRow.ReadFile(whole)), SweepFixture.Comparable(ResultRow.ReadFile(merged)));
    }

    /// <summary>The value at a path of mappings, or null.</summary>
    static YamlElement? At(YamlElement? e, params string[] path)
    {
        foreach (var k in path) e = e is YamlMapping m ? m.FirstOrDefault(kv => (kv.Key as YamlValue)?.Value == k).Value : null;
        return e;
    }

    static string? Text(YamlElement? e, params string[] path) => (At(e, path) as YamlValue)?.Value;

    /// <summary>
    /// The two Jobs of the Kubernetes section against the batch/v1 Job schema's required fields and the rules the API
    /// server applies (no cluster): apiVersion, kind, metadata.name, spec.template.spec.containers each with a name and
    /// an image, restartPolicy Never or OnFailure, an Indexed Job's completions, parallelism and per-index backoff,
    /// volume mounts naming declared volumes, and PERTURB_SHARD_COUNT equal to completions.
    /// </summary>
    [Fact]
    public void KubernetesManifestsHaveTheJobSchemasRequiredFields()
    {
        var doc = File.ReadAllText(Path.Combine(RepoRoot(), "docs", "sweeps.md"));
        var yaml = Block(doc, "## Kubernetes: an Indexed Job", "yaml");
        var docs = YamlStream.Load(new StringReader(yaml)).Select(d => d.Contents).ToList();
        Assert.Equal(2, docs.Count);
        foreach (var job in docs)
        {
            var name = Text(job, "metadata", "name");
            Assert.False(string.IsNullOrEmpty(name));
            Assert.Matches("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", name!); // a DNS label
            Assert.Equal("batch/v1", Text(job, "apiVersion"));
            Assert.Equal("Job", Text(job, "kind"));
            var pod = At(job, "spec", "template", "spec");
            Assert.NotNull(pod);
            Assert.Contains(Text(pod, "restartPolicy"), new[] { "Never", "OnFailure" });
            var containers = Assert.IsType<YamlSequence>(At(pod, "containers"));
            Assert.NotEmpty(containers);
            var volumes = (At(pod, "volumes") as YamlSequence)?.Select(v => Text(v, "name")).ToHashSet() ?? new HashSet<string?>();
            foreach (var c in containers)
            {
                Assert.False(string.IsNullOrEmpty(Text(c, "name")), $"{name}: a container without a name");
                Assert.False(string.IsNullOrEmpty(Text(c, "image")), $"{name}: a container without an image");
                Assert.IsType<YamlSequence>(At(c, "command"));
                foreach (var m in (At(c, "volumeMounts") as YamlSequence) ?? new YamlSequence())
                {
                    Assert.Contains(Text(m, "name"), volumes);
                    Assert.StartsWith("/", Text(m, "mountPath"));
                }
            }
            if (Text(job, "spec", "completionMode") is { } mode)
            {
                Assert.Equal("Indexed", mode);
                Assert.True(int.TryParse(Text(job, "spec", "completions"), out int completions) && completions >= 1, $"{name}: an Indexed Job needs completions");
                Assert.True(int.Parse(Text(job, "spec", "parallelism") ?? "1") <= completions);
                if (Text(job, "spec", "backoffLimitPerIndex") is { } b) Assert.True(int.Parse(b) >= 0);
                var shardCount = containers.SelectMany(c => (At(c, "env") as YamlSequence) ?? new YamlSequence())
                    .Where(e => Text(e, "name") == "PERTURB_SHARD_COUNT").Select(e => Text(e, "value")).Single();
                Assert.Equal(completions.ToString(), shardCount);
                Assert.Contains(containers, c => ((YamlSequence)At(c, "command")!).Select(x => (x as YamlValue)?.Value).Contains("auto"));
            }
            else Assert.Null(Text(job, "spec", "backoffLimitPerIndex")); // per-index backoff is for Indexed Jobs only
        }
        Assert.Equal("Indexed", Text(docs[0], "spec", "completionMode"));
    }
}
