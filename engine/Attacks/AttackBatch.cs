using Perturb.Engine.Nn;

namespace Perturb.Engine.Attacks;

/// <summary>
/// One chunk of attack rows on the device: the rows are (sample, epsilon) pairs, so a list of E epsilons over N
/// samples runs as N x E rows with per-row step and budget tensors. It owns the device buffers an attack step needs
/// and the small device-side helpers (loss gradients, success masks, per-row broadcasts, per-row random streams).
/// Every helper is per row, so a row's result does not depend on which other rows share the chunk.
/// </summary>
public sealed class AttackBatch : IDisposable
{
    public Model Model { get; }
    public IBackend Be { get; }
    /// <summary>Rows in this chunk and values per row (C*H*W).</summary>
    public int Rows { get; }
    public int Cols { get; }
    public int[] SampleShape { get; }
    /// <summary>Model outputs (1 for a sigmoid binary model) and the class count (2 for such a model).</summary>
    public int Outputs { get; }
    public int Classes { get; }
    public bool Targeted { get; }
    /// <summary>The run's seed (the Philox key of every random stream).</summary>
    public ulong Seed { get; }

    /// <summary>Original index (in the run's input) of each row's sample, and the row's epsilon index and value (NaN: no budget).</summary>
    public int[] SampleIndex { get; }
    public int[] EpsIndex { get; }
    public float[] Eps { get; }
    public int[] TrueLabels { get; }
    /// <summary>The label each row's loss uses: the true label (untargeted) or the target.</summary>
    public int[] LossLabels { get; }
    /// <summary>The clean logits of each row's sample (host, Rows x Outputs).</summary>
    public float[] CleanLogits { get; }

    /// <summary>Clean images [Rows, C, H, W]; never written.</summary>
    public Tensor X0 { get; }
    /// <summary>The adversarial images; starts as a copy of X0, the attack leaves its answer here.</summary>
    public Tensor Adv { get; }
    /// <summary>Per-row budget (null for budget-free runs).</summary>
    public Tensor? EpsT { get; }
    /// <summary>LossLabels on the device.</summary>
    public Tensor Labels { get; }
    /// <summary>+1 per row for untargeted runs (ascend the loss of the true class), -1 for targeted (descend toward the target).</summary>
    public Tensor Direction { get; }
    /// <summary>Per-row count of steps taken; attacks add their "still running" mask to it each step.</summary>
    public Tensor StepCount { get; }
    /// <summary>Host step counts; when an attack sets this, it replaces <see cref="StepCount"/>.</summary>
    public int[]? StepsHost { get; set; }
    /// <summary>Gradient (forward + input backward) evaluations per row, counted on the host.</summary>
    public long[] Gradients { get; }

    readonly Tensor _dlogits, _loss, _ones;
    readonly Tensor? _pair, _pairGrad;
    readonly Dictionary<float, Tensor> _consts = new();
    Tensor? _trueLabels;

    internal AttackBatch(Model model, int[] sampleIndex, int[] epsIndex, float[] eps, int[] trueLabels, int[]? targets,
        float[] x0Host, float[] cleanLogits, ulong seed)
    {
        Model = model; Be = model.Backend; Seed = seed;
        SampleShape = model.InputShape;
        Rows = sampleIndex.Length; Cols = Layer.Product(SampleShape);
        Outputs = model.NumOutputs; Classes = model.NumClasses;
        SampleIndex = sampleIndex; EpsIndex = epsIndex; Eps = eps; TrueLabels = trueLabels;
        Targeted = targets != null; LossLabels = targets ?? trueLabels; CleanLogits = cleanLogits;
        var shape = Shape(Rows);
        X0 = Be.FromArray(x0Host, shape);
        Adv = Be.Allocate(shape);
        Be.Copy(X0, Adv);
        EpsT = float.IsNaN(eps.Length > 0 ? eps[0] : float.NaN) ? null : Be.FromArray(eps, Rows);
        Labels = Be.FromArray(LossLabels.Select(v => (float)v).ToArray(), Rows);
        Direction = Be.Allocate(Rows); Be.Fill(Direction, Targeted ? -1f : 1f);
        StepCount = Be.Allocate(Rows);
        Gradients = new long[Rows];
        _dlogits = Be.Allocate(Rows, Outputs);
        _loss = Be.Allocate(Rows);
        _ones = Be.Allocate(Rows); Be.Fill(_ones, 1f);
        if (Outputs == 1) { _pair = Be.Allocate(Rows, 2); _pairGrad = Be.Allocate(Rows, 2); }
    }

    /// <summary>The batch shape for n rows: [n, C, H, W].</summary>
    public int[] Shape(int n) => new[] { n }.Concat(SampleShape).ToArray();

    /// <summary>Adds k gradient evaluations to every row's count.</summary>
    public void CountGradients(long k = 1) { for (int i = 0; i < Rows; i++) Gradients[i] += k; }

    // ------------------------------------------------------------------ losses and gradients

    /// <summary>The logits of the last <see cref="Forward"/> or <see cref="Gradient"/> (owned by the model).</summary>
    public Tensor? Logits { get; private set; }

