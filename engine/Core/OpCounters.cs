using System.Collections.Concurrent;

namespace Perturb.Engine;

/// <summary>Counts calls and floating-point work per op name. Thread-safe. Used by tests to prove what an op sequence did.</summary>
public sealed class OpCounters
{
    readonly ConcurrentDictionary<string, long> _calls = new();
    readonly ConcurrentDictionary<string, long> _flops = new();

    public void Hit(string op, long flops = 0)
    {
        _calls.AddOrUpdate(op, 1, (_, v) => v + 1);
        if (flops != 0) _flops.AddOrUpdate(op, flops, (_, v) => v + flops);
    }

    public long Calls(string op) => _calls.TryGetValue(op, out var v) ? v : 0;
    public long Flops(string op) => _flops.TryGetValue(op, out var v) ? v : 0;
    public IReadOnlyDictionary<string, long> AllCalls => new Dictionary<string, long>(_calls);
    public void Reset() { _calls.Clear(); _flops.Clear(); }
}
