using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Perturb.Engine;
using Perturb.Engine.IO;
using Perturb.Engine.Data;

namespace Perturb.Cli;

/// <summary>Options shared by the commands that compute.</summary>
public static class CommonOptions
{
    public static Option<string> Device() => new("--device")
    {
        Description = "compute device: auto (CUDA if an NVIDIA GPU is usable, else cpu), cuda, cpu, ilgpu-cpu",
        DefaultValueFactory = _ => "auto",
    };
    public static Option<ulong> Seed() => Opt.Seed("--seed", "random seed (same seed, same backend: same result)");
    public static Option<int> BatchSize(int def) => Opt.Int("--batch-size", "mini-batch size", def, ValueRange.AtLeast(1));
    public static Option<string?> Json() => new("--json") { Description = "write a machine-readable summary to this file" };
    public static Option<string> Data() => new("--data")
    {
        Description = DataSources.Help,
        DefaultValueFactory = _ => "histology",
    };
    public static Option<string?> Window() => new("--window") { Description = "DICOM: the VOI window CENTER,WIDTH (modality units, after rescale) mapping grey images to [0,1]; default: the file's own window, else its value range" };
    public static Option<int?> Frame() => Opt.OptionalInt("--frame", "DICOM: read only frame K (0-based) of multi-frame files; default: one image per frame", ValueRange.NonNegative);
    /// <summary>The DICOM read settings from --window and --frame.</summary>
    public static DicomOptions Dicom(string? window, int? frame) => new() { Window = window == null ? null : DicomWindow.Parse(window), Frame = frame };
    public static Option<ulong> DataSeed() => Opt.Seed("--data-seed", "seed of generated data sets");
}

public static class CliUtil
{
    public static IBackend OpenDevice(string kind, CliIO io)
    {
        var be = Devices.Create(kind);
        return be;
    }

    /// <summary>Loads a model file; says once on stderr what an ONNX import changed (a removed Softmax/Sigmoid ending).</summary>
    public static Perturb.Engine.Nn.Model LoadModel(string path, IBackend be, CliIO io)
    {
        var m = ModelFile.Load(path, be);
        if (path.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase) && m.Info.TryGetValue(Perturb.Engine.Nn.Model.EndingKey, out var note))
            io.Err.WriteLine($"{path}: {note}");
        return m;
    }

    public static void WriteJson(string path, JsonObject o) =>
        AtomicFile.WriteText(path, o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");

    public static JsonArray Arr(IEnumerable<double> xs) => new(xs.Select(v => (JsonNode?)(double.IsFinite(v) ? JsonValue.Create(v) : null)).ToArray());
}

/// <summary>
/// A text progress bar on stderr: redrawn in place on a terminal, one line per finished unit otherwise
/// (so logs in CI stay readable).
/// </summary>
public sealed class ProgressBar
{
    readonly TextWriter _w;
    readonly string _label;
    readonly bool _tty;
    readonly Stopwatch _sw = Stopwatch.StartNew();
    long _lastDraw = -1000;

    public ProgressBar(TextWriter w, string label)
    {
        _w = w; _label = label;
        _tty = ReferenceEquals(w, Console.Error) && !Console.IsErrorRedirected;
    }

    public void Update(int done, int total, string extra = "")
    {
        if (!_tty) return;
        long now = _sw.ElapsedMilliseconds;
        if (done < total && now - _lastDraw < 100) return;
        _lastDraw = now;
        int width = 30, filled = total == 0 ? width : (int)((long)done * width / total);
        _w.Write($"\r{_label} [{new string('#', filled)}{new string('-', width - filled)}] {done}/{total} {now / 1000.0,6:F1}s {extra}   ");
    }

    public void Done(string summary)
    {
        if (_tty) _w.Write("\r" + new string(' ', 100) + "\r");
        _w.WriteLine($"{_label} {summary} ({_sw.Elapsed.TotalSeconds:F1}s)");
    }
}
