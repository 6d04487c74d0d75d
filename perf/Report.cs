using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Perturb.Perf;

/// <summary>
/// One measured figure. <paramref name="Gflops"/> is the arithmetic rate behind it (GFLOP/s), from which the ratio to
/// the measured FMA peak is taken; null when the figure has no flop count (the ratio is then left out).
/// </summary>
public sealed record Figure(string Group, string Name, double Value, string Unit, double? Gflops, JsonObject? Detail = null);

/// <summary>Collects figures, prints the table, writes the JSON file.</summary>
public sealed class Report
{
    public List<Figure> Figures { get; } = new();
    public double PeakGflops { get; set; }
    public string DeviceKind { get; set; } = "";
    public string DeviceName { get; set; } = "";
    public string Bench { get; set; } = "";
    public bool Quick { get; set; }
    /// <summary>"wall" or "cpu" (process CPU seconds), and the CPU backend's thread count (null: all cores).</summary>
    public string Clock { get; set; } = "wall";
    public int? Threads { get; set; }

    public void Add(Figure f)
    {
        Figures.Add(f);
        Console.Error.WriteLine($"  {f.Group,-7} {f.Name,-44} {Fmt(f.Value),10} {f.Unit,-9} {PctText(f)}");
    }

    public double? Ratio(Figure f) => f.Gflops is double g && PeakGflops > 0 ? g / PeakGflops : null;
    string PctText(Figure f) => Ratio(f) is double r ? (100 * r).ToString("0.0", CultureInfo.InvariantCulture) + " %" : "";

    static string Fmt(double v) => v.ToString(v >= 100 ? "0.0" : v >= 1 ? "0.00" : "0.0000", CultureInfo.InvariantCulture);

    /// <summary>The readable table on stdout.</summary>
    public void PrintTable()
    {
        Console.WriteLine();
        Console.WriteLine($"Perturb perf: bench {Bench}, device {DeviceKind} ({DeviceName}){(Quick ? ", quick" : "")}");
        Console.WriteLine($"machine: {Machine.CpuModel}, {Environment.ProcessorCount} logical cores, {Peak.SimdName}");
        Console.WriteLine($"FMA peak (float32, measured): {PeakGflops.ToString("0.0", CultureInfo.InvariantCulture)} GFLOP/s");
        Console.WriteLine();
        const string head = "{0,-7} {1,-46} {2,12} {3,-10} {4,10} {5,12}";
        Console.WriteLine(string.Format(head, "group", "figure", "value", "unit", "% of peak", "GFLOP/s"));
        Console.WriteLine(new string('-', 102));
        foreach (var f in Figures)
            Console.WriteLine(string.Format(head, f.Group, f.Name, Fmt(f.Value), f.Unit, PctText(f),
                f.Gflops is double g ? Fmt(g) : ""));
        Console.WriteLine();
    }

    /// <summary>Writes the JSON file to a temporary name next to it, then renames it into place.</summary>
    public void WriteJson(string path)
    {
        var figs = new JsonArray();
        foreach (var f in Figures)
        {
            var o = new JsonObject
            {
                ["group"] = f.Group,
                ["name"] = f.Name,
                ["value"] = f.Value,
                ["unit"] = f.Unit,
                ["gflops"] = f.Gflops,
                ["ratio_to_peak"] = Ratio(f),
            };
            if (f.Detail != null) o["detail"] = f.Detail.DeepClone();
            figs.Add(o);
        }
        var root = new JsonObject
        {
            ["harness"] = "Perturb.Perf",
            ["bench"] = Bench,
            ["quick"] = Quick,
            ["clock"] = Clock,
            ["threads"] = Threads,
            ["date"] = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
            ["machine"] = Machine.Json(),
            ["device"] = new JsonObject { ["kind"] = DeviceKind, ["name"] = DeviceName },
            ["peak_gflops"] = PeakGflops,
            ["peak_note"] = $"float32 FMA, {Peak.Chains} independent chains per thread, {Environment.ProcessorCount} threads, {Peak.Lanes} lanes, best simultaneous 20 ms slice",
            ["figures"] = figs,
        };
        string full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        string tmp = full + ".tmp-" + Environment.ProcessId;
        File.WriteAllText(tmp, root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        File.Move(tmp, full, overwrite: true);
        Console.Error.WriteLine($"wrote {full}");
    }
}

/// <summary>What the machine is: CPU model from /proc/cpuinfo, core count, SIMD width.</summary>
public static class Machine
{
    public static string CpuModel { get; } = ReadCpuModel();

    static string ReadCpuModel()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
                if (line.StartsWith("model name", StringComparison.Ordinal))
                    return line[(line.IndexOf(':') + 1)..].Trim();
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return "unknown CPU";
    }

    public static JsonObject Json() => new()
    {
        ["cpu_model"] = CpuModel,
        ["logical_cores"] = Environment.ProcessorCount,
        ["simd"] = Peak.SimdName,
        ["simd_lanes_f32"] = Peak.Lanes,
        ["os"] = System.Runtime.InteropServices.RuntimeInformation.OSDescription,
        ["runtime"] = System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription,
        ["memory_bytes"] = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes,
    };
}
