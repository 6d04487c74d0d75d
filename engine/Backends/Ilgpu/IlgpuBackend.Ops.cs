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
    Action<Index1D, V1, V1, V1, V1, V1, V1, int, int, int>? _dlr;
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

    public void Copy(Tensor src, Tensor dst)
    {
        Counters.Hit("copy");
        Check.Same(src, dst, "copy");
        if (src.Length == 0) return;
        (_copy ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1>(KE.Copy))(src.Length, V(src), V(dst));
    }

    public void Fill(Tensor t, float value)
    {
        Counters.Hit("fill");
        if (t.Length == 0) return;
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

    public void Gemm(bool transA, bool transB, int m, int n, int k, float alpha, Tensor a, Tensor b, float beta, Tensor c)
    {
        Counters.Hit("gemm", 2L * m * n * k);
        if (m < 0 || n < 0 || k < 0) throw new ArgumentException($"gemm: negative size m={m} n={n} k={k}");
        Check.Len(a, (long)m * k, "gemm", "a"); Check.Len(b, (long)k * n, "gemm", "b"); Check.Len(c, (long)m * n, "gemm", "c");
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

    static void CheckConv(in ConvShape s, string op)
    {
        if (s.Groups <= 0 || s.C % s.Groups != 0 || s.K % s.Groups != 0)
            throw new ArgumentException($"{op}: channels C={s.C}, K={s.K} must divide into {s.Groups} groups");
        if (s.OutH <= 0 || s.OutW <= 0) throw new ArgumentException($"{op}: empty output for input {s.H}x{s.W} and kernel {s.R}x{s.S}");
    }

    /// <summary>Samples per chunk so that the column matrix stays within <see cref="ColBudget"/>.</summary>
    static int Chunk(in ConvShape s)
    {
        long perSample = (long)s.C * s.R * s.S * s.OutH * s.OutW;
        return (int)Math.Clamp(ColBudget / Math.Max(1, perSample), 1, Math.Max(1, s.N));
    }

    public void ConvForward(in ConvShape s, Tensor x, Tensor w, Tensor? bias, Tensor y)
    {
        Counters.Hit("conv_fwd", s.Flops);
        CheckConv(s, "conv_fwd");
        int ohw = s.OutH * s.OutW, cgrs = s.CPerGroup * s.R * s.S, kg = s.KPerGroup, G = s.Groups;
        Check.Len(x, (long)s.N * s.C * s.H * s.W, "conv_fwd", "x"); Check.Len(w, (long)s.K * cgrs, "conv_fwd", "w");
        Check.Len(y, (long)s.N * s.K * ohw, "conv_fwd", "y");
        if (bias is not null) Check.Len(bias, s.K, "conv_fwd", "bias");
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

    public void ConvBackwardData(in ConvShape s, Tensor dy, Tensor w, Tensor dx)
    {
        Counters.Hit("conv_bwd_data", s.Flops);
        CheckConv(s, "conv_bwd_data");
        int ohw = s.OutH * s.OutW, cgrs = s.CPerGroup * s.R * s.S, kg = s.KPerGroup, G = s.Groups;
        Check.Len(dy, (long)s.N * s.K * ohw, "conv_bwd_data", "dy"); Check.Len(w, (long)s.K * cgrs, "conv_bwd_data", "w");
        Check.Len(dx, (long)s.N * s.C * s.H * s.W, "conv_bwd_data", "dx");
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

    public void ConvBackwardWeights(in ConvShape s, Tensor x, Tensor dy, Tensor dw, Tensor? dbias)
    {
        Counters.Hit("conv_bwd_weights", s.Flops);
        CheckConv(s, "conv_bwd_weights");
        int ohw = s.OutH * s.OutW, cgrs = s.CPerGroup * s.R * s.S, kg = s.KPerGroup, G = s.Groups;
        Check.Len(x, (long)s.N * s.C * s.H * s.W, "conv_bwd_weights", "x"); Check.Len(dy, (long)s.N * s.K * ohw, "conv_bwd_weights", "dy");
        Check.Len(dw, (long)s.K * cgrs, "conv_bwd_weights", "dw");
        if (dbias is not null) Check.Len(dbias, s.K, "conv_bwd_weights", "dbias");
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

    public void BiasAdd(Tensor y, Tensor bias, int outer, int channels, int inner)
    {
        Counters.Hit("bias_add", (long)outer * channels * inner);
        long n = (long)outer * channels * inner;
        Check.Len(y, n, "bias_add", "y"); Check.Len(bias, channels, "bias_add", "bias");
        if (n == 0) return;
        (_biasAdd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, int, int>(KE.BiasAdd))((int)n, V(y), V(bias), channels, inner);
    }

    public void BiasGrad(Tensor dy, Tensor db, int outer, int channels, int inner)
    {
        Counters.Hit("bias_grad", (long)outer * channels * inner);
        Check.Len(dy, (long)outer * channels * inner, "bias_grad", "dy"); Check.Len(db, channels, "bias_grad", "db");
        BiasGradRaw(V(dy), V(db), outer, channels, inner);
    }

    void BiasGradRaw(V1 dy, V1 db, int outer, int channels, int inner)
    {
        if (channels == 0) return;
        (_biasGrad ??= _acc.LoadStreamKernel<V1, V1, int, int, int>(KD.BiasGrad))(PerRow(channels), dy, db, outer, channels, inner);
    }

    // ------------------------------------------------------------------ activations

    public void ActivationForward(Activation f, float alpha, Tensor x, Tensor y)
    {
        Counters.Hit("act_fwd", x.Length);
        Check.Len(y, x.Length, "act_fwd", "y");
        if (x.Length == 0) return;
        (_actFwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, int, float>(KA.Forward))(x.Length, V(x), V(y), (int)f, alpha);
    }

    public void ActivationBackward(Activation f, float alpha, Tensor? x, Tensor? y, Tensor dy, Tensor dx)
    {
        Counters.Hit("act_bwd", dy.Length);
        bool readsX = f is Activation.Relu or Activation.LeakyRelu;
        var src = readsX ? x : y;
        if (src is null) throw new ArgumentException($"act_bwd: {f} needs {(readsX ? "x" : "y")}");
        Check.Len(src, dy.Length, "act_bwd", readsX ? "x" : "y"); Check.Len(dx, dy.Length, "act_bwd", "dx");
        if (dy.Length == 0) return;
        (_actBwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, int, float>(KA.Backward))(
            dy.Length, readsX ? V(src) : _dummy.View, readsX ? _dummy.View : V(src), V(dy), V(dx), (int)f, alpha);
    }

    // ------------------------------------------------------------------ pooling

    static PoolArgs Args(in PoolShape s) => new()
    {
        N = s.N, C = s.C, H = s.H, W = s.W, OH = s.OutH, OW = s.OutW, KH = s.KH, KW = s.KW,
        StrideH = s.StrideH, StrideW = s.StrideW, PadH = s.PadH, PadW = s.PadW, CountIncludePad = s.CountIncludePad ? 1 : 0,
    };

    void CheckPool(in PoolShape s, Tensor x, Tensor y, string op, string xn, string yn)
    {
        if (s.OutH <= 0 || s.OutW <= 0) throw new ArgumentException($"{op}: empty output for input {s.H}x{s.W} and window {s.KH}x{s.KW}");
        Check.Len(x, (long)s.N * s.C * s.H * s.W, op, xn); Check.Len(y, (long)s.N * s.C * s.OutH * s.OutW, op, yn);
    }

    public void MaxPoolForward(in PoolShape s, Tensor x, Tensor y)
    {
        Counters.Hit("maxpool_fwd", (long)s.N * s.C * s.OutH * s.OutW * s.KH * s.KW);
        CheckPool(s, x, y, "maxpool_fwd", "x", "y");
        int n = s.N * s.C * s.OutH * s.OutW;
        if (n == 0) return;
        (_maxFwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, PoolArgs>(KP.MaxForward))(n, V(x), V(y), Args(s));
    }

    public void MaxPoolBackward(in PoolShape s, Tensor x, Tensor dy, Tensor dx)
    {
        Counters.Hit("maxpool_bwd", (long)s.N * s.C * s.OutH * s.OutW * s.KH * s.KW);
        CheckPool(s, x, dy, "maxpool_bwd", "x", "dy");
        Check.Len(dx, (long)s.N * s.C * s.H * s.W, "maxpool_bwd", "dx");
        int n = s.N * s.C * s.H * s.W;
        if (n == 0) return;
        (_maxBwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, PoolArgs>(KP.MaxBackward))(n, V(x), V(dy), V(dx), Args(s));
    }

    public void AvgPoolForward(in PoolShape s, Tensor x, Tensor y)
    {
        Counters.Hit("avgpool_fwd", (long)s.N * s.C * s.OutH * s.OutW * s.KH * s.KW);
        CheckPool(s, x, y, "avgpool_fwd", "x", "y");
        int n = s.N * s.C * s.OutH * s.OutW;
        if (n == 0) return;
        (_avgFwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, PoolArgs>(KP.AvgForward))(n, V(x), V(y), Args(s));
    }

    public void AvgPoolBackward(in PoolShape s, Tensor dy, Tensor dx)
    {
        Counters.Hit("avgpool_bwd", (long)s.N * s.C * s.OutH * s.OutW * s.KH * s.KW);
        CheckPool(s, dx, dy, "avgpool_bwd", "dx", "dy");
        int n = s.N * s.C * s.H * s.W;
        if (n == 0) return;
        (_avgBwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, PoolArgs>(KP.AvgBackward))(n, V(dy), V(dx), Args(s));
    }

    public void GlobalAvgPoolForward(Tensor x, Tensor y, int n, int c, int hw)
    {
        Counters.Hit("gap_fwd", (long)n * c * hw);
        Check.Len(x, (long)n * c * hw, "gap_fwd", "x"); Check.Len(y, (long)n * c, "gap_fwd", "y");
        if (n * c == 0) return;
        RowsRaw(V(x), V(y), n * c, hw, 0, hw == 0 ? 0f : 1f / hw);
    }

    public void GlobalAvgPoolBackward(Tensor dy, Tensor dx, int n, int c, int hw)
    {
        Counters.Hit("gap_bwd", (long)n * c * hw);
        Check.Len(dy, (long)n * c, "gap_bwd", "dy"); Check.Len(dx, (long)n * c * hw, "gap_bwd", "dx");
        if ((long)n * c * hw == 0) return;
        (_bcastRows ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, int, float>(KE.BroadcastRows))(n * c * hw, V(dy), V(dx), hw, 1f / hw);
    }

    // ------------------------------------------------------------------ batch norm, channel affine

    V1 Scratch(int n) => Workspace(ref _wsSmall, n);

    /// <summary>Checks that each given per-channel tensor (null ones are skipped) holds at least c values.</summary>
    static void PerChannel(string op, int c, params (Tensor? T, string Name)[] tensors)
    {
        foreach (var (t, name) in tensors) if (t is not null) Check.Len(t, c, op, name);
    }

    public void BatchNormForwardTrain(Tensor x, Tensor gamma, Tensor beta, Tensor y, Tensor saveMean, Tensor saveInvStd,
        Tensor runningMean, Tensor runningVar, float momentum, float eps, int n, int c, int hw)
    {
        const string op = "bn_fwd_train";
        Counters.Hit(op, 8L * n * c * hw);
        long len = (long)n * c * hw;
        Check.Len(x, len, op, "x"); Check.Len(y, len, op, "y");
        PerChannel(op, c, (gamma, "gamma"), (beta, "beta"), (saveMean, "saveMean"), (saveInvStd, "saveInvStd"),
            (runningMean, "runningMean"), (runningVar, "runningVar"));
        if (c == 0) return;
        (_bnFwd ??= _acc.LoadStreamKernel<V1, V1, V1, V1, V1, V1, V1, V1, BnArgs>(KN.BatchNormForwardTrain))(PerRow(c),
            V(x), V(gamma), V(beta), V(y), V(saveMean), V(saveInvStd), V(runningMean), V(runningVar),
            new BnArgs { N = n, C = c, HW = hw, Momentum = momentum, Eps = eps });
    }

    public void BatchNormBackward(Tensor x, Tensor dy, Tensor gamma, Tensor saveMean, Tensor saveInvStd, Tensor dx,
        Tensor? dgamma, Tensor? dbeta, int n, int c, int hw)
    {
        const string op = "bn_bwd";
        Counters.Hit(op, 10L * n * c * hw);
        long len = (long)n * c * hw;
        Check.Len(x, len, op, "x"); Check.Len(dy, len, op, "dy"); Check.Len(dx, len, op, "dx");
        PerChannel(op, c, (gamma, "gamma"), (saveMean, "saveMean"), (saveInvStd, "saveInvStd"), (dgamma, "dgamma"), (dbeta, "dbeta"));
        if (c == 0) return;
        bool grads = dgamma is not null || dbeta is not null;
        V1 scratch = grads && (dgamma is null || dbeta is null) ? Scratch(c) : _dummy.View;
        (_bnBwd ??= _acc.LoadStreamKernel<V1, V1, V1, V1, V1, V1, V1, V1, int, BnArgs>(KN.BatchNormBackward))(PerRow(c),
            V(x), V(dy), V(gamma), V(saveMean), V(saveInvStd), V(dx),
            dgamma is null ? scratch : V(dgamma), dbeta is null ? scratch : V(dbeta), grads ? 1 : 0,
            new BnArgs { N = n, C = c, HW = hw });
    }

    public void ChannelAffine(Tensor x, Tensor scale, Tensor shift, Tensor y, int n, int c, int hw)
    {
        Counters.Hit("channel_affine", 2L * n * c * hw);
        long len = (long)n * c * hw;
        Check.Len(x, len, "channel_affine", "x"); Check.Len(y, len, "channel_affine", "y");
        Check.Len(scale, c, "channel_affine", "scale"); Check.Len(shift, c, "channel_affine", "shift");
        if (len == 0) return;
        (_chAffine ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, int, int>(KN.ChannelAffine))((int)len, V(x), V(scale), V(shift), V(y), c, hw);
    }

    public void ChannelAffineBackward(Tensor dy, Tensor scale, Tensor dx, Tensor? x, Tensor? dscale, Tensor? dshift, int n, int c, int hw)
    {
        const string op = "channel_affine_bwd";
        Counters.Hit(op, 4L * n * c * hw);
        long len = (long)n * c * hw;
        Check.Len(dy, len, op, "dy"); Check.Len(dx, len, op, "dx"); Check.Len(scale, c, op, "scale");
        if (dscale is not null) Check.Len(dscale, c, op, "dscale");
        if (dshift is not null) Check.Len(dshift, c, op, "dshift");
        if (len == 0 && c == 0) return;
        if (dscale is null && dshift is null)
        {
            if (len == 0) return;
            (_chAffineBwdData ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, int, int>(KN.ChannelAffineBackwardData))((int)len, V(dy), V(scale), V(dx), c, hw);
            return;
        }
        if (x is null) throw new ArgumentException($"{op}: x is needed for dscale/dshift");
        Check.Len(x, len, op, "x");
        V1 scratch = dscale is null || dshift is null ? Scratch(c) : _dummy.View;
        (_chAffineBwdFull ??= _acc.LoadStreamKernel<V1, V1, V1, V1, V1, V1, BnArgs>(KN.ChannelAffineBackwardFull))(PerRow(c),
            V(dy), V(scale), V(dx), V(x), dscale is null ? scratch : V(dscale), dshift is null ? scratch : V(dshift),
            new BnArgs { N = n, C = c, HW = hw });
    }

    // ------------------------------------------------------------------ softmax, losses

    void CheckRows(Tensor t, int rows, int cols, string op, string name) => Check.Len(t, (long)rows * cols, op, name);

    public void Softmax(Tensor x, Tensor y, int rows, int cols)
    {
        Counters.Hit("softmax", 5L * rows * cols);
        CheckRows(x, rows, cols, "softmax", "x"); CheckRows(y, rows, cols, "softmax", "y");
        if (rows == 0) return;
        (_softmax ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, int>(KL.Softmax))(rows, V(x), V(y), cols);
    }

    public void LogSoftmax(Tensor x, Tensor y, int rows, int cols)
    {
        Counters.Hit("log_softmax", 5L * rows * cols);
        CheckRows(x, rows, cols, "log_softmax", "x"); CheckRows(y, rows, cols, "log_softmax", "y");
        if (rows == 0) return;
        (_logSoftmax ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, int>(KL.LogSoftmax))(rows, V(x), V(y), cols);
    }

    public void SoftmaxBackward(Tensor y, Tensor dy, Tensor dx, int rows, int cols)
    {
        Counters.Hit("softmax_bwd", 4L * rows * cols);
        CheckRows(y, rows, cols, "softmax_bwd", "y"); CheckRows(dy, rows, cols, "softmax_bwd", "dy"); CheckRows(dx, rows, cols, "softmax_bwd", "dx");
        if (rows == 0) return;
        (_softmaxBwd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, int>(KL.SoftmaxBackward))(rows, V(y), V(dy), V(dx), cols);
    }

    void CheckLoss(Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, int rows, int cols, string op)
    {
        CheckRows(logits, rows, cols, op, "logits"); Check.Len(labels, rows, op, "labels"); Check.Len(loss, rows, op, "loss");
        if (dlogits is not null) { CheckRows(dlogits, rows, cols, op, "dlogits"); Check.Len(gradScale, rows, op, "gradScale"); }
    }

    public void CrossEntropy(Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, int rows, int cols)
    {
        Counters.Hit("ce_loss", 6L * rows * cols);
        CheckLoss(logits, labels, loss, dlogits, gradScale, rows, cols, "ce_loss");
        if (rows == 0) return;
        (_ce ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, V1, int, int>(KL.CrossEntropy))(rows,
            V(logits), V(labels), V(loss), VOrDummy(dlogits), dlogits is null ? _dummy.View : V(gradScale), cols, dlogits is null ? 0 : 1);
    }

    public void CwMarginLoss(Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, bool targeted, float kappa, int rows, int cols)
    {
        Counters.Hit("cw_loss", 2L * rows * cols);
        CheckLoss(logits, labels, loss, dlogits, gradScale, rows, cols, "cw_loss");
        if (rows == 0) return;
        (_cw ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, V1, int, int, float, int>(KL.CwMargin))(rows,
            V(logits), V(labels), V(loss), VOrDummy(dlogits), dlogits is null ? _dummy.View : V(gradScale), cols, targeted ? 1 : 0, kappa, dlogits is null ? 0 : 1);
    }

    public void DlrLoss(Tensor logits, Tensor labels, Tensor targets, Tensor loss, Tensor? dlogits, Tensor gradScale, bool targeted, int rows, int cols)
    {
        if (cols < 2) throw new ArgumentException($"dlr_loss: needs at least two classes, got {cols}");
        Counters.Hit("dlr_loss", 4L * rows * cols);
        CheckLoss(logits, labels, loss, dlogits, gradScale, rows, cols, "dlr_loss");
        if (targeted) Check.Len(targets, rows, "dlr_loss", "targets");
        if (rows == 0) return;
        (_dlr ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, V1, V1, int, int, int>(KL.Dlr))(rows,
            V(logits), V(labels), targeted ? V(targets) : _dummy.View, V(loss), VOrDummy(dlogits), dlogits is null ? _dummy.View : V(gradScale),
            cols, targeted ? 1 : 0, dlogits is null ? 0 : 1);
    }

    public void BceWithLogits(Tensor logits, Tensor labels, Tensor loss, Tensor? dlogits, Tensor gradScale, int rows)
    {
        Counters.Hit("bce_loss", 8L * rows);
        CheckLoss(logits, labels, loss, dlogits, gradScale, rows, 1, "bce_loss");
        if (rows == 0) return;
        (_bce ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, V1, int>(KL.BceWithLogits))(rows,
            V(logits), V(labels), V(loss), VOrDummy(dlogits), dlogits is null ? _dummy.View : V(gradScale), dlogits is null ? 0 : 1);
    }

    // ------------------------------------------------------------------ element-wise

    public void Add(Tensor a, Tensor b, Tensor y)
    {
        Counters.Hit("add", y.Length);
        Check.Len(a, y.Length, "add", "a"); Check.Len(b, y.Length, "add", "b");
        if (y.Length == 0) return;
        (_add ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1>(KE.Add))(y.Length, V(a), V(b), V(y));
    }

    public void Mul(Tensor a, Tensor b, Tensor y)
    {
        Counters.Hit("mul", y.Length);
        Check.Len(a, y.Length, "mul", "a"); Check.Len(b, y.Length, "mul", "b");
        if (y.Length == 0) return;
        (_mul ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1>(KE.Mul))(y.Length, V(a), V(b), V(y));
    }

    public void Axpy(float alpha, Tensor x, Tensor y)
    {
        Counters.Hit("axpy", 2L * y.Length);
        Check.Len(x, y.Length, "axpy", "x");
        if (y.Length == 0) return;
        (_axpy ??= _acc.LoadAutoGroupedStreamKernel<Index1D, float, V1, V1>(KE.Axpy))(y.Length, alpha, V(x), V(y));
    }

    public void Scale(float alpha, Tensor x, Tensor y)
    {
        Counters.Hit("scale", y.Length);
        Check.Len(x, y.Length, "scale", "x");
        if (y.Length == 0) return;
        (_scale ??= _acc.LoadAutoGroupedStreamKernel<Index1D, float, V1, V1>(KE.Scale))(y.Length, alpha, V(x), V(y));
    }

    public void Clamp(Tensor x, float lo, float hi, Tensor y)
    {
        Counters.Hit("clamp", y.Length);
        Check.Len(x, y.Length, "clamp", "x");
        if (y.Length == 0) return;
        (_clamp ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, float, float, V1>(KE.Clamp))(y.Length, V(x), lo, hi, V(y));
    }

    public void Sign(Tensor x, Tensor y)
    {
        Counters.Hit("sign", y.Length);
        Check.Len(x, y.Length, "sign", "x");
        if (y.Length == 0) return;
        (_sign ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1>(KE.Sign))(y.Length, V(x), V(y));
    }

    public void Lerp(Tensor a, Tensor b, float t, Tensor y)
    {
        Counters.Hit("lerp", 3L * y.Length);
        Check.Len(a, y.Length, "lerp", "a"); Check.Len(b, y.Length, "lerp", "b");
        if (y.Length == 0) return;
        (_lerp ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, float, V1>(KE.Lerp))(y.Length, V(a), V(b), t, V(y));
    }

    public void ChannelCopy(Tensor src, int srcC, int srcOff, Tensor dst, int dstC, int dstOff, int count, int outer, int inner, bool accumulate)
    {
        Counters.Hit("channel_copy", (long)outer * count * inner);
        if (srcOff < 0 || dstOff < 0 || count < 0 || srcOff + count > srcC || dstOff + count > dstC)
            throw new ArgumentException($"channel_copy: channels [{srcOff},{srcOff + count}) of {srcC} into [{dstOff},{dstOff + count}) of {dstC}");
        Check.Len(src, (long)outer * srcC * inner, "channel_copy", "src"); Check.Len(dst, (long)outer * dstC * inner, "channel_copy", "dst");
        long n = (long)outer * count * inner;
        if (n == 0) return;
        (_chCopy ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, int, int, V1, int, int, int, int, int>(KE.ChannelCopy))(
            (int)n, V(src), srcC, srcOff, V(dst), dstC, dstOff, count, inner, accumulate ? 1 : 0);
    }

    // ------------------------------------------------------------------ reductions

    void RowsRaw(V1 x, V1 outp, int rows, int cols, int kind, float scale) =>
        (_rows ??= _acc.LoadStreamKernel<V1, V1, int, int, float>(KD.Rows))(PerRow(rows), x, outp, cols, kind, scale);

    public void ReduceRows(Reduction kind, Tensor x, Tensor outp, int rows, int cols)
    {
        Counters.Hit("reduce", (long)rows * cols);
        CheckRows(x, rows, cols, "reduce", "x"); Check.Len(outp, rows, "reduce", "out");
        if (rows == 0) return;
        RowsRaw(V(x), V(outp), rows, cols, (int)kind, 1f);
    }

    public void ArgmaxRows(Tensor x, Tensor outp, int rows, int cols)
    {
        Counters.Hit("argmax", (long)rows * cols);
        CheckRows(x, rows, cols, "argmax", "x"); Check.Len(outp, rows, "argmax", "out");
        if (rows == 0) return;
        (_argmax ??= _acc.LoadStreamKernel<V1, V1, int>(KD.Argmax))(PerRow(rows), V(x), V(outp), cols);
    }

    // ------------------------------------------------------------------ random

    public void RandomUniform(Tensor t, ulong seed, ulong offset)
    {
        Counters.Hit("rand_uniform", t.Length);
        if (t.Length == 0) return;
        (_uniform ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, ulong, ulong>(KR.Uniform))(t.Length, V(t), seed, offset);
    }

    public void RandomNormal(Tensor t, ulong seed, ulong offset, float mean = 0f, float std = 1f)
    {
        Counters.Hit("rand_normal", t.Length);
        if (t.Length == 0) return;
        (_normal ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, ulong, ulong, float, float>(KR.Normal))(t.Length, V(t), seed, offset, mean, std);
    }

    public void DropoutForward(Tensor x, Tensor y, Tensor mask, float p, ulong seed, ulong offset)
    {
        Counters.Hit("dropout", x.Length);
        Check.Len(y, x.Length, "dropout", "y"); Check.Len(mask, x.Length, "dropout", "mask");
        if (x.Length == 0) return;
        (_dropout ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, float, ulong, ulong>(KR.Dropout))(x.Length, V(x), V(y), V(mask), p, seed, offset);
    }

    // ------------------------------------------------------------------ optimisers

    public void SgdUpdate(Tensor w, Tensor g, Tensor v, float lr, float momentum, float weightDecay, bool nesterov)
    {
        Counters.Hit("sgd", 5L * w.Length);
        Check.Len(g, w.Length, "sgd", "g"); Check.Len(v, w.Length, "sgd", "v");
        if (w.Length == 0) return;
        (_sgd ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, float, float, float, int>(KO.Sgd))(w.Length, V(w), V(g), V(v), lr, momentum, weightDecay, nesterov ? 1 : 0);
    }

    public void AdamUpdate(Tensor w, Tensor g, Tensor m, Tensor v, float lr, float beta1, float beta2, float eps, float weightDecay, int step)
    {
        Counters.Hit("adam", 12L * w.Length);
        if (step < 1) throw new ArgumentException($"adam: step must start at 1, got {step}");
        Check.Len(g, w.Length, "adam", "g"); Check.Len(m, w.Length, "adam", "m"); Check.Len(v, w.Length, "adam", "v");
        if (w.Length == 0) return;
        float bc1 = (float)(1.0 - Math.Pow(beta1, step)), bc2 = (float)(1.0 - Math.Pow(beta2, step));
        (_adam ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, float, float, float, float, float, float, float>(KO.Adam))(
            w.Length, V(w), V(g), V(m), V(v), lr, beta1, beta2, eps, weightDecay, bc1, bc2);
    }

    // ------------------------------------------------------------------ fused attack steps

    void CheckStep(Tensor xadv, Tensor x0, Tensor grad, Tensor step, Tensor eps, int rows, int cols, string op)
    {
        CheckRows(xadv, rows, cols, op, "xadv"); CheckRows(x0, rows, cols, op, "x0"); CheckRows(grad, rows, cols, op, "grad");
        Check.Len(step, rows, op, "step"); Check.Len(eps, rows, op, "eps");
    }

    public void AttackStepLinf(Tensor xadv, Tensor x0, Tensor grad, Tensor step, Tensor eps, int rows, int cols)
    {
        Counters.Hit("attack_step_linf", 6L * rows * cols);
        CheckStep(xadv, x0, grad, step, eps, rows, cols, "attack_step_linf");
        if ((long)rows * cols == 0) return;
        (_stepLinf ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, V1, V1, int>(KS.Linf))(rows * cols, V(xadv), V(x0), V(grad), V(step), V(eps), cols);
    }

    public void AttackStepL2(Tensor xadv, Tensor x0, Tensor grad, Tensor step, Tensor eps, int rows, int cols)
    {
        Counters.Hit("attack_step_l2", 10L * rows * cols);
        CheckStep(xadv, x0, grad, step, eps, rows, cols, "attack_step_l2");
        if (rows == 0) return;
        (_stepL2 ??= _acc.LoadStreamKernel<V1, V1, V1, V1, V1, int>(KS.L2))(PerRow(rows), V(xadv), V(x0), V(grad), V(step), V(eps), cols);
    }
}
