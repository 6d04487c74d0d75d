using Perturb.Engine;

namespace Perturb.Tests.Ops;

/// <summary>Double-precision references of the general-tensor ops (element-wise functions, broadcasting, reductions, layout).</summary>
public static class TensorRef
{

    /// <summary>erf by its Taylor series (|x| &lt;= 3 here; terms until they vanish in double).</summary>
    public static double Erf(double x)
    {
        double sum = 0, term = x;
        for (int n = 0; n < 200; n++)
        {
            double t = term / (2 * n + 1);
            sum += t;
            if (Math.Abs(t) < 1e-17 * Math.Abs(sum)) break;
            term *= -x * x / (n + 1);
        }
        return 2 / Math.Sqrt(Math.PI) * sum;
    }

    static double Sig(double x) => 1 / (1 + Math.Exp(-x));

    public static (double F, double D) Unary(UnaryOp op, double a, double b, double x) => op switch
    {
        UnaryOp.HardSigmoid => (Math.Clamp(a * x + b, 0, 1), a * x + b > 0 && a * x + b < 1 ? a : 0),
        UnaryOp.HardSwish => (x * Math.Clamp(x / 6 + 0.5, 0, 1), x < -3 ? 0 : x <= 3 ? x / 3 + 0.5 : 1),
        UnaryOp.Silu => (x * Sig(x), Sig(x) * (1 + x * (1 - Sig(x)))),
        UnaryOp.Elu => (x > 0 ? x : a * (Math.Exp(x) - 1), x > 0 ? 1 : a * Math.Exp(x)),
        UnaryOp.Selu => (b * (x > 0 ? x : a * (Math.Exp(x) - 1)), b * (x > 0 ? 1 : a * Math.Exp(x))),
        UnaryOp.Softplus => (Math.Log(1 + Math.Exp(x)), Sig(x)),
        UnaryOp.Gelu => (0.5 * x * (1 + Erf(x / Math.Sqrt(2))), 0.5 * (1 + Erf(x / Math.Sqrt(2))) + x * Math.Exp(-x * x / 2) / Math.Sqrt(2 * Math.PI)),
        UnaryOp.GeluTanh => GeluTanh(x),
        UnaryOp.Erf => (Erf(x), 2 / Math.Sqrt(Math.PI) * Math.Exp(-x * x)),
        UnaryOp.Sqrt => (Math.Sqrt(x), 0.5 / Math.Sqrt(x)),
        UnaryOp.Exp => (Math.Exp(x), Math.Exp(x)),
        UnaryOp.Log => (Math.Log(x), 1 / x),
        UnaryOp.Neg => (-x, -1),
        UnaryOp.Reciprocal => (1 / x, -1 / (x * x)),
        UnaryOp.Abs => (Math.Abs(x), Math.Sign(x)),
        UnaryOp.Pow => (Math.Pow(x, a), a * Math.Pow(x, a - 1)),
        UnaryOp.Sigmoid => (Sig(x), Sig(x) * (1 - Sig(x))),
        UnaryOp.Tanh => (Math.Tanh(x), 1 - Math.Tanh(x) * Math.Tanh(x)),
        _ => (Math.Max(x, 0), x > 0 ? 1 : 0),
    };

