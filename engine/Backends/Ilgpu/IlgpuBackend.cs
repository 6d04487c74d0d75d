using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;

namespace Perturb.Engine.Backends;

/// <summary>
/// <see cref="IBackend"/> over the ILGPU kernels in Perturb.Kernels, on CUDA or on ILGPU's CPU accelerator (which
/// emulates GPU threads: slow, used by CI to test the kernels). Storage is one
/// <c>MemoryBuffer1D&lt;float, Stride1D.Dense&gt;</c> per tensor; a tensor is the view (Offset, Length) of it.
/// All ops are queued on the accelerator's default stream; only ToArray (and Upload, which copies from host memory)
/// wait. This file holds creation, memory, device discovery and launch helpers; each op family is in Ilgpu&lt;Family&gt;.cs beside its CPU twin Cpu&lt;Family&gt;.cs.
/// </summary>
public sealed partial class IlgpuBackend : BackendBase
{
    readonly Context _context;
    readonly Accelerator _acc;
    readonly MemoryBuffer1D<float, Stride1D.Dense> _dummy;
    // Workspaces grown on demand: convolution columns, convolution column-ordered output/gradient, small per-channel scratch.
    MemoryBuffer1D<float, Stride1D.Dense>? _wsCol, _wsCols2, _wsSmall;
    bool _disposed;

    public override string Name { get; }
    public override string DeviceName { get; }
    public override long MemoryBytes { get; }

    IlgpuBackend(Context context, Accelerator acc, string name, long memoryBytes)
    {
        _context = context; _acc = acc; Name = name;
        DeviceName = acc.Name;
        MemoryBytes = memoryBytes;
        if (acc.MaxNumThreadsPerGroup < Perturb.Kernels.Gemm.Threads * Perturb.Kernels.Gemm.Threads)
            throw new PerturbException($"ILGPU device '{acc.Name}' allows only {acc.MaxNumThreadsPerGroup} threads per group; the kernels need 256");
        _dummy = acc.Allocate1D<float>(1);
        _dummy.MemSetToZero();
    }

    /// <summary>The kernels on ILGPU's CPU accelerator (device "ilgpu-cpu"): every GPU thread emulated, slow, for testing.</summary>
    public static IlgpuBackend CreateCpuAccelerator()
    {
        // warps of 32, 8 warps: exactly the 256 threads per group the shared-memory kernels use; fewer emulated
        // threads than CPUDeviceKind.Nvidia's 1024, which measured faster here
        var context = Context.Create(b => b.CPU(new CPUDevice(32, 8, 1)).EnableAlgorithms());
        try
        {
            var acc = context.CreateCPUAccelerator(0);
            long mem = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
            return new IlgpuBackend(context, acc, "ilgpu-cpu", mem > 0 ? mem : acc.MemorySize);
        }
        catch { context.Dispose(); throw; }
    }

