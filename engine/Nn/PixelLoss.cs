namespace Perturb.Engine.Nn;

/// <summary>Segmentation losses: per-pixel cross-entropy, soft Dice, or their sum.</summary>
public enum SegLossKind { CrossEntropy, Dice, CeDice }

public static class SegLossKinds
{
    public const string Help = "ce (per-pixel cross-entropy), dice (soft Dice) or ce+dice (their sum)";

    public static SegLossKind Parse(string s) => s.Trim().ToLowerInvariant() switch
    {
        "ce" or "cross-entropy" => SegLossKind.CrossEntropy,
        "dice" => SegLossKind.Dice,
        "ce+dice" or "dice+ce" => SegLossKind.CeDice,
        _ => throw new PerturbException($"--loss: unknown segmentation loss '{s}' (choose {Help})", 2),
    };

    public static string Name(SegLossKind k) => k switch { SegLossKind.CrossEntropy => "ce", SegLossKind.Dice => "dice", _ => "ce+dice" };
}

/// <summary>
/// Per-sample segmentation losses of logits [N, K, H, W] against a class per pixel [N, H, W], and their gradient
/// w.r.t. the logits, composed from backend ops (no op of its own). With P = H*W pixels, v_j the weight of pixel j
/// (1, or 0 for the ignore label and for pixels a caller switches off with <see cref="SetPixelWeights"/>) and
/// p = softmax over the K classes at each pixel:
/// <list type="bullet">
/// <item>cross-entropy: L_n = sum_j v_j ce_j / sum_j v_j, ce_j = logsumexp(z_j) - z_j[label_j] (0 when no pixel counts);</item>
/// <item>soft Dice: L_n = 1 - (1/K) sum_c D_c, D_c = (2 I_c + 1) / (P_c + G_c + 1), I_c = sum_j v_j p_cj g_cj,
/// P_c = sum_j v_j p_cj, G_c = sum_j v_j g_cj (g the one-hot target; every class, background included);</item>
/// <item>ce+dice: their sum.</item>
/// </list>
/// The gradient of sample n is multiplied by rowScale[n] (1/N for a batch mean; +1 or -1 per row to ascend or descend).
/// The softmax and cross-entropy ops work on rows of K values, so the logits are moved to channels-last [N, P, K]
/// and back by one small GEMM per sample with the K x K identity. Everything stays on the device except the 2 N K
/// Dice sums, which the host turns into the Dice gradient's per-class coefficients.
/// </summary>
public sealed class PixelLoss : IDisposable
{
    public IBackend Be { get; }
    public int N { get; }
    public int K { get; }
    public int P { get; }
    /// <summary>Per-sample loss [N] of the last <see cref="Compute"/>.</summary>
    public Tensor Loss { get; }
    /// <summary>dLoss/dlogits [N, K, H, W] of the last <see cref="Compute"/> with a gradient.</summary>
    public Tensor Grad { get; }

    readonly int _ignore;
    readonly int[] _target;
    float[] _rowScale;
    float[] _v;                 // pixel weights [N*P]
    readonly Tensor _eye, _zl, _pl, _gradL, _ceLoss, _labels, _ceScale, _ceWeight, _oneHot, _vk, _p, _tmp, _sums;

