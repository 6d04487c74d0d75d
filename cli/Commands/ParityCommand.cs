using System.CommandLine;
using System.Text.Json.Nodes;
using Perturb.Engine;
using Perturb.Engine.Backends;

namespace Perturb.Cli;

/// <summary>`perturb parity`: every op family, and a preset model's logits and input gradient, on one device against another.</summary>
public static class ParityCommand
{
    public static Command Build(CliIO io)
    {
        var device = CommonOptions.Device();
        var against = new Option<string>("--against") { Description = "the reference device (default cpu)", DefaultValueFactory = _ => "cpu" };
        var model = new Option<string>("--model") { Description = $"the preset whose logits and input gradient are compared ({string.Join(", ", Perturb.Engine.Nn.Presets.Names)}; none: ops only)", DefaultValueFactory = _ => "resnet18" };
        var batch = Opt.Int("--batch-size", "the model's batch", 4, ValueRange.AtLeast(1));
        var seed = CommonOptions.Seed();
        var json = CommonOptions.Json();
        var cmd = new Command("parity", "run every op family and a preset model on --device and on --against with the same inputs and compare the outputs (the check of a GPU against the CPU)");
        foreach (var o in new Option[] { device, against, model, batch, seed, json }) cmd.Options.Add(o);
        cmd.SetAction(pr =>
        {
            string m = pr.GetValue(model)!;
            if (m != "none" && !Perturb.Engine.Nn.Presets.Names.Contains(m))
                throw new PerturbException($"--model: unknown preset '{m}' (choose {string.Join(", ", Perturb.Engine.Nn.Presets.Names)} or none)", 2);
            using var a = CliUtil.OpenDevice(pr.GetValue(device)!, io);
            using var b = CliUtil.OpenDevice(pr.GetValue(against)!, io);
            io.Err.WriteLine($"parity: {a.Name} ({a.DeviceName}) against {b.Name} ({b.DeviceName}), {BackendParity.CaseCount} op cases");
            var results = BackendParity.RunOps(a, b, r => io.Out.WriteLine(r.Line));
            if (m != "none")
            {
                io.Err.WriteLine($"parity: {m} logits and input gradient, batch {pr.GetValue(batch)}");
                foreach (var r in BackendParity.RunModel(a, b, m, pr.GetValue(batch), pr.GetValue(seed)))
                {
                    results.Add(r);
                    io.Out.WriteLine(r.Line);
                }
            }
            int failed = results.Count(r => !r.Passed);
            io.Out.WriteLine($"{results.Count - failed} of {results.Count} cases agree{(failed > 0 ? $"; {failed} FAILED" : "")}");
            if (pr.GetValue(json) is string path)
                CliUtil.WriteJson(path, new JsonObject
                {
                    ["device"] = a.Name, ["device_name"] = a.DeviceName, ["against"] = b.Name, ["against_name"] = b.DeviceName,
                    ["model"] = m, ["batch"] = pr.GetValue(batch), ["passed"] = failed == 0, ["failed"] = failed,
                    ["rule"] = "ops: |a-b| <= tol*(1+|b|) per element; model: max|a-b| / max|b| <= tol; b is the --against device",
                    ["cases"] = new JsonArray(results.Select(r => (JsonNode)new JsonObject
                    {
                        ["family"] = r.Family, ["case"] = r.Case, ["elements"] = r.Elements,
                        ["max_abs_diff"] = Num(r.MaxAbsDiff), ["max_scaled_diff"] = Num(r.MaxScaledDiff),
                        ["tolerance"] = r.Tolerance, ["passed"] = r.Passed, ["error"] = r.Error,
                    }).ToArray()),
                });
            return failed == 0 ? 0 : 1;
        });
        return cmd;
    }

    static JsonNode? Num(double v) => double.IsFinite(v) ? JsonValue.Create(v) : null;
}
