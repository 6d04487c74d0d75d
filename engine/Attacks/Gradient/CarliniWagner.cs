using Perturb.Engine.Nn;

namespace Perturb.Engine.Attacks.Gradient;

/// <summary>How C&amp;W picks each image's first trade-off constant c.</summary>
public enum FirstC
{
    /// <summary>initial_c for every image (Carlini's code, Foolbox).</summary>
    Fixed,
    /// <summary>
    /// margin_c_scale times 2 (m + kappa) / ||grad_x m||^2 at the clean image (m its CW margin): the c at which the
    /// minimiser of the C&amp;W objective with m linearised at x reaches the boundary.
    /// </summary>
    Margin,
}

/// <summary>
/// Carlini-Wagner L2. Optimises w in tanh space, x' = (tanh(w) + 1) / 2, minimising ||x' - x||_2^2 + c * f(x') with f
/// the CW margin loss (IBackend.CwMarginLoss, confidence <see cref="Kappa"/>), by Adam on w (on the device, the
/// backend's Adam op, lr <see cref="LearningRate"/>, annealed to 0 over each round by a half cosine with
/// <see cref="CosineLr"/>). A search over c per image (<see cref="BinarySteps"/> rounds, the first c from
/// <see cref="FirstC"/>; c times <see cref="CGrowth"/> until a first success, then bisection, or with
/// <see cref="StopAtSuccess"/> no more rounds for an image once fooled) runs on the host between rounds; every round
/// restarts from its start point (x, or the linearised boundary point with <see cref="LinearStart"/>) with fresh Adam
/// moments. After the last round, <see cref="RefineSteps"/> forward passes search each image's best perturbation
/// toward x for the boundary (<see cref="Refine"/>). The default (one round of 40 cosine-annealed steps from the
/// linearised boundary point, c 1.5 times the linearised one, 4 refinement passes) comes within 1% of the median L2 of
/// Carlini's 9-round search (0.3% below it on 50 PneumoniaMNIST images, 1% above on 200 with one model, 1.1% below
/// Foolbox's on 200 with another) for about 1/18 of its gradients (README); Carlini's search is first_c fixed, binary_steps 9, steps 100, lr 0.01, no cosine, linear_start 0,
/// stop_at_success false, abort_early true. The best (lowest
/// L2) successful x' per image (successful: margin below -kappa) is kept on the device across every iterate of every
/// round; images never fooled come back unchanged. No budget (eps null).
/// Early abort (<see cref="AbortEarly"/>, as Carlini's code and Foolbox): every ceil(steps / 10) iterations the loss
/// ||x' - x||^2 + c f(x') is read back, and a round ends when it is not below 0.9999 times its value at the previous
/// check: summed over the images (Carlini's rule), or per image with <see cref="AbortPerRow"/>.
/// Images that need no more work stop costing: an image already fooled at its first iterate (the clean image meets
/// the goal) is done; one whose bracket [lower, upper] of c has closed to a factor 1 + <see cref="CTolerance"/>
/// skips the remaining rounds; with the per-image abort an image whose loss has settled leaves its round. Such rows
/// are dropped from the batch (compacted: the forward and backward passes run on the rows still optimising only),
/// which changes no row's answer: each row's arithmetic does not depend on the rows beside it.
/// </summary>
public sealed class CarliniWagner : Attack
{
    public override string Name => "cw";
    public override bool NeedsEpsilon => false;
    [Setting("steps", "Adam iterations per binary-search round", Min = 1)]
    public int Steps { get; init; } = 40;
    [Setting("binary_steps", "rounds of the binary search over c", Min = 1)]
    public int BinarySteps { get; init; } = 3;
    [Setting("initial_c", "the first trade-off constant c (first_c fixed)", Min = 0, MinOpen = true)]
    public float InitialC { get; init; } = 1e-2f;
    [Setting("first_c", "each image's first c: fixed (initial_c) or margin (margin_c_scale x 2 m / ||grad m||^2 at the clean image, where a linearised C&W objective's minimiser reaches the boundary)")]
    public FirstC FirstC { get; init; } = FirstC.Margin;
    [Setting("margin_c_scale", "factor on the linearised c of first_c margin", Min = 0, MinOpen = true)]
    public float MarginCScale { get; init; } = 1.5f;
    [Setting("c_growth", "factor on c after a round without success, until one succeeds (Carlini: 10)", Min = 1, MinOpen = true)]
    public float CGrowth { get; init; } = 10f;
    [Setting("c_tolerance", "an image skips the remaining rounds once the upper c of its bracket is within a factor 1 + c_tolerance of the lower (0: every round runs)", Min = 0)]
    public float CTolerance { get; init; }
    [Setting("linear_start", "start each round at x + a delta, delta = -(m + kappa) g / ||g||^2 the boundary point of the margin m linearised at x (g its input gradient), a = linear_start (0: at x, Carlini)", Min = 0)]
    public float LinearStart { get; init; } = 1f;
    [Setting("stop_at_success", "an image fooled in a round skips the remaining rounds, which then only raise c (times c_growth) for the images not yet fooled (false: the binary search goes on)")]
    public bool StopAtSuccess { get; init; } = true;
    [Setting("kappa", "confidence margin", Min = 0)]
    public float Kappa { get; init; }
    [Setting("learning_rate", "Adam learning rate in tanh space", Min = 0, MinOpen = true)]
    public float LearningRate { get; init; } = 0.005f;
    [Setting("cosine_lr", "anneal the learning rate over each round from learning_rate to 0 by a half cosine (as FMN, Pintor et al. 2021)")]
    public bool CosineLr { get; init; } = true;
    [Setting("abort_early", "end a binary-search round when its loss fell by less than 0.01% over the last tenth of the steps (Carlini's code, Foolbox)")]
    public bool AbortEarly { get; init; }
    [Setting("abort_per_row", "apply the early abort to each image's own loss, so a settled image leaves its round while the others go on (false: Carlini's rule on the summed loss)")]
    public bool AbortPerRow { get; init; }
    [Setting("refine_steps", "forward passes (no gradients) after the last round, searching each image's best perturbation delta for the smallest t in (0, 1] with x + t delta still adversarial: a regula falsi on the CW margin along the segment, starting from t = 1 (0: no refinement)", Min = 0)]
    public int RefineSteps { get; init; } = 4;
    [Setting("refine_confidence", "the refinement accepts a point only at a CW margin below -(kappa + refine_confidence), in logits, so that its answers stay adversarial under another implementation's rounding (PyTorch's check flipped 14% of the images refined to a margin of -0)", Min = 0)]
    public float RefineConfidence { get; init; } = 1e-3f;

