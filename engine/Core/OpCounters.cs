using System.Collections.Concurrent;

namespace Perturb.Engine;

/// <summary>
/// Counts calls and floating-point work per op name, and the backend's memory traffic: storage allocations (a new
/// device buffer, or a new host array on the CPU backend; reuse from a pool is not an allocation) and the bytes copied
/// between host and device (Upload / FromArray and ToArray, and the label checks that read labels; on the CPU
/// backend the same calls, though nothing crosses a bus). Thread-safe. Tests use it to prove what an op sequence did,
/// for example that an attack step after the first allocates nothing and moves nothing.
/// </summary>
public sealed class OpCounters
{
    readonly ConcurrentDictionary<string, long> _calls = new();
    readonly ConcurrentDictionary<string, long> _flops = new();
    long _allocs, _allocBytes, _h2d, _d2h;

    public void Hit(string op, long flops = 0)
    {
        _calls.AddOrUpdate(op, 1, (_, v) => v + 1);
        if (flops != 0) _flops.AddOrUpdate(op, flops, (_, v) => v + flops);
        if (Profiling) Slice(op);
    }

    // ---------------------------------------------------------------- per-op time (profiling)

    /// <summary>
    /// Per-op time, off by default; on when the environment sets PERTURB_PROFILE=1, or when a caller (the perf harness's
    /// profile bench) sets it. Each op's call opens a time slice that the next op's call (or <see cref="EndSlice"/>)
    /// closes: on a backend whose ops run synchronously (cpu) a slice is the op plus the host work after it, until the
    /// next op starts. On a queueing backend (ILGPU) it is the time to enqueue, not to run: profile on cpu.
    /// </summary>
    public bool Profiling { get; set; } = Environment.GetEnvironmentVariable("PERTURB_PROFILE") == "1";
    /// <summary>
    /// Time the slices in the process's CPU seconds instead of wall seconds (PERTURB_PROFILE_CLOCK=cpu, or perf
    /// --clock cpu): on a machine others load, a wall slice also holds the time the process waited for a core.
    /// </summary>
    public bool ProfileCpuClock { get; set; } = Environment.GetEnvironmentVariable("PERTURB_PROFILE_CLOCK") == "cpu";
    readonly ConcurrentDictionary<string, long> _ticks = new();
    string? _openOp;
    long _openAt;

    void Slice(string? next)
    {
        long now = ProfileCpuClock ? CpuTicks() : System.Diagnostics.Stopwatch.GetTimestamp();
        lock (_ticks)
        {
            if (_openOp != null) { long d = now - _openAt; _ticks.AddOrUpdate(_openOp, d, (_, v) => v + d); }
            _openOp = next; _openAt = now;
        }
    }

    /// <summary>Closes the open time slice (call after the last op of the work to profile, after Synchronize).</summary>
    public void EndSlice() { if (Profiling) Slice(null); }

    static long CpuTicks()
    {
        using var p = System.Diagnostics.Process.GetCurrentProcess();
        return p.TotalProcessorTime.Ticks;
    }

    /// <summary>Seconds per op name recorded while <see cref="Profiling"/> was on (CPU seconds with <see cref="ProfileCpuClock"/>).</summary>
    public IReadOnlyDictionary<string, double> Seconds =>
        _ticks.ToDictionary(kv => kv.Key, kv => kv.Value / (ProfileCpuClock ? TimeSpan.TicksPerSecond : (double)System.Diagnostics.Stopwatch.Frequency));

    public long Calls(string op) => _calls.TryGetValue(op, out var v) ? v : 0;
    public long Flops(string op) => _flops.TryGetValue(op, out var v) ? v : 0;
    public IReadOnlyDictionary<string, long> AllCalls => new Dictionary<string, long>(_calls);

    /// <summary>Storage buffers the backend allocated (tensors and workspaces), and their bytes.</summary>
    public long Allocations => Interlocked.Read(ref _allocs);
    public long AllocatedBytes => Interlocked.Read(ref _allocBytes);
    /// <summary>Bytes copied from host memory into tensors, and from tensors to host memory.</summary>
    public long HostToDeviceBytes => Interlocked.Read(ref _h2d);
    public long DeviceToHostBytes => Interlocked.Read(ref _d2h);
    /// <summary>The memory counters at this moment (subtract two to get what happened in between).</summary>
    public MemoryTraffic Traffic => new(Allocations, AllocatedBytes, HostToDeviceBytes, DeviceToHostBytes);

    internal void Allocated(long bytes) { Interlocked.Increment(ref _allocs); Interlocked.Add(ref _allocBytes, bytes); }
    internal void ToDevice(long bytes) => Interlocked.Add(ref _h2d, bytes);
    internal void ToHost(long bytes) => Interlocked.Add(ref _d2h, bytes);

    public void Reset()
    {
        _calls.Clear(); _flops.Clear();
        lock (_ticks) { _ticks.Clear(); _openOp = null; }
        Interlocked.Exchange(ref _allocs, 0); Interlocked.Exchange(ref _allocBytes, 0);
        Interlocked.Exchange(ref _h2d, 0); Interlocked.Exchange(ref _d2h, 0);
    }
}

/// <summary>A snapshot of <see cref="OpCounters"/>' memory counters.</summary>
public readonly record struct MemoryTraffic(long Allocations, long AllocatedBytes, long HostToDeviceBytes, long DeviceToHostBytes)
{
    public static MemoryTraffic operator -(MemoryTraffic a, MemoryTraffic b) =>
        new(a.Allocations - b.Allocations, a.AllocatedBytes - b.AllocatedBytes, a.HostToDeviceBytes - b.HostToDeviceBytes, a.DeviceToHostBytes - b.DeviceToHostBytes);
    public bool IsZero => Allocations == 0 && AllocatedBytes == 0 && HostToDeviceBytes == 0 && DeviceToHostBytes == 0;
    public override string ToString() => $"{Allocations} allocations ({AllocatedBytes} bytes), {HostToDeviceBytes} bytes to the device, {DeviceToHostBytes} bytes to the host";
}
