using System.Globalization;
using System.Text.Json.Nodes;
using Perturb.Engine.Data;

namespace Perturb.Tests.Cli;

/// <summary>moea (JSON and the Pareto front) and fooling images with the CPPN encoding from the CLI.</summary>
public class MoeaFoolingCliTests : TempDirTest
{
    static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);
    const string Data = "synthetic:train=300,test=32";

    string TrainedModel()
    {
        var model = Path.Combine(Dir, "m.safetensors");
        var (code, _, err) = Run("train", "--arch", "lenet", "--data", Data, "--epochs", "2", "--lr", "0.003", "--device", "cpu", "--out", model);
        Assert.True(code == 0, err);
        return model;
    }

    [Fact]
    public void MoeaWritesJsonResultsAndTheParetoFront()
    {
        var model = TrainedModel();
        var j = Path.Combine(Dir, "a.json"); var outDir = Path.Combine(Dir, "out");
        var (code, so, err) = Run("attack", "moea", "--model", model, "--data", Data, "--n", "6", "--eps", "0.3", "--norm", "linf",
            "--targeted", "least-likely", "--population", "10", "--iterations", "4", "--seed", "1", "--device", "cpu", "--out", outDir, "--json", j);
        Assert.True(code == 0, err);
        Assert.Contains("mean queries", so);
        Assert.Contains("moea generations done", err);
        var doc = JsonNode.Parse(File.ReadAllText(j))!;
        Assert.Equal("moea", (string)doc["attack"]!);
        var res = doc["results"]!.AsArray();
        Assert.Single(res);
        Assert.Equal(0.3, (double)res[0]!["eps"]!, 5);
        Assert.True((double)res[0]!["max_linf"]! <= 0.3 + 1e-6);
        var rows = File.ReadAllLines(Path.Combine(outDir, "pareto_front.csv"));
        Assert.Equal("image,member,norm,target_confidence,eps,target,reaches_target", rows[0]);
        Assert.True(rows.Length > 1);
        var parsed = rows.Skip(1).Select(l => l.Split(',')).ToArray();
        foreach (var g in parsed.GroupBy(c => c[0]))
        {
            var pts = g.Select(c => (Norm: double.Parse(c[2], CultureInfo.InvariantCulture), Conf: double.Parse(c[3], CultureInfo.InvariantCulture))).ToArray();
            Assert.All(pts, p => { Assert.InRange(p.Norm, 0, 0.3 + 1e-6); Assert.InRange(p.Conf, 0, 1); });
            for (int a = 1; a < pts.Length; a++) Assert.True(pts[a].Norm >= pts[a - 1].Norm && pts[a].Conf >= pts[a - 1].Conf, $"image {g.Key}: front not sorted");
            Assert.Equal(g.Count(), g.Select(c => c[1]).Distinct().Count());
        }
        // The queries per attacked image: population x (1 + iterations); images not attacked spent none.
        var csv = File.ReadAllLines(Path.Combine(outDir, "results_eps0.3.csv"));
        int qi = Array.IndexOf(csv[0].Split(','), "queries");
        Assert.All(csv.Skip(1).Select(l => long.Parse(l.Split(',')[qi], CultureInfo.InvariantCulture)), q => Assert.True(q == 0 || q == 50));
        Assert.Equal(parsed.Select(c => c[0]).Distinct().Count(), csv.Skip(1).Count(l => l.Split(',')[qi] == "50"));

        (code, _, err) = Run("attack", "moea", "--model", model, "--data", Data, "--n", "2", "--eps", "0.1", "--population", "7", "--device", "cpu");
        Assert.Equal(2, code);
        Assert.Contains("population", err);
        (code, _, err) = Run("attack", "moea", "--model", model, "--data", Data, "--n", "2", "--device", "cpu");
        Assert.Equal(2, code);
        Assert.Contains("--eps", err);
    }

    [Fact]
    public void FoolingWithTheCppnEncoding()
    {
        var model = TrainedModel();
        var j = Path.Combine(Dir, "f.json"); var outDir = Path.Combine(Dir, "fool");
        var (code, so, err) = Run("attack", "fooling", "--model", model, "--classes", "1", "--encoding", "cppn", "--population", "20", "--iterations", "10",
            "--seed", "2", "--device", "cpu", "--out", outDir, "--json", j);
        var doc = JsonNode.Parse(File.ReadAllText(j))!;
        Assert.Equal("cppn", (string)doc["encoding"]!);
        Assert.True(code == 0, err); // a missed goal is a result, not an error
        Assert.Equal((int)doc["classes_reached"]! == 1, (bool)doc["all_reached"]!);
        Assert.Equal(20L * (1 + (int)doc["generations"]!), (long)doc["queries"]!);
        var img = Npy.ReadFile(Path.Combine(outDir, "fooling.npy"));
        Assert.Equal(new[] { 1, 1, 28, 28 }, img.Shape);
        var px = img.ToFloat32();
        Assert.All(px, v => Assert.InRange(v, 0f, 1f));
        double diff = Enumerable.Range(0, 28 * 27).Average(k => Math.Abs(px[k / 27 * 28 + k % 27 + 1] - px[k / 27 * 28 + k % 27]));
        Assert.True(diff < 0.2, $"horizontal neighbour difference {diff} (uniform noise: 1/3)");
        Assert.Contains("cppn encoding", err);
        Assert.Single(Directory.GetFiles(outDir, "fooling_class1_*.png"));

        (code, _, err) = Run("attack", "fooling", "--model", model, "--encoding", "pixels", "--device", "cpu");
        Assert.Equal(2, code);
        Assert.Contains("pixels", err);
    }
}