    /// <summary>The kernels on CUDA device <paramref name="index"/>. Throws <see cref="PerturbException"/> without a usable GPU and driver.</summary>
    public static IlgpuBackend CreateCuda(int index = 0)
    {
        Context? context = null;
        try
        {
            context = Context.Create(b => b.Cuda().EnableAlgorithms());
            var devices = context.GetCudaDevices();
            if (devices.Count == 0) throw new PerturbException("no CUDA device found (no NVIDIA GPU, or the CUDA driver is not installed)");
            if (index < 0 || index >= devices.Count) throw new PerturbException($"CUDA device {index} does not exist; {devices.Count} found");
            var acc = devices[index].CreateAccelerator(context);
            return new IlgpuBackend(context, acc, "cuda", acc.MemorySize);
        }
        catch (PerturbException) { context?.Dispose(); throw; }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or EntryPointNotFoundException or BadImageFormatException or InvalidOperationException or NotSupportedException or CudaException or AcceleratorException)
        {
            context?.Dispose();
            throw new PerturbException($"CUDA is not usable: {FirstLine(e.Message)}", 1, e);
        }
    }

    /// <summary>True when an NVIDIA GPU and a working CUDA driver are present. Never throws.</summary>
    public static bool CudaAvailable()
    {
        try
        {
            using var context = Context.Create(b => b.Cuda());
            return context.GetCudaDevices().Count > 0;
        }
        catch { return false; }
    }

    /// <summary>Every device ILGPU can see (CPU accelerator, CUDA GPUs): kind, name and memory. Never throws.</summary>
    public static IReadOnlyList<(string Kind, string Name, long MemoryBytes)> ListIlgpuDevices()
    {
        var list = new List<(string, string, long)>();
        try
        {
            using var context = Context.Create(b => b.CPU(new CPUDevice(32, 8, 1)));
            foreach (var d in context.Devices) list.Add(("ilgpu-cpu", d.Name, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes));
        }
        catch { }
        try
        {
            using var context = Context.Create(b => b.Cuda());
            foreach (var d in context.GetCudaDevices()) list.Add(("cuda", d.Name, d.MemorySize));
        }
        catch { }
        return list;
    }

    static string FirstLine(string s) { int i = s.IndexOfAny(['\r', '\n']); return i < 0 ? s : s[..i]; }

    // ------------------------------------------------------------------ memory

    static MemoryBuffer1D<float, Stride1D.Dense> Buf(Tensor t) => (MemoryBuffer1D<float, Stride1D.Dense>)t.Storage;

    /// <summary>The tensor's elements as a kernel view.</summary>
    ArrayView<float> V(Tensor t)
    {
        // BackendBase has checked ownership; an empty tensor may sit at the very end of its storage; no kernel reads it, so any view will do
        return t.Length == 0 ? _dummy.View : Buf(t).View.SubView(t.Offset, t.Length);
    }

    /// <summary>The tensor's view, or a one-element placeholder for an optional tensor the kernel will not touch.</summary>
    ArrayView<float> VOrDummy(Tensor? t) => t is null ? _dummy.View : V(t);

    ArrayView<float> Workspace(ref MemoryBuffer1D<float, Stride1D.Dense>? ws, long n)
    {
        if (ws is null || ws.Length < n)
        {
            ws?.Dispose();
            ws = _acc.Allocate1D<float>(Math.Max(n, 1));
            Counters.Allocated(4 * ws.Length);
        }
        return ws.View.SubView(0, Math.Max(n, 1));
    }

    protected override Tensor AllocateCore(int[] shape, int length)
    {
        var buf = _acc.Allocate1D<float>(Math.Max(length, 1));
        Counters.Allocated(4 * buf.Length);
        buf.MemSetToZero();
        return new Tensor(this, buf, shape);
    }

    protected override ReadOnlySpan<float> PeekHost(Tensor t) => ToArrayCore(t);

    protected override float[] ToArrayCore(Tensor t)
    {
        var r = new float[t.Length];
        _acc.Synchronize();
        Buf(t).View.SubView(t.Offset, t.Length).CopyToCPU(_acc.DefaultStream, r.AsSpan());
        Counters.ToHost(4L * t.Length);
        return r;
    }

    protected override void UploadCore(Tensor t, ReadOnlySpan<float> data)
    {
        _acc.Synchronize();
        Buf(t).View.SubView(t.Offset, t.Length).CopyFromCPU(_acc.DefaultStream, data);
        _acc.Synchronize();
        Counters.ToDevice(4L * t.Length);
    }

    public override void Synchronize() => _acc.Synchronize();

    public override void Free(Tensor t)
    {
        if (t.Storage is MemoryBuffer1D<float, Stride1D.Dense> b && !b.IsDisposed) b.Dispose();
    }

    public override void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        try { _acc.Synchronize(); } catch { }
        _wsCol?.Dispose(); _wsCols2?.Dispose(); _wsSmall?.Dispose(); _dummy.Dispose();
        _acc.Dispose();
        _context.Dispose();
    }

    // ------------------------------------------------------------------ copy, fill, launch helpers

    Action<Index1D, ArrayView<float>, ArrayView<float>>? _copy;
    Action<Index1D, ArrayView<float>, float>? _fill;

    static KernelConfig PerRow(int rows) => new(new Index3D(rows, 1, 1), new Index3D(Perturb.Kernels.Reduce.GroupSize, 1, 1));

    protected override void CopyCore(Tensor src, Tensor dst)
    {
        (_copy ??= _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(Perturb.Kernels.Elementwise.Copy))(src.Length, V(src), V(dst));
    }

    protected override void FillCore(Tensor t, float value)
    {
        (_fill ??= _acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, float>(Perturb.Kernels.Elementwise.Fill))(t.Length, V(t), value);
    }
}