    /// <summary>
    /// Drop rows that need no more work from the batch (true, the default) or keep them in it, masked (false): the
    /// answers are the same; the uncompacted run is the reference the tests compare against.
    /// </summary>
    internal bool Compact { get; init; } = true;

    /// <summary>
    /// Test instrumentation: called after every iteration with the batch of the rows still optimising (its
    /// SampleIndex maps them to images), the binary-search round, the iteration, and the device tensors of each row's
    /// L2 distance and success (1/0, 0 for masked rows) at that iterate. Null (the default) costs nothing.
    /// </summary>
    internal Action<AttackBatch, int, int, Tensor, Tensor>? Observe { get; init; }

    protected override void Validate()
    {
        if (Steps < 1) throw new PerturbException($"{Name}: steps must be at least 1, got {Steps}", 2);
        if (BinarySteps < 1) throw new PerturbException($"{Name}: binary search steps must be at least 1, got {BinarySteps}", 2);
        if (!(InitialC > 0)) throw new PerturbException($"{Name}: initial c must be positive, got {InitialC}", 2);
        if (!(MarginCScale > 0)) throw new PerturbException($"{Name}: margin c scale must be positive, got {MarginCScale}", 2);
        if (!(CGrowth > 1)) throw new PerturbException($"{Name}: c growth must be above 1, got {CGrowth}", 2);
        if (!(CTolerance >= 0)) throw new PerturbException($"{Name}: c tolerance must be non-negative, got {CTolerance}", 2);
        if (!(Kappa >= 0)) throw new PerturbException($"{Name}: kappa must be non-negative, got {Kappa}", 2);
        if (RefineSteps < 0) throw new PerturbException($"{Name}: refine steps must be non-negative, got {RefineSteps}", 2);
        if (!(RefineConfidence >= 0)) throw new PerturbException($"{Name}: refine confidence must be non-negative, got {RefineConfidence}", 2);
        if (!(LearningRate > 0)) throw new PerturbException($"{Name}: learning rate must be positive, got {LearningRate}", 2);
    }

