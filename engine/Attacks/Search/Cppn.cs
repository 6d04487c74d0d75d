using Perturb.Engine.Data;

namespace Perturb.Engine.Attacks.Search;

public enum CppnActivation { Sin, Cos, Gaussian, Sigmoid, Tanh, Abs, Identity }

/// <summary>
/// A compositional pattern-producing network (Stanley 2007) as a NEAT-style genome: node genes (4 inputs x, y, r, bias;
/// C outputs; hidden nodes with an activation each) and connection genes (from, to, weight, enabled). The network is
/// feed-forward: inputs only send, outputs only receive, and no connection closes a cycle. Per pixel, x and y run over
/// [-1, 1] (left to right, top to bottom), r = sqrt(x^2 + y^2) / sqrt(2) in [0, 1] and bias = 1; a node's value is its
/// activation of the weighted sum of its enabled inputs; an output's value is sigmoid(sum), so images are in [0,1].
/// </summary>
public sealed class CppnGenome
{
    public const int Inputs = 4;
    public int Outputs { get; }
    /// <summary>Activation per node; inputs (0..3) and outputs (4..4+C-1) keep theirs (Identity, Sigmoid).</summary>
    public List<CppnActivation> Nodes { get; }
    public List<(int From, int To, double Weight, bool Enabled)> Connections { get; }

    public CppnGenome(int outputs, List<CppnActivation> nodes, List<(int, int, double, bool)> connections)
    {
        Outputs = outputs; Nodes = nodes; Connections = connections;
    }

    public CppnGenome Clone() => new(Outputs, new List<CppnActivation>(Nodes), new List<(int, int, double, bool)>(Connections));

    public bool IsInput(int n) => n < Inputs;
    public bool IsOutput(int n) => n >= Inputs && n < Inputs + Outputs;

    /// <summary>The node order in which every node comes after all its senders; null when the graph has a cycle.</summary>
    public int[]? TopologicalOrder()
    {
        int n = Nodes.Count;
        var indeg = new int[n];
        foreach (var c in Connections) indeg[c.To]++;
        var queue = new Queue<int>(Enumerable.Range(0, n).Where(k => indeg[k] == 0));
        var order = new List<int>(n);
        while (queue.Count > 0)
        {
            int k = queue.Dequeue();
            order.Add(k);
            foreach (var c in Connections) if (c.From == k && --indeg[c.To] == 0) queue.Enqueue(c.To);
        }
        return order.Count == n ? order.ToArray() : null;
    }

    /// <summary>Whether the genome is well formed: valid node ids, no connection into an input or out of an output, no duplicate pair, acyclic.</summary>
    public bool IsValid()
    {
        if (Nodes.Count < Inputs + Outputs) return false;
        var seen = new HashSet<(int, int)>();
        foreach (var c in Connections)
        {
            if (c.From < 0 || c.To < 0 || c.From >= Nodes.Count || c.To >= Nodes.Count) return false;
            if (IsInput(c.To) || IsOutput(c.From) || !double.IsFinite(c.Weight) || !seen.Add((c.From, c.To))) return false;
        }
        return TopologicalOrder() != null;
    }

    /// <summary>Renders C x H x W values in [0,1] into <paramref name="dst"/>.</summary>
    public void Render(Span<float> dst, int h, int w)
    {
        var order = TopologicalOrder() ?? throw new InvalidOperationException("CPPN genome has a cycle");
        var incoming = Enumerable.Range(0, Nodes.Count).Select(_ => new List<(int From, double W)>()).ToArray();
        foreach (var c in Connections) if (c.Enabled) incoming[c.To].Add((c.From, c.Weight));
        var v = new double[Nodes.Count];
        for (int py = 0; py < h; py++)
            for (int px = 0; px < w; px++)
            {
                double x = w > 1 ? 2.0 * px / (w - 1) - 1 : 0, y = h > 1 ? 2.0 * py / (h - 1) - 1 : 0;
                foreach (int k in order)
                {
                    if (k < Inputs) { v[k] = k switch { 0 => x, 1 => y, 2 => Math.Sqrt(x * x + y * y) / Math.Sqrt(2), _ => 1 }; continue; }
                    double s = 0;
                    foreach (var (from, wt) in incoming[k]) s += wt * v[from];
                    v[k] = IsOutput(k) ? 1 / (1 + Math.Exp(-s)) : Activate(Nodes[k], s);
                }
                for (int ch = 0; ch < Outputs; ch++) dst[(ch * h + py) * w + px] = (float)v[Inputs + ch];
            }
    }

    public static double Activate(CppnActivation a, double s) => a switch
    {
        CppnActivation.Sin => Math.Sin(s),
        CppnActivation.Cos => Math.Cos(s),
        CppnActivation.Gaussian => Math.Exp(-s * s),
        CppnActivation.Sigmoid => 1 / (1 + Math.Exp(-s)),
        CppnActivation.Tanh => Math.Tanh(s),
        CppnActivation.Abs => Math.Abs(s),
        _ => s,
    };
}

