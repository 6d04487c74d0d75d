using ILGPU;
using ILGPU.Runtime;
using Perturb.Kernels;
using KC = Perturb.Kernels.Conv;
using KD = Perturb.Kernels.Reduce;
using KE = Perturb.Kernels.Elementwise;
using V1 = ILGPU.ArrayView<float>;

namespace Perturb.Engine.Backends;

/// <summary>Convolution as im2col + batched GEMM in chunks of samples (the column matrix stays within ColBudget), and the bias ops. The CPU twin is CpuConv.cs.</summary>
public sealed partial class IlgpuBackend
{
    Action<Index1D, V1, V1, ConvArgs>? _im2col, _col2im;
    Action<Index1D, V1, V1, V1, int, int, int, int>? _colsToNchw;
    Action<Index1D, V1, V1, int, int, int>? _nchwToCols;
    Action<Index1D, V1, V1, int, int>? _biasAdd;
    Action<KernelConfig, V1, V1, int, int, int>? _biasGrad;

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
}
