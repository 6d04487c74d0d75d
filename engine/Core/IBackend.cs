namespace Perturb.Engine;

/// <summary>
/// The only place that touches tensor memory or runs arithmetic. Two implementations: <c>CpuBackend</c> (managed SIMD)
/// and <c>IlgpuBackend</c> (ILGPU kernels on CUDA or ILGPU's CPU accelerator). Everything above (layers, losses,
/// optimisers, attacks) is written once against this interface.
///
/// Both derive from <c>Backends.BackendBase</c>, which holds this contract once: every argument check, the op
/// counters and each op's flop formula, before it calls the backend's core method. The two backends therefore accept
/// and reject the same calls, with the same message, and count the same flops.
///
/// Conventions for every op:
/// - All tensors are float32, row-major, and belong to this backend. Sizes are given explicitly where an op could
///   read them several ways; an op checks that each tensor is at least as long as it needs (element-wise ops: that
///   all their tensors have equal length), that sizes are not negative, and throws <see cref="ArgumentException"/>
///   with one line naming the op and the argument otherwise, before any work.
/// - Outputs are overwritten, never accumulated into, unless a parameter says otherwise (GEMM's beta).
/// - An output may not alias an input unless the op says it may ("in place allowed").
/// - Ops are asynchronous on a device; <see cref="ToArray"/> and <see cref="Synchronize"/> wait.
/// - Labels and indices are stored as floats holding small non-negative integers.
/// - Every op calls <c>Counters.Hit(name, flops)</c> once per call with the op name and flops given in its doc
///   comment (n = the output's length unless said otherwise; no flops for copy and fill).
/// </summary>
public partial interface IBackend : IDisposable
{
    /// <summary>"cpu", "ilgpu-cpu" or "cuda".</summary>
    string Name { get; }
    /// <summary>Human-readable device name (CPU model, GPU name).</summary>
    string DeviceName { get; }
    /// <summary>Device memory in bytes (the machine's memory for CPU backends).</summary>
    long MemoryBytes { get; }
    OpCounters Counters { get; }

    // ---------------------------------------------------------------- memory
    /// <summary>A new zero-filled tensor.</summary>
    Tensor Allocate(params int[] shape);
    /// <summary>A new tensor holding a copy of <paramref name="data"/> (data.Length must equal the shape's product).</summary>
    Tensor FromArray(ReadOnlySpan<float> data, params int[] shape);
    /// <summary>Copies the tensor's elements to a new host array (waits for pending work).</summary>
    float[] ToArray(Tensor t);
    /// <summary>Writes host data into the tensor (data.Length == t.Length).</summary>
    void Upload(Tensor t, ReadOnlySpan<float> data);
    /// <summary>dst = src (same length). Op "copy".</summary>
    void Copy(Tensor src, Tensor dst);
    /// <summary>t[i] = value. Op "fill".</summary>
    void Fill(Tensor t, float value);
    /// <summary>Waits until all queued work is done.</summary>
    void Synchronize();
    /// <summary>Releases a tensor's storage (called by Tensor.Dispose).</summary>
    void Free(Tensor t);

    // ---------------------------------------------------------------- GEMM
    /// <summary>
    /// C[m x n] = alpha * op(A) * op(B) + beta * C, all row-major and contiguous. op(A) is A[m x k], or A[k x m]
    /// transposed when transA; op(B) is B[k x n], or B[n x k] transposed when transB. beta == 0 ignores C's old
    /// contents (NaN included). Op "gemm", flops 2*m*n*k.
    /// </summary>
    void Gemm(bool transA, bool transB, int m, int n, int k, float alpha, Tensor a, Tensor b, float beta, Tensor c);

