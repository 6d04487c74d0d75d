using System.Text.Json.Nodes;
using Perturb.Engine;
using Perturb.Engine.Nn;

namespace Perturb.Perf;

/// <summary>Command-line settings of one harness run.</summary>
public sealed record Options(string Bench, string Device, string? JsonPath, bool Quick, int? Batch, int? ConvBatch, int? CompareBatch)
{
    /// <summary>CpuBackend threads (--threads; default: all logical cores).</summary>
    public int? Threads { get; init; }
    /// <summary>Time process CPU seconds instead of wall seconds (--clock cpu).</summary>
    public bool CpuClock { get; init; }
    /// <summary>The folder of .onnx models for the onnx bench.</summary>
    public string? OnnxDir { get; init; }
    /// <summary>PGD steps of the attack bench (--steps; default 20).</summary>
    public int Steps { get; init; } = 20;
    /// <summary>The preset of the attack and search benches (--model; default resnet18 for attack, cnn-small for search).</summary>
    public string? Model { get; init; }
    /// <summary>conv-paths: only the conv shapes whose name contains this (--shape).</summary>
    public string? Shape { get; init; }
    /// <summary>conv-paths: only these paths (--paths, comma-separated names as printed, e.g. direct,implicit); auto and gemm-alone always run.</summary>
    public string[]? Paths { get; init; }
    /// <summary>conv-paths: only this op (--op fwd or bwd-data).</summary>
    public string? Op { get; init; }
    /// <summary>conv-paths: alternating rounds per shape and op (--rounds; default 9).</summary>
    public int Rounds { get; init; } = 9;
}

/// <summary>
/// How hard to measure: warm-up calls, the least and most timed calls, and the time budget per figure. The
/// ILGPU CPU accelerator emulates GPU threads and is 20-50x slower, so it gets single calls and small batches.
/// ResNet figures use their flop-counting call as the warm-up and take at least ResnetMinReps timed calls within
/// ResnetBudgetS (a batch-128 training step takes seconds on a small CPU).
/// </summary>
public sealed record Effort(int Warmup, int MinReps, int MaxReps, double BudgetS, int ResnetBatch, int ConvBatch,
    int ResnetMinReps, double ResnetBudgetS)
{
    public static Effort For(string deviceKind, bool quick) => (deviceKind, quick) switch
    {
        ("ilgpu-cpu", true) => new Effort(1, 1, 1, 0, 4, 2, 1, 0),
        ("ilgpu-cpu", false) => new Effort(1, 1, 3, 2.0, 8, 4, 1, 2.0),
        (_, true) => new Effort(1, 1, 3, 0.2, 32, 64, 1, 0.5),
        _ => new Effort(1, 3, 25, 1.0, 128, 64, 1, 6.0),
    };
}

/// <summary>The benchmarks: GEMM, convolution ops on ResNet-18 layer shapes, ResNet-18 forward and backward, cpu vs ilgpu-cpu.</summary>
public sealed class Benches
{
    readonly IBackend _be;
    readonly Report _r;
    readonly Effort _e;
    readonly Options _o;
    ulong _seed = 1234;

    public Benches(IBackend be, Report r, Effort e, Options o) { _be = be; _r = r; _e = e; _o = o; }

    Tensor Rand(params int[] shape)
    {
        var t = _be.Allocate(shape);
        _be.RandomUniform(t, _seed++, 0);
        return t;
    }

    Timing Time(Action work, double budgetScale = 1) =>
        Timing.Measure(work, _be.Synchronize, _e.Warmup, _e.MinReps, _e.MaxReps, _e.BudgetS * budgetScale);

    static JsonObject Detail(Timing t, long flops, JsonObject? extra = null)
    {
        var o = new JsonObject { ["median_s"] = t.MedianS, ["min_s"] = t.MinS, ["reps"] = t.Reps, ["flops"] = flops };
        if (extra != null) foreach (var kv in extra) o[kv.Key] = kv.Value?.DeepClone();
        return o;
    }

    // ------------------------------------------------------------------ GEMM

