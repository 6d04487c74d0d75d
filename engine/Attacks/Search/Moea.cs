using System.Globalization;
using System.Text;
using Perturb.Engine.Data;
using Perturb.Engine.Nn;
using Perturb.Engine.IO;

namespace Perturb.Engine.Attacks.Search;

/// <summary>
/// Multi-objective evolutionary targeted attack (the black-box idea of Deng et al. 2019) with NSGA-II (Deb 2002).
/// Genes: the perturbation, one per pixel value, within [max(-eps, -x), min(eps, 1 - x)], so x + delta stays in [0,1]
/// and every pixel within eps (eps bounds each pixel whichever norm is minimised). Two objectives, both minimised:
/// 1 - p(target) (softmax) and the perturbation's norm (<see cref="Norm"/>: L2 by default, or Linf).
/// Start: member j of P is delta = clip(s_j * eps * random signs) with s_j = (j + 1) / P, a spread from almost
/// nothing to the corners of the box. Each generation makes P offspring (crowded binary tournaments, SBX with
/// probability <see cref="CrossoverRate"/>, index <see cref="EtaCrossover"/>; polynomial mutation per gene with
/// probability <see cref="MutationRate"/>, index <see cref="EtaMutation"/>), evaluates the offspring of every running
/// (image, eps) as one batch (chunks of QueryBatch), and keeps the best P of parents + offspring by (rank, crowding).
/// Every image runs all <see cref="Iterations"/> generations (reaching the target does not stop it: the norm keeps
/// shrinking); queries per image: P * (1 + Iterations). Images that meet the goal before the attack get 0 queries.
/// Target: the goal's target; with no target (untargeted goal) the most likely class other than the true label
/// under the clean logits (the next-most-likely class of a correctly classified image), and success is then judged
/// untargeted (any wrong class), which reaching that target implies.
/// Answer per image: the rank-0 member that the model assigns the target with the smallest norm; when none does,
/// the member with the highest target confidence. The rank-0 fronts are kept in <see cref="ParetoFronts"/>.
/// </summary>
public sealed class Moea : SearchAttack, IAttackExtras, IReportsProgress
{
    public string ProgressUnit => "moea generations";
    /// <summary>pareto_front.csv: each image's rank-0 front.</summary>
    public void SaveExtras(string dir, AttackResult r) => WriteParetoCsv(Path.Combine(dir, "pareto_front.csv"), ParetoFronts);
    public void AddJson(System.Text.Json.Nodes.JsonObject summary, AttackResult r) { }

    public override string Name => "moea";
    public override bool NeedsEpsilon => true;
    /// <summary>The norm minimised as the second objective (the gene box is always [-eps, eps] per pixel).</summary>
    [Setting("norm", "the perturbation norm minimised: l2 or linf")]
    public Norm Norm { get; init; } = Norm.L2;
    [Setting("population", "population size (even)", Min = 2)]
    public int Population { get; init; } = 50;
    [Setting("iterations", "generations", Min = 0)]
    public int Iterations { get; init; } = 100;
    [Setting("crossover_rate", "probability of crossover per pair", Min = 0, Max = 1)]
    public double CrossoverRate { get; init; } = 0.9;
    [Setting("eta_crossover", "distribution index of the simulated binary crossover", Min = 0)]
    public double EtaCrossover { get; init; } = 15;
    /// <summary>Per-gene mutation probability (image genes are many; 1/genes would barely move).</summary>
    [Setting("mutation_rate", "probability of mutation per gene", Min = 0, Max = 1)]
    public double MutationRate { get; init; } = 0.05;
    [Setting("eta_mutation", "distribution index of the polynomial mutation", Min = 0)]
    public double EtaMutation { get; init; } = 20;

    /// <summary>Called after the start and after each generation with (generations done, generations in all).</summary>
    public Action<int, int>? Progress { get; set; }

    /// <summary>The final rank-0 front of every attacked (image, eps) of the last run, by sample then eps.</summary>
    public IReadOnlyList<ParetoFront> ParetoFronts { get; private set; } = Array.Empty<ParetoFront>();

    protected override void Validate()
    {
        if (Population < 2 || Population % 2 != 0) throw new PerturbException($"{Name}: population must be even and at least 2, got {Population}", 2);
        if (Iterations < 0) throw new PerturbException($"{Name}: iterations must be 0 or more, got {Iterations}", 2);
        if (!(CrossoverRate >= 0 && CrossoverRate <= 1)) throw new PerturbException($"{Name}: crossover rate must be in [0, 1], got {CrossoverRate}", 2);
        if (!(MutationRate >= 0 && MutationRate <= 1)) throw new PerturbException($"{Name}: mutation rate must be in [0, 1], got {MutationRate}", 2);
        if (!(EtaCrossover >= 0) || !(EtaMutation >= 0)) throw new PerturbException($"{Name}: distribution indices must be non-negative", 2);
        CheckQueryBatch();
    }

