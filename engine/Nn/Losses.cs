namespace Perturb.Engine.Nn;

/// <summary>Attack losses: cross-entropy (BCE for one output), the CW margin, and the DLR ratio (Croce and Hein 2020).</summary>
public enum LossKind { CrossEntropy, CwMargin, Dlr }

/// <summary>The result of a loss on a batch: per-sample losses and dLoss/dLogits, both on the device.</summary>
public sealed class LossResult : IDisposable
{
    public Tensor PerSample { get; }
    public Tensor? Grad { get; }
    public LossResult(Tensor perSample, Tensor? grad) { PerSample = perSample; Grad = grad; }
    /// <summary>Mean of the per-sample losses (copies N floats to the host).</summary>
    public double Mean() { var a = PerSample.ToArray(); return a.Length == 0 ? 0 : a.Average(v => (double)v); }
    public void Dispose() { PerSample.Dispose(); Grad?.Dispose(); }
}

/// <summary>
/// Losses over a model's logits. For a model with one output, cross-entropy is binary cross-entropy with logits,
/// and the CW margin uses the logit pair (0, z), so a single-logit model is a two-class classifier everywhere.
/// </summary>
public static class Losses
{
    /// <summary>
    /// Cross-entropy (BCE with logits for one-output models) per sample. gradScale multiplies each sample's gradient:
    /// 1/N for the mean loss, 1 for per-sample gradients.
    /// </summary>
    public static LossResult CrossEntropy(IBackend be, Tensor logits, Tensor labels, float gradScale, bool withGrad = true)
    {
        int n = logits.N, k = logits.PerSample;
        using var scale = be.Allocate(n);
        be.Fill(scale, gradScale);
        return CrossEntropy(be, logits, labels, scale, withGrad);
    }

    public static LossResult CrossEntropy(IBackend be, Tensor logits, Tensor labels, Tensor gradScale, bool withGrad = true)
    {
        int n = logits.N, k = logits.PerSample;
        var loss = be.Allocate(n);
        var grad = withGrad ? be.Allocate(logits.Shape) : null;
        if (k == 1) be.BceWithLogits(logits, labels, loss, grad, gradScale, n);
        else be.CrossEntropy(logits, labels, loss, grad, gradScale, n, k);
        return new LossResult(loss, grad);
    }

    /// <summary>Carlini-Wagner margin loss (minimise to attack). One-output models use logits (0, z).</summary>
    public static LossResult CwMargin(IBackend be, Tensor logits, Tensor labels, Tensor gradScale, bool targeted, float kappa, bool withGrad = true)
    {
        int n = logits.N, k = logits.PerSample;
        var loss = be.Allocate(n);
        var grad = withGrad ? be.Allocate(logits.Shape) : null;
        using var pair = k == 1 ? be.Allocate(n, 2) : null;
        using var pairGrad = k == 1 && withGrad ? be.Allocate(n, 2) : null;
        CwMarginInto(be, logits, labels, loss, grad, gradScale, targeted, kappa, n, k, pair, pairGrad);
        return new LossResult(loss, grad);
    }

    /// <summary>
    /// The CW margin of logits [n, k] into <paramref name="loss"/> (and dLoss/dlogits into <paramref name="grad"/>
    /// when given). A one-output model's logits become the pair (0, z) in <paramref name="pair"/> ([n, 2]; its column
    /// 0 must be zero, as allocated: only column 1 is written), and the gradient of z is read back from <paramref name="pairGrad"/>: the one place that pairing is
    /// built on the device. The pair buffers (needed only when k == 1) let an attack step reuse them.
    /// </summary>
    public static void CwMarginInto(IBackend be, Tensor logits, Tensor labels, Tensor loss, Tensor? grad, Tensor gradScale,
        bool targeted, float kappa, int n, int k, Tensor? pair, Tensor? pairGrad) =>
        Paired(be, logits, grad, n, k, pair, pairGrad, "cw margin",
            (z, g, cols) => be.CwMarginLoss(z, labels, loss, g, gradScale, targeted, kappa, n, cols));

    /// <summary>The DLR loss (<see cref="IBackend.DlrLoss"/>) of logits [n, k], with the (0, z) pairing of <see cref="CwMarginInto"/>.</summary>
    public static void DlrInto(IBackend be, Tensor logits, Tensor labels, Tensor targets, Tensor loss, Tensor? grad, Tensor gradScale,
        bool targeted, int n, int k, Tensor? pair, Tensor? pairGrad) =>
        Paired(be, logits, grad, n, k, pair, pairGrad, "dlr",
            (z, g, cols) => be.DlrLoss(z, labels, targets, loss, g, gradScale, targeted, n, cols));

