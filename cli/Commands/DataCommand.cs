using System.CommandLine;
using System.Text.Json.Nodes;
using Perturb.Engine.Data;

namespace Perturb.Cli;

/// <summary><c>perturb data info SPEC</c> and <c>perturb data fetch NAME</c>.</summary>
public static class DataCommand
{
    public static Command Build(CliIO io)
    {
        var cmd = new Command("data", "describe data sets, and download MedMNIST files");
        cmd.Subcommands.Add(Info(io));
        cmd.Subcommands.Add(FetchCmd(io));
        return cmd;
    }

    static Command Info(CliIO io)
    {
        var spec = new Argument<string>("data") { Description = DataSources.Help };
        var dataSeed = CommonOptions.DataSeed();
        var json = CommonOptions.Json();
        var cmd = new Command("info", "print what a data set holds: splits, counts, image shape, classes and class balance");
        cmd.Arguments.Add(spec);
        cmd.Options.Add(dataSeed);
        cmd.Options.Add(json);
        cmd.SetAction(pr =>
        {
            var info = DataSources.Describe(pr.GetValue(spec)!, pr.GetValue(dataSeed));
            Print(io.Out, info);
            var path = pr.GetValue(json);
            if (path != null) CliUtil.WriteJson(path, ToJson(info));
            return 0;
        });
        return cmd;
    }

    static void Print(TextWriter o, DataInfo d)
    {
        o.WriteLine($"{d.Name}: {d.Kind} ({d.Source})");
        o.WriteLine($"classes: {d.ClassNames.Length} ({string.Join(", ", d.ClassNames)}){(d.MultiLabel ? "; multi-label: counts are samples positive for each label" : "")}");
        o.WriteLine($"{"split",-6} {"count",8}  {"shape",-10} {(d.MultiLabel ? "positives per label" : "class balance")}");
        foreach (var s in d.Splits)
        {
            if (s.Missing != null) { o.WriteLine($"{s.Split,-6} {"-",8}  {"-",-10} missing: {s.Missing}"); continue; }
            var bal = string.Join(", ", s.ClassCounts.Select((c, i) => $"{d.ClassNames[i]} {c} ({(s.Count == 0 ? 0 : 100.0 * c / s.Count):F1}%)"));
            o.WriteLine($"{s.Split,-6} {s.Count,8}  {$"{s.Channels}x{s.Height}x{s.Width}",-10} {bal}");
        }
    }

    static JsonObject ToJson(DataInfo d)
    {
        var splits = new JsonObject();
        foreach (var s in d.Splits)
            splits[s.Split] = s.Missing != null ? new JsonObject { ["missing"] = s.Missing } : new JsonObject
            {
                ["count"] = s.Count,
                ["shape"] = new JsonArray(s.Channels, s.Height, s.Width),
                ["class_counts"] = new JsonArray(s.ClassCounts.Select(c => (JsonNode)c).ToArray()),
            };
        return new JsonObject
        {
            ["name"] = d.Name, ["kind"] = d.Kind, ["source"] = d.Source, ["multi_label"] = d.MultiLabel,
            ["classes"] = new JsonArray(d.ClassNames.Select(c => (JsonNode)c).ToArray()),
            ["splits"] = splits,
        };
    }

    static Command FetchCmd(CliIO io)
    {
        var name = new Argument<string>("name") { Description = $"a MedMNIST v2 set (28x28): {string.Join(", ", MedMnist.Sets.Keys)}" };
        var cache = new Option<string?>("--cache") { Description = $"cache folder (default {Fetch.DefaultCache})" };
        var cmd = new Command("fetch", $"download a MedMNIST v2 .npz from the official Zenodo record ({Fetch.BaseUrl}), check its official MD5, and keep it in the cache; an interrupted download resumes");
        cmd.Arguments.Add(name);
        cmd.Options.Add(cache);
        cmd.SetAction(pr =>
        {
            var bar = new ProgressBar(io.Err, $"fetch {pr.GetValue(name)}");
            var path = Fetch.MedMnistFile(pr.GetValue(name)!, pr.GetValue(cache), progress: (done, total) =>
                bar.Update((int)(done >> 10), (int)((total ?? done) >> 10), "KiB"));
            bar.Done("done");
            io.Out.WriteLine($"{path} (MD5 {MedMnist.Identify(path)!.Md5}, checked against the official one)");
            return 0;
        });
        return cmd;
    }
}