    /// <summary>Per-row search state of a chunk, on the host; the best L2 and image live on the device (bestL2, b.Adv).</summary>
    sealed class Search
    {
        public required float[] W0;
        public required double[] C, Lower, Upper;
        public required bool[] Done, AnySucc;
        public required int[] Steps;
        public required Tensor BestL2;
    }

    protected override void AttackChunk(AttackBatch b)
    {
        var be = b.Be; int rows = b.Rows;
        using var bestL2 = be.Allocate(rows);
        be.Fill(bestL2, 1e10f);
        be.Copy(b.X0, b.Adv); // best so far: the clean image
        var s = new Search
        {
            W0 = b.X0.ToArray().Select(v => (float)Math.Atanh(Math.Clamp(2.0 * v - 1, -1 + 1e-6, 1 - 1e-6))).ToArray(),
            C = Enumerable.Repeat((double)InitialC, rows).ToArray(),
            Lower = new double[rows], Upper = Enumerable.Repeat(1e10, rows).ToArray(),
            Done = new bool[rows], AnySucc = new bool[rows], Steps = new int[rows], BestL2 = bestL2,
        };
        b.StepsHost = s.Steps;
        for (int round = 0; round < BinarySteps; round++)
        {
            var live = Enumerable.Range(0, rows).Where(r => !s.Done[r]).ToArray();
            if (live.Length == 0) break;
            Array.Clear(s.AnySucc);
            RunRound(b, s, round, live);
            if (round == BinarySteps - 1) break;
            foreach (int r in live)
            {
                if (s.Done[r]) continue;
                if (s.AnySucc[r])
                {
                    s.Upper[r] = Math.Min(s.Upper[r], s.C[r]);
                    s.C[r] = (s.Lower[r] + s.Upper[r]) / 2;
                }
                else
                {
                    s.Lower[r] = Math.Max(s.Lower[r], s.C[r]);
                    s.C[r] = s.Upper[r] < 1e9 ? (s.Lower[r] + s.Upper[r]) / 2 : s.C[r] * CGrowth;
                }
                if (StopAtSuccess && s.AnySucc[r]) s.Done[r] = true;
                if (CTolerance > 0 && s.Upper[r] < 1e9 && s.Upper[r] <= (1 + CTolerance) * s.Lower[r]) s.Done[r] = true;
            }
        }
        if (RefineSteps > 0) Refine(b, s);
    }