    sealed class State
    {
        public required int Sample, E, Target;
        public required SplitMix64 Rng;
        public required float[] Lo, Hi;
        public required float[] Pop, Kids;       // P x d genes each
        public required double[][] F, KidF;      // P x 2 objectives
        public required double[] Conf, KidConf;  // p(target)
        public required bool[] Hit, KidHit;      // argmax == target
        public int[] Rank = Array.Empty<int>();
        public double[] Crowd = Array.Empty<double>();
    }

    protected override float[][] Produce(RunContext c)
    {
        ImageShape(c.Model);
        int d = c.D, P = Population;
        bool targeted = c.Targets != null;
        var adv = c.Eps.Select(_ => (float[])c.X.Clone()).ToArray();
        var states = new List<State>();
        for (int i = 0; i < c.N; i++)
        {
            if (Meets(c.CleanPred[i], targeted ? c.Targets![i] : c.Labels[i], targeted)) continue;
            int t = targeted ? c.Targets![i] : RunnerUp(c.CleanLogits.AsSpan(i * c.Model.NumOutputs, c.Model.NumOutputs), c.Labels[i]);
            for (int e = 0; e < c.Eps.Length; e++)
            {
                float eps = c.Eps[e];
                var rng = SampleRng(i, e);
                var x = c.X.AsSpan(i * d, d);
                var lo = new float[d]; var hi = new float[d];
                for (int k = 0; k < d; k++) { lo[k] = Math.Max(-eps, -x[k]); hi[k] = Math.Min(eps, 1 - x[k]); }
                var pop = new float[P * d];
                for (int j = 0; j < P; j++)
                {
                    float s = eps * (j + 1) / P;
                    for (int k = 0; k < d; k++) pop[j * d + k] = Math.Clamp(rng.NextDouble() < 0.5 ? -s : s, lo[k], hi[k]);
                }
                states.Add(new State
                {
                    Sample = i, E = e, Target = t, Rng = rng, Lo = lo, Hi = hi, Pop = pop, Kids = new float[P * d],
                    F = new double[P][], KidF = new double[P][], Conf = new double[P], KidConf = new double[P], Hit = new bool[P], KidHit = new bool[P],
                });
            }
        }

        Evaluate(c, states, kids: false);
        foreach (var s in states) (s.Rank, s.Crowd) = Nsga2.RankAndCrowding(s.F);
        Progress?.Invoke(0, Iterations);
        var merged = new double[2 * P][];
        for (int gen = 0; gen < Iterations && states.Count > 0; gen++)
        {
            foreach (var s in states)
            {
                for (int j = 0; j < P; j += 2)
                {
                    var c1 = s.Kids.AsSpan(j * d, d); var c2 = s.Kids.AsSpan((j + 1) * d, d);
                    s.Pop.AsSpan(Nsga2.Tournament(s.Rank, s.Crowd, s.Rng) * d, d).CopyTo(c1);
                    s.Pop.AsSpan(Nsga2.Tournament(s.Rank, s.Crowd, s.Rng) * d, d).CopyTo(c2);
                    if (s.Rng.NextDouble() < CrossoverRate) Nsga2.Sbx(c1, c2, s.Lo, s.Hi, EtaCrossover, s.Rng);
                    Nsga2.Mutate(c1, s.Lo, s.Hi, MutationRate, EtaMutation, s.Rng);
                    Nsga2.Mutate(c2, s.Lo, s.Hi, MutationRate, EtaMutation, s.Rng);
                }
                c.Steps[s.E][s.Sample]++;
            }
            Evaluate(c, states, kids: true);
            foreach (var s in states)
            {
                for (int j = 0; j < P; j++) { merged[j] = s.F[j]; merged[P + j] = s.KidF[j]; }
                var keep = Nsga2.Select(merged, P);
                var pop = new float[P * d]; var f = new double[P][]; var conf = new double[P]; var hit = new bool[P];
                for (int j = 0; j < P; j++)
                {
                    int q = keep[j];
                    bool kid = q >= P; int o = kid ? q - P : q;
                    (kid ? s.Kids : s.Pop).AsSpan(o * d, d).CopyTo(pop.AsSpan(j * d, d));
                    f[j] = merged[q]; conf[j] = kid ? s.KidConf[o] : s.Conf[o]; hit[j] = kid ? s.KidHit[o] : s.Hit[o];
                }
                s.Pop = pop; s.F = f; s.Conf = conf; s.Hit = hit;
                (s.Rank, s.Crowd) = Nsga2.RankAndCrowding(s.F);
            }
            Progress?.Invoke(gen + 1, Iterations);
        }

        var fronts = new List<ParetoFront>();
        foreach (var s in states)
        {
            var members = Enumerable.Range(0, P).Where(j => s.Rank[j] == 0)
                .OrderBy(j => s.F[j][1]).ThenBy(j => s.F[j][0]).ThenBy(j => j).ToArray();
            int best = members.Where(j => s.Hit[j]).DefaultIfEmpty(-1).First();
            if (best < 0) best = members.OrderByDescending(j => s.Conf[j]).ThenBy(j => j).First();
            var x = c.X.AsSpan(s.Sample * d, d);
            var a = adv[s.E].AsSpan(s.Sample * d, d);
            Render(x, s.Pop.AsSpan(best * d, d), a);
            fronts.Add(new ParetoFront
            {
                Sample = s.Sample, Eps = c.Eps[s.E], Target = s.Target, Members = members, Best = best,
                Norms = members.Select(j => s.F[j][1]).ToArray(), TargetConfidence = members.Select(j => s.Conf[j]).ToArray(),
                ReachesTarget = members.Select(j => s.Hit[j]).ToArray(),
                Perturbations = members.Select(j => s.Pop.AsSpan(j * d, d).ToArray()).ToArray(),
            });
        }
        ParetoFronts = fronts;
        return adv;
    }

