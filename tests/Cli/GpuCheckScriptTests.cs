using System.Diagnostics;
using System.Text.Json.Nodes;
using Perturb.Engine;
using Perturb.Engine.Backends;

namespace Perturb.Tests.Cli;

/// <summary>
/// perf/gpu-check.sh on its CPU path (--device ilgpu-cpu --quick, the binaries built beside these tests), and the
/// op walk behind its parity step (<see cref="BackendParity"/>).
/// </summary>
public sealed class GpuCheckScriptTests : TempDirTest
{
    static string RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Engine.sln"))) return d.FullName;
        throw new InvalidOperationException("Engine.sln not found above the test binaries");
    }

    /// <summary>Debian's python3 (where python3-torch is), else the python3 on the PATH.</summary>
    static readonly string Python = File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";

    /// <summary>
    /// The script's per-step timeouts times this (PERTURB_GPUCHECK_TIMEOUT_SCALE, default 4): a runner that others load
    /// heavily needs more; the steps and every check stay the same.
    /// </summary>
    static readonly string TimeoutScale = Environment.GetEnvironmentVariable("PERTURB_GPUCHECK_TIMEOUT_SCALE") is { Length: > 0 } v ? v : "4";

    static bool TorchImports()
    {
        try
        {
            using var p = Process.Start(new ProcessStartInfo(Python, new[] { "-c", "import torch" }) { RedirectStandardError = true, RedirectStandardOutput = true })!;
            p.WaitForExit(60_000);
            return p.HasExited && p.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception) { return false; }
    }

    [Fact]
    public void QuickCpuPathWritesEveryStepAndTheTables()
    {
        var root = RepoRoot();
        var psi = new ProcessStartInfo("bash", new[] { Path.Combine(root, "perf", "gpu-check.sh"), "--device", "ilgpu-cpu", "--quick", "--timeout-scale", TimeoutScale, "--python", Python, "--pub", AppContext.BaseDirectory, "--out", Dir })
        { WorkingDirectory = Dir, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.Environment["DOTNET_ROOT"] = Environment.GetEnvironmentVariable("DOTNET_ROOT") ?? Path.GetDirectoryName(Environment.ProcessPath!)!;
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var stdout = p.StandardOutput.ReadToEnd();
        // Every step has its own timeout (x TimeoutScale); this bound is only a backstop.
        Assert.True(p.WaitForExit(600_000 * int.Parse(TimeoutScale)), $"gpu-check.sh --quick ran past {10 * int.Parse(TimeoutScale)} minutes");
        string log = stdout + err.Result;

        var j = JsonNode.Parse(File.ReadAllText(Path.Combine(Dir, "gpu-check.json")))!;
        Assert.Equal("ilgpu-cpu", (string)j["device"]!);
        Assert.True((bool)j["quick"]!);
        var steps = j["steps"]!.AsArray().ToDictionary(s => (string)s!["name"]!, s => s!);
        Assert.Equal(new[] { "info", "parity", "harness", "torch-fp32", "torch-tf32", "pgd", "pgd-torch" }, steps.Keys.ToArray());
        bool torch = TorchImports();
        foreach (var (name, s) in steps)
        {
            bool needsTorch = name.StartsWith("torch") || name == "pgd-torch";
            if (!needsTorch || torch) Assert.True((string)s["status"]! == "ok", $"step {name}: {s.ToJsonString()}\n{File.ReadAllText((string)s["log"]!)}\n{log}");
            else Assert.Equal("failed", (string)s["status"]!);   // recorded, not fatal: the later steps still ran
            Assert.True((double)s["seconds"]! >= 0);
        }
        Assert.Equal(torch ? 0 : 1, p.ExitCode);

        // Parity: every op case and the model's two outputs, all agreeing.
        var par = j["parity"]!;
        Assert.Equal(BackendParity.CaseCount + 2, (int)par["cases"]!);
        Assert.Equal(0, (int)par["failed"]!);
        Assert.Equal(2, par["model"]!.AsArray().Count);

        // The harness and the PGD figures reached the joined table, with values.
        var figs = j["figures"]!.AsArray();
        Assert.Contains(figs, f => (string)f!["name"]! == "conv3x3 64->64 28x28 fwd N=1" && (double)f["perturb"]! > 0);
        Assert.Contains(figs, f => (string)f!["name"]! == "pgd-2 linf lenet B=1" && (double)f["perturb"]! > 0);
        if (torch) Assert.Contains(figs, f => f!["torch_fp32"] != null && f["torch_tf32"] != null && (double)f["ratio_fp32"]! > 0);

        var md = File.ReadAllText(Path.Combine(Dir, "gpu-check.md"));
        Assert.StartsWith("# GPU check: ilgpu-cpu", md);
        foreach (var name in steps.Keys) Assert.Contains($"| {name} | ", md);
        Assert.Contains("| figure | unit | Perturb | PyTorch TF32 off | ratio | PyTorch TF32 on | ratio |", md);
        Assert.Contains($"{BackendParity.CaseCount + 2} of {BackendParity.CaseCount + 2} cases agree", md);
    }

    [Fact]
    public void BadUsageIsOneLineAndExitTwo()
    {
        var root = RepoRoot();
        var psi = new ProcessStartInfo("bash", new[] { Path.Combine(root, "perf", "gpu-check.sh"), "--device", "tpu" }) { RedirectStandardError = true, RedirectStandardOutput = true };
        using var p = Process.Start(psi)!;
        var e = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.Equal(2, p.ExitCode);
        Assert.Equal("error: gpu-check.sh: --device must be cuda or ilgpu-cpu, got 'tpu'", e.Trim());
    }

    /// <summary>Every compute member of IBackend is exercised by some parity case (memory plumbing and properties aside).</summary>
    [Fact]
    public void ParityWalkCoversEveryBackendOp()
    {
        var skip = new HashSet<string> { nameof(IBackend.FromArray), nameof(IBackend.ToArray), nameof(IBackend.Synchronize), nameof(IBackend.Free), nameof(IDisposable.Dispose) };
        var members = typeof(IBackend).GetMethods().Where(m => !m.IsSpecialName).Select(m => m.Name).Where(n => !skip.Contains(n)).ToHashSet();
        var missing = members.Except(BackendParity.Methods).OrderBy(n => n).ToList();
        Assert.True(missing.Count == 0, "IBackend members no parity case calls: " + string.Join(", ", missing));
    }

    /// <summary>The comparison itself fails on a difference past the tolerance, and on NaN against a number.</summary>
    [Fact]
    public void DiffFailsPastTheToleranceAndOnNaN()
    {
        Assert.True(BackendParity.Diff("f", "c", new[] { new[] { 1f, 2f } }, new[] { new[] { 1f, 2.0001f } }, 1e-4).Passed);
        Assert.False(BackendParity.Diff("f", "c", new[] { new[] { 1f, 2f } }, new[] { new[] { 1f, 2.01f } }, 1e-4).Passed);
        Assert.False(BackendParity.Diff("f", "c", new[] { new[] { float.NaN } }, new[] { new[] { 0f } }, 1e-4).Passed);
        Assert.True(BackendParity.Diff("f", "c", new[] { new[] { float.NaN } }, new[] { new[] { float.NaN } }, 0).Passed);
        Assert.False(BackendParity.Diff("f", "c", new[] { new[] { 1f } }, new[] { new[] { 1f, 2f } }, 1).Passed);
    }
}