    // ---------------------------------------------------------------- convolution
    /// <summary>
    /// y[N,K,OH,OW] = conv(x[N,C,H,W], w[K,C/G,R,S]) (+ bias[K] when bias is not null). Cross-correlation, as PyTorch.
    /// Op "conv_fwd", flops s.Flops.
    /// </summary>
    void ConvForward(in ConvShape s, Tensor x, Tensor w, Tensor? bias, Tensor y);
    /// <summary>
    /// As the overload above, then y = max(y, 0) when <paramref name="relu"/>: the ReLU applied in the convolution's
    /// epilogue (CpuBackend: in the Winograd output transform and after each sample's GEMM, while y is in cache),
    /// instead of a separate pass. Op "conv_fwd", flops s.Flops (the ReLU is not counted).
    /// </summary>
    void ConvForward(in ConvShape s, Tensor x, Tensor w, Tensor? bias, Tensor y, bool relu);
    /// <summary>dx[N,C,H,W] = gradient of the convolution w.r.t. its input, given dy[N,K,OH,OW]. Op "conv_bwd_data", flops s.Flops.</summary>
    void ConvBackwardData(in ConvShape s, Tensor dy, Tensor w, Tensor dx);
    /// <summary>
    /// dw[K,C/G,R,S] = gradient w.r.t. the weights, given x and dy; dbias[K] = sum of dy over N, OH, OW when dbias
    /// is not null. Op "conv_bwd_weights", flops s.Flops.
    /// </summary>
    void ConvBackwardWeights(in ConvShape s, Tensor x, Tensor dy, Tensor dw, Tensor? dbias);

    // ---------------------------------------------------------------- bias
    /// <summary>y[n, c, i] += bias[c] for y viewed as [outer, channels, inner]. In place. Op "bias_add", flops outer*channels*inner.</summary>
    void BiasAdd(Tensor y, Tensor bias, int outer, int channels, int inner);
    /// <summary>db[c] = sum over n, i of dy[n, c, i] for dy viewed as [outer, channels, inner]. Op "bias_grad", flops outer*channels*inner.</summary>
    void BiasGrad(Tensor dy, Tensor db, int outer, int channels, int inner);

    // ---------------------------------------------------------------- activations
    /// <summary>
    /// y = f(x) elementwise, f one of ReLU, LeakyReLU (slope alpha for x &lt; 0), Sigmoid, Tanh. In place allowed.
    /// Op "act_fwd", flops n.
    /// </summary>
    void ActivationForward(Activation f, float alpha, Tensor x, Tensor y);
    /// <summary>
    /// dx = dy * f'(x). ReLU and LeakyReLU read x (derivative at x == 0 is 0 for ReLU, alpha for LeakyReLU, i.e. the
    /// x &gt; 0 branch is taken only for x &gt; 0); Sigmoid and Tanh read y = f(x) (x may be null for them).
    /// dx may alias dy. Op "act_bwd", flops n.
    /// </summary>
    void ActivationBackward(Activation f, float alpha, Tensor? x, Tensor? y, Tensor dy, Tensor dx);

    // ---------------------------------------------------------------- pooling
    /// <summary>
    /// Max pooling, y[N,C,OH,OW]. Ties: the first maximum in row-major window order wins. Every pooling op requires
    /// 2*pad &lt;= window in each direction (as PyTorch) and a non-empty output. Op "maxpool_fwd"; every pooling op
    /// counts flops N*C*OH*OW*KH*KW.
    /// </summary>
    void MaxPoolForward(in PoolShape s, Tensor x, Tensor y);
    /// <summary>
    /// dx[N,C,H,W] = sum over windows of dy routed to the window's first maximum of x (recomputed from x).
    /// Op "maxpool_bwd".
    /// </summary>
    void MaxPoolBackward(in PoolShape s, Tensor x, Tensor dy, Tensor dx);
    /// <summary>Average pooling, divisor per PoolShape's rules. Op "avgpool_fwd".</summary>
    void AvgPoolForward(in PoolShape s, Tensor x, Tensor y);
    /// <summary>dx = gradient of average pooling. Op "avgpool_bwd".</summary>
    void AvgPoolBackward(in PoolShape s, Tensor dy, Tensor dx);
    /// <summary>y[n, c] = mean over i of x[n, c, i], x viewed as [n, c, hw]. Op "gap_fwd", flops n*c*hw.</summary>
    void GlobalAvgPoolForward(Tensor x, Tensor y, int n, int c, int hw);
    /// <summary>dx[n, c, i] = dy[n, c] / hw. Op "gap_bwd", flops n*c*hw.</summary>
    void GlobalAvgPoolBackward(Tensor dy, Tensor dx, int n, int c, int hw);