    /// <summary>
    /// The line search of <see cref="RefineSteps"/>: per image fooled at a positive L2, its best x' so far gives
    /// delta = x' - x, and forward passes at x + t delta look for the crossing of g(t) = m + kappa
    /// + <see cref="RefineConfidence"/> (g(0) &gt; 0 from the clean logits, g(1) measured by the first pass at t = 1,
    /// a point accepted only where g &lt; 0, at a margin below -(kappa + refine_confidence)): regula falsi on the
    /// bracket [lo, hi] of t (lo not adversarial, hi adversarial), each try nudged 1% of the bracket toward hi so that
    /// it lands on the adversarial side, and the Illinois halving of a side kept twice. Every tried point goes through
    /// the same keep-best as the Adam iterates (success on the device, L2 of the clamped point), so the returned L2 is
    /// still the smallest over every successful point evaluated.
    /// </summary>
    void Refine(AttackBatch b, Search s)
    {
        var best = s.BestL2.ToArray();
        // Rows fooled at a positive L2 whose clean image does not meet the goal (those that do keep their first iterate).
        var live = Enumerable.Range(0, b.Rows).Where(r => best[r] > 0 && best[r] < 1e9f
            && Margin(b.CleanLogits, r, b.Outputs, b.TrueLabels[r], b.Targeted ? b.LossLabels[r] : -1) + Kappa > 0).ToArray();
        if (live.Length == 0) return;
        var rows = new Rows(b, s, live, false);
        try
        {
            var sb = rows.B; var be = sb.Be; int n = sb.Rows, k = sb.Outputs;
            be.Fill(rows.AnySucc, 0f);
            be.Copy(sb.Adv, rows.G); // delta
            be.Axpy(-1f, sb.X0, rows.G);
            var lo = new double[n]; var hi = Enumerable.Repeat(1.0, n).ToArray();
            var glo = new double[n]; var ghi = Enumerable.Repeat(double.NaN, n).ToArray();
            var side = new int[n]; // +1: hi kept its end in the last try, -1: lo did (Illinois)
            float conf = Kappa + RefineConfidence;
            for (int j = 0; j < n; j++) glo[j] = Margin(sb.CleanLogits, j, k, sb.TrueLabels[j], sb.Targeted ? sb.LossLabels[j] : -1) + conf;
            var t = new float[n];
            for (int it = 1; it <= RefineSteps; it++)
            {
                for (int j = 0; j < n; j++)
                {
                    if (double.IsNaN(ghi[j])) { t[j] = 1f; continue; }
                    double w = hi[j] - lo[j], ts = glo[j] > 0 && ghi[j] < 0 ? hi[j] - ghi[j] * w / (ghi[j] - glo[j]) : lo[j] + w / 2;
                    t[j] = (float)Math.Clamp(ts + 0.01 * (hi[j] - ts), lo[j] + 0.001 * w, hi[j]);
                }
                be.Upload(rows.CT, t);
                sb.ScaleRows(rows.G, rows.CT, rows.Xp);
                be.Axpy(1f, sb.X0, rows.Xp);
                be.Clamp(rows.Xp, 0f, 1f, rows.Xp);
                var z = sb.Forward(rows.Xp);
                sb.SuccessMask(z, rows.Succ, conf);
                rows.KeepBest();
                Observe?.Invoke(sb, -1, it, rows.L2, rows.Succ);
                if (it == RefineSteps) break;
                var zh = z.ToArray(); var ok = rows.Succ.ToArray();
                for (int j = 0; j < n; j++)
                {
                    double g = Margin(zh, j, k, sb.TrueLabels[j], sb.Targeted ? sb.LossLabels[j] : -1) + conf;
                    if (ok[j] > 0.5f)
                    {
                        hi[j] = t[j]; ghi[j] = Math.Min(g, -1e-12);
                        if (side[j] == -1) glo[j] /= 2; // lo kept its end twice: halve its weight
                        side[j] = -1;
                    }
                    else
                    {
                        lo[j] = t[j]; glo[j] = Math.Max(g, 1e-12);
                        if (side[j] == 1 && !double.IsNaN(ghi[j])) ghi[j] /= 2;
                        side[j] = 1;
                    }
                }
            }
        }
        finally
        {
            rows.Finish();
            rows.Dispose();
        }
    }

