using System.Text.Json.Nodes;
using Perturb.Engine;

namespace Perturb.Perf;

/// <summary>
/// The benchmark harness. Usage:
///   dotnet run --project perf -c Release -- &lt;peak|gemm|conv|resnet|all|compare&gt; [--device auto|cpu|ilgpu-cpu|cuda]
///       [--json FILE] [--quick] [--batch N] [--conv-batch N] [--compare-batch N] [--threads N] [--clock wall|cpu]
/// Every run measures the machine's float32 FMA peak first and reports each figure's share of it.
/// </summary>
public static class Program
{
    static readonly string[] BenchNames = { "peak", "gemm", "conv", "resnet", "attack", "search", "profile", "all", "compare", "onnx", "conv-paths" };

    const string Usage =
        "usage: perf <peak|gemm|conv|resnet|attack|search|profile|all|compare|onnx|conv-paths> [--device auto|cpu|ilgpu-cpu|cuda] [--json FILE] [--quick]\n" +
        "            [--onnx DIR (onnx: every NAME.onnx there, compared with NAME.npz when present)]\n" +
        "            [--batch N (resnet batch)] [--conv-batch N] [--compare-batch N (ilgpu-cpu batch in compare, default 2)]\n" +
        "            [--steps N (attack: PGD steps, default 20)] [--model PRESET (attack: resnet18, search: cnn-small)]\n" +
        "            [--threads N (cpu)] [--clock wall|cpu]\n" +
        "            conv-paths (cpu): [--shape TEXT (only the conv shapes whose name contains it)] [--rounds N (default 9)]\n" +
        "            [--paths P,Q (only these paths besides auto, e.g. direct,implicit)] [--op fwd|bwd-data]";