    /// <summary>C = A*B (and the transposed variants) for square sizes; GFLOP/s = 2mnk / median time.</summary>
    public void Gemm()
    {
        Progress("gemm");
        var cases = new List<(int n, bool ta, bool tb)> { (256, false, false), (512, false, false), (1024, false, false), (512, false, true), (512, true, false) };
        foreach (var (n, ta, tb) in cases)
        {
            using var a = Rand(n, n);
            using var b = Rand(n, n);
            using var c = _be.Allocate(n, n);
            var t = Time(() => _be.Gemm(ta, tb, n, n, n, 1f, a, b, 0f, c));
            long flops = 2L * n * n * n;
            double g = flops / t.MedianS / 1e9;
            string op = (ta ? "T" : "N") + (tb ? "T" : "N");
            _r.Add(new Figure("gemm", $"gemm {op} {n}x{n}x{n}", g, "GFLOP/s", g,
                Detail(t, flops, new JsonObject { ["m"] = n, ["n"] = n, ["k"] = n, ["op"] = op })));
        }
    }

    // ------------------------------------------------------------------ convolution

    /// <summary>ResNet-18 (MedMNIST 28x28 variant) layer shapes at batch <paramref name="n"/>, with a readable name.</summary>
    public static IReadOnlyList<(string Name, ConvShape S)> ConvShapes(int n) => new[]
    {
        ("conv3x3 64->64 28x28", new ConvShape(n, 64, 28, 28, 64, 3, 3, PadH: 1, PadW: 1)),
        ("conv3x3 64->128 28x28 s2", new ConvShape(n, 64, 28, 28, 128, 3, 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1)),
        ("conv3x3 128->128 14x14", new ConvShape(n, 128, 14, 14, 128, 3, 3, PadH: 1, PadW: 1)),
        ("conv3x3 256->256 7x7", new ConvShape(n, 256, 7, 7, 256, 3, 3, PadH: 1, PadW: 1)),
        ("conv3x3 512->512 4x4", new ConvShape(n, 512, 4, 4, 512, 3, 3, PadH: 1, PadW: 1)),
        ("conv1x1 64->128 28x28 s2", new ConvShape(n, 64, 28, 28, 128, 1, 1, StrideH: 2, StrideW: 2)),
        ("conv3x3 128->256 14x14 s2", new ConvShape(n, 128, 14, 14, 256, 3, 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1)),
        ("conv3x3 256->512 7x7 s2", new ConvShape(n, 256, 7, 7, 512, 3, 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1)),
        ("conv1x1 128->256 14x14 s2", new ConvShape(n, 128, 14, 14, 256, 1, 1, StrideH: 2, StrideW: 2)),
        ("conv1x1 256->512 7x7 s2", new ConvShape(n, 256, 7, 7, 512, 1, 1, StrideH: 2, StrideW: 2)),
    };

    /// <summary>ConvForward, ConvBackwardData, ConvBackwardWeights per shape; GFLOP/s from ConvShape.Flops.</summary>
    public void Conv()
    {
        int n = _o.ConvBatch ?? _e.ConvBatch;
        Progress($"conv (batch {n})");
        foreach (var (name, s) in ConvShapes(n))
        {
            using var x = Rand(s.N, s.C, s.H, s.W);
            using var w = Rand(s.K, s.CPerGroup, s.R, s.S);
            using var y = _be.Allocate(s.N, s.K, s.OutH, s.OutW);
            using var dy = Rand(s.N, s.K, s.OutH, s.OutW);
            using var dx = _be.Allocate(s.N, s.C, s.H, s.W);
            using var dw = _be.Allocate(s.K, s.CPerGroup, s.R, s.S);
            var ops = new (string Op, Action Work)[]
            {
                ("fwd", () => _be.ConvForward(s, x, w, null, y)),
                ("bwd-data", () => _be.ConvBackwardData(s, dy, w, dx)),
                ("bwd-weights", () => _be.ConvBackwardWeights(s, x, dy, dw, null)),
            };
            foreach (var (op, work) in ops)
            {
                var t = Time(work, 0.5);
                double g = s.Flops / t.MedianS / 1e9;
                _r.Add(new Figure("conv", $"{name} {op} N={n}", g, "GFLOP/s", g, Detail(t, s.Flops, new JsonObject
                {
                    ["shape"] = $"N={s.N} C={s.C} H={s.H} W={s.W} K={s.K} R={s.R} S={s.S} stride={s.StrideH} pad={s.PadH}",
                    ["op"] = op,
                })));
            }
        }
    }

    // ------------------------------------------------------------------ ResNet-18

