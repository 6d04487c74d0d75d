using ILGPU;
using ILGPU.Runtime;
using KG = Perturb.Kernels.Gemm;
using KC = Perturb.Kernels.Conv;
using KP = Perturb.Kernels.Pool;
using KN = Perturb.Kernels.Norm;
using KA = Perturb.Kernels.Activation;
using KL = Perturb.Kernels.Loss;
using KO = Perturb.Kernels.Optim;
using KS = Perturb.Kernels.AttackStep;
using KR = Perturb.Kernels.Random;
using KD = Perturb.Kernels.Reduce;
using KE = Perturb.Kernels.Elementwise;
using Perturb.Kernels;
using V1 = ILGPU.ArrayView<float>;

namespace Perturb.Engine.Backends;

public sealed partial class IlgpuBackend
{
    // Each kernel is compiled once, on first use, and cached in its field.
    Action<KernelConfig, V1, V1, V1, GemmArgs>? _gemm;
    Action<Index1D, V1, V1, ConvArgs>? _im2col, _col2im;
    Action<Index1D, V1, V1, V1, int, int, int, int>? _colsToNchw;
    Action<Index1D, V1, V1, int, int, int>? _nchwToCols;
    Action<Index1D, V1, V1, PoolArgs>? _maxFwd, _avgFwd, _avgBwd;
    Action<Index1D, V1, V1, V1, PoolArgs>? _maxBwd;
    Action<KernelConfig, V1, V1, V1, V1, V1, V1, V1, V1, BnArgs>? _bnFwd;
    Action<KernelConfig, V1, V1, V1, V1, V1, V1, V1, V1, int, BnArgs>? _bnBwd;
    Action<Index1D, V1, V1, V1, V1, int, int>? _chAffine;
    Action<Index1D, V1, V1, V1, int, int>? _chAffineBwdData;
    Action<KernelConfig, V1, V1, V1, V1, V1, V1, BnArgs>? _chAffineBwdFull;
    Action<Index1D, V1, V1, int, float>? _actFwd;
    Action<Index1D, V1, V1, V1, V1, int, float>? _actBwd;
    Action<Index1D, V1, V1, int>? _softmax, _logSoftmax;
    Action<Index1D, V1, V1, V1, int>? _softmaxBwd;
    Action<Index1D, V1, V1, V1, V1, V1, int, int>? _ce;
    Action<Index1D, V1, V1, V1, V1, V1, int, int, float, int>? _cw;
    Action<Index1D, V1, V1, V1, V1, V1, int>? _bce;
    Action<Index1D, V1, V1, V1>? _add, _mul;
    Action<Index1D, float, V1, V1>? _axpy, _scale;
    Action<Index1D, V1, float, float, V1>? _clamp;
    Action<Index1D, V1, V1>? _sign, _copy;
    Action<Index1D, V1, V1, float, V1>? _lerp;
    Action<Index1D, V1, float>? _fill;
    Action<Index1D, V1, int, int, V1, int, int, int, int, int>? _chCopy;
    Action<Index1D, V1, V1, int, int>? _biasAdd;
    Action<Index1D, V1, V1, int, float>? _bcastRows;
    Action<KernelConfig, V1, V1, int, int, float>? _rows;
    Action<KernelConfig, V1, V1, int>? _argmax;
    Action<KernelConfig, V1, V1, int, int, int>? _biasGrad;
    Action<Index1D, V1, ulong, ulong>? _uniform;
    Action<Index1D, V1, ulong, ulong, float, float>? _normal;
    Action<Index1D, V1, V1, V1, float, ulong, ulong>? _dropout;
    Action<Index1D, V1, V1, V1, float, float, float, int>? _sgd;
    Action<Index1D, V1, V1, V1, V1, float, float, float, float, float, float, float>? _adam;
    Action<Index1D, V1, V1, V1, V1, V1, int>? _stepLinf;
    Action<KernelConfig, V1, V1, V1, V1, V1, int>? _stepL2;

    static KernelConfig PerRow(int rows) => new(new Index3D(rows, 1, 1), new Index3D(KD.GroupSize, 1, 1));

    // ------------------------------------------------------------------ copy, fill

    protected override void CopyCore(Tensor src, Tensor dst)
    {
        (_copy ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1>(KE.Copy))(src.Length, V(src), V(dst));
    }

    protected override void FillCore(Tensor t, float value)
    {
        (_fill ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, float>(KE.Fill))(t.Length, V(t), value);
    }

