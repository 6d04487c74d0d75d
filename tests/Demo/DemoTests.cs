using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Perturb.Engine.Report;

namespace Perturb.Tests.Demo;

/// <summary>One quick demo run (through the CLI) shared by the tests of this class.</summary>
public sealed class DemoFixture : IDisposable
{
    public readonly string Dir = Path.Combine(Path.GetTempPath(), "perturb-demo-" + Guid.NewGuid().ToString("N"));
    public readonly int Code;
    public readonly string Out, Err;
    public readonly List<ResultRow> Rows;

    public DemoFixture()
    {
        (Code, Out, Err) = CliRunner.Run("demo", "--quick", "--out", Dir, "--device", "cpu", "--seed", "3");
        Rows = Code == 0 ? ResultRow.ReadFile(Path.Combine(Dir, "results.json")) : new List<ResultRow>();
    }

    public void Dispose() { try { Directory.Delete(Dir, true); } catch (IOException) { } }
}

public class DemoTests : TempDirTest, IClassFixture<DemoFixture>
{
    readonly DemoFixture _f;
    public DemoTests(DemoFixture f) { _f = f; }

    [Fact]
    public void DemoRunsEndToEndAndWritesEveryOutput()
    {
        Assert.True(_f.Code == 0, _f.Err);
        foreach (var f in new[] { "index.html", "results.json", "results.csv", "model.safetensors", "examples/fgsm.npz", "examples/pgd.npz",
                     "examples/deepfool.npz", "examples/one-pixel.npz", "examples/white-balance.npz", "examples/patch.npz", "examples/badnets.npz", "examples/patch.png" })
            Assert.True(File.Exists(Path.Combine(_f.Dir, f)), f);
        Assert.Empty(Directory.GetFiles(_f.Dir, "*.tmp*", SearchOption.AllDirectories));
        // Written whole: the completion marker is there, and no temporary folder is left beside the output.
        var marker = JsonNode.Parse(File.ReadAllText(Path.Combine(_f.Dir, Perturb.Engine.IO.OutputFolder.Marker)))!;
        Assert.True((bool)marker["complete"]!);
        Assert.Equal("perturb demo", (string)marker["written_by"]!);
        Assert.Empty(Directory.GetDirectories(Path.GetDirectoryName(_f.Dir)!, "." + Path.GetFileName(_f.Dir) + ".*"));
        // Progress: one line per step on stderr.
        for (int i = 1; i <= 11; i++) Assert.Contains($"[{i}/11]", _f.Err);
        Assert.Contains("index.html", _f.Out);
        // The terminal table labels segmentation figures as Dice, under their own header after the classification rows.
        var lines = _f.Out.Split('\n');
        int segHeader = Array.FindIndex(lines, l => l.StartsWith("segmentation") && l.Contains("clean Dice") && l.Contains("attacked Dice"));
        Assert.True(segHeader > 0, _f.Out);
        Assert.DoesNotContain(lines.Take(segHeader), l => l.StartsWith("seg-pgd"));
        Assert.Contains(lines.Skip(segHeader), l => l.StartsWith("seg-pgd") && l.Contains("erase"));
        var attacks = _f.Rows.Select(r => r.Attack).Distinct().OrderBy(a => a).ToArray();
        Assert.Equal(new[] { "badnets", "deepfool", "fgsm", "one-pixel", "patch", "patch-control", "pgd", "seg-pgd", "white-balance" }, attacks);
        foreach (var f in new[] { "seg/seg-pgd/overlays_eps0.0314.png", "seg/seg-pgd/dice_vs_eps.csv", "seg/seg-pgd-erase/overlays_eps0.502.png", "seg/seg-pgd-erase/target.npy" })
            Assert.True(File.Exists(Path.Combine(_f.Dir, f)), f);
        var csv = File.ReadAllLines(Path.Combine(_f.Dir, "results.csv"));
        Assert.Equal(ResultRow.CsvHeader, csv[0]);
        Assert.Equal(_f.Rows.Count + 1, csv.Length);
    }