    /// <summary>Forward (eval), input-only backward (attack step), and training forward+backward of ResNet-18 on 1x28x28.</summary>
    public void Resnet()
    {
        int batch = _o.Batch ?? _e.ResnetBatch;
        Progress($"resnet18 1x28x28 (batch {batch})");
        using var model = Presets.Create("resnet18", _be, 1, 28, 28, 2, 7);
        using var x = Rand(batch, 1, 28, 28);
        using var labels = _be.FromArray(Enumerable.Range(0, batch).Select(i => (float)(i % 2)).ToArray(), batch);

        model.Eval();
        ResnetFigure("resnet18 forward (eval)", batch, () => model.Forward(x), "forward only, eval mode");
        ResnetFigure("resnet18 input gradient (eval)", batch, () =>
        {
            var logits = model.Forward(x);
            using var loss = Losses.CrossEntropy(_be, logits, labels, 1f / batch);
            model.Backward(loss.Grad!, BackwardMode.InputOnly);
        }, "forward + cross-entropy gradient + Backward(InputOnly): one attack step's work");
        model.Train();
        ResnetFigure("resnet18 training step (train)", batch, () =>
        {
            var logits = model.Forward(x);
            using var loss = Losses.CrossEntropy(_be, logits, labels, 1f / batch);
            model.Backward(loss.Grad!, BackwardMode.InputAndWeights, needInputGrad: false);
        }, "train mode: forward + cross-entropy gradient + Backward(InputAndWeights); no optimiser update");
        model.ReleaseActivations();
    }

    /// <summary>
    /// PGD-20 (L-inf, eps 8/255, random start, no early stop) on ResNet-18 1x28x28, timed end to end through the attack
    /// API, against 20 x the median input-gradient step (forward + input-only backward) measured in the same run.
    /// </summary>
    public void AttackBench()
    {
        int batch = _o.Batch ?? _e.ResnetBatch, steps = _o.Steps;
        string arch = _o.Model ?? "resnet18";
        Progress($"PGD-{steps} on {arch} 1x28x28 (batch {batch})");
        using var w = new PgdWork(_be, arch, batch);
        var (model, xs, ys, step) = (w.Model, w.Xs, w.Ys, w.Step);
        Perturb.Engine.Attacks.Gradient.Pgd Make(int s) => PgdWork.Pgd(s, batch);
        step();
        var ts = Timing.Measure(step, _be.Synchronize, 0, _e.ResnetMinReps, _e.MaxReps, _e.ResnetBudgetS);
        // The memory plan's figure: what one step after the first allocates and moves (PGD-steps minus PGD-1, per step,
        // after a PGD-1 that warms the plan, the folded weights and the workspaces).
        Make(1).Run(model, xs, ys, Perturb.Engine.Attacks.AttackGoal.Untargeted, new[] { 8 / 255f });
        var m0 = _be.Counters.Traffic;
        Make(1).Run(model, xs, ys, Perturb.Engine.Attacks.AttackGoal.Untargeted, new[] { 8 / 255f });
        var one = _be.Counters.Traffic - m0;
        m0 = _be.Counters.Traffic;
        double t0 = Timing.Now();
        var res = Make(steps).Run(model, xs, ys, Perturb.Engine.Attacks.AttackGoal.Untargeted, new[] { 8 / 255f });
        double secs = Timing.Now() - t0;
        var all = _be.Counters.Traffic - m0;
        double per(long a, long b) => steps > 1 ? (a - b) / (double)(steps - 1) : 0;
        double ips = batch / secs, bound = steps * ts.MedianS;
        _r.Add(new Figure("attack", $"pgd-{steps} linf {arch} B={batch}", ips, "images/s", null, new JsonObject
        {
            ["batch"] = batch, ["steps"] = steps, ["seconds"] = secs,
            ["step_median_s"] = ts.MedianS, ["steps_x_step_s"] = bound,
            ["cost_ratio_to_steps_x_step"] = secs / bound,
            ["what"] = $"end-to-end attack time (clean forward, {steps} steps, final forward and bookkeeping) over {steps} x (forward + input-only backward)",
            ["allocations_per_step"] = per(all.Allocations, one.Allocations),
            ["host_to_device_bytes_per_step"] = per(all.HostToDeviceBytes, one.HostToDeviceBytes),
            ["device_to_host_bytes_per_step"] = per(all.DeviceToHostBytes, one.DeviceToHostBytes),
            ["traffic_whole_run"] = all.ToString(),
        }));
        Console.Error.WriteLine($"  PGD-{steps}: {secs:F2}s for {batch} images = {ips:F2} images/s; {steps} x step = {bound:F2}s; ratio {secs / bound:F3}");
        Console.Error.WriteLine($"  PGD-{steps} per step after the first: {per(all.Allocations, one.Allocations):F1} allocations, {per(all.HostToDeviceBytes, one.HostToDeviceBytes):F0} B to the device, {per(all.DeviceToHostBytes, one.DeviceToHostBytes):F0} B to the host");
        model.ReleaseActivations();
    }

