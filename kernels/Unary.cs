using ILGPU;
using ILGPU.Algorithms;

namespace Perturb.Kernels;

/// <summary>
/// Element-wise functions beyond the four activations, numbered as Perturb.Engine.UnaryOp. F is the function, D its
/// derivative at x; both are plain static functions, so CpuBackend calls the very same code. a and b are the op's
/// parameters (HardSigmoid alpha/beta, Elu/Selu alpha, Selu gamma, the exponent of Pow).
/// </summary>
public static class Unary
{
    public const int HardSigmoid = 0, HardSwish = 1, Silu = 2, Elu = 3, Selu = 4, Softplus = 5, Gelu = 6, GeluTanh = 7,
        Erf = 8, Sqrt = 9, Exp = 10, Log = 11, Neg = 12, Reciprocal = 13, Abs = 14, Pow = 15, Sigmoid = 16, Tanh = 17, Relu = 18;

    const float InvSqrt2 = 0.70710678118654752f, InvSqrt2Pi = 0.39894228040143268f, TwoOverSqrtPi = 1.1283791670955126f;
    const float TanhC = 0.79788456080286536f, TanhK = 0.044715f;

    // erf(x), Abramowitz & Stegun 7.1.26 refined: |error| < 1.2e-7 (float32 resolution) over all x.
    public static float ErfF(float x)
    {
        float ax = XMath.Abs(x);
        float t = 1f / (1f + 0.5f * ax);
        // Numerical Recipes erfc: |relative error| < 1.2e-7
        float y = t * XMath.Exp(-ax * ax - 1.26551223f + t * (1.00002368f + t * (0.37409196f + t * (0.09678418f + t * (-0.18628806f
            + t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f + t * (-0.82215223f + t * 0.17087277f)))))))));
        float r = 1f - y;
        return x >= 0f ? r : -r;
    }

    static float Sig(float x) => 1f / (1f + XMath.Exp(-x));

    // y = f(x)
    public static float F(int op, float a, float b, float x)
    {
        switch (op)
        {
            case HardSigmoid: return XMath.Max(0f, XMath.Min(1f, a * x + b));
            case HardSwish: return x * XMath.Max(0f, XMath.Min(1f, x / 6f + 0.5f));
            case Silu: return x * Sig(x);
            case Elu: return x > 0f ? x : a * (XMath.Exp(x) - 1f);
            case Selu: return b * (x > 0f ? x : a * (XMath.Exp(x) - 1f));
            case Softplus: return XMath.Max(x, 0f) + XMath.Log(1f + XMath.Exp(-XMath.Abs(x)));
            case Gelu: return 0.5f * x * (1f + ErfF(x * InvSqrt2));
            case GeluTanh: return 0.5f * x * (1f + XMath.Tanh(TanhC * (x + TanhK * x * x * x)));
            case Erf: return ErfF(x);
            case Sqrt: return XMath.Sqrt(x);
            case Exp: return XMath.Exp(x);
            case Log: return XMath.Log(x);
            case Neg: return -x;
            case Reciprocal: return 1f / x;
            case Abs: return XMath.Abs(x);
            case Pow: return a == 2f ? x * x : a == 1f ? x : a == 0.5f ? XMath.Sqrt(x) : XMath.Pow(x, a);
            case Sigmoid: return Sig(x);
            case Tanh: return XMath.Tanh(x);
            default: return x > 0f ? x : 0f;
        }
    }

    // f'(x)
    public static float D(int op, float a, float b, float x)
    {
        switch (op)
        {
            case HardSigmoid: { float u = a * x + b; return u > 0f && u < 1f ? a : 0f; }
            case HardSwish: return x < -3f ? 0f : x <= 3f ? x / 3f + 0.5f : 1f;
            case Silu: { float s = Sig(x); return s * (1f + x * (1f - s)); }
            case Elu: return x > 0f ? 1f : a * XMath.Exp(x);
            case Selu: return b * (x > 0f ? 1f : a * XMath.Exp(x));
            case Softplus: return Sig(x);
            case Gelu: return 0.5f * (1f + ErfF(x * InvSqrt2)) + x * InvSqrt2Pi * XMath.Exp(-0.5f * x * x);
            case GeluTanh:
                {
                    float u = TanhC * (x + TanhK * x * x * x), t = XMath.Tanh(u);
                    return 0.5f * (1f + t) + 0.5f * x * (1f - t * t) * TanhC * (1f + 3f * TanhK * x * x);
                }
            case Erf: return TwoOverSqrtPi * XMath.Exp(-x * x);
            case Sqrt: return 0.5f / XMath.Sqrt(x);
            case Exp: return XMath.Exp(x);
            case Log: return 1f / x;
            case Neg: return -1f;
            case Reciprocal: return -1f / (x * x);
            case Abs: return x > 0f ? 1f : x < 0f ? -1f : 0f;
            case Pow: return a == 2f ? 2f * x : a == 1f ? 1f : a * XMath.Pow(x, a - 1f);
            case Sigmoid: { float s = Sig(x); return s * (1f - s); }
            case Tanh: { float t = XMath.Tanh(x); return 1f - t * t; }
            default: return x > 0f ? 1f : 0f;
        }
    }

    // y = f(x), one thread per element. In place allowed.
    public static void Forward(Index1D i, ArrayView<float> x, ArrayView<float> y, int op, float a, float b) => y[i] = F(op, a, b, x[i]);

    // dx = dy * f'(x). dx may alias dy.
    public static void Backward(Index1D i, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dx, int op, float a, float b) =>
        dx[i] = dy[i] * D(op, a, b, x[i]);
}