    [Fact]
    public void DemoFiguresAreConsistent()
    {
        Assert.True(_f.Code == 0, _f.Err);
        var clean = _f.Rows.First(r => r.Attack == "fgsm").CleanAccuracy;
        Assert.True(clean >= 0.8, $"the quick demo model should learn the synthetic set, clean accuracy {clean}");
        foreach (var name in new[] { "fgsm", "pgd" })
        {
            var rs = _f.Rows.Where(r => r.Attack == name).OrderBy(r => r.Eps).ToList();
            Assert.Equal(new[] { 2, 8, 16 }, rs.Select(r => (int)Math.Round(r.Eps!.Value * 255)).ToArray());
            foreach (var r in rs)
            {
                Assert.True(r.MaxLinf <= r.Eps!.Value + 1e-6, $"{name} eps {r.Eps}: max Linf {r.MaxLinf}");
                Assert.InRange(r.RobustAccuracy, 0, clean + 1e-9);
                Assert.Equal(24, r.N);
            }
        }
        // A stronger attack beats a weaker one: PGD's robust accuracy at the largest budget is no higher than FGSM's.
        double Rob(string a) => _f.Rows.Where(r => r.Attack == a).OrderBy(r => r.Eps).Last().RobustAccuracy;
        Assert.True(Rob("pgd") <= Rob("fgsm"), $"pgd {Rob("pgd")} fgsm {Rob("fgsm")}");
        Assert.True(Rob("pgd") < clean, "PGD at 16/255 must fool the quick model on some tiles");
        var df = _f.Rows.Single(r => r.Attack == "deepfool");
        Assert.Null(df.Eps);
        Assert.True(df.SuccessRate > 0.5, $"deepfool success {df.SuccessRate}");
        var op = _f.Rows.Single(r => r.Attack == "one-pixel");
        Assert.Equal(12, op.N);
        Assert.True(op.MeanQueries > 0, "one-pixel counts its queries");
        // Segmentation: the quick unet finds nuclei, untargeted seg-pgd lowers Dice with the clean prediction as the
        // budget grows, and erase at the larger budget erases most nuclei and half the tiles or more (14.3 -> 1.0 nuclei,
        // 4 of 6 tiles; unet-small with the untargeted step's 8 steps, as before: none of 6 at 128/255, 14.8 -> 13.8).
        var seg = _f.Rows.Where(r => r.IsSegmentation).ToList();
        Assert.Equal(4, seg.Count);
        Assert.All(seg, r => { Assert.Equal(6, r.N); Assert.True(r.MaxLinf <= r.Eps!.Value + 1e-6, $"seg max Linf {r.MaxLinf}"); });
        Assert.True(seg[0].CleanAccuracy >= 0.6, $"quick unet nucleus Dice {seg[0].CleanAccuracy}");
        var unt = seg.Where(r => !r.Targeted).OrderBy(r => r.Eps).ToList();
        Assert.True(unt[1].Param("dice_target") < unt[0].Param("dice_target"), $"seg-pgd Dice with clean {unt[0].Param("dice_target")} -> {unt[1].Param("dice_target")}");
        var erase = seg.Where(r => r.Targeted).OrderBy(r => r.Eps).Last();
        Assert.True(erase.Param("count_after") < 0.25 * erase.Param("count_before"), $"erase nuclei {erase.Param("count_before")} -> {erase.Param("count_after")}");
        Assert.True(erase.SuccessRate >= 0.5, $"erase success {erase.SuccessRate} at eps {erase.Eps}");
        var bd = _f.Rows.Single(r => r.Attack == "badnets");
        // The backdoor works: the trigger sends far more triggered tiles to the target on the poisoned model than on its
        // clean twin (trained with the same seed), and costs little clean accuracy.
        double baseline = (double)bd.Params!["baseline_attack_success"]!;
        Assert.True(bd.SuccessRate >= baseline + 0.5, $"badnets attack success {bd.SuccessRate}, clean twin {baseline}");
        Assert.True(bd.CleanAccuracy >= (double)bd.Params["baseline_clean_accuracy"]! - 0.1, $"badnets clean accuracy {bd.CleanAccuracy}");
    }

