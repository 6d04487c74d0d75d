using System.Text.RegularExpressions;
using Perturb.Engine;
using Perturb.Engine.Attacks.Segmentation;
using Perturb.Engine.Report;

namespace Perturb.Tests.Segmentation;

/// <summary>The report of a segmentation results file: the Dice table, the Dice-against-budget plot and the overlay grids.</summary>
[Collection("trained-unet")]
public class SegReportTests : TempDirTest
{
    readonly TrainedUnet _f;
    public SegReportTests(TrainedUnet f) { _f = f; }

    [Fact]
    public void ReportShowsOverlaysAndTheDiceCurve()
    {
        var d = _f.Test.Take(3);
        var rows = new List<ResultRow>();
        foreach (var (goal, dir) in new[] { (SegGoal.Untargeted, "seg/u"), (SegGoal.Erase, "seg/e") })
        {
            var a = new SegPgd { Steps = 3, Seed = 1 };
            var r = a.Run(_f.Model, d.X, d.Masks, goal, new[] { 8 / 255f, 64 / 255f });
            MaskOverlay.Save(Path.Combine(Dir, dir), r, d.X);
            rows.AddRange(ResultRow.FromSegAttack(r, a, "unet-small", "histology-seg", "test", "cpu", overlayDir: dir));
        }
        Assert.All(rows, r => Assert.True(r.IsSegmentation));
        Assert.Equal(new[] { false, false, true, true }, rows.Select(r => r.Targeted).ToArray());
        HtmlReport.WriteAll(Dir, rows);

        // The rows survive results.json, and the page rebuilt from the file is the same.
        var back = ResultRow.ReadFile(Path.Combine(Dir, "results.json"));
        Assert.Equal(rows.Select(r => r.Param("dice_target")), back.Select(r => r.Param("dice_target")));
        var html = File.ReadAllText(Path.Combine(Dir, "index.html"));
        Assert.Equal(html, HtmlReport.Build(back, null, Dir));

        Assert.Contains("<h2>Segmentation</h2>", html);
        Assert.DoesNotContain("<h2>Summary</h2>", html); // no classification rows, no classification table or curves
        Assert.DoesNotContain("Robustness curves", html);
        Assert.Contains("alt=\"Dice against epsilon\"", html);
        // Every overlay grid the attacks wrote is inlined, byte for byte, once.
        foreach (var dir in new[] { "seg/u", "seg/e" })
            foreach (var tag in new[] { "eps0.0314", "eps0.251" })
            {
                var b64 = Convert.ToBase64String(File.ReadAllBytes(Path.Combine(Dir, dir, $"overlays_{tag}.png")));
                Assert.Single(Regex.Matches(html, Regex.Escape(b64)));
            }
        Assert.Equal(1 + 4, Regex.Matches(html, "<img ").Count);
        Assert.Contains("original, prediction, adversarial, attacked prediction, target", html);
        Assert.Contains("<td class=\"t\">erase</td>", html);

        // A missing overlay is one clear error naming the file, and nothing is written.
        File.Delete(Path.Combine(Dir, "seg/e/overlays_eps0.251.png"));
        File.Delete(Path.Combine(Dir, "index.html"));
        var ex = Assert.Throws<PerturbException>(() => HtmlReport.WriteAll(Dir, back));
        Assert.Contains("overlays_eps0.251.png", ex.Message);
        Assert.False(File.Exists(Path.Combine(Dir, "index.html")));

        // perturb report refuses an overlay path that leaves the results folder, naming the file and the key.
        var sub = Path.Combine(Dir, "hostile");
        Directory.CreateDirectory(sub);
        var bad = Path.Combine(sub, "results.json");
        File.WriteAllText(bad, "{\"rows\": [ {\"attack\": \"seg-pgd\", \"eps\": 0.03, \"params\": {\"task\": \"segmentation\", \"overlays\": \"../seg/u/overlays_eps0.0314.png\"}} ]}");
        var (code, _, err) = CliRunner.Run("report", bad);
        Assert.Equal(1, code);
        Assert.Contains(bad, err);
        Assert.Contains("params.overlays", err);
        Assert.Single(err.Trim().Split('\n'));
    }
}
