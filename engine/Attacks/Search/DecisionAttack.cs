using Perturb.Engine.Data;
using Perturb.Engine.Nn;

namespace Perturb.Engine.Attacks.Search;

/// <summary>
/// Base of the label-only (decision-based) attacks: they see only whether an image meets the goal (the predicted
/// label), and every query is counted. Each image's algorithm is a coroutine (<see cref="Attack(Image)"/>) that yields
/// a <see cref="Probe"/> of candidate images and reads back, per candidate, whether it meets the goal; every round
/// the driver evaluates the probes of all running images as one batch. An image stops when its coroutine ends or it
/// has spent <see cref="Queries"/>; its answer is the closest adversarial found (<see cref="Image.Best"/>), always
/// one that met the goal when it was queried, or the clean image when none was found. Minimal-norm: no budget.
/// Start (<see cref="Start"/>): uniform noise images until one meets the goal (20 per round, at most 100), then a
/// binary search on the line to the original for the boundary.
/// </summary>
public abstract class DecisionAttack : SearchAttack
{
    public override bool NeedsEpsilon => false;
    /// <summary>Query budget per image, the start included.</summary>
    [Setting("queries", "query budget per image, the start included", Min = 1)]
    public int Queries { get; init; } = 5000;

    /// <summary>Candidates to evaluate; after the round, <see cref="Adversarial"/>[j] says whether candidate j met the goal.</summary>
    protected sealed class Probe
    {
        public List<float[]> Candidates { get; } = new();
        public bool[] Adversarial { get; set; } = Array.Empty<bool>();
        public Probe Add(float[] x) { Candidates.Add(x); return this; }
    }

    /// <summary>One image's state: the original, the closest adversarial so far and its distance, its random stream, queries spent.</summary>
    protected sealed class Image
    {
        public required int Sample { get; init; }
        public required float[] X { get; init; }
        public required SplitMix64 Rng { get; init; }
        public float[]? Best { get; set; }
        public long Used { get; set; }
        public int Steps { get; set; }
        public required long Budget { get; init; }
        public long Left => Budget - Used;
    }

    protected override void Validate()
    {
        if (Queries < 1) throw new PerturbException($"{Name}: the query budget must be at least 1, got {Queries}", 2);
        CheckQueryBatch();
    }

    /// <summary>The algorithm of one image, after the start found an adversarial (<see cref="Image.Best"/> is set).</summary>
    protected abstract IEnumerable<Probe> Attack(Image s);

    /// <summary>The distance the attack minimises (L2 unless the attack says otherwise).</summary>
    protected virtual double Distance(float[] a, float[] x)
    {
        double s = 0;
        for (int j = 0; j < a.Length; j++) { double v = a[j] - x[j]; s += v * v; }
        return Math.Sqrt(s);
    }

    protected override float[][] Produce(RunContext c)
    {
        int d = c.D, classes = c.Model.NumClasses;
        bool targeted = c.Targets != null;
        var goal = targeted ? c.Targets! : c.Labels;
        var adv = (float[])c.X.Clone();
        var images = new List<(Image S, IEnumerator<Probe> It)>();
        for (int i = 0; i < c.N; i++)
        {
            if (Meets(c.CleanPred[i], goal[i], targeted) || !c.IsActive(i, 0)) continue;
            var s = new Image { Sample = i, X = c.X.AsSpan(i * d, d).ToArray(), Rng = SampleRng(i), Budget = Queries };
            images.Add((s, Whole(s).GetEnumerator()));
        }
        var running = images.Where(p => p.It.MoveNext()).ToList();
        while (running.Count > 0)
        {
            // Trim each probe to its image's remaining budget, then evaluate them all as one batch.
            var batch = new List<(Probe P, int Image, float[] Cand)>();
            foreach (var (s, it) in running)
            {
                var p = it.Current;
                int keep = (int)Math.Min(p.Candidates.Count, s.Left);
                p.Adversarial = new bool[keep];
                for (int j = 0; j < keep; j++) batch.Add((p, s.Sample, p.Candidates[j]));
                s.Used += keep;
                c.Queries[0][s.Sample] += keep;
            }
            var z = EvaluateLogits(c.Model, batch.Count, QueryBatch, (q, dst) => batch[q].Cand.AsSpan().CopyTo(dst));
            var next = new Dictionary<Probe, int>();
            for (int q = 0; q < batch.Count; q++)
            {
                var (p, i, _) = batch[q];
                int j = next.TryGetValue(p, out var v) ? v : 0;
                next[p] = j + 1;
                p.Adversarial[j] = Meets(Losses.Argmax(z.AsSpan(q * classes, classes)), goal[i], targeted);
            }
            running = running.Where(r => r.S.Left > 0 && r.It.Current.Adversarial.Length == r.It.Current.Candidates.Count && r.It.MoveNext()).ToList();
        }
        foreach (var (s, _) in images)
        {
            if (s.Best != null) Array.Copy(s.Best, 0, adv, (long)s.Sample * d, d);
            c.Steps[0][s.Sample] = s.Steps;
        }
        return new[] { adv };
    }

    IEnumerable<Probe> Whole(Image s)
    {
        foreach (var p in Start(s)) yield return p;
        if (s.Best == null) yield break;
        foreach (var p in Attack(s)) yield return p;
    }

    /// <summary>Uniform noise until one meets the goal, then the boundary on the line to the original (tolerance 1e-3 of the way).</summary>
    IEnumerable<Probe> Start(Image s)
    {
        int d = s.X.Length;
        for (int round = 0; round < 5 && s.Best == null; round++)
        {
            var p = new Probe();
            for (int k = 0; k < 20; k++) p.Add(Enumerable.Range(0, d).Select(_ => (float)s.Rng.NextDouble()).ToArray());
            yield return p;
            for (int k = 0; k < p.Adversarial.Length; k++) if (p.Adversarial[k]) { s.Best = p.Candidates[k]; break; }
        }
        if (s.Best == null) yield break;
        double lo = 0, hi = 1;
        while (hi - lo > 1e-3)
        {
            double mid = 0.5 * (lo + hi);
            var p = new Probe().Add(Blend(s.X, s.Best, mid));
            yield return p;
            if (p.Adversarial.Length == 0) yield break;
            if (p.Adversarial[0]) hi = mid; else lo = mid;
        }
        s.Best = Blend(s.X, s.Best, hi);
    }

    /// <summary>(1 - a) x + a y.</summary>
    protected static float[] Blend(float[] x, float[] y, double a)
    {
        var o = new float[x.Length];
        for (int j = 0; j < x.Length; j++) o[j] = (float)((1 - a) * x[j] + a * y[j]);
        return o;
    }

    /// <summary>Replaces the image's best when <paramref name="cand"/>, known to meet the goal, is closer.</summary>
    protected void Offer(Image s, float[] cand)
    {
        if (s.Best == null || Distance(cand, s.X) < Distance(s.Best, s.X)) s.Best = cand;
    }
}