    // ---------------------------------------------------------------- batch norm, per-channel affine
    /// <summary>
    /// Training-mode batch norm over x viewed as [n, c, hw]: per channel, mean and biased variance over n*hw values;
    /// y = (x - mean) * invStd * gamma + beta, invStd = 1/sqrt(var + eps). Writes saveMean[c] and saveInvStd[c]
    /// for the backward pass, and updates runningMean = (1-momentum)*runningMean + momentum*mean and
    /// runningVar = (1-momentum)*runningVar + momentum*unbiasedVar (n*hw/(n*hw-1) * var; var itself when n*hw == 1),
    /// as PyTorch. Op "bn_fwd_train", flops 8*n*c*hw.
    /// </summary>
    void BatchNormForwardTrain(Tensor x, Tensor gamma, Tensor beta, Tensor y, Tensor saveMean, Tensor saveInvStd,
        Tensor runningMean, Tensor runningVar, float momentum, float eps, int n, int c, int hw);
    /// <summary>
    /// Backward of training-mode batch norm. dx = gamma*invStd/M * (M*dy - sum(dy) - xhat*sum(dy*xhat)), M = n*hw,
    /// xhat = (x - mean)*invStd. When dgamma and dbeta are not null: dgamma[c] = sum(dy*xhat), dbeta[c] = sum(dy).
    /// Op "bn_bwd", flops 10*n*c*hw.
    /// </summary>
    void BatchNormBackward(Tensor x, Tensor dy, Tensor gamma, Tensor saveMean, Tensor saveInvStd, Tensor dx,
        Tensor? dgamma, Tensor? dbeta, int n, int c, int hw);
    /// <summary>y[n, c, i] = x[n, c, i] * scale[c] + shift[c]. In place allowed. Op "channel_affine", flops 2*n*c*hw.</summary>
    void ChannelAffine(Tensor x, Tensor scale, Tensor shift, Tensor y, int n, int c, int hw);
    /// <summary>
    /// Backward of <see cref="ChannelAffine"/>: dx = dy * scale[c] (dx may alias dy). When dscale/dshift are not
    /// null: dscale[c] = sum(dy * x), dshift[c] = sum(dy) over n and i (x must then be given). Op "channel_affine_bwd", flops 4*n*c*hw.
    /// </summary>
    void ChannelAffineBackward(Tensor dy, Tensor scale, Tensor dx, Tensor? x, Tensor? dscale, Tensor? dshift, int n, int c, int hw);

    // ---------------------------------------------------------------- softmax
    /// <summary>y = softmax(x) along the last dimension of x viewed as [rows, cols]; max-subtracted. In place allowed. Op "softmax", flops 5*rows*cols.</summary>
    void Softmax(Tensor x, Tensor y, int rows, int cols);
    /// <summary>y = log_softmax(x), as above. Op "log_softmax", flops 5*rows*cols.</summary>
    void LogSoftmax(Tensor x, Tensor y, int rows, int cols);
    /// <summary>dx = y * (dy - sum_j(dy_j * y_j)) per row, y = softmax output. Op "softmax_bwd", flops 4*rows*cols.</summary>
    void SoftmaxBackward(Tensor y, Tensor dy, Tensor dx, int rows, int cols);

