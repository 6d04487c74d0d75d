using System.Text.Json.Nodes;
using Perturb.Engine;
using Perturb.Engine.Backends;
using Perturb.Engine.Demo;
using Perturb.Engine.IO;

namespace Perturb.Tests.Demo;

/// <summary><c>perturb demo --out DIR</c> writes DIR whole: a demo that fails or is cut short leaves no partial DIR.</summary>
public class DemoOutputTests : TempDirTest
{
    /// <summary>A tiny demo whose patch step (the 7th of 11) fails: the patch cannot cover 150% of a tile.</summary>
    static readonly DemoSettings FailsAtThePatch = new()
    {
        TrainCount = 64, TestCount = 16, Epochs = 1, BatchSize = 32, AttackCount = 4, Eps255 = new[] { 8 }, PgdSteps = 1,
        OnePixelCount = 2, OnePixelPopulation = 30, OnePixelIterations = 1, WhiteBalancePopulation = 20, WhiteBalanceIterations = 1,
        PatchSize = 1.5, Examples = 2,
    };

    /// <summary>Runs the failing demo into <paramref name="dir"/>, checking at every progress line that <paramref name="dir"/> is as it was.</summary>
    List<string> RunFailing(string dir, Func<bool> untouched)
    {
        var log = new List<string>();
        using var be = new CpuBackend();
        var e = Assert.Throws<PerturbException>(() => DemoRunner.Run(be, dir, FailsAtThePatch, 1, line =>
        {
            log.Add(line);
            Assert.True(untouched(), $"{dir} changed while the demo ran (at '{line}')");
        }));
        Assert.Contains("patch size", e.Message);
        // It got as far as the attacks (files were written, into the temporary folder) before failing.
        Assert.Contains(log, l => l.StartsWith("[7/11]", StringComparison.Ordinal));
        // Nothing is left beside it: the temporary folder is removed.
        Assert.Empty(Directory.GetDirectories(Dir, ".*tmp*"));
        return log;
    }

    [Fact]
    public void FailedDemoLeavesNoFolder()
    {
        var dir = Path.Combine(Dir, "demo");
        RunFailing(dir, () => !Directory.Exists(dir));
        Assert.False(Directory.Exists(dir));
    }

    [Fact]
    public void FailedDemoLeavesAnEarlierRunUntouched()
    {
        var dir = Path.Combine(Dir, "demo");
        OutputFolder.Write(dir, false, "perturb demo", d => File.WriteAllText(Path.Combine(d, "index.html"), "earlier run"));
        bool Same() => File.ReadAllText(Path.Combine(dir, "index.html")) == "earlier run" && Directory.GetFileSystemEntries(dir).Length == 2;
        RunFailing(dir, Same);
        Assert.True(Same());
    }

    [Fact]
    public void ForeignFolderIsRefusedBeforeAnyWork()
    {
        var dir = Path.Combine(Dir, "mine");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "notes.txt"), "keep");
        var (code, _, err) = CliRunner.Run("demo", "--quick", "--out", dir, "--device", "cpu");
        Assert.Equal(2, code);
        Assert.Contains("not written by perturb", err);
        Assert.Equal(new[] { Path.Combine(dir, "notes.txt") }, Directory.GetFileSystemEntries(dir));
    }
}
