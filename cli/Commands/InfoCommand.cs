using System.CommandLine;
using System.Text.Json.Nodes;
using Perturb.Engine;

namespace Perturb.Cli;

public static class InfoCommand
{
    public static Command Build(CliIO io)
    {
        var json = CommonOptions.Json();
        var cmd = new Command("info", "list the compute devices and which one 'auto' picks");
        cmd.Options.Add(json);
        cmd.SetAction(pr =>
        {
            var list = Devices.List();
            string auto = Devices.AutoKind();
            io.Out.WriteLine($"{"device",-10} {"available",-9} {"memory",10}  name / note");
            foreach (var d in list)
                io.Out.WriteLine($"{d.Kind,-10} {(d.Available ? "yes" : "no"),-9} {(d.MemoryBytes > 0 ? $"{d.MemoryBytes / (1024.0 * 1024 * 1024):F1} GiB" : "-"),10}  {d.Name}{(d.Note.Length > 0 ? " (" + d.Note + ")" : "")}");
            io.Out.WriteLine($"auto -> {auto}");
            var path = pr.GetValue(json);
            if (path != null)
            {
                var arr = new JsonArray(list.Select(d => (JsonNode)new JsonObject
                {
                    ["kind"] = d.Kind, ["name"] = d.Name, ["memory_bytes"] = d.MemoryBytes, ["available"] = d.Available, ["note"] = d.Note,
                }).ToArray());
                CliUtil.WriteJson(path, new JsonObject { ["devices"] = arr, ["auto"] = auto });
            }
            return 0;
        });
        return cmd;
    }
}
