using System.CommandLine;
using System.Text.Json.Nodes;
using Perturb.Cli;

namespace Perturb.Tests.Cli;

public class PatchCliTests : TempDirTest
{
    static (int, string, string) RunPatch(params string[] args)
    {
        // The lead hangs "patch" under "perturb attack"; here it runs under a root of its own.
        var o = new StringWriter(); var e = new StringWriter();
        var root = new RootCommand("t") { PatchCommand.Build(new CliIO(o, e)) };
        var pr = root.Parse(args);
        if (pr.Errors.Count > 0) return (2, "", pr.Errors[0].Message);
        try { return (pr.Invoke(new InvocationConfiguration { Output = o, Error = e, EnableDefaultExceptionHandler = false }), o.ToString(), e.ToString()); }
        catch (Perturb.Engine.PerturbException x) { return (x.ExitCode, o.ToString(), x.Message); }
    }

    [Fact]
    public void PatchSavesPngAndJson()
    {
        var model = Path.Combine(Dir, "m.safetensors");
        var (c0, _, e0) = CliRunner.Run("train", "--data", "synthetic:train=120,test=30", "--arch", "lenet", "--epochs", "1", "--device", "cpu", "--out", model);
        Assert.True(c0 == 0, e0);
        var j = Path.Combine(Dir, "p.json"); var od = Path.Combine(Dir, "out");
        var (code, o, e) = RunPatch("patch", "--model", model, "--data", "synthetic:train=120,test=30", "--target", "1", "--patch-size", "0.1",
            "--shape", "round", "--steps", "5", "--device", "cpu", "--out", od, "--json", j);
        Assert.True(code == 0, e);
        Assert.Contains("natural control", o);
        Assert.True(File.Exists(Path.Combine(od, "patch.png")) && File.Exists(Path.Combine(od, "example_0.png")));
        var r = JsonNode.Parse(File.ReadAllText(j))!;
        Assert.NotNull(r["patch"]!["targeted_success"]); Assert.NotNull(r["control"]!["accuracy"]);
        Assert.Equal(2, RunPatch("patch", "--model", model, "--data", "synthetic:train=120,test=30", "--target", "9", "--device", "cpu").Item1);
    }
}