    // ------------------------------------------------------------------ GEMM

    /// <summary>Queues one tiled (batched) GEMM; no counter. batch = number of Grid.IdxZ slices.</summary>
    void GemmRaw(V1 a, V1 b, V1 c, GemmArgs g, int batch = 1)
    {
        if (g.M == 0 || g.N == 0 || batch == 0) return;
        _gemm ??= _acc.LoadStreamKernel<V1, V1, V1, GemmArgs>(KG.TiledGemm);
        var grid = new Index3D((g.N + KG.Tile - 1) / KG.Tile, (g.M + KG.Tile - 1) / KG.Tile, batch);
        _gemm(new KernelConfig(grid, new Index3D(KG.Threads, KG.Threads, 1)), a, b, c, g);
    }

    protected override void GemmCore(bool transA, bool transB, int m, int n, int k, float alpha, Tensor a, Tensor b, float beta, Tensor c)
    {
        var g = new GemmArgs
        {
            M = m, N = n, K = k,
            As0 = transA ? 1 : k, As1 = transA ? m : 1,
            Bs0 = transB ? 1 : n, Bs1 = transB ? k : 1,
            Ldc = n, Alpha = alpha, Beta = beta,
        };
        GemmRaw(V(a), V(b), V(c), g);
    }

    // ------------------------------------------------------------------ convolution

    const long ColBudget = 1L << 24; // floats of im2col workspace per chunk (64 MiB)

    static ConvArgs Args(in ConvShape s, int n) => new()
    {
        N = n, C = s.C, H = s.H, W = s.W, K = s.K, R = s.R, S = s.S, OH = s.OutH, OW = s.OutW,
        StrideH = s.StrideH, StrideW = s.StrideW, PadH = s.PadH, PadW = s.PadW, DilH = s.DilH, DilW = s.DilW,
    };

    /// <summary>Samples per chunk so that the column matrix stays within <see cref="ColBudget"/>.</summary>
    static int Chunk(in ConvShape s)
    {
        long perSample = (long)s.C * s.R * s.S * s.OutH * s.OutW;
        return (int)Math.Clamp(ColBudget / Math.Max(1, perSample), 1, Math.Max(1, s.N));
    }

    protected override void ConvForwardCore(in ConvShape s, Tensor x, Tensor w, Tensor? bias, Tensor y)
    {
        int ohw = s.OutH * s.OutW, cgrs = s.CPerGroup * s.R * s.S, kg = s.KPerGroup, G = s.Groups;
        if (s.N == 0) return;
        _im2col ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, ConvArgs>(KC.Im2Col);
        _colsToNchw ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, int, int, int, int>(KC.ColumnsToNchw);
        V1 xv = V(x), wv = V(w), yv = V(y), bv = VOrDummy(bias);
        int chunk = Chunk(s);
        for (int n0 = 0; n0 < s.N; n0 += chunk)
        {
            int nb = Math.Min(chunk, s.N - n0), cols = nb * ohw;
            var col = Workspace(ref _wsCol, (long)s.C * s.R * s.S * cols);
            var tmp = Workspace(ref _wsCols2, (long)s.K * cols);
            var xs = xv.SubView((long)n0 * s.C * s.H * s.W, (long)nb * s.C * s.H * s.W);
            _im2col(s.C * s.R * s.S * cols, xs, col, Args(s, nb));
            // tmp[g*kg + i][col] = sum_p w[g*kg + i][p] * col[g*cgrs + p][col]
            GemmRaw(wv, col, tmp, new GemmArgs
            {
                M = kg, N = cols, K = cgrs, As0 = cgrs, As1 = 1, Bs0 = cols, Bs1 = 1, Ldc = cols,
                ABatch = kg * cgrs, BBatch = cgrs * cols, CBatch = kg * cols, Alpha = 1f, Beta = 0f,
            }, G);
            _colsToNchw(nb * s.K * ohw, tmp, yv.SubView((long)n0 * s.K * ohw, (long)nb * s.K * ohw), bv, s.K, ohw, nb, bias is null ? 0 : 1);
        }
    }