/// <summary>
/// Simplified NEAT for CPPN genomes (no crossover, no speciation, no innovation numbers: the MAP-Elites archive keeps
/// the diversity). A random genome connects every input to every output with weights N(0, <see cref="InitialWeight"/>^2)
/// and then takes one <see cref="Mutate"/>. A mutation copies the parent and: perturbs each weight with probability
/// <see cref="WeightRate"/> by N(0, <see cref="WeightSigma"/>^2) (one in ten of those is redrawn instead); with
/// <see cref="AddNodeRate"/> splits a random enabled connection a->b into a->n (weight 1) and n->b (the old weight),
/// n a new hidden node with a random activation, disabling a->b; with <see cref="AddConnectionRate"/> adds a connection
/// between a random non-output node and a random non-input node that is not yet connected and closes no cycle
/// (20 tries); with <see cref="ActivationRate"/> gives a random hidden node a random activation. Weights stay within
/// +-<see cref="MaxWeight"/>.
/// </summary>
public sealed class CppnEncoding
{
    public double InitialWeight { get; init; } = 1.5;
    public double WeightRate { get; init; } = 0.8;
    public double WeightSigma { get; init; } = 0.5;
    public double AddNodeRate { get; init; } = 0.15;
    public double AddConnectionRate { get; init; } = 0.2;
    public double ActivationRate { get; init; } = 0.15;
    public double MaxWeight { get; init; } = 8;

    static readonly CppnActivation[] Hidden = Enum.GetValues<CppnActivation>();

    public CppnGenome Random(int channels, SplitMix64 rng)
    {
        var nodes = Enumerable.Repeat(CppnActivation.Identity, CppnGenome.Inputs).Concat(Enumerable.Repeat(CppnActivation.Sigmoid, channels)).ToList();
        var conns = new List<(int, int, double, bool)>();
        for (int i = 0; i < CppnGenome.Inputs; i++)
            for (int o = 0; o < channels; o++) conns.Add((i, CppnGenome.Inputs + o, rng.Normal() * InitialWeight, true));
        return Mutate(new CppnGenome(channels, nodes, conns), rng);
    }

    public CppnGenome Mutate(CppnGenome parent, SplitMix64 rng)
    {
        var g = parent.Clone();
        var cs = g.Connections;
        for (int k = 0; k < cs.Count; k++)
            if (rng.NextDouble() < WeightRate)
            {
                var c = cs[k];
                double w = rng.NextDouble() < 0.1 ? rng.Normal() * InitialWeight : c.Weight + rng.Normal() * WeightSigma;
                cs[k] = (c.From, c.To, Math.Clamp(w, -MaxWeight, MaxWeight), c.Enabled);
            }
        if (rng.NextDouble() < AddNodeRate)
        {
            var enabled = Enumerable.Range(0, cs.Count).Where(k => cs[k].Enabled).ToArray();
            if (enabled.Length > 0)
            {
                int k = enabled[rng.NextInt(enabled.Length)];
                var c = cs[k];
                int n = g.Nodes.Count;
                g.Nodes.Add(Hidden[rng.NextInt(Hidden.Length)]);
                cs[k] = (c.From, c.To, c.Weight, false);
                cs.Add((c.From, n, 1.0, true));
                cs.Add((n, c.To, c.Weight, true));
            }
        }
        if (rng.NextDouble() < AddConnectionRate)
            for (int tries = 0; tries < 20; tries++)
            {
                int a = rng.NextInt(g.Nodes.Count), b = rng.NextInt(g.Nodes.Count);
                if (a == b || g.IsOutput(a) || g.IsInput(b) || cs.Any(c => c.From == a && c.To == b) || Reaches(g, b, a)) continue;
                cs.Add((a, b, rng.Normal() * InitialWeight, true));
                break;
            }
        int hidden = g.Nodes.Count - CppnGenome.Inputs - g.Outputs;
        if (hidden > 0 && rng.NextDouble() < ActivationRate)
            g.Nodes[CppnGenome.Inputs + g.Outputs + rng.NextInt(hidden)] = Hidden[rng.NextInt(Hidden.Length)];
        return g;
    }

    /// <summary>Whether a path of connections (enabled or not) leads from <paramref name="from"/> to <paramref name="to"/>.</summary>
    static bool Reaches(CppnGenome g, int from, int to)
    {
        var stack = new Stack<int>(); var seen = new HashSet<int>();
        stack.Push(from);
        while (stack.Count > 0)
        {
            int k = stack.Pop();
            if (k == to) return true;
            if (!seen.Add(k)) continue;
            foreach (var c in g.Connections) if (c.From == k) stack.Push(c.To);
        }
        return false;
    }
}