    // ---------------------------------------------------------------- losses (per sample; the caller reduces)
    /// <summary>
    /// Cross-entropy of logits[rows, cols] against integer labels[rows]: loss[r] = logsumexp(z_r) - z_r[label].
    /// When dlogits is not null: dlogits[r, j] = gradScale[r] * (softmax(z_r)_j - [j == label]), the label's entry
    /// computed as -sum_{j != label} softmax(z_r)_j so that it does not vanish when p_label rounds to 1.
    /// gradScale is per sample (1/rows for a mean loss; +-1 to ascend or descend per sample). Every labels[r] must be an
    /// integer in [0, cols), or the op throws naming the row (this reads the labels on the host, on a device waiting
    /// for queued work, once: a check that passed is remembered until the labels are written). Op "ce_loss", flops 6*rows*cols.
    /// </summary>
    void CrossEntropy(Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, int rows, int cols);
    /// <summary>
    /// Carlini-Wagner margin loss, per sample, with z = logits[r], t = labels[r]:
    /// untargeted (t = true class): loss = max(z_t - max_{j != t} z_j, -kappa);
    /// targeted (t = target class): loss = max(max_{j != t} z_j - z_t, -kappa).
    /// Minimising it attacks. dlogits[r] = gradScale[r] * d loss/d z: zero when the clamp at -kappa is active
    /// (loss == -kappa with the margin strictly below), otherwise +1/-1 at t and at the first arg-max j != t.
    /// Needs cols &gt;= 2; labels checked as for CrossEntropy. Op "cw_loss", flops 2*rows*cols.
    /// </summary>
    void CwMarginLoss(Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, bool targeted, float kappa, int rows, int cols);
    /// <summary>
    /// Binary cross-entropy with logits for one-output models: z = logits[r] (logits is [rows] or [rows, 1]),
    /// y = labels[r] in {0, 1}: loss = max(z, 0) - z*y + log(1 + exp(-|z|)); dlogits[r] = gradScale[r]*(sigmoid(z) - y),
    /// computed as (1 - y) sigmoid(z) - y sigmoid(-z) from exp(-|z|) so that it does not vanish when |z| is large.
    /// Op "bce_loss", flops 8*rows.
    /// </summary>
    void BceWithLogits(Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, int rows);
    /// <summary>
    /// Difference-of-logits-ratio loss (Croce and Hein 2020), per sample, to be maximised to attack; y = labels[r] (the
    /// true class), z_(1) &gt;= z_(2) &gt;= ... the sorted logits:
    /// untargeted: loss = -(z_y - max_{j != y} z_j) / (z_(1) - z_(3) + 1e-12);
    /// targeted (t = targets[r]): loss = -(z_y - z_t) / (z_(1) - (z_(3) + z_(4))/2 + 1e-12).
    /// With fewer classes the denominator uses the deepest sorted logit there is (z_(3) for three classes) and is 1 for
    /// two: there it is the plain margin, which an attack's sign or L2-normalised step does not tell from the ratio.
    /// dlogits[r] = gradScale[r] * d loss/d z. labels (and targets, read only when targeted) must be integers in
    /// [0, cols), or the op throws naming the row. Op "dlr_loss", flops 4*rows*cols.
    /// </summary>
    void DlrLoss(Tensor logits, Tensor labels, Tensor targets, Tensor loss, Tensor? dlogits, Tensor gradScale, bool targeted, int rows, int cols);

