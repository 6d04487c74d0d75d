using System.CommandLine;
using Perturb.Engine;
using Perturb.Engine.Report;

namespace Perturb.Cli;

/// <summary><c>perturb report</c>: rebuilds the HTML report and results.csv from results files (demo, sweep, attack --json).</summary>
public static class ReportCommand
{
    public static Command Build(CliIO io)
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
                // Example and overlay paths are relative to their own results file; make them relative to the report's folder.
                rows.AddRange(ResultRow.ReadFile(p).Select(r => r.RebasedTo(dir, p, outDir)));
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