    static (double, double) GeluTanh(double x)
    {
        double c = Math.Sqrt(2 / Math.PI), u = c * (x + 0.044715 * x * x * x), t = Math.Tanh(u);
        return (0.5 * x * (1 + t), 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x));
    }

    public static double Bin(BroadcastOp op, double a, double b) => op switch
    {
        BroadcastOp.Add => a + b, BroadcastOp.Sub => a - b, BroadcastOp.Mul => a * b, BroadcastOp.Div => a / b,
        BroadcastOp.Pow => Math.Pow(a, b), BroadcastOp.Max => Math.Max(a, b), _ => Math.Min(a, b),
    };

    public static double BinD(BroadcastOp op, int which, double a, double b) => op switch
    {
        BroadcastOp.Add => 1,
        BroadcastOp.Sub => which == 0 ? 1 : -1,
        BroadcastOp.Mul => which == 0 ? b : a,
        BroadcastOp.Div => which == 0 ? 1 / b : -a / (b * b),
        BroadcastOp.Pow => which == 0 ? b * Math.Pow(a, b - 1) : Math.Pow(a, b) * Math.Log(a),
        BroadcastOp.Max => (which == 0 ? a > b : b > a) ? 1 : a == b ? 0.5 : 0,
        _ => (which == 0 ? a < b : b < a) ? 1 : a == b ? 0.5 : 0,
    };

    /// <summary>Multi-index of element e of a contiguous shape.</summary>
    public static int[] Unravel(int e, int[] dims)
    {
        var idx = new int[dims.Length];
        for (int d = dims.Length - 1; d >= 0; d--) { idx[d] = e % dims[d]; e /= dims[d]; }
        return idx;
    }

    /// <summary>Offset of a (broadcast) index in a contiguous tensor of shape dims (size-1 axes read index 0).</summary>
    public static int At(int[] idx, int[] dims)
    {
        int o = 0;
        for (int d = 0; d < dims.Length; d++) o = o * dims[d] + (dims[d] == 1 ? 0 : idx[d]);
        return o;
    }

    public static int Prod(int[] s) => s.Aggregate(1, (p, q) => p * q);

    /// <summary>y = a op b with NumPy broadcasting (contiguous shapes of equal rank).</summary>
    public static double[] Broadcast(BroadcastOp op, double[] a, int[] sa, double[] b, int[] sb, int[] sy)
    {
        var y = new double[Prod(sy)];
        for (int e = 0; e < y.Length; e++) { var i = Unravel(e, sy); y[e] = Bin(op, a[At(i, sa)], b[At(i, sb)]); }
        return y;
    }

    /// <summary>Reduction over the given axes of a contiguous shape (kept as size 1).</summary>
    public static double[] Reduce(ReduceOp op, double[] x, int[] sx, int[] axes)
    {
        var sy = sx.Select((d, i) => axes.Contains(i) ? 1 : d).ToArray();
        var y = new double[Prod(sy)]; var cnt = new int[y.Length];
        for (int e = 0; e < x.Length; e++)
        {
            int o = At(Unravel(e, sx), sy), c = cnt[o]++;
            double v = x[e];
            y[o] = op switch
            {
                ReduceOp.Max => c == 0 ? v : Math.Max(y[o], v), ReduceOp.Min => c == 0 ? v : Math.Min(y[o], v),
                ReduceOp.L2 => y[o] + v * v, _ => y[o] + v,
            };
        }
        for (int o = 0; o < y.Length; o++) y[o] = op == ReduceOp.L2 ? Math.Sqrt(y[o]) : op == ReduceOp.Mean ? y[o] / cnt[o] : y[o];
        return y;
    }

    /// <summary>Transpose of a contiguous shape: output axis d is input axis perm[d].</summary>
    public static double[] Transpose(double[] x, int[] sx, int[] perm)
    {
        var sy = perm.Select(p => sx[p]).ToArray();
        var y = new double[x.Length];
        for (int e = 0; e < y.Length; e++)
        {
            var iy = Unravel(e, sy); var ix = new int[sx.Length];
            for (int d = 0; d < sx.Length; d++) ix[perm[d]] = iy[d];
            y[e] = x[At(ix, sx)];
        }
        return y;
    }

    /// <summary>y[i] = x[starts + i * steps] for i over shape.</summary>
    public static double[] Slice(double[] x, int[] sx, int[] starts, int[] steps, int[] shape)
    {
        var y = new double[Prod(shape)];
        for (int e = 0; e < y.Length; e++)
        {
            var i = Unravel(e, shape);
            y[e] = x[At(i.Select((v, d) => starts[d] + v * steps[d]).ToArray(), sx)];
        }
        return y;
    }
}