    protected override void ConvBackwardDataCore(in ConvShape s, Tensor dy, Tensor w, Tensor dx)
    {
        int ohw = s.OutH * s.OutW, cgrs = s.CPerGroup * s.R * s.S, kg = s.KPerGroup, G = s.Groups;
        if (s.N == 0) return;
        _nchwToCols ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, int, int, int>(KC.NchwToColumns);
        _col2im ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, ConvArgs>(KC.Col2ImGather);
        V1 dyv = V(dy), wv = V(w), dxv = V(dx);
        int chunk = Chunk(s);
        for (int n0 = 0; n0 < s.N; n0 += chunk)
        {
            int nb = Math.Min(chunk, s.N - n0), cols = nb * ohw;
            var col = Workspace(ref _wsCol, (long)s.C * s.R * s.S * cols);
            var tmp = Workspace(ref _wsCols2, (long)s.K * cols);
            _nchwToCols(nb * s.K * ohw, dyv.SubView((long)n0 * s.K * ohw, (long)nb * s.K * ohw), tmp, s.K, ohw, nb);
            // dcol[g*cgrs + p][col] = sum_i w[g*kg + i][p] * tmp[g*kg + i][col]   (op(A) = w_g^T)
            GemmRaw(wv, tmp, col, new GemmArgs
            {
                M = cgrs, N = cols, K = kg, As0 = 1, As1 = cgrs, Bs0 = cols, Bs1 = 1, Ldc = cols,
                ABatch = kg * cgrs, BBatch = kg * cols, CBatch = cgrs * cols, Alpha = 1f, Beta = 0f,
            }, G);
            long xn = (long)s.C * s.H * s.W;
            _col2im((int)(nb * xn), col, dxv.SubView(n0 * xn, nb * xn), Args(s, nb));
        }
    }

    protected override void ConvBackwardWeightsCore(in ConvShape s, Tensor x, Tensor dy, Tensor dw, Tensor? dbias)
    {
        int ohw = s.OutH * s.OutW, cgrs = s.CPerGroup * s.R * s.S, kg = s.KPerGroup, G = s.Groups;
        V1 xv = V(x), dyv = V(dy), dwv = V(dw).SubView(0, (long)s.K * cgrs);
        if (s.N == 0)
        {
            (_fill ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, float>(KE.Fill))((int)dwv.Length, dwv, 0f);
            if (dbias is not null) _fill(s.K, V(dbias), 0f);
            return;
        }
        _im2col ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, ConvArgs>(KC.Im2Col);
        _nchwToCols ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, int, int, int>(KC.NchwToColumns);
        int chunk = Chunk(s);
        for (int n0 = 0; n0 < s.N; n0 += chunk)
        {
            int nb = Math.Min(chunk, s.N - n0), cols = nb * ohw;
            var col = Workspace(ref _wsCol, (long)s.C * s.R * s.S * cols);
            var tmp = Workspace(ref _wsCols2, (long)s.K * cols);
            long xn = (long)s.C * s.H * s.W;
            _im2col(s.C * s.R * s.S * cols, xv.SubView(n0 * xn, nb * xn), col, Args(s, nb));
            _nchwToCols(nb * s.K * ohw, dyv.SubView((long)n0 * s.K * ohw, (long)nb * s.K * ohw), tmp, s.K, ohw, nb);
            // dw[g*kg + i][p] (+)= sum_col tmp[g*kg + i][col] * col[g*cgrs + p][col]   (op(B) = col_g^T)
            GemmRaw(tmp, col, dwv, new GemmArgs
            {
                M = kg, N = cgrs, K = cols, As0 = cols, As1 = 1, Bs0 = 1, Bs1 = cols, Ldc = cgrs,
                ABatch = kg * cols, BBatch = cgrs * cols, CBatch = kg * cgrs, Alpha = 1f, Beta = n0 == 0 ? 0f : 1f,
            }, G);
        }
        if (dbias is not null) BiasGradRaw(dyv, V(dbias), s.N, s.K, ohw);
    }

    // ------------------------------------------------------------------ bias

    protected override void BiasAddCore(Tensor y, Tensor bias, int outer, int channels, int inner)
    {
        (_biasAdd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, int, int>(KE.BiasAdd))(outer * channels * inner, V(y), V(bias), channels, inner);
    }

    protected override void BiasGradCore(Tensor dy, Tensor db, int outer, int channels, int inner) =>
        BiasGradRaw(V(dy), V(db), outer, channels, inner);

    void BiasGradRaw(V1 dy, V1 db, int outer, int channels, int inner)
    {
        if (channels == 0) return;
        (_biasGrad ??= _acc.LoadStreamKernel<V1, V1, int, int, int>(KD.BiasGrad))(PerRow(channels), dy, db, outer, channels, inner);
    }