    /// <param name="target">Class per pixel [N*H*W]: each in [0, k) or <paramref name="ignore"/>.</param>
    /// <param name="rowScale">Gradient multiplier per sample (length N).</param>
    public PixelLoss(IBackend be, int n, int k, int h, int w, int[] target, float[] rowScale, int ignore = -1)
    {
        if (k < 2) throw new PerturbException($"a segmentation loss needs at least 2 classes, got {k}");
        Be = be; N = n; K = k; P = h * w; _ignore = ignore;
        if (target.Length != (long)n * P) throw new PerturbException($"segmentation loss: {n} masks of {h}x{w} need {(long)n * P} values, got {target.Length}");
        if (rowScale.Length != n) throw new PerturbException($"segmentation loss: {n} row scales needed, got {rowScale.Length}");
        for (int i = 0; i < target.Length; i++)
            if ((target[i] < 0 || target[i] >= k) && target[i] != ignore)
                throw new PerturbException($"segmentation loss: mask value {target[i]} of sample {i / P} is outside the model's {k} classes");
        _target = (int[])target.Clone();
        _rowScale = (float[])rowScale.Clone();
        var eye = new float[k * k];
        for (int i = 0; i < k; i++) eye[i * k + i] = 1f;
        _eye = be.FromArray(eye, k, k);
        _zl = be.Allocate(n * P, k);
        _pl = be.Allocate(n * P, k);
        _gradL = be.Allocate(n * P, k);
        _ceLoss = be.Allocate(n * P);
        _labels = be.FromArray(_target.Select(t => t == ignore ? 0f : t).ToArray(), n * P);
        _ceScale = be.Allocate(n * P);
        _ceWeight = be.Allocate(n * P);
        var oh = new float[(long)n * k * P];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < P; j++)
            {
                int t = _target[i * P + j];
                if (t != ignore) oh[((long)i * k + t) * P + j] = 1f;
            }
        _oneHot = be.FromArray(oh, n, k, P);
        _vk = be.Allocate(n, k, P);
        _p = be.Allocate(n, k, P);
        _tmp = be.Allocate(n, k, P);
        _sums = be.Allocate(n * k);
        Loss = be.Allocate(n);
        Grad = be.Allocate(n, k, h, w);
        _v = _target.Select(t => t == ignore ? 0f : 1f).ToArray();
        UploadWeights();
    }

    /// <summary>Replaces the per-sample gradient multipliers.</summary>
    public void SetRowScale(float[] rowScale)
    {
        if (rowScale.Length != N) throw new ArgumentException($"{N} row scales needed, got {rowScale.Length}");
        _rowScale = (float[])rowScale.Clone();
        UploadWeights();
    }

    /// <summary>
    /// Per-pixel weights [N*P] (host): a pixel counts with its weight (0 switches it off); ignore-label pixels stay off.
    /// DAG and ASMA use it to keep only the pixels not yet at their target.
    /// </summary>
    public void SetPixelWeights(float[] weights)
    {
        if (weights.Length != _v.Length) throw new ArgumentException($"{_v.Length} pixel weights needed, got {weights.Length}");
        for (int i = 0; i < weights.Length; i++) _v[i] = _target[i] == _ignore ? 0f : weights[i];
        UploadWeights();
    }

    void UploadWeights()
    {
        var w = new float[_v.Length]; var s = new float[_v.Length];
        var vk = new float[(long)N * K * P];
        for (int i = 0; i < N; i++)
        {
            double tot = 0;
            for (int j = 0; j < P; j++) tot += _v[i * P + j];
            for (int j = 0; j < P; j++)
            {
                float vj = _v[i * P + j];
                w[i * P + j] = tot > 0 ? (float)(vj / tot) : 0f;
                s[i * P + j] = w[i * P + j] * _rowScale[i];
                for (int c = 0; c < K; c++) vk[((long)i * K + c) * P + j] = vj;
            }
        }
        Be.Upload(_ceWeight, w);
        Be.Upload(_ceScale, s);
        Be.Upload(_vk, vk);
    }

    /// <summary>Per-sample loss into <see cref="Loss"/> and, when <paramref name="withGrad"/>, dLoss/dlogits into <see cref="Grad"/>.</summary>
    public void Compute(Tensor logits, SegLossKind kind, bool withGrad = true)
    {
        if (logits.Length != (long)N * K * P)
            throw new PerturbException($"segmentation loss: logits {Tensor.ShapeString(logits.Shape)} do not match {N} samples of {K} classes x {P} pixels");
        ToChannelsLast(logits, _zl);
        bool ce = kind != SegLossKind.Dice, dice = kind != SegLossKind.CrossEntropy;
        if (ce)
        {
            Be.CrossEntropy(_zl, _labels, _ceLoss, withGrad ? _gradL : null, _ceScale, N * P, K);
            Be.Mul(_ceLoss, _ceWeight, _ceLoss);
            Be.ReduceRows(Reduction.Sum, _ceLoss, Loss, N, P);
            if (withGrad) ToChannelsFirst(_gradL, Grad);
        }
        if (!dice) return;
        Be.Softmax(_zl, _pl, N * P, K);
        ToChannelsFirst(_pl, _p);
        // P_c = sum_j v p and I_c = sum_j v p g, per (sample, class).
        Be.Mul(_p, _vk, _tmp);
        Be.ReduceRows(Reduction.Sum, _tmp, _sums, N * K, P);
        var pc = _sums.ToArray();
        Be.Mul(_tmp, _oneHot, _tmp);
        Be.ReduceRows(Reduction.Sum, _tmp, _sums, N * K, P);
        var ic = _sums.ToArray();
        Be.Mul(_oneHot, _vk, _tmp);
        Be.ReduceRows(Reduction.Sum, _tmp, _sums, N * K, P);
        var gc = _sums.ToArray();
        var loss = new float[N];
        var a = new float[N * K]; var b = new float[N * K];
        for (int i = 0; i < N; i++)
        {
            double dsum = 0;
            for (int c = 0; c < K; c++)
            {
                int q = i * K + c;
                double s = (double)pc[q] + gc[q] + 1, num = 2.0 * ic[q] + 1;
                dsum += num / s;
                // dL/dp_cj = v_j (a_c g_cj + b_c), times the row scale.
                a[q] = (float)(-2.0 / (K * s) * _rowScale[i]);
                b[q] = (float)(num / (K * s * s) * _rowScale[i]);
            }
            loss[i] = (float)(1 - dsum / K);
        }
        if (ce)
        {
            var l = Loss.ToArray();
            for (int i = 0; i < N; i++) loss[i] += l[i];
        }
        Be.Upload(Loss, loss);
        if (!withGrad) return;
        using var at = Be.FromArray(a, N * K);
        using var bt = Be.FromArray(b, N * K);
        Be.ChannelAffine(_oneHot, at, bt, _tmp, 1, N * K, P);
        Be.Mul(_tmp, _vk, _tmp);
        // Back through the softmax, in channels-last rows.
        ToChannelsLast(_tmp, _zl);
        Be.SoftmaxBackward(_pl, _zl, _gradL, N * P, K);
        if (ce)
        {
            ToChannelsFirst(_gradL, _tmp);
            Be.Add(Grad, _tmp, Grad);
        }
        else ToChannelsFirst(_gradL, Grad);
    }

    /// <summary>dst[n, j, c] = src[n, c, j]: per sample, [P x K] = ([K x P])^T times the K x K identity.</summary>
    void ToChannelsLast(Tensor src, Tensor dst)
    {
        var s = src.Reshape(N, K * P); var d = dst.Reshape(N, P * K);
        for (int i = 0; i < N; i++) Be.Gemm(true, false, P, K, K, 1f, s.Slice(i, 1), _eye, 0f, d.Slice(i, 1));
    }

    /// <summary>dst[n, c, j] = src[n, j, c]: per sample, [K x P] = identity times ([P x K])^T.</summary>
    void ToChannelsFirst(Tensor src, Tensor dst)
    {
        var s = src.Reshape(N, P * K); var d = dst.Reshape(N, K * P);
        for (int i = 0; i < N; i++) Be.Gemm(false, true, K, P, K, 1f, _eye, s.Slice(i, 1), 0f, d.Slice(i, 1));
    }

    public void Dispose()
    {
        foreach (var t in new[] { _eye, _zl, _pl, _gradL, _ceLoss, _labels, _ceScale, _ceWeight, _oneHot, _vk, _p, _tmp, _sums, Loss, Grad }) t.Dispose();
    }
}
