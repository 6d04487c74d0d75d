using Perturb.Engine.Data;
using Perturb.Engine.Nn;

namespace Perturb.Engine.Attacks.Search;

/// <summary>Writes sample <c>sample</c>'s image with the candidate <c>genes</c> applied into <c>dst</c> (C*H*W values).</summary>
internal delegate void GeneRenderer(int sample, ReadOnlySpan<float> genes, Span<float> dst);

/// <summary>
/// Writes sample <c>sample</c>'s candidate <c>genes</c> as edits of its image: (index in its C*H*W values, value)
/// pairs, <c>idx.Length</c> of them; the same image as its <see cref="GeneRenderer"/> writes.
/// </summary>
internal delegate void GeneEditor(int sample, ReadOnlySpan<float> genes, Span<float> idx, Span<float> val);

/// <summary>Fills one individual's genes at the start (in gene order, from the sample's own random stream).</summary>
internal delegate void GeneInitialiser(int sample, SplitMix64 rng, Span<float> genes);

/// <summary>
/// The differential evolution of the one-pixel family (Su et al. 2019), shared by <see cref="OnePixel"/>,
/// <see cref="PixelSaliency"/> and <see cref="WhiteBalance"/>: DE/rand/1 without crossover per sample, trial =
/// p[r1] + F (p[r2] - p[r3]) with r1, r2, r3 distinct and not the parent, clamped per gene to [Lo, Hi]; the trial
/// replaces its parent when its fitness is no worse. Fitness (minimised): the true class's probability (untargeted)
/// or minus the target's (targeted). A sample stops as soon as any candidate meets the goal and keeps the fittest such
/// candidate; otherwise the fittest after <see cref="Iterations"/> generations. Every evaluation round renders the
/// populations of all still-running samples as one batch (chunks of QueryBatch) and counts Population queries and
/// (per generation) one step per running sample. Given a <see cref="GeneEditor"/> (a candidate is its image with a
/// fixed number of values changed), the candidates are rendered on the device (<see cref="EditedCandidates"/>): the
/// running samples' images go up once, and per generation only the edits go up and the logits come back.
/// </summary>
internal sealed class DifferentialEvolution
{
    public required int Population { get; init; }
    public required int Iterations { get; init; }
    public required float F { get; init; }
    public required int QueryBatch { get; init; }
    /// <summary>Per-gene bounds (length: genes per individual).</summary>
    public required float[] Lo { get; init; }
    public required float[] Hi { get; init; }

    /// <summary>Usage errors (exit 2) for DE settings, named after the attack.</summary>
    public static void CheckSettings(string name, int population, int iterations, float f)
    {
        if (population < 4) throw new PerturbException($"{name}: population must be at least 4 (DE/rand/1 needs three others), got {population}", 2);
        if (iterations < 0) throw new PerturbException($"{name}: iterations must be 0 or more, got {iterations}", 2);
        if (!(f > 0)) throw new PerturbException($"{name}: F must be positive, got {f}", 2);
    }

    sealed class State
    {
        public required int Sample;
        public required SplitMix64 Rng;
        public required float[] Pop;   // Population x genes
        public required double[] Fit;
        public float[]? Trial;
        public int Winner = -1;        // index of the successful candidate (in Pop) once done
        public int Slot;               // the row of its image in the device candidates' images
    }