    public Tensor Forward(Tensor x) { Logits = Model.Forward(x); return Logits; }

    /// <summary>
    /// Forward, per-row loss gradient w.r.t. the logits (scaled per row by <paramref name="gradScale"/>), and the
    /// input-only backward. Cross-entropy is BCE for one-output models; the CW margin uses the (0, z) pair there. With
    /// the CW margin the per-row loss is minimised to attack, so pass a positive scale to descend it with a negative step,
    /// or a negative scale to use it as an ascent direction. Returns dLoss/dx (owned by the model until its next pass);
    /// the per-row loss is in <see cref="Loss"/>.
    /// </summary>
    public Tensor Gradient(Tensor x, LossKind kind, Tensor gradScale, float kappa = 0f)
    {
        var z = Forward(x);
        LossInto(z, kind, gradScale, kappa, _dlogits);
        CountGradients();
        return Model.Backward(_dlogits, BackwardMode.InputOnly)!;
    }

    /// <summary>Per-row targets of the targeted DLR loss (APGD-T sets one target class per round); null: the goal's.</summary>
    public Tensor? DlrTargets { get; set; }

    /// <summary>Per-row loss of the last gradient or margin computation.</summary>
    public Tensor Loss => _loss;

    void LossInto(Tensor z, LossKind kind, Tensor gradScale, float kappa, Tensor? dlogits)
    {
        if (kind == LossKind.CrossEntropy)
        {
            if (Outputs == 1) Be.BceWithLogits(z, Labels, _loss, dlogits, gradScale, Rows);
            else Be.CrossEntropy(z, Labels, _loss, dlogits, gradScale, Rows, Outputs);
            return;
        }
        if (kind == LossKind.Dlr)
        {
            // DLR is maximised to attack; targeted toward DlrTargets (APGD-T's round) or the goal's targets.
            _trueLabels ??= Be.FromArray(TrueLabels.Select(v => (float)v).ToArray(), Rows);
            var tgt = DlrTargets ?? (Targeted ? Labels : null);
            Losses.DlrInto(Be, z, _trueLabels, tgt ?? _trueLabels, _loss, dlogits, gradScale, tgt != null, Rows, Outputs, _pair, _pairGrad);
            return;
        }
        Losses.CwMarginInto(Be, z, Labels, _loss, dlogits, gradScale, Targeted, kappa, Rows, Outputs, _pair, _pairGrad);
    }

    /// <summary>Per-row cross-entropy of the given logits toward <see cref="Labels"/> into <paramref name="outp"/>.</summary>
    public void CrossEntropyLoss(Tensor logits, Tensor outp)
    {
        LossInto(logits, LossKind.CrossEntropy, _ones, 0f, null);
        Be.Copy(_loss, outp);
    }

    /// <summary>
    /// mask[r] = 1 where the logits already meet the goal (untargeted: the true class is beaten, z_t &lt; max other;
    /// targeted: the target beats every other class) by more than <paramref name="confidence"/>, else 0: 1 exactly where
    /// the CW margin m &lt; -confidence. Built on the device from the sign of the CW margin loss.
    /// </summary>
    public void SuccessMask(Tensor logits, Tensor mask, float confidence = 0f)
    {
        // With clamp level k = 2 conf + tiny, loss = max(m, -k), and loss + conf &lt; 0 exactly when m &lt; -conf.
        LossInto(logits, LossKind.CwMargin, _ones, 2f * confidence + 1e-30f, null);
        if (confidence == 0f) Be.Sign(_loss, mask);
        else { Affine(_loss, 1f, confidence, mask); Be.Sign(mask, mask); }
        Be.Scale(-1f, mask, mask);
        Be.Clamp(mask, 0f, 1f, mask);
    }

    // ------------------------------------------------------------------ steps

    /// <summary>
    /// One fused step of Adv along <paramref name="grad"/> with per-row step sizes, projected onto the row's eps-ball
    /// around X0 and clamped to [0,1] (sign step for Linf, L2-normalised step for L2).
    /// </summary>
    public void Step(Norm norm, Tensor grad, Tensor step)
    {
        if (EpsT == null) throw new InvalidOperationException("a projected step needs a budget");
        if (norm == Norm.Linf) Be.AttackStepLinf(Adv, X0, grad, step, EpsT, Rows, Cols);
        else Be.AttackStepL2(Adv, X0, grad, step, EpsT, Rows, Cols);
    }

    /// <summary>
    /// Per-row early stop on the device, after a gradient at Adv (b.Logits are Adv's): when <paramref name="early"/>,
    /// running[r] *= 1 - success[r] (a sample that meets the goal stops for good) and the returned step is
    /// stepEff = step * running; otherwise the step itself. Adds running to <see cref="StepCount"/>.
    /// </summary>
    public Tensor RunningStep(bool early, Tensor step, Tensor running, Tensor mask, Tensor stepEff)
    {
        var use = step;
        if (early)
        {
            SuccessMask(Logits!, mask);
            Affine(mask, -1f, 1f, mask);
            Be.Mul(running, mask, running);
            Be.Mul(step, running, stepEff);
            use = stepEff;
        }
        Be.Add(StepCount, running, StepCount);
        return use;
    }

