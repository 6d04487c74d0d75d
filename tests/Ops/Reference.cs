using Perturb.Engine;
using Philox = Perturb.Kernels.Philox;

namespace Perturb.Tests;

/// <summary>
/// Plain double-precision reference implementations of every <see cref="IBackend"/> op, written straight from the
/// doc comments in IBackend.cs / OpParams.cs with naive loops. Arrays are row-major with no offsets. Inputs are never
/// modified: every function returns new arrays (ops that update in place return the updated copies).
///
/// Meant to be obviously correct, not fast: use them as the ground truth for parity tests and, in double, for
/// finite-difference gradient checks of layers.
/// </summary>
public static class Ref
{
    // =============================================================== helpers

    /// <summary>
    /// n deterministic uniform values in [lo, hi) from System.Random(seed), each rounded to float so that the same
    /// numbers can be uploaded to a backend exactly.
    /// </summary>
    public static double[] Rand(int n, int seed, double lo = -1, double hi = 1)
    {
        var r = new Random(seed);
        var a = new double[n];
        for (int i = 0; i < n; i++) a[i] = (float)(lo + (hi - lo) * r.NextDouble());
        return a;
    }

    /// <summary>n deterministic integer labels in [0, classes) stored as doubles.</summary>
    public static double[] Labels(int n, int classes, int seed)
    {
        var r = new Random(seed);
        var a = new double[n];
        for (int i = 0; i < n; i++) a[i] = r.Next(classes);
        return a;
    }

    /// <summary>An array of n copies of v.</summary>
    public static double[] Full(int n, double v) { var a = new double[n]; Array.Fill(a, v); return a; }

    public static float[] F(double[] a) { var f = new float[a.Length]; for (int i = 0; i < a.Length; i++) f[i] = (float)a[i]; return f; }
    public static double[] D(float[] a) { var d = new double[a.Length]; for (int i = 0; i < a.Length; i++) d[i] = a[i]; return d; }