    /// <summary>
    /// Runs DE for the given samples (each with its random stream); returns each sample's chosen genes, in the order of
    /// <paramref name="samples"/>. Queries and steps go to <c>c.Queries[e]</c> and <c>c.Steps[e]</c>.
    /// </summary>
    public float[][] Run(Attack.RunContext c, int e, IReadOnlyList<(int Sample, SplitMix64 Rng)> samples, GeneInitialiser init, GeneRenderer render,
        (int Edits, GeneEditor Edit)? edits = null)
    {
        int P = Population, L = Lo.Length;
        bool targeted = c.Targets != null;
        var goal = targeted ? c.Targets! : c.Labels;
        var states = new List<State>();
        foreach (var (i, rng) in samples)
        {
            var pop = new float[P * L];
            for (int j = 0; j < P; j++) init(i, rng, pop.AsSpan(j * L, L));
            states.Add(new State { Sample = i, Rng = rng, Pop = pop, Fit = new double[P], Slot = states.Count });
        }
        using var device = edits != null && states.Count > 0 && EditedCandidates.Fits(c.D) ? Upload(c, states, edits.Value.Edits) : null;
        Logits logits;
        if (device != null)
        {
            var edit = edits!.Value.Edit;
            logits = (count, sts, genes) => device.Logits(count, QueryBatch, q => sts[q / P].Slot, (q, idx, val) =>
            {
                var s = sts[q / P];
                edit(s.Sample, genes(s).AsSpan(q % P * L, L), idx, val);
            });
        }
        else
            logits = (count, sts, genes) => SearchAttack.EvaluateLogits(c.Model, count, QueryBatch, (q, dst) =>
            {
                var s = sts[q / P];
                render(s.Sample, genes(s).AsSpan(q % P * L, L), dst);
            });

        // Start: evaluate every initial population.
        Evaluate(c, e, states, s => s.Pop, (s, j, fit, ok) =>
        {
            s.Fit[j] = fit;
            if (ok && (s.Winner < 0 || fit < s.Fit[s.Winner])) s.Winner = j;
        }, logits, goal, targeted);
        var running = states.Where(s => s.Winner < 0).ToList();
        for (int gen = 0; gen < Iterations && running.Count > 0; gen++)
        {
            foreach (var s in running)
            {
                s.Trial ??= new float[P * L];
                for (int j = 0; j < P; j++)
                {
                    int r1, r2, r3;
                    do r1 = s.Rng.NextInt(P); while (r1 == j);
                    do r2 = s.Rng.NextInt(P); while (r2 == j || r2 == r1);
                    do r3 = s.Rng.NextInt(P); while (r3 == j || r3 == r1 || r3 == r2);
                    for (int g = 0; g < L; g++)
                    {
                        float v = s.Pop[r1 * L + g] + F * (s.Pop[r2 * L + g] - s.Pop[r3 * L + g]);
                        s.Trial[j * L + g] = Math.Clamp(v, Lo[g], Hi[g]);
                    }
                }
                c.Steps[e][s.Sample]++;
            }
            // Selection: a trial replaces its parent when no worse; a successful trial ends its sample.
            var best = new Dictionary<State, (int J, double Fit)>();
            Evaluate(c, e, running, s => s.Trial!, (s, j, fit, ok) =>
            {
                if (fit <= s.Fit[j]) { Array.Copy(s.Trial!, j * L, s.Pop, j * L, L); s.Fit[j] = fit; }
                if (ok && (!best.TryGetValue(s, out var b) || fit < b.Fit)) best[s] = (j, fit);
            }, logits, goal, targeted);
            foreach (var (s, b) in best)
            {
                Array.Copy(s.Trial!, b.J * L, s.Pop, b.J * L, L);
                s.Fit[b.J] = b.Fit;
                s.Winner = b.J;
            }
            running = running.Where(s => s.Winner < 0).ToList();
        }

        return states.Select(s =>
        {
            int j = s.Winner;
            if (j < 0) { j = 0; for (int q = 1; q < P; q++) if (s.Fit[q] < s.Fit[j]) j = q; }
            return s.Pop.AsSpan(j * L, L).ToArray();
        }).ToArray();
    }

    /// <summary>The logits of every candidate of the states (count = states x Population), on the host or the device path.</summary>
    delegate float[] Logits(int count, List<State> states, Func<State, float[]> genes);

    /// <summary>The device path's images: the samples' clean images, one row per state (its slot).</summary>
    static EditedCandidates Upload(Attack.RunContext c, List<State> states, int edits)
    {
        int d = c.D;
        var x = new float[(long)states.Count * d];
        foreach (var s in states) Array.Copy(c.X, (long)s.Sample * d, x, (long)s.Slot * d, d);
        return new EditedCandidates(c.Model, x, states.Count, edits);
    }

    /// <summary>
    /// Evaluates all Population candidates of every state in one batch (chunks of QueryBatch), counts the queries, and
    /// calls <paramref name="take"/>(state, candidate, fitness, meets goal) for each.
    /// </summary>
    void Evaluate(Attack.RunContext c, int e, List<State> states, Func<State, float[]> genes, Action<State, int, double, bool> take,
        Logits logits, int[] goal, bool targeted)
    {
        if (states.Count == 0) return;
        int P = Population, classes = c.Model.NumClasses;
        int count = states.Count * P;
        var z = logits(count, states, genes);
        for (int q = 0; q < count; q++)
        {
            var s = states[q / P];
            var row = z.AsSpan(q * classes, classes);
            int t = goal[s.Sample];
            double p = SearchAttack.Probability(row, t);
            int pred = Losses.Argmax(row);
            take(s, q % P, targeted ? -p : p, targeted ? pred == t : pred != t);
            c.Queries[e][s.Sample]++;
        }
    }
}
