namespace Perturb.Engine.Nn;

/// <summary>
/// Eval-mode folding of a model's graph (<see cref="Model.FoldEval"/>): Conv2d -> BatchNorm2d -> ReLU chains in
/// which each node is the only reader of the one before become one convolution with folded weights and a ReLU
/// epilogue, and an Add whose only reader is a ReLU (a residual block's end) becomes one add-and-ReLU pass
/// (<see cref="IBackend.AddRelu"/>); the absorbed nodes pass their input through, forward and backward. The plan
/// depends only on the graph, so it is found once per node list.
/// </summary>
internal static class EvalFold
{
    sealed record Link(Conv2d Conv, BatchNorm2d? Norm, ActivationLayer? Relu);
    sealed record FoldPlan(Link[] Convs, (AddLayer Add, ActivationLayer Relu)[] Adds);

    static readonly System.Runtime.CompilerServices.ConditionalWeakTable<List<Node>, FoldPlan> s_plans = new();

    /// <summary>The foldable chains of a graph.</summary>
    static FoldPlan Plan(List<Node> nodes) => s_plans.GetValue(nodes, ns =>
    {
        var readers = new List<int>[ns.Count];
        for (int i = 0; i < ns.Count; i++) readers[i] = new List<int>();
        for (int i = 0; i < ns.Count; i++) foreach (var j in ns[i].Inputs) if (j >= 0) readers[j].Add(i);
        // The single node reading node i through its only input, or -1.
        int Sole(int i) => readers[i] is [var r] && ns[r].Inputs.Length == 1 ? r : -1;
        var links = new List<Link>();
        for (int i = 0; i < ns.Count; i++)
        {
            if (ns[i].Layer is not Conv2d conv) continue;
            int t = i, r = Sole(i);
            BatchNorm2d? bn = null;
            if (r >= 0 && ns[r].Layer is BatchNorm2d b && b.Channels == conv.OutChannels) { bn = b; t = r; r = Sole(r); }
            var relu = r >= 0 && ns[r].Layer is ActivationLayer { Function: Activation.Relu } a ? a : null;
            if (bn != null || relu != null) links.Add(new Link(conv, bn, relu));
        }
        var adds = new List<(AddLayer, ActivationLayer)>();
        for (int i = 0; i < ns.Count; i++)
            if (ns[i].Layer is AddLayer add && Sole(i) is var r and >= 0 && ns[r].Layer is ActivationLayer { Function: Activation.Relu } a)
                adds.Add((add, a));
        return new FoldPlan(links.ToArray(), adds.ToArray());
    });

    /// <summary>Whether folding fuses Add + ReLU (default on; tests turn it off to compare with the unfused pair).</summary>
    internal static bool FuseAddRelu { get; set; } = true;

    /// <summary>Whether the graph has any chain to fold.</summary>
    public static bool Any(List<Node> nodes) => Plan(nodes) is var p && (p.Convs.Length > 0 || p.Adds.Length > 0);

    /// <summary>Switches every chain to its folded form (on) or back to the nodes as built.</summary>
    public static void Apply(List<Node> nodes, bool on)
    {
        var plan = Plan(nodes);
        bool adds = on && FuseAddRelu;
        foreach (var (add, relu) in plan.Adds) { add.FusedRelu = adds; relu.Absorbed = adds; }
        foreach (var l in plan.Convs)
        {
            l.Conv.SetFold(on ? l.Norm : null, on && l.Relu != null);
            if (l.Norm != null) l.Norm.Absorbed = on;
            if (l.Relu != null) l.Relu.Absorbed = on;
        }
    }
}