    /// <summary>
    /// Model queries per second of a search attack (one-pixel, population 400) on cnn-small 1x28x28, against the plain
    /// forward rate of the same model at the attack's own forward chunk, measured in the same run: the ratio is the
    /// share of forward speed the search keeps after its bookkeeping (candidate images, DE, selection).
    /// </summary>
    public void SearchBench()
    {
        string arch = _o.Model ?? "cnn-small";
        bool small = arch == "cnn-small";   // larger models: fewer images and generations, so the run stays near a minute
        int n = _o.Quick ? (small ? 8 : 2) : (small ? 32 : 8), pop = 400, gens = _o.Quick ? 1 : (small ? 4 : 2);
        Progress($"one-pixel (population {pop}, {gens} generations) on {arch} 1x28x28, {n} images");
        using var model = Presets.Create(arch, _be, 1, 28, 28, 2, 7);
        model.Eval();
        int chunk = Math.Min(4096, Perturb.Engine.Attacks.Search.SearchAttack.ForwardRows(model));
        var rng = new Random(3);
        var fx = Enumerable.Range(0, chunk * 784).Select(_ => (float)rng.NextDouble()).ToArray();
        using var x = _be.FromArray(fx, chunk, 1, 28, 28);
        Action fwd = () => model.Forward(x);
        long flops = CountFlops(fwd);
        var t = Timing.Measure(fwd, _be.Synchronize, 0, _e.ResnetMinReps, _e.MaxReps, _e.ResnetBudgetS);
        model.ReleaseActivations();
        double fwdRate = chunk / t.MedianS;
        var xs = Enumerable.Range(0, n * 784).Select(_ => (float)rng.NextDouble()).ToArray();
        // Labels the model already predicts, so every image is attacked; the random model is rarely fooled early.
        var pred = Perturb.Engine.Attacks.Search.SearchAttack.EvaluateLogits(model, n, 4096, (j, d) => xs.AsSpan(j * 784, 784).CopyTo(d));
        var ys = Enumerable.Range(0, n).Select(i => pred[2 * i + 1] > pred[2 * i] ? 1 : 0).ToArray();
        // The attack as it runs (candidates rendered on the device), then the same run with every candidate rendered
        // on the host and uploaded (the path before the device scatter): the same queries and results, so the ratio of
        // the two rates is what rendering on the device gains or costs.
        (long Queries, double Secs) Time(bool onHost)
        {
            var attack = new Perturb.Engine.Attacks.Search.OnePixel { Pixels = 1, Population = pop, Iterations = gens, Seed = 1, RenderOnHost = onHost };
            double t0 = Timing.Now();   // the clock of --clock, as the forward rate above
            var res = attack.Run(model, xs, ys, Perturb.Engine.Attacks.AttackGoal.Untargeted);
            double secs = Timing.Now() - t0;
            return (res.Results[0].Queries!.Sum(), secs);
        }
        // Alternated, twice each, the faster of each kept: on a shared machine one run of each is noisier than the difference.
        var (queries, secs) = Time(false);
        var (qHost, secsHost) = Time(true);
        secs = Math.Min(secs, Time(false).Secs);
        secsHost = Math.Min(secsHost, Time(true).Secs);
        double qps = queries / secs, qpsHost = qHost / secsHost;
        _r.Add(new Figure("search", $"one-pixel pop {pop} {arch} 1x28x28", qps, "queries/s", qps * flops / chunk / 1e9, new JsonObject
        {
            ["images"] = n, ["population"] = pop, ["generations"] = gens, ["queries"] = queries, ["seconds"] = secs,
            ["forward_chunk"] = chunk, ["plain_forward_images_per_s"] = fwdRate, ["ratio_to_plain_forward"] = qps / fwdRate,
            ["host_rendering_queries_per_s"] = qpsHost, ["host_rendering_seconds"] = secsHost, ["device_rendering_speedup"] = qps / qpsHost,
            ["what"] = "model queries per second of the whole attack (clean and final passes included in the time) against the plain forward rate at the same chunk; host_rendering: the same run with every candidate rendered on the host and uploaded (before issue 16's scatter op)",
        }));
        Console.Error.WriteLine($"  one-pixel: {queries} queries in {secs:F2}s = {qps:F0} queries/s; plain forward {fwdRate:F0} images/s; ratio {qps / fwdRate:F3}");
        Console.Error.WriteLine($"  one-pixel, host rendering: {qHost} queries in {secsHost:F2}s = {qpsHost:F0} queries/s; device rendering / host rendering {qps / qpsHost:F3}");
    }