    // ------------------------------------------------------------------ activations

    protected override void ActivationForwardCore(Activation f, float alpha, Tensor x, Tensor y)
    {
        (_actFwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, int, float>(KA.Forward))(x.Length, V(x), V(y), (int)f, alpha);
    }

    protected override void ActivationBackwardCore(Activation f, float alpha, Tensor src, Tensor dy, Tensor dx)
    {
        bool readsX = f is Activation.Relu or Activation.LeakyRelu;
        (_actBwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, int, float>(KA.Backward))(
            dy.Length, readsX ? V(src) : _dummy.View, readsX ? _dummy.View : V(src), V(dy), V(dx), (int)f, alpha);
    }

    // ------------------------------------------------------------------ pooling

    static PoolArgs Args(in PoolShape s) => new()
    {
        N = s.N, C = s.C, H = s.H, W = s.W, OH = s.OutH, OW = s.OutW, KH = s.KH, KW = s.KW,
        StrideH = s.StrideH, StrideW = s.StrideW, PadH = s.PadH, PadW = s.PadW, CountIncludePad = s.CountIncludePad ? 1 : 0,
    };

    protected override void MaxPoolForwardCore(in PoolShape s, Tensor x, Tensor y)
    {
        int n = s.N * s.C * s.OutH * s.OutW;
        (_maxFwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, PoolArgs>(KP.MaxForward))(n, V(x), V(y), Args(s));
    }

    protected override void MaxPoolBackwardCore(in PoolShape s, Tensor x, Tensor dy, Tensor dx)
    {
        int n = s.N * s.C * s.H * s.W;
        (_maxBwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, PoolArgs>(KP.MaxBackward))(n, V(x), V(dy), V(dx), Args(s));
    }

    protected override void AvgPoolForwardCore(in PoolShape s, Tensor x, Tensor y)
    {
        int n = s.N * s.C * s.OutH * s.OutW;
        (_avgFwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, PoolArgs>(KP.AvgForward))(n, V(x), V(y), Args(s));
    }

    protected override void AvgPoolBackwardCore(in PoolShape s, Tensor dy, Tensor dx)
    {
        int n = s.N * s.C * s.H * s.W;
        (_avgBwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, PoolArgs>(KP.AvgBackward))(n, V(dy), V(dx), Args(s));
    }

    protected override void GlobalAvgPoolForwardCore(Tensor x, Tensor y, int n, int c, int hw)
    {
        RowsRaw(V(x), V(y), n * c, hw, ReduceKind.Sum, hw == 0 ? 0f : 1f / hw);
    }

    protected override void GlobalAvgPoolBackwardCore(Tensor dy, Tensor dx, int n, int c, int hw)
    {
        (_bcastRows ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, int, float>(KE.BroadcastRows))(n * c * hw, V(dy), V(dx), hw, 1f / hw);
    }

    // ------------------------------------------------------------------ batch norm, channel affine

    V1 Scratch(int n) => Workspace(ref _wsSmall, n);

    protected override void BatchNormForwardTrainCore(Tensor x, Tensor gamma, Tensor beta, Tensor y, Tensor saveMean, Tensor saveInvStd,
        Tensor runningMean, Tensor runningVar, float momentum, float eps, int n, int c, int hw)
    {
        (_bnFwd ??= _acc.LoadStreamKernel<V1, V1, V1, V1, V1, V1, V1, V1, BnArgs>(KN.BatchNormForwardTrain))(PerRow(c),
            V(x), V(gamma), V(beta), V(y), V(saveMean), V(saveInvStd), V(runningMean), V(runningVar),
            new BnArgs { N = n, C = c, HW = hw, Momentum = momentum, Eps = eps });
    }

    protected override void BatchNormBackwardCore(Tensor x, Tensor dy, Tensor gamma, Tensor saveMean, Tensor saveInvStd, Tensor dx,
        Tensor? dgamma, Tensor? dbeta, int n, int c, int hw)
    {
        bool grads = dgamma is not null || dbeta is not null;
        V1 scratch = grads && (dgamma is null || dbeta is null) ? Scratch(c) : _dummy.View;
        (_bnBwd ??= _acc.LoadStreamKernel<V1, V1, V1, V1, V1, V1, V1, V1, int, BnArgs>(KN.BatchNormBackward))(PerRow(c),
            V(x), V(dy), V(gamma), V(saveMean), V(saveInvStd), V(dx),
            dgamma is null ? scratch : V(dgamma), dbeta is null ? scratch : V(dbeta), grads ? 1 : 0,
            new BnArgs { N = n, C = c, HW = hw });
    }

