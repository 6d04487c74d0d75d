using System.Globalization;
using System.Text.Json.Nodes;

namespace Perturb.Tests.Cli;

/// <summary>pixel-saliency, white-balance and square --norm l2 from the CLI, on a tiny histology model.</summary>
public class SaliencyWhiteBalanceSquareCliTests : TempDirTest
{
    const string Data = "histology:train=240,test=24";
    static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    string Train(string data, string name)
    {
        var model = Path.Combine(Dir, name);
        var (code, _, err) = Run("train", "--arch", "lenet", "--data", data, "--epochs", "3", "--lr", "0.003", "--device", "cpu", "--out", model);
        Assert.True(code == 0, err);
        return model;
    }

    static JsonNode Result(string json, string attack)
    {
        var doc = JsonNode.Parse(File.ReadAllText(json))!;
        Assert.Equal(attack, (string)doc["attack"]!);
        var res = doc["results"]!.AsArray();
        Assert.Single(res);
        Assert.True(res[0]!.AsObject().ContainsKey("mean_queries"));
        Assert.True(res[0]!.AsObject().ContainsKey("median_queries"));
        return res[0]!;
    }

    [Fact]
    public void PixelSaliencyWhiteBalanceAndSquareL2RunFromTheCli()
    {
        var model = Train(Data, "h.safetensors");
        var j = Path.Combine(Dir, "a.json"); var outDir = Path.Combine(Dir, "ps");

        var (code, so, err) = Run("attack", "pixel-saliency", "--model", model, "--data", Data, "--n", "8", "--pixels", "3",
            "--population", "30", "--iterations", "5", "--candidates", "32", "--seed", "1", "--device", "cpu", "--out", outDir, "--json", j);
        Assert.True(code == 0, err);
        Assert.Contains("mean queries", so);
        var r = Result(j, "pixel-saliency");
        Assert.Null(r["eps"]);
        // 1 gradient query, then 30 per evaluation round (start plus at most 5 generations).
        Assert.InRange((double)r["mean_queries"]!, 31, 1 + 30 * 6);
        Assert.InRange((double)r["median_queries"]!, 31, 1 + 30 * 6);
        var csv = File.ReadAllLines(Path.Combine(outDir, "results_noeps.csv"));
        Assert.EndsWith(",queries", csv[0]);
        Assert.Equal(9, csv.Length);

        outDir = Path.Combine(Dir, "wb");
        (code, so, err) = Run("attack", "white-balance", "--model", model, "--data", Data, "--n", "8", "--population", "12",
            "--iterations", "6", "--seed", "2", "--device", "cpu", "--out", outDir, "--json", j);
        Assert.True(code == 0, err);
        r = Result(j, "white-balance");
        Assert.InRange((double)r["mean_queries"]!, 12, 12 * 7);
        Assert.InRange((double)r["median_queries"]!, 12, 12 * 7);
        var wb = JsonNode.Parse(File.ReadAllText(j))!["white_balance"]!.AsArray();
        Assert.Equal(8, wb.Count);
        var rows = File.ReadAllLines(Path.Combine(outDir, "white_balance.csv"));
        Assert.Equal("index,temperature_k,tint,gain,success", rows[0]);
        Assert.Equal(9, rows.Length);
        for (int i = 0; i < 8; i++)
        {
            var cells = rows[i + 1].Split(',');
            Assert.Equal(i.ToString(CultureInfo.InvariantCulture), cells[0]);
            if (wb[i] == null) { Assert.Equal("", cells[1]); continue; }
            double t = double.Parse(cells[1], CultureInfo.InvariantCulture);
            Assert.InRange(t, 2500, 10000);
            Assert.Equal((double)wb[i]!["temperature_k"]!, t, 3);
            Assert.InRange(double.Parse(cells[2], CultureInfo.InvariantCulture), -0.15, 0.15);
            Assert.InRange(double.Parse(cells[3], CultureInfo.InvariantCulture), 0.6, 1.5);
        }
        // The success column agrees with the per-sample results.
        var res = File.ReadAllLines(Path.Combine(outDir, "results_noeps.csv"));
        int sc = Array.IndexOf(res[0].Split(','), "success");
        Assert.True(sc >= 0, res[0]);
        for (int i = 0; i < 8; i++)
        {
            string v = res[i + 1].Split(',')[sc];
            Assert.Equal(v is "1" or "true" or "True" ? "1" : "0", rows[i + 1].Split(',')[4]);
        }

        (code, so, err) = Run("attack", "square", "--model", model, "--data", Data, "--n", "8", "--norm", "l2", "--eps", "0.5,6",
            "--queries", "40", "--seed", "3", "--device", "cpu", "--json", j);
        Assert.True(code == 0, err);
        var sq = JsonNode.Parse(File.ReadAllText(j))!["results"]!.AsArray();
        Assert.Equal(2, sq.Count);
        foreach (var e in sq)
        {
            if (e!["mean_l2"] is { } l2) Assert.True((double)l2 <= (double)e["eps"]! + 1e-5);
            Assert.InRange((double)e["mean_queries"]!, 1, 40);
        }
    }

    [Fact]
    public void BadUsageIsExitTwoWithOneClearLine()
    {
        var grey = Train("synthetic:train=120,test=8", "g.safetensors");
        var (code, _, err) = Run("attack", "white-balance", "--model", grey, "--data", "synthetic:train=120,test=8", "--n", "4", "--device", "cpu");
        Assert.Equal(2, code);
        Assert.Contains("white-balance needs RGB images; the model takes 1x28x28", err);

        (code, _, err) = Run("attack", "pixel-saliency", "--model", grey, "--data", "synthetic:train=120,test=8", "--n", "2", "--pixels", "3",
            "--candidates", "2", "--device", "cpu");
        Assert.Equal(2, code);
        Assert.Contains("candidates", err);

        (code, _, err) = Run("attack", "white-balance", "--model", grey, "--data", "synthetic:train=120,test=8", "--eps", "0.1", "--device", "cpu");
        Assert.Equal(2, code);
        Assert.Contains("no budget", err);
    }
}
