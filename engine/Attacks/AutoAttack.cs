using Perturb.Engine.Attacks.Gradient;
using Perturb.Engine.Attacks.Search;
using Perturb.Engine.Nn;

namespace Perturb.Engine.Attacks;

public enum AutoAttackVersion { Standard, Plus, Rand }

/// <summary>
/// AutoAttack (Croce and Hein 2020): attacks run in the paper's order, each on the (sample, epsilon) rows still
/// robust, batched over those rows. standard: APGD-CE, APGD-T (9 target classes), FAB-T (9), Square (5,000 queries);
/// plus: APGD-CE and APGD-DLR with 5 restarts, Square, APGD-T, FAB-T with 5 restarts (the reference's plus also runs
/// untargeted FAB, which this engine does not have); rand: APGD-CE and APGD-DLR with EOT over 20 gradient passes. A row is broken by the first stage whose output, classified afresh, is wrong; that output is
/// the answer. The result reports robust accuracy after each stage and, per sample, the stage that broke it.
/// Untargeted only: AutoAttack's targeted stages choose their own targets.
/// </summary>
public sealed class AutoAttack : Attack
{
    public override string Name => "autoattack";
    public override bool NeedsEpsilon => true;
    [Setting("norm", "the ball: linf or l2")]
    public Norm Norm { get; init; } = Norm.Linf;
    [Setting("version", "standard (APGD-CE, APGD-T, FAB-T, Square), plus, or rand (APGD-CE and APGD-DLR with EOT over 20 draws)")]
    public AutoAttackVersion Version { get; init; } = AutoAttackVersion.Standard;
    /// <summary>Iterations of the APGD and FAB stages (the paper: 100).</summary>
    [Setting("steps", "iterations of the APGD and FAB stages", Min = 1)]
    public int Steps { get; init; } = 100;
    /// <summary>Square's query budget (the paper: 5,000).</summary>
    [Setting("queries", "Square's query budget per image", Min = 1)]
    public int Queries { get; init; } = 5000;
    /// <summary>Target classes of APGD-T and FAB-T (the paper: 9, or fewer when the model has fewer).</summary>
    [Setting("target_classes", "target classes of APGD-T and FAB-T", Min = 1)]
    public int TargetClasses { get; init; } = 9;

    /// <summary>The stages of <see cref="Version"/>, in order.</summary>
    public IReadOnlyList<Attack> Stages()
    {
        Apgd Ce(int restarts, int eot) => new() { Norm = Norm, Steps = Steps, Restarts = restarts, EotSamples = eot, Seed = Seed, MaxBatch = MaxBatch };
        Apgd Dlr(int restarts, int eot) => new() { Norm = Norm, Steps = Steps, Restarts = restarts, EotSamples = eot, Loss = LossKind.Dlr, Seed = Seed, MaxBatch = MaxBatch };
        ApgdT T() => new() { Norm = Norm, Steps = Steps, TargetClasses = TargetClasses, Seed = Seed, MaxBatch = MaxBatch };
        FabT F(int restarts) => new() { Norm = Norm, Steps = Steps, Restarts = restarts, TargetClasses = TargetClasses, Seed = Seed, MaxBatch = MaxBatch };
        Square S() => new() { Norm = Norm, Queries = Queries, Seed = Seed, MaxBatch = MaxBatch };
        return Version switch
        {
            AutoAttackVersion.Standard => new Attack[] { Ce(1, 1), T(), F(1), S() },
            AutoAttackVersion.Plus => new Attack[] { Ce(5, 1), Dlr(5, 1), S(), T(), F(5) },
            _ => new Attack[] { Ce(1, 20), Dlr(1, 20) },
        };
    }

    protected override void Validate()
    {
        if (Steps < 1) throw new PerturbException($"{Name}: steps must be at least 1, got {Steps}", 2);
        if (Queries < 1) throw new PerturbException($"{Name}: the query budget must be at least 1, got {Queries}", 2);
        if (TargetClasses < 1) throw new PerturbException($"{Name}: target classes must be at least 1, got {TargetClasses}", 2);
    }

    protected override bool CountsQueries => true;

    /// <summary>The stages run their own chunks; everything happens in <see cref="Produce"/>.</summary>
    protected override void AttackChunk(AttackBatch b) => throw new InvalidOperationException($"{Name} runs its stages in Produce");

    protected override float[][] Produce(RunContext c)
    {
        if (c.Targets != null) throw new PerturbException($"{Name} is an untargeted evaluation; leave out --targeted", 2);
        int n = c.N, d = c.D, E = c.Eps.Length;
        var adv = Enumerable.Range(0, E).Select(_ => (float[])c.X.Clone()).ToArray();
        var active = Enumerable.Range(0, E).Select(_ => Enumerable.Range(0, n).Select(i => c.CleanPred[i] == c.Labels[i]).ToArray()).ToArray();
        c.BrokenBy = Enumerable.Range(0, E).Select(_ => new string?[n]).ToArray();
        c.Stages = Enumerable.Range(0, E).Select(_ => new List<(string, double)>()).ToArray();
        foreach (var stage in Stages())
        {
            if (active.All(a => !a.Any(v => v))) { foreach (var s in c.Stages) s.Add((stage.Name, 0)); continue; }
            var sc = new RunContext(c.Model, c.X, c.Labels, null, c.Eps, c.CleanLogits, c.CleanPred, n, d) { Active = active };
            var outp = stage.ProduceFor(sc);
            for (int e = 0; e < E; e++)
            {
                var idx = Enumerable.Range(0, n).Where(i => active[e][i]).ToArray();
                var xs = new float[(long)idx.Length * d];
                for (int q = 0; q < idx.Length; q++) Array.Copy(outp[e], (long)idx[q] * d, xs, (long)q * d, d);
                var (pred, _, _) = Classify(c.Model, xs, idx.Length);
                for (int q = 0; q < idx.Length; q++)
                {
                    int i = idx[q];
                    c.Steps[e][i] += sc.Steps[e][i];
                    c.Gradients[e][i] += sc.Gradients[e][i];
                    c.Queries[e][i] += sc.Queries[e][i];
                    if (pred[q] == c.Labels[i]) continue;
                    active[e][i] = false;
                    c.BrokenBy[e][i] = stage.Name;
                    Array.Copy(xs, (long)q * d, adv[e], (long)i * d, d);
                }
                c.Stages[e].Add((stage.Name, active[e].Count(v => v) / (double)Math.Max(1, n)));
            }
        }
        return adv;
    }
}