    public static int Main(string[] args)
    {
        Options o;
        try { o = Parse(args); }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine("error: " + e.Message);
            Console.Error.WriteLine(Usage);
            return 2;
        }
        try { return Run(o); }
        catch (PerturbException e)
        {
            Console.Error.WriteLine("error: " + e.Message);
            return 1;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Console.Error.WriteLine($"error: {e.GetType().Name}: {e.Message}");
            return 1;
        }
    }

    static Options Parse(string[] args)
    {
        string? bench = null, device = "auto", json = null, onnxDir = null, model = null, shape = null, paths = null, op = null;
        bool quick = false;
        int? batch = null, convBatch = null, compareBatch = null, threads = null, steps = null, rounds = null;
        string clock = "wall";
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{a} needs a value");
            int NextInt()
            {
                string v = Next();
                return int.TryParse(v, out int n) && n > 0 ? n : throw new ArgumentException($"{a} needs a positive integer, got '{v}'");
            }
            switch (a)
            {
                case "--device": device = Next(); break;
                case "--json": json = Next(); break;
                case "--onnx": onnxDir = Next(); break;
                case "--model": model = Next(); break;
                case "--quick": quick = true; break;
                case "--batch": batch = NextInt(); break;
                case "--conv-batch": convBatch = NextInt(); break;
                case "--compare-batch": compareBatch = NextInt(); break;
                case "--threads": threads = NextInt(); break;
                case "--steps": steps = NextInt(); break;
                case "--shape": shape = Next(); break;
                case "--paths": paths = Next(); break;
                case "--op":
                    op = Next();
                    if (op is not ("fwd" or "bwd-data")) throw new ArgumentException($"--op must be fwd or bwd-data, got '{op}'");
                    break;
                case "--rounds": rounds = NextInt(); break;
                case "--clock":
                    clock = Next();
                    if (clock is not ("wall" or "cpu")) throw new ArgumentException($"--clock must be wall or cpu, got '{clock}'");
                    break;
                case "-h" or "--help": Console.WriteLine(Usage); Environment.Exit(0); break;
                default:
                    if (a.StartsWith('-') || bench != null) throw new ArgumentException($"unexpected argument '{a}'");
                    bench = a;
                    break;
            }
        }
        if (bench == null) throw new ArgumentException("no bench given");
        if (!BenchNames.Contains(bench)) throw new ArgumentException($"unknown bench '{bench}' (choose {string.Join(", ", BenchNames)})");
        if (!Devices.Kinds.Contains(device)) throw new ArgumentException($"unknown device '{device}' (choose {string.Join(", ", Devices.Kinds)})");
        if (threads != null && device is not ("cpu" or "auto")) throw new ArgumentException("--threads applies to --device cpu only");
        if (model != null && !Perturb.Engine.Nn.Presets.Names.Contains(model)) throw new ArgumentException($"--model: unknown preset '{model}' (choose {string.Join(", ", Perturb.Engine.Nn.Presets.Names)})");
        var pathNames = Enum.GetNames<Perturb.Engine.Backends.CpuBackend.ConvPath>().Select(n => n.ToLowerInvariant()).ToArray();
        if (paths != null && paths.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).FirstOrDefault(n => !pathNames.Contains(n)) is { } bad)
            throw new ArgumentException($"--paths: unknown path '{bad}' (choose from {string.Join(", ", pathNames)})");
        if (bench == "onnx" && (onnxDir == null || !Directory.Exists(onnxDir))) throw new ArgumentException("onnx needs --onnx DIR, an existing folder of .onnx files");
        return new Options(bench, device, json, quick, batch, convBatch, compareBatch) { Threads = threads, CpuClock = clock == "cpu", OnnxDir = onnxDir, Steps = steps ?? 20, Model = model, Shape = shape, Rounds = rounds ?? 9,
            Paths = paths?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries), Op = op };
    }

    static int Run(Options o)
    {
        var report = new Report { Bench = o.Bench, Quick = o.Quick, Clock = o.CpuClock ? "cpu" : "wall", Threads = o.Threads };
        Benches.Progress($"FMA peak ({Environment.ProcessorCount} threads, {Peak.SimdName})");
        double peakSeconds = o.Bench == "peak" && !o.Quick ? 2.0 : 0.5;
        double peakStart = Peak.Measure(peakSeconds);
        report.PeakGflops = peakStart;
        Console.Error.WriteLine($"  FMA peak {peakStart:0.0} GFLOP/s");

        if (o.Bench == "compare") Compare(o, report);
        else if (o.Bench != "peak")
        {
            string kind = o.Device == "auto" ? Devices.AutoKind() : o.Device;
            Timing.CpuClock = o.CpuClock;
            using var be = kind == "cpu" && o.Threads is int nt ? new Perturb.Engine.Backends.CpuBackend(nt) : Devices.Create(kind);
            report.DeviceKind = be.Name;
            report.DeviceName = be.DeviceName;
            var b = new Benches(be, report, Effort.For(be.Name, o.Quick), o);
            if (o.Bench is "gemm" or "all") b.Gemm();
            if (o.Bench is "conv" or "all") b.Conv();
            if (o.Bench is "resnet" or "all") b.Resnet();
            if (o.Bench is "attack") b.AttackBench();
            if (o.Bench is "search") b.SearchBench();
            if (o.Bench is "profile") b.ProfileBench();
            if (o.Bench is "conv-paths")
            {
                if (be is not Perturb.Engine.Backends.CpuBackend cpu) throw new ArgumentException("conv-paths needs --device cpu");
                ConvPaths.Run(cpu, report, o, o.ConvBatch ?? (o.Quick ? 8 : 64), o.Quick ? 2 : o.Rounds);
            }
            if (o.Bench is "onnx") OnnxBench.Run(be, report, Effort.For(be.Name, o.Quick), o.OnnxDir!, o.Batch ?? 8);
        }
        else { report.DeviceKind = "host"; report.DeviceName = Machine.CpuModel; }

        // Measured again at the end: on a shared machine the load moves, and the peak is the better of the two.
        double peakEnd = o.Bench == "peak" ? peakStart : Peak.Measure(0.5);
        report.PeakGflops = Math.Max(peakStart, peakEnd);
        report.Figures.Insert(0, new Figure("peak", $"float32 FMA peak ({Environment.ProcessorCount} threads)", report.PeakGflops, "GFLOP/s",
            report.PeakGflops, new JsonObject
            {
                ["seconds"] = peakSeconds, ["lanes"] = Peak.Lanes, ["chains_per_thread"] = Peak.Chains,
                ["at_start_gflops"] = peakStart, ["at_end_gflops"] = peakEnd,
            }));

        report.PrintTable();
        if (o.JsonPath != null) report.WriteJson(o.JsonPath);
        return 0;
    }

    /// <summary>
    /// ResNet-18 forward on CpuBackend and on ILGPU's CPU accelerator in one process, per image. The ILGPU side runs
    /// at a small batch (default 2); the CPU side runs at that same batch and at its usual batch, and both ratios are
    /// reported.
    /// </summary>
    static void Compare(Options o, Report report)
    {
        int small = o.CompareBatch ?? 2;
        int big = o.Batch ?? (o.Quick ? 32 : 128);
        report.DeviceKind = "cpu vs ilgpu-cpu";
        double cpuSmall, cpuBig, ilgpu;
        Timing tCpuSmall, tCpuBig, tIlgpu;
        using (var cpu = Devices.Create("cpu"))
        {
            report.DeviceName = cpu.DeviceName;
            var e = Effort.For("cpu", o.Quick);
            Benches.Progress($"compare: cpu resnet18 forward, batch {big}");
            (cpuBig, tCpuBig) = Benches.ForwardRate(cpu, big, e);
            Benches.Progress($"compare: cpu resnet18 forward, batch {small}");
            (cpuSmall, tCpuSmall) = Benches.ForwardRate(cpu, small, e);
        }
        using (var il = Devices.Create("ilgpu-cpu"))
        {
            Benches.Progress($"compare: ilgpu-cpu resnet18 forward, batch {small} (slow: emulated GPU threads)");
            (ilgpu, tIlgpu) = Benches.ForwardRate(il, small, Effort.For("ilgpu-cpu", o.Quick));
        }
        JsonObject D(Timing t, int batch) => new() { ["batch"] = batch, ["median_s"] = t.MedianS, ["reps"] = t.Reps };
        report.Add(new Figure("compare", $"cpu resnet18 forward B={big}", cpuBig, "images/s", null, D(tCpuBig, big)));
        report.Add(new Figure("compare", $"cpu resnet18 forward B={small}", cpuSmall, "images/s", null, D(tCpuSmall, small)));
        report.Add(new Figure("compare", $"ilgpu-cpu resnet18 forward B={small}", ilgpu, "images/s", null, D(tIlgpu, small)));
        report.Add(new Figure("compare", $"speed ratio cpu/ilgpu-cpu (both B={small})", cpuSmall / ilgpu, "x", null));
        report.Add(new Figure("compare", $"speed ratio cpu B={big} / ilgpu-cpu B={small}", cpuBig / ilgpu, "x", null));
        double ratio = Math.Min(cpuSmall, cpuBig) / ilgpu;
        Console.Error.WriteLine($"cpu/ilgpu-cpu ResNet-18 forward speed ratio: {cpuSmall / ilgpu:0.0}x at equal batch {small}, " +
            $"{cpuBig / ilgpu:0.0}x with cpu at batch {big}; requirement >= 20x: {(ratio >= 20 ? "met" : "NOT met")}");
    }
}