    /// <summary>The most likely class other than <paramref name="label"/> (one-output models: the other class).</summary>
    static int RunnerUp(ReadOnlySpan<float> logits, int label)
    {
        if (logits.Length == 1) return 1 - label;
        int b = -1;
        for (int j = 0; j < logits.Length; j++) if (j != label && (b < 0 || logits[j] > logits[b])) b = j;
        return b;
    }

    static void Render(ReadOnlySpan<float> x, ReadOnlySpan<float> delta, Span<float> dst)
    {
        for (int k = 0; k < x.Length; k++) dst[k] = Math.Clamp(x[k] + delta[k], 0f, 1f);
    }

    /// <summary>Evaluates the population (or offspring) of every state as one batch; fills objectives, confidences, hits; counts queries.</summary>
    void Evaluate(RunContext c, List<State> states, bool kids)
    {
        if (states.Count == 0) return;
        int d = c.D, P = Population, K = c.Model.NumClasses;
        var z = EvaluateLogits(c.Model, states.Count * P, QueryBatch, (q, dst) =>
        {
            var s = states[q / P];
            Render(c.X.AsSpan(s.Sample * d, d), (kids ? s.Kids : s.Pop).AsSpan(q % P * d, d), dst);
        });
        for (int q = 0; q < states.Count * P; q++)
        {
            var s = states[q / P]; int j = q % P;
            var row = z.AsSpan(q * K, K);
            var x = c.X.AsSpan(s.Sample * d, d);
            var g = (kids ? s.Kids : s.Pop).AsSpan(j * d, d);
            double sq = 0, mx = 0;
            for (int k = 0; k < d; k++)
            {
                double v = Math.Clamp(x[k] + g[k], 0f, 1f) - x[k];
                sq += v * v; mx = Math.Max(mx, Math.Abs(v));
            }
            double p = Probability(row, s.Target);
            (kids ? s.KidF : s.F)[j] = new[] { 1 - p, Norm == Norm.L2 ? Math.Sqrt(sq) : mx };
            (kids ? s.KidConf : s.Conf)[j] = p;
            (kids ? s.KidHit : s.Hit)[j] = Losses.Argmax(row) == s.Target;
            c.Queries[s.E][s.Sample]++;
        }
    }

    /// <summary>Writes the fronts as CSV (image, member, norm, target_confidence, eps, target, reaches_target), atomically.</summary>
    public static void WriteParetoCsv(string path, IReadOnlyList<ParetoFront> fronts)
    {
        var sb = new StringBuilder("image,member,norm,target_confidence,eps,target,reaches_target\n");
        var inv = CultureInfo.InvariantCulture;
        foreach (var f in fronts)
            for (int k = 0; k < f.Members.Length; k++)
                sb.Append(inv, $"{f.Sample},{f.Members[k]},{f.Norms[k]:R},{f.TargetConfidence[k]:R},{f.Eps:R},{f.Target},{(f.ReachesTarget[k] ? 1 : 0)}\n");
        AtomicFile.WriteText(path, sb.ToString());
    }
}

/// <summary>One image's final rank-0 front: members sorted by norm (then 1 - confidence), with their objectives.</summary>
public sealed class ParetoFront
{
    public required int Sample { get; init; }
    public required float Eps { get; init; }
    public required int Target { get; init; }
    /// <summary>Indices of the front's members in the final population, in front order (norm ascending).</summary>
    public required int[] Members { get; init; }
    /// <summary>The population index of the member returned as the adversarial.</summary>
    public required int Best { get; init; }
    public required double[] Norms { get; init; }
    public required double[] TargetConfidence { get; init; }
    public required bool[] ReachesTarget { get; init; }
    /// <summary>Each member's perturbation (x + delta is in [0,1] and |delta| &lt;= eps per pixel).</summary>
    public required float[][] Perturbations { get; init; }
}