    /// <summary>
    /// Where the time of the ResNet-18 input gradient and of PGD-N goes, by op (the backend's per-op time slices,
    /// <see cref="OpCounters.Profiling"/>): one figure per work item (its wall time), its detail the seconds, calls and
    /// share per op, and the share of the convolutions (conv_*, gemm) against everything else.
    /// </summary>
    public void ProfileBench()
    {
        int batch = _o.Batch ?? _e.ResnetBatch, steps = _o.Steps;
        string arch = _o.Model ?? "resnet18";
        Progress($"profile: {arch} 1x28x28 input gradient and PGD-{steps} (batch {batch})");
        // PERTURB_FUSE_ADD_RELU=0 runs a residual block's Add and ReLU as two ops, for the comparison.
        Perturb.Engine.Nn.EvalFold.FuseAddRelu = Environment.GetEnvironmentVariable("PERTURB_FUSE_ADD_RELU") != "0";
        using var w = new PgdWork(_be, arch, batch);
        var (model, xs, ys, grad) = (w.Model, w.Xs, w.Ys, w.Step);
        Perturb.Engine.Attacks.Gradient.Pgd Make(int s) => PgdWork.Pgd(s, batch);
        Action pgd = () => Make(steps).Run(model, xs, ys, Perturb.Engine.Attacks.AttackGoal.Untargeted, new[] { 8 / 255f });
        grad(); Make(1).Run(model, xs, ys, Perturb.Engine.Attacks.AttackGoal.Untargeted, new[] { 8 / 255f });   // warm-up
        int reps = _o.Quick ? 1 : 3;
        ProfileOne($"profile {arch} input gradient (eval) B={batch}", grad, reps);
        ProfileOne($"profile pgd-{steps} linf {arch} B={batch}", pgd, 1);
        model.ReleaseActivations();
    }

    void ProfileOne(string name, Action work, int reps)
    {
        var c = _be.Counters;
        bool was = c.Profiling;
        c.Reset();
        c.Profiling = true;
        // The slices and the total on the clock of --clock (CPU seconds of the process with --clock cpu).
        c.ProfileCpuClock = Timing.CpuClock;
        double t0 = Timing.Now();
        for (int i = 0; i < reps; i++) work();
        _be.Synchronize();
        c.EndSlice();
        double total = (Timing.Now() - t0) / reps;
        c.Profiling = was;
        var secs = c.Seconds;
        var calls = c.AllCalls;
        double inOps = secs.Values.Sum() / reps;
        static bool IsConv(string op) => op.StartsWith("conv_", StringComparison.Ordinal) || op == "gemm";
        double conv = secs.Where(kv => IsConv(kv.Key)).Sum(kv => kv.Value) / reps;
        var ops = new JsonObject();
        Console.Error.WriteLine($"  {name}: {total * 1e3:F1} ms per call ({reps} calls, {(Timing.CpuClock ? "process CPU" : "wall")} clock; Add+ReLU fused: {Perturb.Engine.Nn.EvalFold.FuseAddRelu})");
        Console.Error.WriteLine($"    {"op",-22} {"calls",7} {"ms",9} {"share",7}");
        foreach (var (op, s) in secs.OrderByDescending(kv => kv.Value))
        {
            double ms = s / reps * 1e3, share = s / reps / total;
            long n = calls.TryGetValue(op, out var k) ? k / reps : 0;
            ops[op] = new JsonObject { ["ms"] = ms, ["calls"] = n, ["share"] = share };
            Console.Error.WriteLine($"    {op,-22} {n,7} {ms,9:F2} {100 * share,6:F1}%");
        }
        Console.Error.WriteLine($"    convolution ops {100 * conv / total:F1}%, other ops {100 * (inOps - conv) / total:F1}%, before the first op {100 * (total - inOps) / total:F1}%");
        _r.Add(new Figure("profile", name, total * 1e3, "ms", null, new JsonObject
        {
            ["reps"] = reps, ["ms_per_call"] = total * 1e3,
            ["conv_share"] = conv / total, ["other_ops_share"] = (inOps - conv) / total, ["outside_ops_share"] = (total - inOps) / total,
            ["ops"] = ops,
            ["clock"] = Timing.CpuClock ? "process CPU" : "wall", ["add_relu_fused"] = Perturb.Engine.Nn.EvalFold.FuseAddRelu,
            ["what"] = "per-op time slices (an op's call to the next op's call: the op plus the host work after it); convolution = conv_* and gemm",
        }));
    }

