using ILGPU;
using ILGPU.Algorithms;

namespace Perturb.Kernels;

/// <summary>
/// The integer codes a kernel takes to choose an activation. Perturb.Engine.Activation is defined from these, so the
/// numbering exists once.
/// </summary>
public static class ActivationKind
{
    public const int Relu = 0, LeakyRelu = 1, Sigmoid = 2, Tanh = 3;
}

/// <summary>Activations forward and backward; <c>kind</c> is an <see cref="ActivationKind"/> code.</summary>
public static class Activation
{
    // y = f(x): ReLU max(x, 0); LeakyReLU x > 0 ? x : alpha*x; Sigmoid 1/(1+exp(-x)); Tanh tanh(x). In place allowed.
    public static void Forward(Index1D i, ArrayView<float> x, ArrayView<float> y, int kind, float alpha)
    {
        float v = x[i];
        float r;
        if (kind == ActivationKind.Relu) r = v > 0f ? v : 0f;
        else if (kind == ActivationKind.LeakyRelu) r = v > 0f ? v : alpha * v;
        else if (kind == ActivationKind.Sigmoid) r = 1f / (1f + XMath.Exp(-v));
        else r = XMath.Tanh(v);
        y[i] = r;
    }

    // dx = dy * f'(.): ReLU [x > 0]; LeakyReLU x > 0 ? 1 : alpha (reads x); Sigmoid y*(1-y); Tanh 1 - y^2 (reads y = f(x)).
    // The unused one of x / y is any valid view. dx may alias dy.
    public static void Backward(Index1D i, ArrayView<float> x, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx, int kind, float alpha)
    {
        float g = dy[i], d;
        if (kind == ActivationKind.Relu) d = x[i] > 0f ? 1f : 0f;
        else if (kind == ActivationKind.LeakyRelu) d = x[i] > 0f ? 1f : alpha;
        else if (kind == ActivationKind.Sigmoid) { float s = y[i]; d = s * (1f - s); }
        else { float t = y[i]; d = 1f - t * t; }
        dx[i] = g * d;
    }
}
