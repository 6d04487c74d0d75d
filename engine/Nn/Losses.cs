namespace Perturb.Engine.Nn;

public enum LossKind { CrossEntropy, CwMargin }

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
        if (k == 1)
        {
            // Two logits (0, z): build them, run the margin loss, and keep the gradient of z.
            using var pair = be.Allocate(n, 2);
            be.ChannelCopy(logits, 1, 0, pair, 2, 1, 1, n, 1, false);
            using var g2 = withGrad ? be.Allocate(n, 2) : null;
            be.CwMarginLoss(pair, labels, loss, g2, gradScale, targeted, kappa, n, 2);
            if (grad != null) be.ChannelCopy(g2!, 2, 1, grad, 1, 0, 1, n, 1, false);
        }
        else be.CwMarginLoss(logits, labels, loss, grad, gradScale, targeted, kappa, n, k);
        return new LossResult(loss, grad);
    }

    /// <summary>Predicted class per sample, on the host: argmax of the logits, or z &gt; 0 for one-output models.</summary>
    public static int[] Predict(IBackend be, Tensor logits)
    {
        int n = logits.N, k = logits.PerSample;
        if (k == 1) return logits.ToArray().Select(z => z > 0 ? 1 : 0).ToArray();
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
