using System.CommandLine;
using Perturb.Engine;
using Perturb.Engine.Demo;
using Perturb.Engine.IO;
using Perturb.Engine.Report;

namespace Perturb.Cli;

/// <summary><c>perturb demo</c>: the main job on the embedded synthetic histology set.</summary>
public static class DemoCommand
{
    public static Command Build(CliIO io)
    {
        var outp = new Option<string>("--out") { Description = "folder for index.html, results.json, results.csv, examples/ and model.safetensors (written whole: into a temporary folder renamed when complete)", DefaultValueFactory = _ => "demo" };
        var overwrite = AttackCommand.Overwrite();
        var quick = new Option<bool>("--quick") { Description = "a smaller setting (800 training tiles, 24 attacked, fewer steps and budgets): the CI run" };
        var seed = CommonOptions.Seed();
        var device = CommonOptions.Device();
        var cmd = new Command("demo", "the whole tool in a few minutes: synthetic histology, train cnn-small, FGSM, PGD, DeepFool, one-pixel, white-balance, a patch, a BadNets backdoor, and an HTML report");
        foreach (var o in new Option[] { outp, quick, seed, device, overwrite }) cmd.Options.Add(o);
        cmd.SetAction(pr =>
        {
            var dir = pr.GetValue(outp)!;
            OutputFolder.Check(dir, pr.GetValue(overwrite));
            using var be = CliUtil.OpenDevice(pr.GetValue(device)!, io);
            var s = pr.GetValue(quick) ? DemoSettings.Quick : DemoSettings.Full;
            io.Err.WriteLine($"perturb demo on {be.Name}{(pr.GetValue(quick) ? " (quick setting)" : "")}, writing {dir}");
            var rows = DemoRunner.Run(be, dir, s, pr.GetValue(seed), io.Err.WriteLine, pr.GetValue(overwrite));
            foreach (var line in DemoRunner.SummaryTable(rows)) io.Out.WriteLine(line);
            io.Out.WriteLine($"report: {Path.Combine(dir, "index.html")}");
            return 0;
        });
        return cmd;
    }
}