    void ResnetFigure(string name, int batch, Action work, string what)
    {
        long flops = CountFlops(work); // also the warm-up call
        var t = Timing.Measure(work, _be.Synchronize, 0, _e.ResnetMinReps, _e.MaxReps, _e.ResnetBudgetS);
        double ips = batch / t.MedianS;
        _r.Add(new Figure("resnet", $"{name} B={batch}", ips, "images/s", flops / t.MedianS / 1e9, Detail(t, flops, new JsonObject
        {
            ["batch"] = batch,
            ["what"] = what,
            ["ms_per_batch"] = t.MedianS * 1e3,
            ["flops_note"] = "sum of the flops the backend's ops report for one call",
        })));
    }

    /// <summary>The flops the backend's op counters record for one call of <paramref name="work"/>.</summary>
    long CountFlops(Action work)
    {
        _be.Counters.Reset();
        work();
        _be.Synchronize();
        var c = _be.Counters;
        long f = c.AllCalls.Keys.Sum(k => c.Flops(k));
        c.Reset();
        return f;
    }

    /// <summary>
    /// ResNet-18 forward images/s on this backend at the given batch, for `compare`. A batch-1 forward first compiles
    /// what needs compiling (ILGPU kernels, tier-1 JIT) cheaply, then the usual warm-up and timed calls run at the batch.
    /// </summary>
    public static (double ImagesPerS, Timing T) ForwardRate(IBackend be, int batch, Effort e)
    {
        using var model = Presets.Create("resnet18", be, 1, 28, 28, 2, 7);
        model.Eval();
        using (var x1 = be.Allocate(1, 1, 28, 28)) { model.Forward(x1); be.Synchronize(); }
        using var x = be.Allocate(batch, 1, 28, 28);
        be.RandomUniform(x, 99, 0);
        int warmup = be.Name == "ilgpu-cpu" ? 0 : e.Warmup;
        var t = Timing.Measure(() => model.Forward(x), be.Synchronize, warmup, e.ResnetMinReps, e.MaxReps, e.ResnetBudgetS);
        model.ReleaseActivations();
        return (batch / t.MedianS, t);
    }

    internal static void Progress(string what) => Console.Error.WriteLine($"[{DateTime.Now:HH:mm:ss}] {what} ...");
}

/// <summary>
/// What the attack and profile benches run: a seeded preset in eval mode on 1x28x28, random images and alternating
/// labels on the host and the device, the input-gradient step (forward, cross-entropy gradient, input-only backward),
/// and PGD (L-inf, random start, no early stop, one chunk).
/// </summary>
sealed class PgdWork : IDisposable
{
    public Model Model { get; }
    public float[] Xs { get; }
    public int[] Ys { get; }
    public Action Step { get; }
    readonly Tensor _x, _labels;

    public PgdWork(IBackend be, string arch, int batch)
    {
        Model = Presets.Create(arch, be, 1, 28, 28, 2, 7);
        Model.Eval();
        var rng = new Random(5);
        Xs = Enumerable.Range(0, batch * 784).Select(_ => (float)rng.NextDouble()).ToArray();
        Ys = Enumerable.Range(0, batch).Select(i => i % 2).ToArray();
        _x = be.FromArray(Xs, batch, 1, 28, 28);
        _labels = be.FromArray(Ys.Select(v => (float)v).ToArray(), batch);
        Step = () =>
        {
            var logits = Model.Forward(_x);
            using var loss = Losses.CrossEntropy(be, logits, _labels, 1f);
            Model.Backward(loss.Grad!, BackwardMode.InputOnly);
        };
    }

    public static Perturb.Engine.Attacks.Gradient.Pgd Pgd(int steps, int batch) =>
        new() { Steps = steps, EarlyStop = false, Restarts = 1, Seed = 1, MaxBatch = batch };

    public void Dispose() { Model.ReleaseActivations(); _x.Dispose(); _labels.Dispose(); Model.Dispose(); }
}