    /// <summary>
    /// Asserts |expected[i] - actual[i]| &lt;= atol + rtol*|expected[i]| for every i (NaN fails), and equal lengths.
    /// On failure reports the worst index (largest excess over its tolerance), both values, and how many failed.
    /// </summary>
    public static void AssertClose(double[] expected, float[] actual, double rtol, double atol, string what)
    {
        if (expected.Length != actual.Length)
            Assert.Fail($"{what}: length {actual.Length}, expected {expected.Length}");
        int worst = -1, bad = 0; double worstExcess = double.NegativeInfinity;
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i], a = actual[i];
            bool ok;
            double excess;
            if (double.IsNaN(e) || double.IsInfinity(e)) { ok = e.Equals(a); excess = ok ? 0 : double.PositiveInfinity; }
            else
            {
                double diff = Math.Abs(e - a), tol = atol + rtol * Math.Abs(e);
                ok = diff <= tol;                       // false for NaN
                excess = double.IsNaN(diff) ? double.PositiveInfinity : diff - tol;
            }
            if (!ok) bad++;
            if (!ok && (worst < 0 || excess > worstExcess)) { worst = i; worstExcess = excess; }
        }
        if (bad > 0)
            Assert.Fail($"{what}: {bad} of {expected.Length} values outside rtol={rtol:g3}, atol={atol:g3}; worst at [{worst}]: " +
                        $"expected {expected[worst]:R}, actual {actual[worst]:R} (|diff| = {Math.Abs(expected[worst] - actual[worst]):g4})");
    }

    /// <summary>As above for two double arrays (e.g. an analytic gradient against a finite-difference one).</summary>
    public static void AssertClose(double[] expected, double[] actual, double rtol, double atol, string what)
    {
        if (expected.Length != actual.Length) Assert.Fail($"{what}: length {actual.Length}, expected {expected.Length}");
        int worst = -1, bad = 0; double worstExcess = double.NegativeInfinity;
        for (int i = 0; i < expected.Length; i++)
        {
            double diff = Math.Abs(expected[i] - actual[i]), excess = double.IsNaN(diff) ? double.PositiveInfinity : diff - (atol + rtol * Math.Abs(expected[i]));
            if (excess > 0) { bad++; if (excess > worstExcess) { worst = i; worstExcess = excess; } }
        }
        if (bad > 0)
            Assert.Fail($"{what}: {bad} of {expected.Length} values outside rtol={rtol:g3}, atol={atol:g3}; worst at [{worst}]: " +
                        $"expected {expected[worst]:R}, actual {actual[worst]:R}");
    }

    /// <summary>
    /// Central finite-difference gradient of a scalar function f at x: (f(x + h e_i) - f(x - h e_i)) / 2h for each i.
    /// For layers: f(x) = sum(forward(x) .* dy) gives the vector-Jacobian product that a backward op returns.
    /// </summary>
    public static double[] NumericGradient(Func<double[], double> f, double[] x, double h = 1e-6)
    {
        var g = new double[x.Length];
        var xp = (double[])x.Clone();
        for (int i = 0; i < x.Length; i++)
        {
            xp[i] = x[i] + h; double fp = f(xp);
            xp[i] = x[i] - h; double fm = f(xp);
            xp[i] = x[i];
            g[i] = (fp - fm) / (2 * h);
        }
        return g;
    }

    /// <summary>sum_i a[i]*b[i].</summary>
    public static double Dot(double[] a, double[] b) { double s = 0; for (int i = 0; i < a.Length; i++) s += a[i] * b[i]; return s; }

    /// <summary>Bit-exact comparison of floats (NaN payloads included), reporting the first difference.</summary>
    public static void AssertBitEqual(float[] expected, float[] actual, string what)
    {
        if (expected.Length != actual.Length) Assert.Fail($"{what}: length {actual.Length}, expected {expected.Length}");
        int bad = 0, first = -1;
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i])) { bad++; if (first < 0) first = i; }
        if (bad > 0)
            Assert.Fail($"{what}: {bad} of {expected.Length} values differ bitwise; first at [{first}]: expected {expected[first]:R}, actual {actual[first]:R}");
    }

    // =============================================================== GEMM

    /// <summary>C[m x n] = alpha * op(A) * op(B) + beta * C; beta == 0 ignores C (which may then be null or hold NaN).</summary>
    public static double[] Gemm(bool transA, bool transB, int m, int n, int k, double alpha, double[] a, double[] b, double beta, double[]? c)
    {
        var y = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int p = 0; p < k; p++)
                {
                    double av = transA ? a[p * m + i] : a[i * k + p];
                    double bv = transB ? b[j * k + p] : b[p * n + j];
                    s += av * bv;
                }
                y[i * n + j] = alpha * s + (beta == 0 ? 0 : beta * c![i * n + j]);
            }
        return y;
    }

    // =============================================================== convolution

    /// <summary>y[N,K,OH,OW] = cross-correlation of x[N,C,H,W] with w[K,C/G,R,S], plus bias[K] when given.</summary>
    public static double[] ConvForward(ConvShape s, double[] x, double[] w, double[]? bias)
    {
        int oh = s.OutH, ow = s.OutW, cpg = s.CPerGroup, kpg = s.KPerGroup;
        var y = new double[s.N * s.K * oh * ow];
        for (int n = 0; n < s.N; n++)
            for (int k = 0; k < s.K; k++)
            {
                int g = k / kpg;
                for (int oy = 0; oy < oh; oy++)
                    for (int ox = 0; ox < ow; ox++)
                    {
                        double acc = bias is null ? 0 : bias[k];
                        for (int cc = 0; cc < cpg; cc++)
                        {
                            int c = g * cpg + cc;
                            for (int r = 0; r < s.R; r++)
                            {
                                int iy = oy * s.StrideH - s.PadH + r * s.DilH;
                                if (iy < 0 || iy >= s.H) continue;
                                for (int q = 0; q < s.S; q++)
                                {
                                    int ix = ox * s.StrideW - s.PadW + q * s.DilW;
                                    if (ix < 0 || ix >= s.W) continue;
                                    acc += x[((n * s.C + c) * s.H + iy) * s.W + ix] * w[((k * cpg + cc) * s.R + r) * s.S + q];
                                }
                            }
                        }
                        y[((n * s.K + k) * oh + oy) * ow + ox] = acc;
                    }
            }
        return y;
    }

    /// <summary>dx[N,C,H,W] = sum over every (output, tap) that read x of dy * w (the adjoint of ConvForward).</summary>
    public static double[] ConvBackwardData(ConvShape s, double[] dy, double[] w)
    {
        int oh = s.OutH, ow = s.OutW, cpg = s.CPerGroup, kpg = s.KPerGroup;
        var dx = new double[s.N * s.C * s.H * s.W];
        for (int n = 0; n < s.N; n++)
            for (int k = 0; k < s.K; k++)
            {
                int g = k / kpg;
                for (int oy = 0; oy < oh; oy++)
                    for (int ox = 0; ox < ow; ox++)
                    {
                        double d = dy[((n * s.K + k) * oh + oy) * ow + ox];
                        for (int cc = 0; cc < cpg; cc++)
                        {
                            int c = g * cpg + cc;
                            for (int r = 0; r < s.R; r++)
                            {
                                int iy = oy * s.StrideH - s.PadH + r * s.DilH;
                                if (iy < 0 || iy >= s.H) continue;
                                for (int q = 0; q < s.S; q++)
                                {
                                    int ix = ox * s.StrideW - s.PadW + q * s.DilW;
                                    if (ix < 0 || ix >= s.W) continue;
                                    dx[((n * s.C + c) * s.H + iy) * s.W + ix] += d * w[((k * cpg + cc) * s.R + r) * s.S + q];
                                }
                            }
                        }
                    }
            }
        return dx;
    }

    /// <summary>dw[K,C/G,R,S] = sum of dy * x over every use of the tap; db[K] = sum of dy over N, OH, OW (when withBias).</summary>
    public static (double[] dw, double[]? db) ConvBackwardWeights(ConvShape s, double[] x, double[] dy, bool withBias)
    {
        int oh = s.OutH, ow = s.OutW, cpg = s.CPerGroup, kpg = s.KPerGroup;
        var dw = new double[s.K * cpg * s.R * s.S];
        var db = withBias ? new double[s.K] : null;
        for (int n = 0; n < s.N; n++)
            for (int k = 0; k < s.K; k++)
            {
                int g = k / kpg;
                for (int oy = 0; oy < oh; oy++)
                    for (int ox = 0; ox < ow; ox++)
                    {
                        double d = dy[((n * s.K + k) * oh + oy) * ow + ox];
                        if (db is not null) db[k] += d;
                        for (int cc = 0; cc < cpg; cc++)
                        {
                            int c = g * cpg + cc;
                            for (int r = 0; r < s.R; r++)
                            {
                                int iy = oy * s.StrideH - s.PadH + r * s.DilH;
                                if (iy < 0 || iy >= s.H) continue;
                                for (int q = 0; q < s.S; q++)
                                {
                                    int ix = ox * s.StrideW - s.PadW + q * s.DilW;
                                    if (ix < 0 || ix >= s.W) continue;
                                    dw[((k * cpg + cc) * s.R + r) * s.S + q] += d * x[((n * s.C + c) * s.H + iy) * s.W + ix];
                                }
                            }
                        }
                    }
            }
        return (dw, db);
    }

    // =============================================================== bias

    /// <summary>Returns y + bias[c] for y viewed as [outer, channels, inner].</summary>
    public static double[] BiasAdd(double[] y, double[] bias, int outer, int channels, int inner)
    {
        var o = (double[])y.Clone();
        for (int n = 0; n < outer; n++)
            for (int c = 0; c < channels; c++)
                for (int i = 0; i < inner; i++) o[(n * channels + c) * inner + i] += bias[c];
        return o;
    }

    /// <summary>db[c] = sum over n, i of dy[n, c, i].</summary>
    public static double[] BiasGrad(double[] dy, int outer, int channels, int inner)
    {
        var db = new double[channels];
        for (int n = 0; n < outer; n++)
            for (int c = 0; c < channels; c++)
                for (int i = 0; i < inner; i++) db[c] += dy[(n * channels + c) * inner + i];
        return db;
    }

    // =============================================================== activations

    public static double Act(Activation f, double alpha, double x) => f switch
    {
        Engine.Activation.Relu => x > 0 ? x : 0,
        Engine.Activation.LeakyRelu => x > 0 ? x : alpha * x,
        Engine.Activation.Sigmoid => 1 / (1 + Math.Exp(-x)),
        Engine.Activation.Tanh => Math.Tanh(x),
        _ => throw new ArgumentOutOfRangeException(nameof(f)),
    };

    /// <summary>y = f(x) elementwise.</summary>
    public static double[] Activation(Activation f, double alpha, double[] x) => x.Select(v => Act(f, alpha, v)).ToArray();

    /// <summary>
    /// dx = dy * f'(x). ReLU/LeakyReLU read x (the x &gt; 0 branch only for x &gt; 0: ReLU'(0) = 0, LeakyReLU'(0) = alpha);
    /// Sigmoid reads y: y(1-y); Tanh reads y: 1-y^2.
    /// </summary>
    public static double[] ActivationBackward(Activation f, double alpha, double[]? x, double[]? y, double[] dy)
    {
        var dx = new double[dy.Length];
        for (int i = 0; i < dy.Length; i++)
            dx[i] = dy[i] * f switch
            {
                Engine.Activation.Relu => x![i] > 0 ? 1.0 : 0.0,
                Engine.Activation.LeakyRelu => x![i] > 0 ? 1.0 : alpha,
                Engine.Activation.Sigmoid => y![i] * (1 - y[i]),
                Engine.Activation.Tanh => 1 - y![i] * y[i],
                _ => throw new ArgumentOutOfRangeException(nameof(f)),
            };
        return dx;
    }

    // =============================================================== pooling

    /// <summary>Max pooling; padded positions never win; ties go to the first maximum in row-major window order.</summary>
    public static double[] MaxPoolForward(PoolShape s, double[] x)
    {
        int oh = s.OutH, ow = s.OutW;
        var y = new double[s.N * s.C * oh * ow];
        for (int nc = 0; nc < s.N * s.C; nc++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++)
                {
                    int arg = MaxArg(s, x, nc, oy, ox);
                    y[(nc * oh + oy) * ow + ox] = arg < 0 ? double.NegativeInfinity : x[arg];
                }
        return y;
    }

    /// <summary>Index into x of the window's first maximum, -1 if the window holds no real input position.</summary>
    static int MaxArg(PoolShape s, double[] x, int nc, int oy, int ox)
    {
        int best = -1;
        for (int r = 0; r < s.KH; r++)
        {
            int iy = oy * s.StrideH - s.PadH + r;
            if (iy < 0 || iy >= s.H) continue;
            for (int q = 0; q < s.KW; q++)
            {
                int ix = ox * s.StrideW - s.PadW + q;
                if (ix < 0 || ix >= s.W) continue;
                int idx = (nc * s.H + iy) * s.W + ix;
                if (best < 0 || x[idx] > x[best]) best = idx;
            }
        }
        return best;
    }

    /// <summary>dx = sum over windows of dy routed to the window's first maximum of x.</summary>
    public static double[] MaxPoolBackward(PoolShape s, double[] x, double[] dy)
    {
        int oh = s.OutH, ow = s.OutW;
        var dx = new double[x.Length];
        for (int nc = 0; nc < s.N * s.C; nc++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++)
                {
                    int arg = MaxArg(s, x, nc, oy, ox);
                    if (arg >= 0) dx[arg] += dy[(nc * oh + oy) * ow + ox];
                }
        return dx;
    }

    /// <summary>
    /// The average-pooling window of output (oy, ox), clipped to the input, and its divisor: the clipped size, or
    /// (CountIncludePad) the window clipped to the padded input [-pad, size + pad), as PyTorch.
    /// </summary>
    public static (int y0, int y1, int x0, int x1, int divisor) AvgWindow(PoolShape s, int oy, int ox)
    {
        int hs = oy * s.StrideH - s.PadH, ws = ox * s.StrideW - s.PadW;
        int he = Math.Min(hs + s.KH, s.H + s.PadH), we = Math.Min(ws + s.KW, s.W + s.PadW);
        int padded = (he - hs) * (we - ws);
        int y0 = Math.Max(hs, 0), x0 = Math.Max(ws, 0), y1 = Math.Min(he, s.H), x1 = Math.Min(we, s.W);
        int divisor = s.CountIncludePad ? padded : (y1 - y0) * (x1 - x0);
        return (y0, y1, x0, x1, divisor);
    }

    public static double[] AvgPoolForward(PoolShape s, double[] x)
    {
        int oh = s.OutH, ow = s.OutW;
        var y = new double[s.N * s.C * oh * ow];
        for (int nc = 0; nc < s.N * s.C; nc++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++)
                {
                    var (y0, y1, x0, x1, div) = AvgWindow(s, oy, ox);
                    double sum = 0;
                    for (int iy = y0; iy < y1; iy++)
                        for (int ix = x0; ix < x1; ix++) sum += x[(nc * s.H + iy) * s.W + ix];
                    y[(nc * oh + oy) * ow + ox] = sum / div;
                }
        return y;
    }

    public static double[] AvgPoolBackward(PoolShape s, double[] dy)
    {
        int oh = s.OutH, ow = s.OutW;
        var dx = new double[s.N * s.C * s.H * s.W];
        for (int nc = 0; nc < s.N * s.C; nc++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++)
                {
                    var (y0, y1, x0, x1, div) = AvgWindow(s, oy, ox);
                    double g = dy[(nc * oh + oy) * ow + ox] / div;
                    for (int iy = y0; iy < y1; iy++)
                        for (int ix = x0; ix < x1; ix++) dx[(nc * s.H + iy) * s.W + ix] += g;
                }
        return dx;
    }

    public static double[] GlobalAvgPoolForward(double[] x, int n, int c, int hw)
    {
        var y = new double[n * c];
        for (int i = 0; i < n * c; i++) { double s = 0; for (int j = 0; j < hw; j++) s += x[i * hw + j]; y[i] = s / hw; }
        return y;
    }

    public static double[] GlobalAvgPoolBackward(double[] dy, int n, int c, int hw)
    {
        var dx = new double[n * c * hw];
        for (int i = 0; i < n * c; i++) for (int j = 0; j < hw; j++) dx[i * hw + j] = dy[i] / hw;
        return dx;
    }

    // =============================================================== batch norm, channel affine

    /// <summary>
    /// Training-mode batch norm over x viewed as [n, c, hw]: per channel mean and biased variance over n*hw values,
    /// y = (x - mean)*invStd*gamma + beta, invStd = 1/sqrt(var + eps); unbiasedVar = M/(M-1)*var (var when M == 1).
    /// </summary>
    public static (double[] y, double[] mean, double[] invStd, double[] unbiasedVar) BatchNormTrain(
        double[] x, double[] gamma, double[] beta, double eps, int n, int c, int hw)
    {
        int m = n * hw;
        var mean = new double[c]; var inv = new double[c]; var uvar = new double[c]; var y = new double[n * c * hw];
        for (int ch = 0; ch < c; ch++)
        {
            double s = 0;
            for (int b = 0; b < n; b++) for (int i = 0; i < hw; i++) s += x[(b * c + ch) * hw + i];
            double mu = s / m, v = 0;
            for (int b = 0; b < n; b++) for (int i = 0; i < hw; i++) { double d = x[(b * c + ch) * hw + i] - mu; v += d * d; }
            v /= m;
            mean[ch] = mu; inv[ch] = 1 / Math.Sqrt(v + eps); uvar[ch] = m > 1 ? v * m / (m - 1) : v;
            for (int b = 0; b < n; b++)
                for (int i = 0; i < hw; i++)
                {
                    int idx = (b * c + ch) * hw + i;
                    y[idx] = (x[idx] - mu) * inv[ch] * gamma[ch] + beta[ch];
                }
        }
        return (y, mean, inv, uvar);
    }

    /// <summary>runningMean = (1-momentum)*runningMean + momentum*mean; runningVar likewise with the unbiased variance.</summary>
    public static (double[] runningMean, double[] runningVar) BatchNormRunning(double[] runningMean, double[] runningVar,
        double[] mean, double[] unbiasedVar, double momentum)
    {
        var rm = new double[mean.Length]; var rv = new double[mean.Length];
        for (int i = 0; i < mean.Length; i++)
        {
            rm[i] = (1 - momentum) * runningMean[i] + momentum * mean[i];
            rv[i] = (1 - momentum) * runningVar[i] + momentum * unbiasedVar[i];
        }
        return (rm, rv);
    }

    /// <summary>
    /// dx = gamma*invStd/M * (M*dy - sum(dy) - xhat*sum(dy*xhat)), xhat = (x - mean)*invStd, M = n*hw;
    /// dgamma = sum(dy*xhat), dbeta = sum(dy), per channel.
    /// </summary>
    public static (double[] dx, double[] dgamma, double[] dbeta) BatchNormBackward(double[] x, double[] dy, double[] gamma,
        double[] mean, double[] invStd, int n, int c, int hw)
    {
        int m = n * hw;
        var dx = new double[x.Length]; var dg = new double[c]; var dbt = new double[c];
        for (int ch = 0; ch < c; ch++)
        {
            double sdy = 0, sdyx = 0;
            for (int b = 0; b < n; b++)
                for (int i = 0; i < hw; i++)
                {
                    int idx = (b * c + ch) * hw + i;
                    sdy += dy[idx]; sdyx += dy[idx] * (x[idx] - mean[ch]) * invStd[ch];
                }
            dg[ch] = sdyx; dbt[ch] = sdy;
            for (int b = 0; b < n; b++)
                for (int i = 0; i < hw; i++)
                {
                    int idx = (b * c + ch) * hw + i;
                    double xhat = (x[idx] - mean[ch]) * invStd[ch];
                    dx[idx] = gamma[ch] * invStd[ch] / m * (m * dy[idx] - sdy - xhat * sdyx);
                }
        }
        return (dx, dg, dbt);
    }

    /// <summary>y[n, c, i] = x[n, c, i]*scale[c] + shift[c].</summary>
    public static double[] ChannelAffine(double[] x, double[] scale, double[] shift, int n, int c, int hw)
    {
        var y = new double[n * c * hw];
        for (int b = 0; b < n; b++)
            for (int ch = 0; ch < c; ch++)
                for (int i = 0; i < hw; i++) { int idx = (b * c + ch) * hw + i; y[idx] = x[idx] * scale[ch] + shift[ch]; }
        return y;
    }

    /// <summary>dx = dy*scale[c]; dscale[c] = sum(dy*x); dshift[c] = sum(dy).</summary>
    public static (double[] dx, double[] dscale, double[] dshift) ChannelAffineBackward(double[] dy, double[] scale, double[] x, int n, int c, int hw)
    {
        var dx = new double[n * c * hw]; var ds = new double[c]; var dsh = new double[c];
        for (int b = 0; b < n; b++)
            for (int ch = 0; ch < c; ch++)
                for (int i = 0; i < hw; i++)
                {
                    int idx = (b * c + ch) * hw + i;
                    dx[idx] = dy[idx] * scale[ch]; ds[ch] += dy[idx] * x[idx]; dsh[ch] += dy[idx];
                }
        return (dx, ds, dsh);
    }

    // =============================================================== softmax

    public static double[] Softmax(double[] x, int rows, int cols)
    {
        var y = new double[rows * cols];
        for (int r = 0; r < rows; r++)
        {
            double mx = double.NegativeInfinity; for (int j = 0; j < cols; j++) mx = Math.Max(mx, x[r * cols + j]);
            double s = 0; for (int j = 0; j < cols; j++) s += Math.Exp(x[r * cols + j] - mx);
            for (int j = 0; j < cols; j++) y[r * cols + j] = Math.Exp(x[r * cols + j] - mx) / s;
        }
        return y;
    }

    /// <summary>logsumexp of row r, max-subtracted.</summary>
    public static double LogSumExp(double[] x, int r, int cols)
    {
        double mx = double.NegativeInfinity; for (int j = 0; j < cols; j++) mx = Math.Max(mx, x[r * cols + j]);
        double s = 0; for (int j = 0; j < cols; j++) s += Math.Exp(x[r * cols + j] - mx);
        return mx + Math.Log(s);
    }

    public static double[] LogSoftmax(double[] x, int rows, int cols)
    {
        var y = new double[rows * cols];
        for (int r = 0; r < rows; r++)
        {
            double lse = LogSumExp(x, r, cols);
            for (int j = 0; j < cols; j++) y[r * cols + j] = x[r * cols + j] - lse;
        }
        return y;
    }

    /// <summary>dx = y*(dy - sum_j dy_j*y_j) per row.</summary>
    public static double[] SoftmaxBackward(double[] y, double[] dy, int rows, int cols)
    {
        var dx = new double[rows * cols];
        for (int r = 0; r < rows; r++)
        {
            double dot = 0; for (int j = 0; j < cols; j++) dot += dy[r * cols + j] * y[r * cols + j];
            for (int j = 0; j < cols; j++) dx[r * cols + j] = y[r * cols + j] * (dy[r * cols + j] - dot);
        }
        return dx;
    }

    // =============================================================== losses

    /// <summary>
    /// loss[r] = logsumexp(z_r) - z_r[label] = log(1 + sum_{j != t} exp(z_j - z_t)); dlogits[r, j] =
    /// gradScale[r]*(softmax(z_r)_j - [j == label]), the label's entry as -sum_{j != t} p_j (exact in double even when
    /// p_t - 1 is not: the sum of the other probabilities can be 1e-30).
    /// </summary>
    public static (double[] loss, double[] dlogits) CrossEntropy(double[] logits, double[] labels, double[] gradScale, int rows, int cols)
    {
        var loss = new double[rows]; var d = new double[rows * cols];
        var p = Softmax(logits, rows, cols);
        for (int r = 0; r < rows; r++)
        {
            int t = (int)labels[r];
            double zt = logits[r * cols + t], s = 0, others = 0;
            for (int j = 0; j < cols; j++) if (j != t) { s += Math.Exp(logits[r * cols + j] - zt); others += p[r * cols + j]; }
            loss[r] = s < 1e-8 ? s - 0.5 * s * s : LogSumExp(logits, r, cols) - zt;
            for (int j = 0; j < cols; j++) d[r * cols + j] = gradScale[r] * (j == t ? -others : p[r * cols + j]);
        }
        return (loss, d);
    }

    /// <summary>
    /// The DLR loss (Croce and Hein 2020), to be maximised: untargeted -(z_y - max_{j != y} z_j) / (z_(1) - z_(3));
    /// targeted -(z_y - z_t) / (z_(1) - (z_(3) + z_(4))/2); three classes: z_(3) in both; two classes: denominator 1.
    /// The gradient by the quotient rule with the sorted positions fixed (first index wins ties).
    /// </summary>
    public static (double[] loss, double[] dlogits) Dlr(double[] logits, double[] labels, double[] targets, double[] gradScale,
        bool targeted, int rows, int cols)
    {
        var loss = new double[rows]; var d = new double[rows * cols];
        for (int r = 0; r < rows; r++)
        {
            var z = logits.AsSpan(r * cols, cols).ToArray();
            var order = Enumerable.Range(0, cols).OrderByDescending(j => z[j]).ThenBy(j => j).ToArray();
            int y = (int)labels[r];
            int o = targeted ? (int)targets[r] : Enumerable.Range(0, cols).Where(j => j != y).OrderByDescending(j => z[j]).ThenBy(j => j).First();
            double num = z[y] - z[o], den = 1;
            var g = new double[cols];
            if (cols >= 3)
            {
                bool four = targeted && cols >= 4;
                den = z[order[0]] - (four ? 0.5 * (z[order[2]] + z[order[3]]) : z[order[2]]) + 1e-12;
                double gd = num / (den * den);
                g[order[0]] += gd;
                if (four) { g[order[2]] -= 0.5 * gd; g[order[3]] -= 0.5 * gd; } else g[order[2]] -= gd;
            }
            g[y] -= 1 / den; g[o] += 1 / den;
            loss[r] = -num / den;
            for (int j = 0; j < cols; j++) d[r * cols + j] = gradScale[r] * g[j];
        }
        return (loss, d);
    }

    /// <summary>Cross-entropy with gradScale = 1 for every sample (the gradient of the summed loss).</summary>
    public static (double[] loss, double[] dlogits) CrossEntropy(double[] logits, double[] labels, int rows, int cols)
        => CrossEntropy(logits, labels, Full(rows, 1), rows, cols);

    /// <summary>
    /// Carlini-Wagner margin. Untargeted: loss = max(z_t - max_{j != t} z_j, -kappa); targeted: max(max_{j != t} z_j - z_t, -kappa).
    /// Gradient gradScale[r] * d loss/d z: zero when the margin is strictly below -kappa, else +-1 at t and at the first
    /// arg-max j != t.
    /// </summary>
    public static (double[] loss, double[] dlogits) CwMargin(double[] logits, double[] labels, double[] gradScale,
        bool targeted, double kappa, int rows, int cols)
    {
        var loss = new double[rows]; var d = new double[rows * cols];
        for (int r = 0; r < rows; r++)
        {
            int t = (int)labels[r], jm = -1;
            for (int j = 0; j < cols; j++)
                if (j != t && (jm < 0 || logits[r * cols + j] > logits[r * cols + jm])) jm = j;
            double zt = logits[r * cols + t], zo = logits[r * cols + jm];
            double margin = targeted ? zo - zt : zt - zo;
            loss[r] = Math.Max(margin, -kappa);
            if (margin < -kappa) continue;
            double st = targeted ? -1 : 1;
            d[r * cols + t] = gradScale[r] * st;
            d[r * cols + jm] = -gradScale[r] * st;
        }
        return (loss, d);
    }

    /// <summary>CW margin with gradScale = 1 for every sample.</summary>
    public static (double[] loss, double[] dlogits) CwMargin(double[] logits, double[] labels, bool targeted, double kappa, int rows, int cols)
        => CwMargin(logits, labels, Full(rows, 1), targeted, kappa, rows, cols);

    /// <summary>BCE with logits with gradScale = 1 for every sample.</summary>
    public static (double[] loss, double[] dlogits) Bce(double[] logits, double[] labels, int rows) => Bce(logits, labels, Full(rows, 1), rows);

    /// <summary>loss = max(z, 0) - z*y + log(1 + exp(-|z|)); dlogits = gradScale*(sigmoid(z) - y).</summary>
    public static (double[] loss, double[] dlogits) Bce(double[] logits, double[] labels, double[] gradScale, int rows)
    {
        var loss = new double[rows]; var d = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            double z = logits[r], y = labels[r];
            double e = Math.Exp(-Math.Abs(z));
            loss[r] = Math.Max(z, 0) - z * y + (e < 1e-8 ? e : Math.Log(1 + e));
            // sigmoid(z) - y as (1 - y) sigmoid(z) - y sigmoid(-z): exact for |z| up to 700.
            d[r] = gradScale[r] * ((1 - y) / (1 + Math.Exp(-z)) - y / (1 + Math.Exp(z)));
        }
        return (loss, d);
    }

    // =============================================================== element-wise

    public static double[] Add(double[] a, double[] b) => a.Zip(b, (u, v) => u + v).ToArray();
    public static double[] Mul(double[] a, double[] b) => a.Zip(b, (u, v) => u * v).ToArray();
    /// <summary>Returns y + alpha*x.</summary>
    public static double[] Axpy(double alpha, double[] x, double[] y) => x.Zip(y, (u, v) => v + alpha * u).ToArray();
    public static double[] Scale(double alpha, double[] x) => x.Select(v => alpha * v).ToArray();
    public static double[] Clamp(double[] x, double lo, double hi) => x.Select(v => Math.Min(Math.Max(v, lo), hi)).ToArray();
    public static double[] Sign(double[] x) => x.Select(v => (double)Math.Sign(v)).ToArray();
    public static double[] Lerp(double[] a, double[] b, double t) => a.Zip(b, (u, v) => u + t * (v - u)).ToArray();
    public static double[] Div(double[] a, double[] b) => a.Zip(b, (u, v) => u / v).ToArray();
    public static double[] Greater(double[] a, double[] b) => a.Zip(b, (u, v) => u > v ? 1.0 : 0.0).ToArray();

    /// <summary>|x| with the sign bit cleared, in float bits (the exact answer of IBackend.Abs for float inputs).</summary>
    public static float[] Abs(float[] x) => x.Select(v => BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(v) & int.MaxValue)).ToArray();

    /// <summary>y[r, c] = m[r] != 0 ? a[r, c] : b[r, c], selecting the float values themselves (bits included).</summary>
    public static float[] Where(float[] m, float[] a, float[] b, int rows, int cols)
    {
        var y = new float[rows * cols];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) y[r * cols + c] = m[r] != 0 ? a[r * cols + c] : b[r * cols + c];
        return y;
    }

    /// <summary>y[r, c] = x[r, c] * v[r] (mul) or x[r, c] + v[r].</summary>
    public static double[] RowBroadcast(bool mul, double[] x, double[] v, int rows, int cols)
    {
        var y = new double[rows * cols];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) y[r * cols + c] = mul ? x[r * cols + c] * v[r] : x[r * cols + c] + v[r];
        return y;
    }

    /// <summary>
    /// Returns dst with dst[n, dstOff + i, :] = (or +=) src[n, srcOff + i, :] for n &lt; outer, i &lt; count;
    /// other channels of dst unchanged.
    /// </summary>
    public static double[] ChannelCopy(double[] src, int srcC, int srcOff, double[] dst, int dstC, int dstOff, int count, int outer, int inner, bool accumulate)
    {
        var o = (double[])dst.Clone();
        for (int n = 0; n < outer; n++)
            for (int i = 0; i < count; i++)
                for (int j = 0; j < inner; j++)
                {
                    double v = src[(n * srcC + srcOff + i) * inner + j];
                    int di = (n * dstC + dstOff + i) * inner + j;
                    o[di] = accumulate ? o[di] + v : v;
                }
        return o;
    }

    // =============================================================== reductions

    public static double[] ReduceRows(Reduction kind, double[] x, int rows, int cols)
    {
        var o = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            var row = x.Skip(r * cols).Take(cols);
            o[r] = kind switch
            {
                Reduction.Sum => row.Sum(),
                Reduction.Max => row.Max(),
                Reduction.L0 => row.Count(v => Math.Abs(v) > 0),
                Reduction.L2 => Math.Sqrt(row.Sum(v => v * v)),
                Reduction.Linf => row.Max(v => Math.Abs(v)),
                _ => throw new ArgumentOutOfRangeException(nameof(kind)),
            };
        }
        return o;
    }

    /// <summary>Index of the first maximum of each row.</summary>
    public static double[] ArgmaxRows(double[] x, int rows, int cols)
    {
        var o = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            int best = 0;
            for (int j = 1; j < cols; j++) if (x[r * cols + j] > x[r * cols + best]) best = j;
            o[r] = best;
        }
        return o;
    }

    // =============================================================== random

    /// <summary>t[i] = Philox.Uniform(seed, offset, i), the exact floats every backend must produce.</summary>
    public static float[] Uniform(int n, ulong seed, ulong offset)
    {
        var u = new float[n];
        for (int i = 0; i < n; i++) u[i] = Philox.Uniform(seed, offset, i);
        return u;
    }

    /// <summary>
    /// mean + std*N(0,1) with Box-Muller in double on the same Philox words: u1 = ((w0 &gt;&gt; 8) + 1)*2^-24,
    /// u2 = (w1 &gt;&gt; 8)*2^-24, z = sqrt(-2 ln u1)*cos(2 pi u2).
    /// </summary>
    public static double[] Normal(int n, ulong seed, ulong offset, double mean = 0, double std = 1)
    {
        var o = new double[n];
        for (int i = 0; i < n; i++)
        {
            ulong c = offset + (ulong)i;
            var (w0, w1, _, _) = Philox.Block((uint)c, (uint)(c >> 32), 0, 0, (uint)seed, (uint)(seed >> 32));
            double u1 = ((w0 >> 8) + 1) * (1.0 / 16777216), u2 = (w1 >> 8) * (1.0 / 16777216);
            o[i] = mean + std * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
        }
        return o;
    }

    /// <summary>Inverted dropout: mask[i] = u_i &gt;= p ? 1/(1-p) : 0 (u_i = Philox.Uniform(seed, offset, i)); y = x*mask.</summary>
    public static (double[] y, double[] mask) Dropout(double[] x, float p, ulong seed, ulong offset)
    {
        var y = new double[x.Length]; var mask = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            mask[i] = Philox.Uniform(seed, offset, i) >= p ? 1.0 / (1.0 - p) : 0.0;
            y[i] = x[i] * mask[i];
        }
        return (y, mask);
    }

    // =============================================================== optimisers

    /// <summary>
    /// One SGD step, PyTorch's rule: g' = g + wd*w; v = momentum*v + g' (v = g' when momentum == 0);
    /// w -= lr*(nesterov ? g' + momentum*v : v). Returns the new (w, v).
    /// </summary>
    public static (double[] w, double[] v) Sgd(double[] w, double[] g, double[] v, double lr, double momentum, double weightDecay, bool nesterov)
    {
        var wn = new double[w.Length]; var vn = new double[w.Length];
        for (int i = 0; i < w.Length; i++)
        {
            double gp = g[i] + weightDecay * w[i];
            vn[i] = momentum == 0 ? gp : momentum * v[i] + gp;
            wn[i] = w[i] - lr * (nesterov ? gp + momentum * vn[i] : vn[i]);
        }
        return (wn, vn);
    }

    /// <summary>
    /// One Adam step (step starts at 1): g' = g + wd*w; m = b1*m + (1-b1)*g'; v = b2*v + (1-b2)*g'^2;
    /// w -= lr*(m/(1-b1^step)) / (sqrt(v/(1-b2^step)) + eps). Returns the new (w, m, v).
    /// </summary>
    public static (double[] w, double[] m, double[] v) Adam(double[] w, double[] g, double[] m, double[] v,
        double lr, double beta1, double beta2, double eps, double weightDecay, int step)
    {
        var wn = new double[w.Length]; var mn = new double[w.Length]; var vn = new double[w.Length];
        double bc1 = 1 - Math.Pow(beta1, step), bc2 = 1 - Math.Pow(beta2, step);
        for (int i = 0; i < w.Length; i++)
        {
            double gp = g[i] + weightDecay * w[i];
            mn[i] = beta1 * m[i] + (1 - beta1) * gp;
            vn[i] = beta2 * v[i] + (1 - beta2) * gp * gp;
            wn[i] = w[i] - lr * (mn[i] / bc1) / (Math.Sqrt(vn[i] / bc2) + eps);
        }
        return (wn, mn, vn);
    }

    // =============================================================== fused attack steps

    /// <summary>xadv = clamp(clamp(xadv + step[r]*sign(grad), x0 - eps[r], x0 + eps[r]), 0, 1), rows = samples.</summary>
    public static double[] AttackStepLinf(double[] xadv, double[] x0, double[] grad, double[] step, double[] eps, int rows, int cols)
    {
        var o = new double[rows * cols];
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < cols; j++)
            {
                int i = r * cols + j;
                double v = xadv[i] + step[r] * Math.Sign(grad[i]);
                v = Math.Min(Math.Max(v, x0[i] - eps[r]), x0[i] + eps[r]);
                o[i] = Math.Min(Math.Max(v, 0), 1);
            }
        return o;
    }

    /// <summary>
    /// g = grad/(||grad_r|| + 1e-12); d = xadv + step[r]*g - x0; d *= min(1, eps[r]/||d_r||) (not when ||d_r|| == 0);
    /// xadv = clamp(x0 + d, 0, 1).
    /// </summary>
    public static double[] AttackStepL2(double[] xadv, double[] x0, double[] grad, double[] step, double[] eps, int rows, int cols)
    {
        var o = new double[rows * cols];
        var d = new double[cols];
        for (int r = 0; r < rows; r++)
        {
            double gn = 0; for (int j = 0; j < cols; j++) gn += grad[r * cols + j] * grad[r * cols + j];
            gn = Math.Sqrt(gn) + 1e-12;
            double dn = 0;
            for (int j = 0; j < cols; j++)
            {
                int i = r * cols + j;
                d[j] = xadv[i] + step[r] * grad[i] / gn - x0[i];
                dn += d[j] * d[j];
            }
            dn = Math.Sqrt(dn);
            double f = dn > 0 ? Math.Min(1, eps[r] / dn) : 1;
            for (int j = 0; j < cols; j++) o[r * cols + j] = Math.Min(Math.Max(x0[r * cols + j] + d[j] * f, 0), 1);
        }
        return o;
    }

    // =============================================================== geometric warps

    /// <summary>
    /// The bilinear affine warp as a dense matrix M[o, j] over one plane's h*w pixels, in double: output (ox, oy) reads
    /// (sx, sy) = (a ox + b oy + c, d ox + e oy + f) with weights (1-fx)(1-fy), fx(1-fy), (1-fx)fy, fx fy on its four
    /// neighbours (zero outside the image). The map's coefficients are the float values the op is given.
    /// </summary>
    public static double[] WarpMatrix(WarpMap m, int h, int w)
    {
        int p = h * w;
        var o = new double[p * p];
        for (int oy = 0; oy < h; oy++)
            for (int ox = 0; ox < w; ox++)
            {
                double sx = (double)m.A * ox + (double)m.B * oy + m.C, sy = (double)m.D * ox + (double)m.E * oy + m.F;
                int x0 = (int)Math.Floor(sx), y0 = (int)Math.Floor(sy);
                double fx = sx - x0, fy = sy - y0;
                for (int a = 0; a < 2; a++)
                    for (int b = 0; b < 2; b++)
                    {
                        int yy = y0 + a, xx = x0 + b;
                        if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
                        o[(oy * w + ox) * p + yy * w + xx] += (b == 0 ? 1 - fx : fx) * (a == 0 ? 1 - fy : fy);
                    }
            }
        return o;
    }

    /// <summary>y = alpha * M x + beta * y per plane (transpose: alpha * M^T x + beta * y), M from <see cref="WarpMatrix"/>.</summary>
    public static double[] Warp(double[] x, double[] y, int planes, int h, int w, WarpMap m, double alpha, double beta, bool transpose)
    {
        var mat = WarpMatrix(m, h, w);
        int p = h * w;
        var o = new double[planes * p];
        for (int q = 0; q < planes; q++)
            for (int i = 0; i < p; i++)
            {
                double s = 0;
                for (int j = 0; j < p; j++) s += (transpose ? mat[j * p + i] : mat[i * p + j]) * x[q * p + j];
                o[q * p + i] = alpha * s + (beta == 0 ? 0 : beta * y[q * p + i]);
            }
        return o;
    }

    /// <summary>
    /// Candidate images: y[r] = x[src[r]] (all NaN when src[r] is not an integer-valued index in [0, images) after
    /// truncation), then y[r, idx[r, j]] = val[r, j] for j in order, skipping indices outside [0, cols).
    /// </summary>
    public static double[] ScatterRows(double[] x, double[] src, double[] idx, double[] val, int images, int rows, int cols, int edits)
    {
        var y = new double[rows * cols];
        for (int r = 0; r < rows; r++)
        {
            double s = src[r];
            bool ok = s >= 0 && s < images;
            for (int c = 0; c < cols; c++) y[r * cols + c] = ok ? x[(int)Math.Truncate(s) * cols + c] : double.NaN;
            for (int j = 0; j < edits; j++)
            {
                double k = idx[r * edits + j];
                if (k >= 0 && k < cols) y[r * cols + (int)Math.Truncate(k)] = val[r * edits + j];
            }
        }
        return y;
    }
}