    // ---------------------------------------------------------------- element-wise
    /// <summary>y = a + b. y may alias a or b. Op "add", flops n.</summary>
    void Add(Tensor a, Tensor b, Tensor y);
    /// <summary>y = a * b. y may alias a or b. Op "mul", flops n.</summary>
    void Mul(Tensor a, Tensor b, Tensor y);
    /// <summary>y = a / b, IEEE (x/0 = +-inf, 0/0 = NaN). y may alias a or b. Op "div", flops n.</summary>
    void Div(Tensor a, Tensor b, Tensor y);
    /// <summary>y = a &gt; b ? 1 : 0 (0 when either is NaN): a 0/1 mask. y may alias a or b. Op "greater", flops n.</summary>
    void Greater(Tensor a, Tensor b, Tensor y);
    /// <summary>
    /// y = max(a + b, 0) as (a + b) &gt; 0 ? a + b : 0 (0 for NaN): a residual sum and the ReLU after it in one pass
    /// (the folded eval path). y may alias a or b. Op "add_relu", flops 2n.
    /// </summary>
    void AddRelu(Tensor a, Tensor b, Tensor y);
    /// <summary>y = |x| (|-0| = 0, |NaN| is NaN). In place allowed. Op "abs", flops n.</summary>
    void Abs(Tensor x, Tensor y);
    /// <summary>
    /// Select: y[r, c] = m[r] != 0 ? a[r, c] : b[r, c], with a, b, y viewed as [rows, cols] and one mask value per row
    /// (cols = 1 makes it element-wise). The chosen value is copied, not computed, so the select is exact for any
    /// values, NaN and infinities included; a NaN mask value counts as non-zero. y may alias a or b (keep-best:
    /// Where(better, candidate, best, best)). Op "where", flops rows*cols.
    /// </summary>
    void Where(Tensor m, Tensor a, Tensor b, Tensor y, int rows, int cols);
    /// <summary>Per-row broadcast: y[r, c] = x[r, c] * v[r], x and y viewed as [rows, cols] (per-sample scaling). In place allowed. Op "mul_rows", flops rows*cols.</summary>
    void MulRows(Tensor x, Tensor v, Tensor y, int rows, int cols);
    /// <summary>Per-row broadcast: y[r, c] = x[r, c] + v[r]. In place allowed. Op "add_rows", flops rows*cols.</summary>
    void AddRows(Tensor x, Tensor v, Tensor y, int rows, int cols);
    /// <summary>y += alpha * x. Op "axpy", flops 2n.</summary>
    void Axpy(float alpha, Tensor x, Tensor y);
    /// <summary>y = alpha * x. In place allowed. Op "scale", flops n.</summary>
    void Scale(float alpha, Tensor x, Tensor y);
    /// <summary>y = min(max(x, lo), hi). In place allowed. Op "clamp", flops n.</summary>
    void Clamp(Tensor x, float lo, float hi, Tensor y);
    /// <summary>y = sign(x) in {-1, 0, 1}. In place allowed. Op "sign", flops n.</summary>
    void Sign(Tensor x, Tensor y);
    /// <summary>y = a + t * (b - a). y may alias a or b. Op "lerp", flops 3n.</summary>
    void Lerp(Tensor a, Tensor b, float t, Tensor y);
    /// <summary>
    /// Channel copy for Concat and its backward: for each n &lt; outer and channel i &lt; count,
    /// dst[n, dstOff + i, :] (+)= src[n, srcOff + i, :], src viewed as [outer, srcC, inner], dst as [outer, dstC, inner].
    /// Accumulates into dst when accumulate. Op "channel_copy", flops outer*count*inner.
    /// </summary>
    void ChannelCopy(Tensor src, int srcC, int srcOff, Tensor dst, int dstC, int dstOff, int count, int outer, int inner, bool accumulate);

    // ---------------------------------------------------------------- per-sample reductions
    /// <summary>
    /// outp[r] = reduction over x's row r, x viewed as [rows, cols]: Sum, Max, L0 (count of |v| &gt; 0),
    /// L2 (sqrt of sum of squares), Linf (max |v|). Op "reduce", flops rows*cols.
    /// </summary>
    void ReduceRows(Reduction kind, Tensor x, Tensor outp, int rows, int cols);
    /// <summary>outp[r] = index of the first maximum of row r, as a float. Op "argmax", flops rows*cols.</summary>
    void ArgmaxRows(Tensor x, Tensor outp, int rows, int cols);

    // ---------------------------------------------------------------- random (Philox4x32-10)
    /// <summary>
    /// t[i] = uniform in [0, 1) from Philox4x32-10 with key (lo32(seed), hi32(seed)) and counter
    /// (lo32(offset + i), hi32(offset + i), 0, 0): the first output word w0, as (w0 &gt;&gt; 8) * 2^-24.
    /// Bit-identical on every backend. Op "rand_uniform", flops n.
    /// </summary>
    void RandomUniform(Tensor t, ulong seed, ulong offset);
    /// <summary>
    /// t[i] = mean + std * N(0,1), Box-Muller on the same counter as RandomUniform: u1 = ((w0 &gt;&gt; 8) + 1) * 2^-24,
    /// u2 = (w1 &gt;&gt; 8) * 2^-24, z = sqrt(-2 ln u1) * cos(2 pi u2). Op "rand_normal", flops n.
    /// </summary>
    void RandomNormal(Tensor t, ulong seed, ulong offset, float mean = 0f, float std = 1f);
    /// <summary>
    /// Inverted dropout: mask[i] = u_i &gt;= p ? 1/(1-p) : 0 with u_i as in RandomUniform(seed, offset); y = x * mask.
    /// p must be in [0, 1]. Op "dropout", flops n.
    /// </summary>
    void DropoutForward(Tensor x, Tensor y, Tensor mask, float p, ulong seed, ulong offset);