    /// <summary>The CW margin of host logits row r: z_y - max other (untargeted), max other - z_t (target &gt;= 0).</summary>
    static double Margin(float[] logits, int r, int k, int label, int target)
    {
        var z = Losses.ClassLogits(logits, r, k);
        int c = target >= 0 ? target : label;
        double other = Losses.MaxOther(z, c);
        return target >= 0 ? other - z[c] : z[c] - other;
    }

    /// <summary>
    /// One binary-search round over the chunk rows <paramref name="live"/>: Adam from x with fresh moments, keeping the
    /// best successful iterate; rows leave the round (and, compacted, the batch) when they stop.
    /// </summary>
    void RunRound(AttackBatch b, Search s, int round, int[] live)
    {
        int checkEvery = (Steps + 9) / 10;
        bool measure = round == 0 && (FirstC == FirstC.Margin || LinearStart > 0); // the first pass runs at c = 1
        var rows = new Rows(b, s, live, measure);
        int adamOffset = 0;
        try
        {
            rows.StartFromX();
            var lastCheck = Enumerable.Repeat(double.PositiveInfinity, live.Length).ToArray();
            double lastSum = double.PositiveInfinity;
            for (int it = 1; it <= Steps; it++)
            {
                var sb = rows.B; var be = sb.Be; int n = sb.Rows;
                // x' = (tanh(w) + 1) / 2
                be.ActivationForward(Activation.Tanh, 0f, rows.W, rows.T);
                sb.Affine(rows.T, 0.5f, 0.5f, rows.Xp);
                var dx = sb.Gradient(rows.Xp, LossKind.CwMargin, rows.CT, Kappa); // c * d f / d x'
                bool first = round == 0 && it == 1;
                bool check = AbortEarly && (it - 1) % checkEvery == 0;
                var f = check || first ? sb.Loss.ToArray() : null; // f(x') per row, before SuccessMask reuses the loss buffer
                // Keep the lowest-L2 successful point (masked rows count as unsuccessful).
                sb.SuccessMask(sb.Logits!, rows.Succ, Kappa);
                if (!rows.AllRunning) be.Mul(rows.Succ, rows.Running, rows.Succ);
                rows.KeepBest();
                be.Where(rows.Succ, rows.Succ, rows.AnySucc, rows.AnySucc, n, 1); // anySucc |= succ
                Observe?.Invoke(sb, round, it, rows.L2, rows.Succ);
                rows.CountStep();
                var stop = new List<int>(); // positions in the batch of rows that leave the round now
                if (first)
                {
                    // Rows fooled at x itself are done; with first_c margin, each row's c comes from this gradient.
                    var ok = rows.Succ.ToArray();
                    for (int j = 0; j < n; j++) if (ok[j] > 0.5f) { s.Done[rows.Chunk[j]] = true; stop.Add(j); }
                    if (FirstC == FirstC.Margin) rows.SetMarginC(dx, f!, Kappa, MarginCScale, InitialC);
                    else if (measure) rows.SetC();
                    if (LinearStart > 0) rows.JumpToLinear(dx, f!, Kappa, LinearStart);
                }
                if (check)
                {
                    var dist = rows.L2.ToArray();
                    if (AbortPerRow)
                    {
                        for (int j = 0; j < n; j++)
                        {
                            if (!rows.IsRunning(j)) continue;
                            int r = rows.Chunk[j];
                            double loss = (double)dist[j] * dist[j] + s.C[r] * f![j];
                            int p = rows.Pos[j];
                            if (!(loss <= 0.9999 * lastCheck[p])) { if (!stop.Contains(j)) stop.Add(j); }
                            lastCheck[p] = loss;
                        }
                    }
                    else
                    {
                        double loss = 0;
                        for (int j = 0; j < n; j++)
                            if (rows.IsRunning(j)) loss += (double)dist[j] * dist[j] + s.C[rows.Chunk[j]] * f![j];
                        if (!(loss <= 0.9999 * lastSum)) break;
                        lastSum = loss;
                    }
                }
                if (stop.Count > 0)
                {
                    if (stop.Count == rows.RunningCount) break;
                    var next = rows.Without(stop, Compact, dx);
                    if (!ReferenceEquals(next, rows)) { rows.Dispose(); rows = next; dx = rows.Dx!; }
                    sb = rows.B; be = sb.Be;
                }
                if (first && LinearStart > 0) { adamOffset = 1; continue; } // this pass was the step to the linearised boundary point
                // d/dw = (2 (x' - x) + c df/dx') * (1 - tanh(w)^2) / 2
                be.Copy(dx, rows.G);
                if (first && measure) sb.ScaleRows(rows.G, rows.CT, rows.G); // the gradient was taken at c = 1
                be.Axpy(2f, rows.Diff, rows.G);
                be.Mul(rows.T, rows.T, rows.Scratch);
                sb.Affine(rows.Scratch, -0.5f, 0.5f, rows.Scratch);
                be.Mul(rows.G, rows.Scratch, rows.G);
                float lr = CosineLr ? (float)(LearningRate * 0.5 * (1 + Math.Cos(Math.PI * (it - 1) / Steps))) : LearningRate;
                be.AdamUpdate(rows.W, rows.G, rows.M, rows.V, lr, 0.9f, 0.999f, 1e-8f, 0f, it - adamOffset);
            }
        }
        finally
        {
            rows.Finish();
            rows.Dispose();
        }
    }