    /// <summary>Runs a class-logit loss on logits [n, k], or on the pair (0, z) of a one-output model, reading z's gradient back.</summary>
    static void Paired(IBackend be, Tensor logits, Tensor? grad, int n, int k, Tensor? pair, Tensor? pairGrad, string what,
        Action<Tensor, Tensor?, int> loss)
    {
        if (k != 1) { loss(logits, grad, k); return; }
        if (pair is null || (grad is not null && pairGrad is null))
            throw new ArgumentException($"{what} of a one-output model needs the (0, z) pair buffers");
        be.ChannelCopy(logits, 1, 0, pair, 2, 1, 1, n, 1, false);
        loss(pair, grad is null ? null : pairGrad, 2);
        if (grad is not null) be.ChannelCopy(pairGrad!, 2, 1, grad, 1, 0, 1, n, 1, false);
    }

    /// <summary>Index of the first maximum of a logit row on the host (as IBackend.ArgmaxRows): the one host argmax.</summary>
    public static int Argmax(ReadOnlySpan<float> z)
    {
        int b = 0;
        for (int j = 1; j < z.Length; j++) if (z[j] > z[b]) b = j;
        return b;
    }

    /// <summary>
    /// Writes the class logits of row <paramref name="r"/> of host logits [n, k] into <paramref name="dst"/> (length
    /// max(k, 2)): the row itself, or the pair (0, z) for a one-output model, so a single-logit model reads as two
    /// classes. The one place that pairing is written on the host.
    /// </summary>
    public static void ClassLogits(ReadOnlySpan<float> logits, int r, int k, Span<float> dst)
    {
        if (k == 1) { dst[0] = 0f; dst[1] = logits[r]; }
        else logits.Slice(r * k, k).CopyTo(dst);
    }

    /// <summary>The class logits of row r as a new array (see <see cref="ClassLogits(ReadOnlySpan{float}, int, int, Span{float})"/>).</summary>
    public static float[] ClassLogits(ReadOnlySpan<float> logits, int r, int k)
    {
        var z = new float[Math.Max(k, 2)];
        ClassLogits(logits, r, k, z);
        return z;
    }

    /// <summary>The largest logit of z other than class c (the other side of the CW margin), on the host; NaN propagates.</summary>
    public static float MaxOther(ReadOnlySpan<float> z, int c)
    {
        float other = float.NegativeInfinity;
        for (int j = 0; j < z.Length; j++) if (j != c) other = Math.Max(other, z[j]);
        return other;
    }

    /// <summary>Predicted class of row r of host logits [n, k]: the first maximum of its class logits (z &gt; 0 for one output).</summary>
    public static int PredictRow(ReadOnlySpan<float> logits, int r, int k)
    {
        if (k == 1) { Span<float> pair = stackalloc float[2]; ClassLogits(logits, r, k, pair); return Argmax(pair); }
        return Argmax(logits.Slice(r * k, k));
    }

    /// <summary>Predicted class per sample, on the host: argmax of the logits, or z &gt; 0 for one-output models.</summary>
    public static int[] Predict(IBackend be, Tensor logits)
    {
        int n = logits.N, k = logits.PerSample;
        if (k == 1) { var z = logits.ToArray(); return Enumerable.Range(0, n).Select(r => PredictRow(z, r, 1)).ToArray(); }
        using var am = be.Allocate(n);
        be.ArgmaxRows(logits, am, n, k);
        return am.ToArray().Select(v => (int)v).ToArray();
    }

    /// <summary>
    /// The model's class probabilities per sample on the host: as <see cref="Probabilities(IBackend, Tensor)"/>, or the
    /// sigmoid of each logit for a model whose outputs are independent sigmoids (<see cref="Model.IndependentSigmoids"/>).
    /// </summary>
    public static float[][] Probabilities(Model m, Tensor logits)
    {
        if (!m.IndependentSigmoids) return Probabilities(m.Backend, logits);
        int k = logits.PerSample;
        var a = logits.ToArray();
        return Enumerable.Range(0, logits.N).Select(i => a.AsSpan(i * k, k).ToArray().Select(z => 1f / (1f + MathF.Exp(-z))).ToArray()).ToArray();
    }

    /// <summary>Class probabilities per sample on the host: softmax, or (1 - s, s) with s = sigmoid(z) for one output.</summary>
    public static float[][] Probabilities(IBackend be, Tensor logits)
    {
        int n = logits.N, k = logits.PerSample;
        if (k == 1)
            return logits.ToArray().Select(z => { float s = 1f / (1f + MathF.Exp(-z)); return new[] { 1 - s, s }; }).ToArray();
        using var p = be.Allocate(n, k);
        be.Softmax(logits, p, n, k);
        var a = p.ToArray();
        return Enumerable.Range(0, n).Select(i => a.AsSpan(i * k, k).ToArray()).ToArray();
    }
}