    // ---------------------------------------------------------------- optimisers (in place on w and state)
    /// <summary>
    /// SGD with momentum, PyTorch's rule: g' = g + weightDecay*w; v = momentum*v + g' (v = g' when momentum == 0);
    /// w -= lr * (nesterov ? g' + momentum*v : v). Op "sgd", flops 5n.
    /// </summary>
    void SgdUpdate(Tensor w, Tensor g, Tensor v, float lr, float momentum, float weightDecay, bool nesterov);
    /// <summary>
    /// Adam, PyTorch's rule (L2 weight decay added to the gradient): g' = g + wd*w; m = b1*m + (1-b1)*g';
    /// v = b2*v + (1-b2)*g'^2; w -= lr * (m / (1-b1^step)) / (sqrt(v / (1-b2^step)) + eps). step starts at 1.
    /// Op "adam", flops 12n.
    /// </summary>
    void AdamUpdate(Tensor w, Tensor g, Tensor m, Tensor v, float lr, float beta1, float beta2, float eps, float weightDecay, int step);

    // ---------------------------------------------------------------- fused attack steps
    /// <summary>
    /// One L-inf step for x viewed as [rows, cols] (row = sample), with per-sample step size and budget:
    /// xadv = clamp(clamp(xadv + step[r]*sign(grad), x0 - eps[r], x0 + eps[r]), 0, 1). In place on xadv.
    /// Op "attack_step_linf", flops 6*rows*cols.
    /// </summary>
    void AttackStepLinf(Tensor xadv, Tensor x0, Tensor grad, Tensor step, Tensor eps, int rows, int cols);
    /// <summary>
    /// One L2 step: g = grad / (||grad_r||_2 + 1e-12); d = xadv + step[r]*g - x0; d *= min(1, eps[r] / ||d_r||_2)
    /// (no scaling when ||d_r|| == 0); xadv = clamp(x0 + d, 0, 1). In place on xadv. Op "attack_step_l2", flops 10*rows*cols.
    /// </summary>
    void AttackStepL2(Tensor xadv, Tensor x0, Tensor grad, Tensor step, Tensor eps, int rows, int cols);

    /// <summary>
    /// One JSMA iteration (Papernot et al., over pixel pairs) for every row r of [rows, d] with running[r] != 0:
    /// with s = sign(theta), among pairs p &lt; q with domain[r, p] and domain[r, q] non-zero, a = s alpha[r, p] +
    /// s alpha[r, q] &gt; 0 and b = s beta[r, p] + s beta[r, q] &lt; 0 (float), the pair of largest a * -b (double;
    /// the first in (p, q) order on ties) moves: adv[r, p] and adv[r, q] += theta, clamped to [0, 1], both leave the
    /// domain (set to 0), changed[r] += 2; a row with no such pair stops (running[r] = 0). alpha and beta (the input
    /// gradients of the target's logit and of the other classes' sum) are read only. One thread per row on ILGPU.
    /// Op "jsma_step", flops 2*rows*d*d.
    /// </summary>
    void JsmaStep(Tensor alpha, Tensor beta, Tensor domain, Tensor running, Tensor adv, Tensor changed, float theta, int rows, int d);