    /// <summary>
    /// The rows of one round on the device: a batch of the chunk rows <see cref="Chunk"/> (its own AttackBatch, so
    /// the model runs on these rows only) with the optimiser state, best L2 and best image of each, gathered from the
    /// chunk and scattered back to it by <see cref="Finish"/>. <see cref="Pos"/>: each row's position in the round's
    /// first row list (for per-row host state). Uncompacted, rows that stop stay in the batch with Running 0.
    /// </summary>
    sealed class Rows : IDisposable
    {
        readonly AttackBatch _chunk;
        readonly Search _s;
        public AttackBatch B { get; }
        public int[] Chunk { get; }
        public int[] Pos { get; }
        public Tensor W, M, V, T, Xp, Diff, G, Scratch, CT, Succ, L2, Better, BestL2, AnySucc, Running;
        /// <summary>The last pass's input gradient of these rows, gathered by a compaction (null: the model's own).</summary>
        public Tensor? Dx { get; private set; }
        readonly bool[] _running;
        public bool AllRunning { get; private set; } = true;
        public int RunningCount => _running.Count(x => x);
        public bool IsRunning(int j) => _running[j];

        public Rows(AttackBatch chunk, Search s, int[] live, bool cAtOne) : this(chunk, s, live, Enumerable.Range(0, live.Length).ToArray(), cAtOne) { }

        Rows(AttackBatch chunk, Search s, int[] rows, int[] pos, bool cAtOne)
        {
            _chunk = chunk; _s = s; Chunk = rows; Pos = pos;
            int n = rows.Length, d = chunk.Cols, k = chunk.Outputs;
            var x0 = chunk.X0.ToArray();
            var sx = new float[(long)n * d]; var zl = new float[n * k];
            for (int j = 0; j < n; j++)
            {
                Array.Copy(x0, (long)rows[j] * d, sx, (long)j * d, d);
                Array.Copy(chunk.CleanLogits, (long)rows[j] * k, zl, (long)j * k, k);
            }
            B = new AttackBatch(chunk.Model, rows.Select(r => chunk.SampleIndex[r]).ToArray(), rows.Select(r => chunk.EpsIndex[r]).ToArray(),
                rows.Select(r => chunk.Eps[r]).ToArray(), rows.Select(r => chunk.TrueLabels[r]).ToArray(),
                chunk.Targeted ? rows.Select(r => chunk.LossLabels[r]).ToArray() : null, sx, zl, chunk.Seed);
            var be = B.Be; var shape = B.Shape(n);
            W = be.Allocate(shape); M = be.Allocate(shape); V = be.Allocate(shape); T = be.Allocate(shape);
            Xp = be.Allocate(shape); Diff = be.Allocate(shape); G = be.Allocate(shape); Scratch = be.Allocate(shape);
            CT = be.Allocate(n); Succ = be.Allocate(n); L2 = be.Allocate(n); Better = be.Allocate(n);
            BestL2 = be.Allocate(n); AnySucc = be.Allocate(n); Running = be.Allocate(n);
            be.Fill(Running, 1f);
            _running = Enumerable.Repeat(true, n).ToArray();
            // The chunk's best so far, and each row's c (1 while the first pass measures the margin).
            CopyRows(be, s.BestL2, rows, BestL2, Identity(n));
            CopyRows(be, chunk.Adv, rows, B.Adv, Identity(n));
            be.Upload(CT, rows.Select(r => cAtOne ? 1f : (float)s.C[r]).ToArray());
        }