    /// <summary>
    /// Sets Adv to a random point of each row's eps-ball around X0 (clamped to [0,1]): Linf uniform in the box; L2 a
    /// Gaussian direction at radius eps*u, u uniform in [0,1). Streams per row from <see cref="StreamOffset"/>.
    /// </summary>
    public void RandomStart(Norm norm, ulong purpose, Tensor noise)
    {
        if (EpsT == null) throw new InvalidOperationException("a random start needs a budget");
        if (norm == Norm.Linf)
        {
            UniformRows(noise, purpose);
            using var s = Be.Allocate(Rows); using var t = Be.Allocate(Rows);
            Be.Scale(2f, EpsT, s); Be.Scale(-1f, EpsT, t);
            AffineRows(noise, s, t, noise);
            Be.Add(X0, noise, Adv);
            Be.Clamp(Adv, 0f, 1f, Adv);
        }
        else
        {
            NormalRows(noise, purpose);
            using var radius = Be.Allocate(Rows);
            UniformRows(radius, purpose ^ 0x5555555555555555UL);
            Be.Mul(radius, EpsT, radius);
            Be.Copy(X0, Adv);
            Be.AttackStepL2(Adv, X0, noise, radius, EpsT, Rows, Cols);
        }
    }

    // ------------------------------------------------------------------ small device helpers

    /// <summary>A one-element tensor holding v (cached).</summary>
    public Tensor Const(float v)
    {
        if (!_consts.TryGetValue(v, out var t)) { t = Be.Allocate(1); Be.Fill(t, v); _consts[v] = t; }
        return t;
    }

    /// <summary>y = a * x + b elementwise (ChannelAffine with one channel). In place allowed.</summary>
    public void Affine(Tensor x, float a, float b, Tensor y) => Be.ChannelAffine(x, Const(a), Const(b), y, 1, 1, x.Length);

    /// <summary>y[r, :] = x[r, :] * s[r] for x viewed as [Rows, -1]. In place allowed.</summary>
    public void ScaleRows(Tensor x, Tensor s, Tensor y) => Be.MulRows(x, s, y, Rows, x.Length / Rows);

    /// <summary>y[r, :] = x[r, :] * s[r] + t[r]. In place allowed.</summary>
    public void AffineRows(Tensor x, Tensor s, Tensor t, Tensor y) => Be.ChannelAffine(x, s, t, y, 1, Rows, x.Length / Rows);

    /// <summary>
    /// Keep-best: dst[r, :] = src[r, :] where m[r] != 0, else unchanged, for rows of length dst.Length / Rows. A select
    /// (IBackend.Where), so it is exact for any values: a best-so-far of 1e10 is replaced by the candidate itself.
    /// </summary>
    public void SelectRows(Tensor dst, Tensor src, Tensor m) => Be.Where(m, src, dst, dst, Rows, dst.Length / Rows);

    /// <summary>A [Rows] tensor of ones (never written).</summary>
    public Tensor Ones => _ones;

    // ------------------------------------------------------------------ random streams

    /// <summary>
    /// The Philox counter offset of a per-row random stream: a hash of the row's original sample index, its epsilon
    /// value (bits), and a purpose tag (restart, step, ...), aligned to 2^32 so streams never overlap. It does not
    /// depend on the chunk layout or on the epsilon's position in the list, so a list run equals single-epsilon runs.
    /// </summary>
    public ulong StreamOffset(int row, ulong purpose)
    {
        ulong h = Mix(0x243F6A8885A308D3UL ^ (ulong)SampleIndex[row]);
        float e = Eps[row];
        h = Mix(h ^ (float.IsNaN(e) ? 0xFFFFFFFFUL : BitConverter.SingleToUInt32Bits(e)));
        h = Mix(h ^ purpose);
        return h & 0xFFFFFFFF00000000UL;
    }

    static ulong Mix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Fills each row of t (viewed as [Rows, -1]) with uniform [0,1) values from the row's own stream.</summary>
    public void UniformRows(Tensor t, ulong purpose)
    {
        var v = t.Reshape(Rows, t.Length / Rows);
        for (int r = 0; r < Rows; r++) Be.RandomUniform(v.Slice(r, 1), Seed, StreamOffset(r, purpose));
    }

    /// <summary>Fills each row of t with standard normal values from the row's own stream.</summary>
    public void NormalRows(Tensor t, ulong purpose, float std = 1f)
    {
        var v = t.Reshape(Rows, t.Length / Rows);
        for (int r = 0; r < Rows; r++) Be.RandomNormal(v.Slice(r, 1), Seed, StreamOffset(r, purpose), 0f, std);
    }

    public void Dispose()
    {
        foreach (var t in new[] { X0, Adv, EpsT, Labels, Direction, StepCount, _dlogits, _loss, _ones, _pair, _pairGrad, _trueLabels })
            t?.Dispose();
        foreach (var t in _consts.Values) t.Dispose();
        _consts.Clear();
    }
}