    // ---------------------------------------------------------------- geometric warps
    /// <summary>
    /// Bilinear affine warp of x viewed as planes [planes, h, w] (a plane is one channel of one image), zero outside
    /// the image: with (sx, sy) the source point of output pixel (ox, oy) under <paramref name="map"/>, x0 = floor(sx),
    /// fx = sx - x0 (likewise y0, fy), y[p, oy, ox] = alpha * ((1-fx)(1-fy) x[p, y0, x0] + fx(1-fy) x[p, y0, x0+1]
    /// + (1-fx)fy x[p, y0+1, x0] + fx fy x[p, y0+1, x0+1]) + beta * y[p, oy, ox] (neighbours outside the image read 0;
    /// beta == 0: y is not read). x and y must not overlap. Op "warp_affine", flops 8*planes*h*w.
    /// </summary>
    void WarpAffine(Tensor x, Tensor y, int planes, int h, int w, in WarpMap map, float alpha, float beta);
    /// <summary>
    /// The adjoint (transpose) of <see cref="WarpAffine"/> with the same map: dx = alpha * W^T dy + beta * dx, each
    /// source pixel gathering the outputs that read it with the forward's weights (deterministic, no atomics; beta == 0:
    /// dx is not read). dy and dx must not overlap. Op "warp_affine_adjoint", flops 8*planes*h*w.
    /// </summary>
    void WarpAffineAdjoint(Tensor dy, Tensor dx, int planes, int h, int w, in WarpMap map, float alpha, float beta);

    // ---------------------------------------------------------------- candidate images (search attacks)
    /// <summary>
    /// Candidate images as copies of source images with a few values set: x viewed as [images, cols], y as
    /// [rows, cols], src as [rows], idx and val as [rows, edits]. y[r, :] = x[src[r], :], then for j = 0 .. edits-1 in
    /// order, y[r, idx[r, j]] = val[r, j] (a later edit of the same index wins). src and idx hold integers as floats
    /// (exact below 2^24, truncated toward zero): a row whose src is not in [0, images) is NaN but for its edits, an edit whose idx is
    /// not in [0, cols) (-1, NaN) is skipped, so no index is read back to check it. x and y must not overlap.
    /// Op "scatter_rows", flops rows*(cols + edits) (values written).
    /// </summary>
    void ScatterRows(Tensor x, Tensor src, Tensor idx, Tensor val, Tensor y, int images, int rows, int cols, int edits);

    // ---------------------------------------------------------------- adversarial patch
    /// <summary>
    /// Puts a patch on images, in place: patch [c, size, size], mask [size, size] (non-zero inside), place [n, 5] =
    /// (top, left, side, cos, sin) per image, x [n, c, h, w]. The patch, scaled to a side x side box at (top, left)
    /// and rotated by the angle of (cos, sin) about the box centre, replaces the box pixel (by, bx) with the patch
    /// pixel (floor(u), floor(v)), (u, v) = (cos dx + sin dy, -sin dx + cos dy) * size / side + size / 2 and
    /// (dx, dy) = (bx, by) + 0.5 - side / 2, when that pixel is inside the patch and the mask (nearest neighbour; float
    /// arithmetic as written, kernels/Patch.cs). Box pixels outside the image are dropped; a placement whose side is
    /// below 1 or not finite places nothing (no value is read back to check it). top, left and side hold integers
    /// as floats (truncated). patch and mask must not overlap x. Op "patch_apply", flops 12*n*h*w.
    /// </summary>
    void PatchApply(Tensor patch, Tensor mask, Tensor place, Tensor x, int n, int c, int h, int w, int size);
    /// <summary>
    /// The adjoint of <see cref="PatchApply"/> with respect to the patch: dpatch[ch, v, u] = the sum of dx[img, ch, py, px]
    /// over the images in order and the covered pixels, row-major, that take patch pixel (u, v) (0 outside the mask;
    /// written, not accumulated; deterministic, no atomics). dx [n, c, h, w] must not overlap dpatch [c, size, size].
    /// Op "patch_apply_adjoint", flops 16*n*c*size*size.
    /// </summary>
    void PatchApplyAdjoint(Tensor dx, Tensor mask, Tensor place, Tensor dpatch, int n, int c, int h, int w, int size);
}