    protected override void ChannelAffineCore(Tensor x, Tensor scale, Tensor shift, Tensor y, int n, int c, int hw)
    {
        long len = (long)n * c * hw;
        (_chAffine ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, int, int>(KN.ChannelAffine))((int)len, V(x), V(scale), V(shift), V(y), c, hw);
    }

    protected override void ChannelAffineBackwardCore(Tensor dy, Tensor scale, Tensor dx, Tensor? x, Tensor? dscale, Tensor? dshift, int n, int c, int hw)
    {
        long len = (long)n * c * hw;
        if (dscale is null && dshift is null)
        {
            if (len == 0) return;
            (_chAffineBwdData ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, int, int>(KN.ChannelAffineBackwardData))((int)len, V(dy), V(scale), V(dx), c, hw);
            return;
        }
        // the kernel reads x for dscale; with dshift alone any tensor of the length will do (its sum goes to scratch)
        V1 scratch = dscale is null || dshift is null ? Scratch(c) : _dummy.View;
        (_chAffineBwdFull ??= _acc.LoadStreamKernel<V1, V1, V1, V1, V1, V1, BnArgs>(KN.ChannelAffineBackwardFull))(PerRow(c),
            V(dy), V(scale), V(dx), V(x ?? dy), dscale is null ? scratch : V(dscale), dshift is null ? scratch : V(dshift),
            new BnArgs { N = n, C = c, HW = hw });
    }

    // ------------------------------------------------------------------ softmax, losses

    protected override void SoftmaxCore(Tensor x, Tensor y, int rows, int cols, bool log)
    {
        if (log) (_logSoftmax ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, int>(KL.LogSoftmax))(rows, V(x), V(y), cols);
        else (_softmax ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, int>(KL.Softmax))(rows, V(x), V(y), cols);
    }

    protected override void SoftmaxBackwardCore(Tensor y, Tensor dy, Tensor dx, int rows, int cols)
    {
        (_softmaxBwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, int>(KL.SoftmaxBackward))(rows, V(y), V(dy), V(dx), cols);
    }

    protected override void CrossEntropyCore(Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, int rows, int cols)
    {
        (_ce ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, V1, int, int>(KL.CrossEntropy))(rows,
            V(logits), V(labels), V(loss), VOrDummy(dlogits), dlogits is null ? _dummy.View : V(gradScale), cols, dlogits is null ? 0 : 1);
    }

    protected override void CwMarginLossCore(Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, bool targeted, float kappa, int rows, int cols)
    {
        (_cw ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, V1, int, int, float, int>(KL.CwMargin))(rows,
            V(logits), V(labels), V(loss), VOrDummy(dlogits), dlogits is null ? _dummy.View : V(gradScale), cols, targeted ? 1 : 0, kappa, dlogits is null ? 0 : 1);
    }

    protected override void BceWithLogitsCore(Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, int rows)
    {
        (_bce ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, V1, int>(KL.BceWithLogits))(rows,
            V(logits), V(labels), V(loss), VOrDummy(dlogits), dlogits is null ? _dummy.View : V(gradScale), dlogits is null ? 0 : 1);
    }

    // ------------------------------------------------------------------ element-wise

    protected override void BinaryCore(BinaryOp kind, Tensor a, Tensor b, Tensor y)
    {
        var k = kind switch
        {
            BinaryOp.Add => _add ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1>(KE.Add),
            BinaryOp.Mul => _mul ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1>(KE.Mul),
            _ => throw new InvalidOperationException($"binary op {kind} has no ILGPU kernel"),
        };
        k(y.Length, V(a), V(b), V(y));
    }

    protected override void AxpyCore(float alpha, Tensor x, Tensor y)
    {
        (_axpy ??= _acc.LoadAutoGroupedStreamKernel<Index1D, float, V1, V1>(KE.Axpy))(y.Length, alpha, V(x), V(y));
    }

    protected override void ScaleCore(float alpha, Tensor x, Tensor y)
    {
        (_scale ??= _acc.LoadAutoGroupedStreamKernel<Index1D, float, V1, V1>(KE.Scale))(y.Length, alpha, V(x), V(y));
    }