    [Fact]
    public void ReportIsSelfContained()
    {
        Assert.True(_f.Code == 0, _f.Err);
        var html = File.ReadAllText(Path.Combine(_f.Dir, "index.html"));
        Assert.StartsWith("<!DOCTYPE html>", html);
        Assert.DoesNotContain("http:", html, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("https:", html, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("<script", html, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("<link", html, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("url(", html, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("@import", html, StringComparison.OrdinalIgnoreCase);
        var srcs = Regex.Matches(html, "src=\"([^\"]*)\"").Select(m => m.Groups[1].Value).ToList();
        Assert.All(srcs, s => Assert.StartsWith("data:image/png;base64,", s));
        // Two plots, per example set three images per example (7 sets of 3 examples in the quick setting), and the
        // segmentation Dice plot with one overlay grid per segmentation row (2 goals x 2 budgets).
        Assert.Equal(2 + 7 * 3 * 3 + 1 + 4, srcs.Count);
        Assert.Contains("<h2>Segmentation</h2>", html);
        foreach (var s in srcs)
        {
            var png = Convert.FromBase64String(s["data:image/png;base64,".Length..]);
            Assert.Equal(new byte[] { 0x89, 0x50, 0x4E, 0x47 }, png[..4]);
        }
        Assert.Contains("Robustness curves", html);
        Assert.Contains("one-pixel", html);
    }

    [Fact]
    public void ReportCommandRebuildsTheSamePage()
    {
        Assert.True(_f.Code == 0, _f.Err);
        var (code, o, e) = CliRunner.Run("report", _f.Dir, "--out", Dir);
        Assert.True(code == 0, e);
        Assert.Contains("rows", o);
        Assert.Equal(File.ReadAllText(Path.Combine(_f.Dir, "index.html")), File.ReadAllText(Path.Combine(Dir, "index.html")));
        Assert.Equal(File.ReadAllText(Path.Combine(_f.Dir, "results.csv")), File.ReadAllText(Path.Combine(Dir, "results.csv")));
    }

    [Fact]
    public void ReportErrorsNameTheFile()
    {
        var missing = Path.Combine(Dir, "nope.json");
        var (code, _, e) = CliRunner.Run("report", missing);
        Assert.Equal(1, code);
        Assert.Contains(missing, e);
        Assert.Single(e.Trim().Split('\n'));

        var bad = Path.Combine(Dir, "bad.json");
        File.WriteAllText(bad, "{\"rows\": [ {\"attack\": \"pgd\" ");
        (code, _, e) = CliRunner.Run("report", bad);
        Assert.Equal(1, code);
        Assert.Contains(bad, e);
        Assert.Contains("not valid JSON", e);

        var noAttack = Path.Combine(Dir, "noattack.json");
        File.WriteAllText(noAttack, "{\"rows\": [ {\"eps\": 0.1} ]}");
        (code, _, e) = CliRunner.Run("report", noAttack);
        Assert.Equal(1, code);
        Assert.Contains("has no \"attack\"", e);
        Assert.False(File.Exists(Path.Combine(Dir, "index.html")));

        var missingExamples = Path.Combine(Dir, "ex.json");
        File.WriteAllText(missingExamples, "{\"rows\": [ {\"attack\": \"pgd\", \"eps\": 0.03, \"examples\": \"gone.npz\"} ]}");
        (code, _, e) = CliRunner.Run("report", missingExamples);
        Assert.Equal(1, code);
        Assert.Contains("gone.npz", e);
        Assert.False(File.Exists(Path.Combine(Dir, "index.html")), "nothing half-written");
    }

    [Fact]
    public void JsonlWithATornLastLineIsRead()
    {
        var rows = new[]
        {
            new ResultRow { Attack = "fgsm", Eps = 2 / 255.0, N = 10, CleanAccuracy = 0.9, RobustAccuracy = 0.6, SuccessRate = 1 / 3.0, Cell = "a,\"b\"" },
            new ResultRow { Attack = "fgsm", Eps = 8 / 255.0, N = 10, CleanAccuracy = 0.9, RobustAccuracy = 0.2, SuccessRate = 7 / 9.0 },
        };
        var path = Path.Combine(Dir, "r.jsonl");
        File.WriteAllText(path, string.Join("\n", rows.Select(r => r.ToJson().ToJsonString())) + "\n{\"attack\": \"pg");
        var back = ResultRow.ReadFile(path);
        Assert.Equal(2, back.Count);
        Assert.Equal(rows[0].Cell, back[0].Cell);
        Assert.Equal(rows[1].RobustAccuracy, back[1].RobustAccuracy);
        Assert.True(double.IsNaN(back[0].MeanL2));
        // A broken line in the middle is an error naming the line.
        File.WriteAllText(path, "{\"attack\": \"x\"}\nnot json\n{\"attack\": \"y\"}\n");
        var ex = Assert.Throws<Perturb.Engine.PerturbException>(() => ResultRow.ReadFile(path));
        Assert.Contains(path + ":2", ex.Message);
        // CSV quotes a field with a comma or a quote.
        Assert.Contains("\"a,\"\"b\"\"\"", rows[0].ToCsvLine());
        // The report of a .jsonl has curves but no example grid.
        File.WriteAllText(path, string.Join("\n", rows.Select(r => r.ToJson().ToJsonString())) + "\n");
        var (code, _, e) = CliRunner.Run("report", path);
        Assert.True(code == 0, e);
        var html = File.ReadAllText(Path.Combine(Dir, "index.html"));
        Assert.Contains("Robustness curves", html);
        Assert.DoesNotContain("<h2>Examples", html);
    }

    [Fact]
    public void ReportReadsAttackJsonSummaries()
    {
        Assert.True(_f.Code == 0, _f.Err);
        var model = Path.Combine(_f.Dir, "model.safetensors");
        var j = Path.Combine(Dir, "fgsm.json");
        var (code, _, e) = CliRunner.Run("attack", "fgsm", "--model", model, "--data", "histology:train=40,test=40,overlap=0.9", "--n", "12",
            "--eps", "2/255,8/255", "--device", "cpu", "--json", j);
        Assert.True(code == 0, e);
        var rows = ResultRow.ReadFile(j);
        Assert.Equal(2, rows.Count);
        Assert.All(rows, r => { Assert.Equal("fgsm", r.Attack); Assert.Equal(12, r.N); Assert.Equal(model, r.Model); });
        Assert.Equal(new[] { 2.0, 8.0 }, rows.Select(r => Math.Round(r.Eps!.Value * 255, 3)).ToArray());
        (code, _, e) = CliRunner.Run("report", j);
        Assert.True(code == 0, e);
        Assert.Contains("Robustness curves", File.ReadAllText(Path.Combine(Dir, "index.html")));
    }

    [Fact]
    public void ManyCurvesGetOneHtmlLegendAndASettingsColumn()
    {
        var rows = new List<ResultRow>();
        foreach (var steps in new[] { 5, 20 })
            foreach (var data in new[] { "a", "b" })
                foreach (var e in new[] { 2, 4, 8 })
                    rows.Add(new ResultRow
                    {
                        Attack = "pgd", Model = "m", Data = data, Eps = e / 255.0, N = 10, CleanAccuracy = 1, RobustAccuracy = 1 - e / 10.0,
                        SuccessRate = e / 10.0, Params = new JsonObject { ["steps"] = steps },
                    });
        var html = HtmlReport.Build(rows, null, Dir);
        var legend = Regex.Match(html, "<ul class=\"legend\">(.*?)</ul>").Groups[1].Value;
        Assert.Equal(4, Regex.Matches(legend, "<li>").Count);
        Assert.Contains("pgd steps=20 (m, b)", legend);
        Assert.Equal(2, Regex.Matches(html, "<img ").Count);
        Assert.Contains("<th>settings</th>", html);
        Assert.Equal(12, Regex.Matches(html, "<td class=\"t\">steps=5</td>|<td class=\"t\">steps=20</td>").Count);
        // Three lines or fewer keep the legend inside the plot.
        Assert.DoesNotContain("class=\"legend\"", HtmlReport.Build(rows.Take(9).ToList(), null, Dir));
    }
}
