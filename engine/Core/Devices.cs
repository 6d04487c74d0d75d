using Perturb.Engine.Backends;

namespace Perturb.Engine;

public sealed record DeviceEntry(string Kind, string Name, long MemoryBytes, bool Available, string Note);

/// <summary>Finds and opens compute devices: "auto", "cuda", "cpu" (CpuBackend, managed SIMD), "ilgpu-cpu" (ILGPU's CPU accelerator).</summary>
public static class Devices
{
    public static readonly string[] Kinds = { "auto", "cuda", "cpu", "ilgpu-cpu" };

    /// <summary>What "auto" picks here: cuda when an NVIDIA GPU and driver are usable, else cpu. Never throws.</summary>
    public static string AutoKind() => IlgpuBackend.CudaAvailable() ? "cuda" : "cpu";

    public static IBackend Create(string kind)
    {
        switch (kind)
        {
            case "auto": return Create(AutoKind());
            case "cpu": return new CpuBackend();
            case "ilgpu-cpu": return IlgpuBackend.CreateCpuAccelerator();
            case "cuda": return IlgpuBackend.CreateCuda();
            default: throw new PerturbException($"unknown device '{kind}' (choose {string.Join(", ", Kinds)})", 2);
        }
    }

    /// <summary>Every device this machine offers, for `perturb info`. Never throws.</summary>
    public static List<DeviceEntry> List()
    {
        var list = new List<DeviceEntry>();
        bool cuda = false;
        try
        {
            foreach (var (k, name, mem) in IlgpuBackend.ListIlgpuDevices())
            {
                if (k == "cuda") cuda = true;
                list.Add(new DeviceEntry(k, name, mem, true, k == "cuda" ? "ILGPU CUDA accelerator" : "ILGPU CPU accelerator (emulates GPU threads; for tests)"));
            }
        }
        catch (Exception e) { list.Add(new DeviceEntry("ilgpu", "ILGPU", 0, false, "probe failed: " + e.Message)); }
        if (!cuda) list.Add(new DeviceEntry("cuda", "none", 0, false, "no NVIDIA GPU or CUDA driver found"));
        using (var cpu = new CpuBackend())
            list.Insert(0, new DeviceEntry("cpu", cpu.DeviceName, cpu.MemoryBytes, true, $"managed SIMD ({Environment.ProcessorCount} threads, {SimdWidth()})"));
        return list;
    }

    static string SimdWidth() =>
        System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? "AVX-512" :
        System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? "AVX2" : "128-bit";
}
