using System.CommandLine;
using Perturb.Engine;
using Perturb.Engine.Demo;
using Perturb.Engine.Report;

namespace Perturb.Cli;

/// <summary><c>perturb demo</c>: the main job on the embedded synthetic histology set; <c>perturb report</c> rebuilds a report.</summary>
public static class DemoCommand
{
    public static Command Build(CliIO io)
    {
        var outp = new Option<string>("--out") { Description = "folder for index.html, results.json, results.csv, examples/ and model.safetensors", DefaultValueFactory = _ => "demo" };
        var quick = new Option<bool>("--quick") { Description = "a smaller setting (800 training tiles, 24 attacked, fewer steps and budgets): the CI run" };
        var seed = CommonOptions.Seed();
        var device = CommonOptions.Device();
        var cmd = new Command("demo", "the whole tool in a few minutes: synthetic histology, train cnn-small, FGSM, PGD, DeepFool, one-pixel, white-balance, a patch, a BadNets backdoor, and an HTML report");
        foreach (var o in new Option[] { outp, quick, seed, device }) cmd.Options.Add(o);
        cmd.SetAction(pr =>
        {
            using var be = CliUtil.OpenDevice(pr.GetValue(device)!, io);
            var dir = pr.GetValue(outp)!;
            var s = pr.GetValue(quick) ? DemoSettings.Quick : DemoSettings.Full;
            io.Err.WriteLine($"perturb demo on {be.Name}{(pr.GetValue(quick) ? " (quick setting)" : "")}, writing {dir}");
            var rows = DemoRunner.Run(be, dir, s, pr.GetValue(seed), io.Err.WriteLine);
            io.Out.WriteLine($"{"attack",-14} {"eps",7} {"clean acc",9} {"robust acc",10} {"success",8}");
            foreach (var r in rows)
                io.Out.WriteLine($"{r.Attack,-14} {(r.Eps is { } e ? $"{e * 255:0.#}/255" : "-"),7} {Pct(r.CleanAccuracy),9} {Pct(r.RobustAccuracy),10} {Pct(r.SuccessRate),8}");
            io.Out.WriteLine($"report: {Path.Combine(dir, "index.html")}");
            return 0;
        });
        return cmd;
    }

    static string Pct(double v) => double.IsFinite(v) ? $"{100 * v:0.0}%" : "-";

    public static Command BuildReport(CliIO io)
    {
        var files = new Argument<string[]>("RESULTS") { Description = "results.json, .jsonl sweep results, or folders holding results.json", Arity = ArgumentArity.OneOrMore };
        var outp = new Option<string?>("--out") { Description = "folder for index.html and results.csv (default: the first results file's folder)" };
        var title = new Option<string?>("--title") { Description = "page title" };
        var cmd = new Command("report", "rebuild the HTML report (index.html) and results.csv from results files");
        cmd.Arguments.Add(files);
        cmd.Options.Add(outp);
        cmd.Options.Add(title);
        cmd.SetAction(pr =>
        {
            var paths = pr.GetValue(files)!.Select(p => Directory.Exists(p) ? Path.Combine(p, "results.json") : p).ToList();
            foreach (var p in paths) if (!File.Exists(p)) throw new PerturbException($"{p}: results file not found", 1);
            var outDir = Path.GetFullPath(pr.GetValue(outp) ?? Path.GetDirectoryName(Path.GetFullPath(paths[0]))!);
            var rows = new List<ResultRow>();
            foreach (var p in paths)
            {
                var dir = Path.GetDirectoryName(Path.GetFullPath(p))!;
                // Example paths are relative to their own results file; make them relative to the report's folder.
                rows.AddRange(ResultRow.ReadFile(p).Select(r => r.Examples is { } ex ? r with { Examples = Path.GetRelativePath(outDir, ExampleSet.ResolveInside(dir, ex, p)) } : r));
            }
            if (rows.Count == 0) throw new PerturbException($"{paths[0]}: holds no result rows", 1);
            Directory.CreateDirectory(outDir);
            var meta = HtmlReport.ReadMeta(paths[0]) ?? new System.Text.Json.Nodes.JsonObject();
            // One results file keeps its own title unless --title is given; several get --title or a plain one.
            meta["title"] = pr.GetValue(title) ?? (paths.Count == 1 ? meta["title"]?.GetValue<string>() : null) ?? "Perturb report";
            var html = Path.Combine(outDir, "index.html");
            HtmlReport.WriteHtml(html, rows, meta, outDir);
            Engine.IO.AtomicFile.WriteText(Path.Combine(outDir, "results.csv"), ResultRow.ToCsv(rows));
            io.Out.WriteLine($"{rows.Count} rows from {paths.Count} file(s): wrote {html} and {Path.Combine(outDir, "results.csv")}");
            return 0;
        });
        return cmd;
    }
}