        /// <summary>The round's start: w at x, Adam moments 0, no success yet.</summary>
        public void StartFromX()
        {
            var be = B.Be; int n = Chunk.Length, d = B.Cols;
            var w = new float[(long)n * d];
            for (int j = 0; j < n; j++) Array.Copy(_s.W0, (long)Chunk[j] * d, w, (long)j * d, d);
            be.Upload(W, w);
            be.Fill(M, 0f); be.Fill(V, 0f); be.Fill(AnySucc, 0f);
        }

        /// <summary>c = scale * 2 (f + kappa) / ||df/dx||^2 per row from the first pass at c = 1 (fallback: c0).</summary>
        public void SetMarginC(Tensor dx, float[] f, float kappa, float scale, float c0)
        {
            var be = B.Be; int n = Chunk.Length;
            using var g2 = be.Allocate(n);
            be.ReduceRows(Reduction.L2, dx, g2, n, B.Cols);
            var gn = g2.ToArray();
            var c = new float[n];
            for (int j = 0; j < n; j++)
            {
                double sq = (double)gn[j] * gn[j], cl = 2.0 * (f[j] + kappa) / sq * scale;
                c[j] = (float)(double.IsFinite(cl) && cl > 0 ? Math.Clamp(cl, 1e-8, 1e8) : c0);
                _s.C[Chunk[j]] = c[j];
            }
            be.Upload(CT, c);
        }

        /// <summary>Uploads each row's c from the search state (after a first pass at c = 1).</summary>
        public void SetC() => B.Be.Upload(CT, Chunk.Select(r => (float)_s.C[r]).ToArray());

        /// <summary>
        /// Moves w to x + a delta per row, delta = -(f + kappa) g / ||g||^2 from the first pass's gradient g (at c = 1),
        /// clamped into [0,1], and makes that the row's start for every later round (the search state's W0).
        /// </summary>
        public void JumpToLinear(Tensor dx, float[] f, float kappa, float a)
        {
            int n = Chunk.Length, d = B.Cols;
            var g = dx.ToArray(); var x = B.X0.ToArray();
            var w = new float[(long)n * d];
            for (int j = 0; j < n; j++)
            {
                long o = (long)j * d;
                double sq = 0;
                for (int i = 0; i < d; i++) sq += (double)g[o + i] * g[o + i];
                double coef = sq > 0 && f[j] + kappa > 0 ? -a * (f[j] + kappa) / sq : 0;
                for (int i = 0; i < d; i++)
                {
                    double xs = Math.Clamp(x[o + i] + coef * g[o + i], 0, 1);
                    w[o + i] = (float)Math.Atanh(Math.Clamp(2 * xs - 1, -1 + 1e-6, 1 - 1e-6));
                }
                Array.Copy(w, o, _s.W0, (long)Chunk[j] * d, d);
            }
            B.Be.Upload(W, w);
        }

