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
/// Start (<see cref="Start"/>): the <see cref="StartImages"/> other images of the run nearest to the original (L2)
/// are queried, and those that meet the goal are candidates; then uniform noise images (20 per round, at most 100)
/// until there are <see cref="Starts"/> candidates (or the rounds run out with at least one). Each candidate is
/// binary-searched on its line to the original for the boundary, all in the same rounds; the nearest boundary point
/// starts the attack. With start images an image's answer depends on which other images the call attacks.
/// </summary>
public abstract class DecisionAttack : SearchAttack
{
    public override bool NeedsEpsilon => false;
    /// <summary>Query budget per image, the start included.</summary>
    [Setting("queries", "query budget per image, the start included", Min = 1)]
    public int Queries { get; init; } = 5000;
    /// <summary>Adversarial noise images binary-searched to the boundary at the start; the nearest is kept.</summary>
    [Setting("starts", "adversarial noise images binary-searched to the boundary at the start; the nearest starts the attack", Min = 1, Max = 20)]
    public int Starts { get; init; } = 1;
    /// <summary>Other images of the run, the nearest to the original, queried as candidate starts (0: noise only).</summary>
    [Setting("start_images", "the nearest other images of the run queried as candidate starts (a query each); 0: noise only", Min = 0, Max = 100)]
    public int StartImages { get; init; }

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
        /// <summary>The sample's shape, channels x height x width (1 x 1 x d for an input that is not an image).</summary>
        public required (int C, int H, int W) Shape { get; init; }
        /// <summary>Candidate starts to query first: other images of the run, nearest first (empty without start images).</summary>
        public float[][] Near { get; init; } = Array.Empty<float[]>();
        public float[]? Best { get; set; }
        public long Used { get; set; }
        public int Steps { get; set; }
        public required long Budget { get; init; }
        public long Left => Budget - Used;
    }

    protected override void Validate()
    {
        if (Queries < 1) throw new PerturbException($"{Name}: the query budget must be at least 1, got {Queries}", 2);
        if (Starts < 1 || Starts > 20) throw new PerturbException($"{Name}: starts must be in 1..20, got {Starts}", 2);
        if (StartImages < 0 || StartImages > 100) throw new PerturbException($"{Name}: start images must be in 0..100, got {StartImages}", 2);
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
        var ins = c.Model.InputShape; // C x H x W for images; any other input is one channel of one row
        var shape = ins.Length == 3 ? (ins[0], ins[1], ins[2]) : (1, 1, d);
        var images = new List<(Image S, IEnumerator<Probe> It)>();
        for (int i = 0; i < c.N; i++)
        {
            if (Meets(c.CleanPred[i], goal[i], targeted) || !c.IsActive(i, 0)) continue;
            var s = new Image { Sample = i, X = c.X.AsSpan(i * d, d).ToArray(), Rng = SampleRng(i), Shape = shape, Budget = Queries, Near = Nearest(c, i) };
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

    /// <summary>
    /// Uniform noise until <see cref="Starts"/> candidates meet the goal (at most 5 rounds of 20), then each one's
    /// boundary on the line to the original (tolerance 1e-3 of the way), the lines searched side by side in one probe
    /// a round; the nearest boundary point is the image's best.
    /// </summary>
    IEnumerable<Probe> Start(Image s)
    {
        int d = s.X.Length;
        var found = new List<float[]>();
        if (s.Near.Length > 0)
        {
            var p = new Probe();
            foreach (var x in s.Near) p.Add(x);
            yield return p;
            for (int k = 0; k < p.Adversarial.Length; k++) if (p.Adversarial[k]) found.Add(p.Candidates[k]);
        }
        for (int round = 0; round < 5 && found.Count < Starts; round++)
        {
            var p = new Probe();
            for (int k = 0; k < 20; k++) p.Add(Enumerable.Range(0, d).Select(_ => (float)s.Rng.NextDouble()).ToArray());
            yield return p;
            for (int k = 0; k < p.Adversarial.Length && found.Count < Starts; k++) if (p.Adversarial[k]) found.Add(p.Candidates[k]);
        }
        if (found.Count == 0) yield break;
        foreach (var f in found) Offer(s, f); // an answer even if the budget ends inside the search
        int n = found.Count;
        var lo = new double[n]; var hi = Enumerable.Repeat(1.0, n).ToArray();
        while (hi[0] - lo[0] > 1e-3)
        {
            var p = new Probe();
            for (int k = 0; k < n; k++) p.Add(Blend(s.X, found[k], 0.5 * (lo[k] + hi[k])));
            yield return p;
            for (int k = 0; k < n; k++)
                if (p.Adversarial[k]) { hi[k] = 0.5 * (lo[k] + hi[k]); Offer(s, p.Candidates[k]); }
                else lo[k] = 0.5 * (lo[k] + hi[k]);
        }
    }

    /// <summary>The <see cref="StartImages"/> images of the run other than <paramref name="i"/> nearest to it in L2, nearest first (ties: lower index).</summary>
    float[][] Nearest(RunContext c, int i)
    {
        if (StartImages == 0) return Array.Empty<float[]>();
        int d = c.D;
        var xi = c.X.AsSpan(i * d, d);
        var dist = new List<(double D, int J)>();
        for (int j = 0; j < c.N; j++)
        {
            if (j == i) continue;
            var xj = c.X.AsSpan(j * d, d);
            double s = 0;
            for (int k = 0; k < d; k++) { double v = xj[k] - xi[k]; s += v * v; }
            dist.Add((s, j));
        }
        return dist.OrderBy(t => t.D).ThenBy(t => t.J).Take(StartImages).Select(t => c.X.AsSpan(t.J * d, d).ToArray()).ToArray();
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
