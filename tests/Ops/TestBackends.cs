using Perturb.Engine;
using Perturb.Engine.Backends;

namespace Perturb.Tests.Ops;

/// <summary>
/// One shared instance per backend name ("cpu", "ilgpu-cpu"), created on first use and disposed at process exit.
/// The op-counter checks in <see cref="OpHarness"/> assume nothing else calls these shared instances concurrently:
/// the op tests run in the non-parallel "ops" collection. Tests elsewhere should create their own backends.
/// </summary>
public static class TestBackends
{
    public const string Cpu = "cpu", IlgpuCpu = "ilgpu-cpu";

    static readonly Lazy<IBackend> _cpu = new(() => Register(CreateCpu()));
    static readonly Lazy<IBackend> _ilgpu = new(() => Register(CreateIlgpuCpu()));

    public static IBackend Get(string name) => name switch
    {
        Cpu => _cpu.Value,
        IlgpuCpu => _ilgpu.Value,
        _ => throw new ArgumentException($"unknown test backend '{name}'"),
    };

    static IBackend CreateCpu() => new CpuBackend();

    static IBackend CreateIlgpuCpu() => IlgpuBackend.CreateCpuAccelerator();

    static IBackend Register(IBackend be)
    {
        AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { be.Dispose(); } catch { /* exiting anyway */ } };
        return be;
    }
}

/// <summary>All op-parity tests share the backend instances and check exact op-call counts, so they run alone.</summary>
[CollectionDefinition("ops", DisableParallelization = true)]
public sealed class OpsCollection { }

/// <summary>
/// Per-test helper around one backend: uploads double arrays as float tensors (plain, or as views with an offset
/// inside a larger storage whose guard regions must stay untouched), NaN-filled outputs, and a wrapper that runs one
/// op and checks that it hit its counter exactly once.
/// </summary>
public sealed class OpHarness : IDisposable
{
    /// <summary>Value written around views; any op that writes outside its tensor changes it.</summary>
    public const float Guard = -7777.25f;

    public IBackend Be { get; }
    readonly List<Tensor> _owned = new();
    readonly List<(Tensor storage, int n, string what)> _guarded = new();

    public OpHarness(string backend) { Be = TestBackends.Get(backend); }

    /// <summary>On a backend the test made itself (a thread count or a forced path); the test disposes it.</summary>
    public OpHarness(IBackend be) { Be = be; }

    /// <summary>A plain tensor holding data (rounded to float).</summary>
    public Tensor T(double[] data, params int[] shape)
    {
        var t = Be.FromArray(Ref.F(data), shape);
        _owned.Add(t);
        return t;
    }

    /// <summary>
    /// A view with a non-zero offset: storage [3, len] = guard row, data, guard row; the view is row 1 reshaped to
    /// <paramref name="shape"/>. <see cref="CheckGuards"/> verifies the guard rows afterwards.
    /// </summary>
    public Tensor V(double[] data, params int[] shape)
    {
        int n = data.Length;
        var all = new float[3 * n];
        Array.Fill(all, Guard);
        for (int i = 0; i < n; i++) all[n + i] = (float)data[i];
        var big = Be.FromArray(all, 3, n);
        _owned.Add(big);
        _guarded.Add((big, n, $"view [{Tensor.ShapeString(shape)}]"));
        var v = big.Slice(1, 1).Reshape(shape);
        Assert.Equal(n, v.Offset);
        return v;
    }

    /// <summary>A NaN-filled output tensor (outputs must be overwritten), as a guarded view when <paramref name="view"/>.</summary>
    public Tensor Out(bool view, params int[] shape)
    {
        long len = 1; foreach (var d in shape) len *= d;
        var nan = Ref.Full((int)len, double.NaN);
        return view ? V(nan, shape) : T(nan, shape);
    }

    public double[] Get(Tensor t) => Ref.D(Be.ToArray(t));
    public float[] GetF(Tensor t) => Be.ToArray(t);

    /// <summary>Runs one op call and asserts it hit Counters.Calls(op) exactly once (and flops, when given).</summary>
    public void Op(string op, Action call, long? flops = null)
    {
        long c0 = Be.Counters.Calls(op), f0 = Be.Counters.Flops(op);
        call();
        Assert.True(Be.Counters.Calls(op) == c0 + 1, $"{Be.Name}: op '{op}' counted {Be.Counters.Calls(op) - c0} calls for one call");
        if (flops is long f)
            Assert.True(Be.Counters.Flops(op) - f0 == f, $"{Be.Name}: op '{op}' counted {Be.Counters.Flops(op) - f0} flops, expected {f}");
    }

    /// <summary>Asserts that no op wrote outside any view created by <see cref="V"/>.</summary>
    public void CheckGuards()
    {
        foreach (var (storage, n, what) in _guarded)
        {
            var all = Be.ToArray(storage);
            for (int i = 0; i < n; i++)
            {
                if (all[i] != Guard) Assert.Fail($"{Be.Name}: element {i - n} before {what} was overwritten with {all[i]}");
                if (all[2 * n + i] != Guard) Assert.Fail($"{Be.Name}: element {i} after {what} was overwritten with {all[2 * n + i]}");
            }
        }
    }

    public void Dispose()
    {
        foreach (var t in _owned) t.Dispose();
        _owned.Clear();
    }
}