        /// <summary>
        /// Diff = Xp - x and its L2 per row; where Succ is 1 and that L2 is below the row's best, the best L2 and
        /// image become Xp's (selects, exact for any values).
        /// </summary>
        public void KeepBest()
        {
            var be = B.Be; int n = B.Rows;
            be.Copy(Xp, Diff);
            be.Axpy(-1f, B.X0, Diff);
            be.ReduceRows(Reduction.L2, Diff, L2, n, B.Cols);
            be.Greater(BestL2, L2, Better);
            be.Mul(Better, Succ, Better);
            B.SelectRows(BestL2, L2, Better);
            B.SelectRows(B.Adv, Xp, Better);
        }

        public void CountStep() { for (int j = 0; j < Chunk.Length; j++) if (_running[j]) _s.Steps[Chunk[j]]++; }

        /// <summary>
        /// The rows without the batch positions <paramref name="stop"/>: compacted, a new batch of the rest (their
        /// state moved over, the stopped rows' results scattered to the chunk); otherwise this batch with those masked.
        /// </summary>
        public Rows Without(List<int> stop, bool compact, Tensor dx)
        {
            var be = B.Be;
            if (!compact)
            {
                var mask = Running.ToArray();
                foreach (int j in stop) { _running[j] = false; mask[j] = 0f; }
                be.Upload(Running, mask);
                AllRunning = false;
                return this;
            }
            var keep = Enumerable.Range(0, Chunk.Length).Where(j => !stop.Contains(j)).ToArray();
            Finish(); // every row's best so far back to the chunk (the kept rows' too: the new batch gathers them)
            var next = new Rows(_chunk, _s, keep.Select(j => Chunk[j]).ToArray(), keep.Select(j => Pos[j]).ToArray(), false);
            var ident = Identity(keep.Length);
            foreach (var (src, dst) in new[] { (W, next.W), (M, next.M), (V, next.V), (T, next.T), (Diff, next.Diff), (AnySucc, next.AnySucc), (CT, next.CT) })
                CopyRows(be, src, keep, dst, ident);
            next.Dx = be.Allocate(B.Shape(keep.Length));
            CopyRows(be, dx, keep, next.Dx, ident);
            return next;
        }

        /// <summary>Writes every row's best L2, best image, success flag and gradient count back to the chunk.</summary>
        public void Finish()
        {
            var be = B.Be; int n = Chunk.Length;
            if (n == 0) return;
            CopyRows(be, BestL2, Identity(n), _s.BestL2, Chunk);
            CopyRows(be, B.Adv, Identity(n), _chunk.Adv, Chunk);
            var ok = AnySucc.ToArray();
            for (int j = 0; j < n; j++)
            {
                if (ok[j] > 0.5f) _s.AnySucc[Chunk[j]] = true;
                _chunk.Gradients[Chunk[j]] += B.Gradients[j];
                B.Gradients[j] = 0;
            }
        }

        static int[] Identity(int n) => Enumerable.Range(0, n).ToArray();

        /// <summary>dst row dr[i] = src row sr[i] for tensors viewed as [rows, -1] (consecutive runs copied at once).</summary>
        static void CopyRows(IBackend be, Tensor src, int[] sr, Tensor dst, int[] dr)
        {
            if (sr.Length == 0) return;
            var s = src.Reshape(src.N, -1); var t = dst.Reshape(dst.N, -1);
            for (int i = 0; i < sr.Length;)
            {
                int len = 1;
                while (i + len < sr.Length && sr[i + len] == sr[i] + len && dr[i + len] == dr[i] + len) len++;
                be.Copy(s.Slice(sr[i], len), t.Slice(dr[i], len));
                i += len;
            }
        }

        public void Dispose()
        {
            foreach (var t in new[] { W, M, V, T, Xp, Diff, G, Scratch, CT, Succ, L2, Better, BestL2, AnySucc, Running, Dx }) t?.Dispose();
            B.Dispose();
        }
    }
}
