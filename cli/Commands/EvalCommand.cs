using System.CommandLine;
using System.Text.Json.Nodes;
using Perturb.Engine;
using Perturb.Engine.Data;
using Perturb.Engine.IO;
using Perturb.Engine.Training;

namespace Perturb.Cli;

public static class EvalCommand
{
    public static Command Build(CliIO io)
    {
        var model = new Option<string>("--model") { Description = "model file: .safetensors or .onnx", Required = true };
        var data = CommonOptions.Data();
        var dataSeed = CommonOptions.DataSeed();
        var split = new Option<string>("--split") { Description = "train, val or test", DefaultValueFactory = _ => "test" };
        split.AcceptOnlyFromAmong("train", "val", "test");
        var batch = CommonOptions.BatchSize(256);
        var device = CommonOptions.Device();
        var json = CommonOptions.Json();
        var cmd = new Command("eval", "evaluate a saved model on a data set");
        foreach (var o in new Option[] { model, data, dataSeed, split, batch, device, json }) cmd.Options.Add(o);
        cmd.SetAction(pr =>
        {
            var d = DataSources.LoadSplit(pr.GetValue(data)!, pr.GetValue(split)!, pr.GetValue(dataSeed));
            using var be = CliUtil.OpenDevice(pr.GetValue(device)!, io);
            using var m = CliUtil.LoadModel(pr.GetValue(model)!, be, io);
            if (Perturb.Engine.Nn.Presets.IsSegmentation(m))
            {
                var sr = SegEvaluator.Evaluate(m, d, pr.GetValue(batch));
                io.Out.WriteLine($"{pr.GetValue(split)}: {sr.Summary()} ({be.Name})");
                if (pr.GetValue(json) is { } sj)
                {
                    var jo = sr.ToJson();
                    jo["model"] = pr.GetValue(model); jo["data"] = pr.GetValue(data); jo["split"] = pr.GetValue(split); jo["device"] = be.Name;
                    CliUtil.WriteJson(sj, jo);
                }
                return 0;
            }
            var bar = new ProgressBar(io.Err, "eval");
            var r = Evaluator.Evaluate(m, d, pr.GetValue(batch), (done, total) => bar.Update(done, total));
            bar.Done($"{r.N} images");
            io.Out.WriteLine($"accuracy {r.Accuracy:P2}, AUC {r.Auc:F4} on {r.N} {pr.GetValue(split)} images ({be.Name})");
            io.Out.WriteLine($"  {"class",-14} {"n",6} {"accuracy",9} {"AUC (1-vs-rest)",16}");
            for (int c = 0; c < d.NumClasses; c++)
            {
                int nc = 0; for (int j = 0; j < r.Confusion.GetLength(1); j++) nc += r.Confusion[c, j];
                io.Out.WriteLine($"  {d.ClassNames[c],-14} {nc,6} {r.PerClassAccuracy[c],9:P1} {r.PerClassAuc[c],16:F4}");
            }
            var jpath = pr.GetValue(json);
            if (jpath != null)
            {
                int k = r.Confusion.GetLength(1);
                CliUtil.WriteJson(jpath, new JsonObject
                {
                    ["model"] = pr.GetValue(model), ["data"] = pr.GetValue(data), ["split"] = pr.GetValue(split), ["device"] = be.Name,
                    ["n"] = r.N, ["accuracy"] = r.Accuracy,
                    ["auc"] = double.IsFinite(r.Auc) ? r.Auc : null,
                    ["per_class_accuracy"] = CliUtil.Arr(r.PerClassAccuracy),
                    ["per_class_auc"] = CliUtil.Arr(r.PerClassAuc),
                    ["confusion"] = new JsonArray(Enumerable.Range(0, d.NumClasses).Select(i => (JsonNode)new JsonArray(Enumerable.Range(0, k).Select(j => (JsonNode)r.Confusion[i, j]).ToArray())).ToArray()),
                    ["classes"] = new JsonArray(d.ClassNames.Select(c => (JsonNode)c).ToArray()),
                });
            }
            return 0;
        });
        return cmd;
    }
}
