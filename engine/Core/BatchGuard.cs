using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace Perturb.Engine;

/// <summary>
/// Runs a loop over <c>total</c> items in chunks of at most a batch size, and survives running out of memory: when a
/// chunk throws an out-of-memory (see <see cref="IsOutOfMemory"/>), the batch is halved, the halving is reported
/// through the log callback ("out of memory at batch 256; halving to 128"), and the same chunk is retried at the
/// smaller size. The smaller size is kept for the rest of the loop. An out-of-memory at batch 1 is a clean
/// <see cref="PerturbException"/> (exit 1).
/// <para>
/// The chunk action must be retryable: it may only publish its results once it has finished (write them into
/// caller-owned arrays at the chunk's own indices, which a retry overwrites with the same values). Callers whose
/// per-item results do not depend on which other items share a chunk (every attack here) get identical results at
/// any batch size.
/// </para>
/// <para>
/// The process-wide ambient hooks (<see cref="Log"/>, and <see cref="FaultAbove"/> for tests) flow with the async
/// context (AsyncLocal), so the CLI sets the log once per command and parallel tests do not see each other's hooks.
/// </para>
/// </summary>
public static class BatchGuard
{
    static readonly AsyncLocal<Action<string>?> _log = new();
    static readonly AsyncLocal<int?> _faultAbove = new();

    /// <summary>Where halvings are reported when the caller passes no log (the CLI sends it to stderr). Null: silent.</summary>
    public static Action<string>? Log { get => _log.Value; set => _log.Value = value; }

    /// <summary>
    /// Test hook: when set, any chunk larger than this many items throws <see cref="OutOfMemoryException"/> before it
    /// runs, as a device without the memory for it would. Null (the default): no injected faults.
    /// </summary>
    public static int? FaultAbove { get => _faultAbove.Value; set => _faultAbove.Value = value; }

    /// <summary>
    /// Whether <paramref name="e"/> (or an exception it wraps) is an out-of-memory: <see cref="OutOfMemoryException"/>
    /// (host, or thrown by a backend), ILGPU's <see cref="CudaException"/> whose <c>Error</c> (a string, the
    /// CudaError name) is <c>CUDA_ERROR_OUT_OF_MEMORY</c> (what ILGPU 1.5's CudaException.ThrowIfFailed throws when
    /// cuMemAlloc or a launch fails for memory), or an <see cref="AcceleratorException"/> whose
    /// message says out of memory.
    /// </summary>
    public static bool IsOutOfMemory(Exception? e)
    {
        for (int depth = 0; e != null && depth < 8; depth++, e = e.InnerException)
        {
            switch (e)
            {
                case OutOfMemoryException:
                case CudaException ce when ce.Error == nameof(CudaError.CUDA_ERROR_OUT_OF_MEMORY):
                    return true;
                case AcceleratorException ae when ae.Message.Contains("out of memory", StringComparison.OrdinalIgnoreCase)
                                                || ae.Message.Contains("OUT_OF_MEMORY", StringComparison.Ordinal):
                    return true;
                case AggregateException ag when ag.InnerExceptions.Count == 1:
                    break; // look at the inner one
            }
        }
        return false;
    }

    /// <summary>
    /// Calls <paramref name="chunk"/>(start, count) for consecutive chunks covering [0, total), each of at most the
    /// current batch (initially <paramref name="batch"/>). On an out-of-memory the batch halves (count / 2, at least 1),
    /// <paramref name="cleanup"/> runs (release device scratch), the halving is logged, and the chunk is retried.
    /// Returns the batch size the loop ended with.
    /// </summary>
    public static int Run(long total, int batch, Action<long, int> chunk, Action<string>? log = null, Action? cleanup = null, string? what = null)
    {
        if (batch <= 0) throw new PerturbException($"batch size must be positive, got {batch}", 2);
        log ??= Log;
        long start = 0;
        while (start < total)
        {
            int count = (int)Math.Min(batch, total - start);
            try
            {
                if (FaultAbove is { } limit && count > limit)
                    throw new OutOfMemoryException($"injected out-of-memory at batch {count} (test hook: more than {limit})");
                chunk(start, count);
            }
            catch (Exception e) when (IsOutOfMemory(e))
            {
                try { cleanup?.Invoke(); } catch { }
                GC.Collect();
                GC.WaitForPendingFinalizers();
                string where = what == null ? "" : what + ": ";
                if (count <= 1)
                    throw new PerturbException($"{where}out of memory at batch 1; the device cannot hold even one item ({Short(e)})", 1);
                int next = Math.Max(1, count / 2);
                log?.Invoke($"{where}out of memory at batch {count}; halving to {next}");
                batch = next;
                continue;
            }
            start += count;
        }
        return batch;
    }

    /// <summary>
    /// A default batch (rows on the device at once) when the user gives none: a quarter of the device's memory
    /// divided by the bytes one image needs, rounded down to a power of two, between 1 and <paramref name="cap"/>.
    /// One image needs 4 bytes x the sum of every layer's output size (the activations a forward pass keeps for the
    /// backward pass) x 3 (activations, their gradients, and an attack's own per-row buffers). A quarter leaves room
    /// for the weights, the workspace and other processes; the engine cannot ask a device for its free memory, so
    /// the rule starts from the total, and an out-of-memory still halves the batch (<see cref="Run"/>).
    /// </summary>
    public static int DefaultBatch(Nn.Model model, long deviceBytes, int cap = 1024)
    {
        long perImage = Math.Max(1, model.ActivationValuesPerSample) * 4 * 3;
        long fit = Math.Max(1, deviceBytes / 4 / perImage);
        int b = 1;
        while ((long)b * 2 <= fit && b * 2 <= cap) b *= 2;
        return b;
    }

    static string Short(Exception e)
    {
        var m = e.Message.Split('\n')[0].Trim();
        return m.Length > 160 ? m[..160] + "..." : m;
    }
}