    protected override void ClampCore(Tensor x, float lo, float hi, Tensor y)
    {
        (_clamp ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, float, float, V1>(KE.Clamp))(y.Length, V(x), lo, hi, V(y));
    }

    protected override void SignCore(Tensor x, Tensor y)
    {
        (_sign ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1>(KE.Sign))(y.Length, V(x), V(y));
    }

    protected override void LerpCore(Tensor a, Tensor b, float t, Tensor y)
    {
        (_lerp ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, float, V1>(KE.Lerp))(y.Length, V(a), V(b), t, V(y));
    }

    protected override void ChannelCopyCore(Tensor src, int srcC, int srcOff, Tensor dst, int dstC, int dstOff, int count, int outer, int inner, bool accumulate)
    {
        long n = (long)outer * count * inner;
        (_chCopy ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, int, int, V1, int, int, int, int, int>(KE.ChannelCopy))(
            (int)n, V(src), srcC, srcOff, V(dst), dstC, dstOff, count, inner, accumulate ? 1 : 0);
    }

    // ------------------------------------------------------------------ reductions

    void RowsRaw(V1 x, V1 outp, int rows, int cols, int kind, float scale) =>
        (_rows ??= _acc.LoadStreamKernel<V1, V1, int, int, float>(KD.Rows))(PerRow(rows), x, outp, cols, kind, scale);

    protected override void ReduceRowsCore(Reduction kind, Tensor x, Tensor outp, int rows, int cols)
    {
        RowsRaw(V(x), V(outp), rows, cols, (int)kind, 1f);
    }

    protected override void ArgmaxRowsCore(Tensor x, Tensor outp, int rows, int cols)
    {
        (_argmax ??= _acc.LoadStreamKernel<V1, V1, int>(KD.Argmax))(PerRow(rows), V(x), V(outp), cols);
    }

    // ------------------------------------------------------------------ random

    protected override void RandomUniformCore(Tensor t, ulong seed, ulong offset)
    {
        (_uniform ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, ulong, ulong>(KR.Uniform))(t.Length, V(t), seed, offset);
    }

    protected override void RandomNormalCore(Tensor t, ulong seed, ulong offset, float mean, float std)
    {
        (_normal ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, ulong, ulong, float, float>(KR.Normal))(t.Length, V(t), seed, offset, mean, std);
    }

    protected override void DropoutForwardCore(Tensor x, Tensor y, Tensor mask, float p, ulong seed, ulong offset)
    {
        (_dropout ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, float, ulong, ulong>(KR.Dropout))(x.Length, V(x), V(y), V(mask), p, seed, offset);
    }

    // ------------------------------------------------------------------ optimisers

    protected override void SgdUpdateCore(Tensor w, Tensor g, Tensor v, float lr, float momentum, float weightDecay, bool nesterov)
    {
        (_sgd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, float, float, float, int>(KO.Sgd))(w.Length, V(w), V(g), V(v), lr, momentum, weightDecay, nesterov ? 1 : 0);
    }

    protected override void AdamUpdateCore(Tensor w, Tensor g, Tensor m, Tensor v, float lr, float beta1, float beta2, float eps, float weightDecay, int step)
    {
        float bc1 = (float)(1.0 - Math.Pow(beta1, step)), bc2 = (float)(1.0 - Math.Pow(beta2, step));
        (_adam ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, float, float, float, float, float, float, float>(KO.Adam))(
            w.Length, V(w), V(g), V(m), V(v), lr, beta1, beta2, eps, weightDecay, bc1, bc2);
    }

    // ------------------------------------------------------------------ fused attack steps

    protected override void AttackStepLinfCore(Tensor xadv, Tensor x0, Tensor grad, Tensor step, Tensor eps, int rows, int cols)
    {
        (_stepLinf ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, V1, int>(KS.Linf))(rows * cols, V(xadv), V(x0), V(grad), V(step), V(eps), cols);
    }

    protected override void AttackStepL2Core(Tensor xadv, Tensor x0, Tensor grad, Tensor step, Tensor eps, int rows, int cols)
    {
        (_stepL2 ??= _acc.LoadStreamKernel<V1, V1, V1, V1, V1, int>(KS.L2))(PerRow(rows), V(xadv), V(x0), V(grad), V(step), V(eps), cols);
    }
}
