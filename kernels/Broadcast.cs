using ILGPU;
using ILGPU.Algorithms;

namespace Perturb.Kernels;

/// <summary>Up to eight ints (dimensions or strides of a strided iteration), passed by value to kernels.</summary>
public struct Dims8
{
    public int D0, D1, D2, D3, D4, D5, D6, D7;

    public int Get(int i) => i switch { 0 => D0, 1 => D1, 2 => D2, 3 => D3, 4 => D4, 5 => D5, 6 => D6, _ => D7 };

    public void Set(int i, int v)
    {
        switch (i)
        {
            case 0: D0 = v; break; case 1: D1 = v; break; case 2: D2 = v; break; case 3: D3 = v; break;
            case 4: D4 = v; break; case 5: D5 = v; break; case 6: D6 = v; break; default: D7 = v; break;
        }
    }
}

/// <summary>
/// A strided iteration: Rank dimensions Dims (last fastest) and, for up to three operands, an element stride per
/// dimension (S0, S1, S2; 0 where the operand is broadcast) and a starting offset. Element e of the iteration is at
/// Off_k + sum_d idx_d(e) * S_k[d] in operand k.
/// </summary>
public struct StridedArgs
{
    public int Rank;
    public Dims8 Dims, S0, S1, S2;
    public int Off0, Off1, Off2;

    /// <summary>Number of elements of the iteration.</summary>
    public int Count()
    {
        int n = 1;
        for (int d = 0; d < Rank; d++) n *= Dims.Get(d);
        return n;
    }

    /// <summary>The three operand offsets of element e.</summary>
    public void At(int e, out int o0, out int o1, out int o2)
    {
        o0 = Off0; o1 = Off1; o2 = Off2;
        for (int d = Rank - 1; d >= 0; d--)
        {
            int n = Dims.Get(d);
            int q = e / n, k = e - q * n;
            e = q;
            o0 += k * S0.Get(d); o1 += k * S1.Get(d); o2 += k * S2.Get(d);
        }
    }
}

/// <summary>
/// NumPy-broadcast binary ops, axis reductions and strided copies (Transpose, Slice, Concat on any axis, Expand), all
/// over <see cref="StridedArgs"/>. Binary ops numbered as Perturb.Engine.BinaryOp: 0 Add, 1 Sub, 2 Mul, 3 Div, 4 Pow,
/// 5 Max, 6 Min. Reductions as Perturb.Engine.ReduceOp: 0 Sum (times scale: Mean is Sum with scale 1/count), 1 Max,
/// 2 Min, 3 L2.
/// </summary>
public static class Broadcast
{
    public const int Add = 0, Sub = 1, Mul = 2, Div = 3, Pow = 4, Max = 5, Min = 6;
    public const int RSum = 0, RMax = 1, RMin = 2, RL2 = 3;

    public static float F(int op, float a, float b)
    {
        switch (op)
        {
            case Add: return a + b;
            case Sub: return a - b;
            case Mul: return a * b;
            case Div: return a / b;
            case Pow: return b == 2f ? a * a : XMath.Pow(a, b);
            case Max: return XMath.Max(a, b);
            default: return XMath.Min(a, b);
        }
    }

    // d f(a, b) / d a (which == 0) or / d b (which == 1). Max/Min ties split the gradient evenly, as PyTorch.
    public static float D(int op, int which, float a, float b)
    {
        switch (op)
        {
            case Add: return 1f;
            case Sub: return which == 0 ? 1f : -1f;
            case Mul: return which == 0 ? b : a;
            case Div: return which == 0 ? 1f / b : -a / (b * b);
            case Pow:
                if (which == 0) return b == 2f ? 2f * a : b * XMath.Pow(a, b - 1f);
                return a > 0f ? XMath.Pow(a, b) * XMath.Log(a) : 0f;
            case Max:
                {
                    float mine = which == 0 ? a : b, other = which == 0 ? b : a;
                    return mine > other ? 1f : mine == other ? 0.5f : 0f;
                }
            default:
                {
                    float mine = which == 0 ? a : b, other = which == 0 ? b : a;
                    return mine < other ? 1f : mine == other ? 0.5f : 0f;
                }
        }
    }

    // y[o2] = f(a[o0], b[o1]) for every element of the iteration.
    public static void Forward(Index1D i, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y, StridedArgs s, int op)
    {
        s.At(i, out int o0, out int o1, out int o2);
        y[o2] = F(op, a[o0], b[o1]);
    }

    // Gradient of one operand (which: 0 for a, 1 for b). Thread i owns dx[i]; keep iterates dx's elements (offsets in
    // a, b, dy as S0, S1, S2), red the axes the operand is broadcast aint (the same three strides); the thread sums
    // dy * df/d(operand) over them, so no two threads write one element.
    public static void Backward(Index1D i, ArrayView<float> a, ArrayView<float> b, ArrayView<float> dy, ArrayView<float> dx,
        StridedArgs keep, StridedArgs red, int op, int which)
    {
        keep.At(i, out int a0, out int b0, out int g0);
        int n = red.Count();
        float acc = 0f;
        for (int r = 0; r < n; r++)
        {
            red.At(r, out int da, out int db, out int dg);
            acc += dy[g0 + dg] * D(op, which, a[a0 + da], b[b0 + db]);
        }
        dx[i] = acc;
    }

    // dst[o1] = src[o0] for every element of the iteration (Transpose, Slice, Concat parts, Expand).
    public static void Copy(Index1D i, ArrayView<float> src, ArrayView<float> dst, StridedArgs s)
    {
        s.At(i, out int o0, out int o1, out int _);
        dst[o1] = src[o0];
    }

    // y[i] = reduction of x over red, starting at keep's offset of element i (S0: x strides). Sum is scaled by scale.
    public static void Reduce(Index1D i, ArrayView<float> x, ArrayView<float> y, StridedArgs keep, StridedArgs red, int op, float scale)
    {
        keep.At(i, out int base0, out int _, out int _);
        int n = red.Count();
        float acc = op == RMax ? float.NegativeInfinity : op == RMin ? float.PositiveInfinity : 0f;
        for (int r = 0; r < n; r++)
        {
            red.At(r, out int d, out int _, out int _);
            float v = x[base0 + d];
            if (op == RMax) acc = XMath.Max(acc, v);
            else if (op == RMin) acc = XMath.Min(acc, v);
            else if (op == RL2) acc += v * v;
            else acc += v;
        }
        y[i] = op == RL2 ? XMath.Sqrt(acc) : op == RSum ? acc * scale : acc;
    }

    // dx (laid out as x) for the reduction of element i: Sum dx = dy*scale; Max/Min dy to the first extreme, 0
    // elsewhere; L2 dx = dy * x / y (0 when y == 0). The thread writes every dx element of its reduction.
    public static void ReduceBackward(Index1D i, ArrayView<float> x, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx,
        StridedArgs keep, StridedArgs red, int op, float scale)
    {
        keep.At(i, out int base0, out int _, out int _);
        int n = red.Count();
        float g = dy[i], yi = y[i];
        int pick = -1;
        if (op == RMax || op == RMin)
            for (int r = 0; r < n && pick < 0; r++)
            {
                red.At(r, out int d, out int _, out int _);
                if (x[base0 + d] == yi) pick = r;
            }
        for (int r = 0; r < n; r++)
        {
            red.At(r, out int d, out int _, out int _);
            float v;
            if (op == RSum) v = g * scale;
            else if (op == RL2) v = yi > 0f ? g * x[base0 + d] / yi : 0f;
            else v = r == pick ? g : 0f;
            dx[base0 + d] = v;
        }
    }
}
