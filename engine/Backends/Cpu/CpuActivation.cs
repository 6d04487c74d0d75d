using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace Perturb.Engine.Backends;

/// <summary>Activations forward and backward over parallel chunks of the flat tensor. The kernel twin is IlgpuActivation.cs.</summary>
public sealed partial class CpuBackend
{
    protected override void ActivationForwardCore(Activation f, float alpha, Tensor x, Tensor y)
    {
        var xb = B(x);
        var yb = B(y);
        Ranges(x.Length, (s, e) =>
        {
            var xs = xb.Span(s, e - s);
            var ys = yb.Span(s, e - s);
            switch (f)
            {
                case Activation.Relu: TensorPrimitives.Max(xs, 0f, ys); break;
                case Activation.LeakyRelu:
                    for (int i = 0; i < xs.Length; i++) { float v = xs[i]; ys[i] = v > 0 ? v : alpha * v; }
                    break;
                case Activation.Sigmoid:
                    for (int i = 0; i < xs.Length; i++) ys[i] = 1f / (1f + MathF.Exp(-xs[i]));
                    break;
                case Activation.Tanh: for (int i = 0; i < xs.Length; i++) ys[i] = MathF.Tanh(xs[i]); break;
                default: throw new InvalidOperationException($"act_fwd: activation {f} has no CPU implementation");
            }
        });
    }

    /// <summary>o = v &gt; 0 ? g : 0, branch-free: a compare mask ANDed with g (random signs defeat a branch).</summary>
    static void ReluBackward(ReadOnlySpan<float> v, ReadOnlySpan<float> g, Span<float> o)
    {
        int i = 0, n = v.Length;
        if (Vector512.IsHardwareAccelerated)
            for (; i + 16 <= n; i += 16)
            {
                var m = Vector512.GreaterThan(Vector512.Create(v.Slice(i, 16)), Vector512<float>.Zero);
                (m & Vector512.Create(g.Slice(i, 16))).CopyTo(o.Slice(i, 16));
            }
        else if (Vector256.IsHardwareAccelerated)
            for (; i + 8 <= n; i += 8)
            {
                var m = Vector256.GreaterThan(Vector256.Create(v.Slice(i, 8)), Vector256<float>.Zero);
                (m & Vector256.Create(g.Slice(i, 8))).CopyTo(o.Slice(i, 8));
            }
        for (; i < n; i++) o[i] = v[i] > 0 ? g[i] : 0f;
    }

    protected override void ActivationBackwardCore(Activation f, float alpha, Tensor src, Tensor dy, Tensor dx)
    {
        var sb = B(src);
        var db = B(dy);
        var ob = B(dx);
        Ranges(dy.Length, (s, e) =>
        {
            var v = sb.Span(s, e - s);
            var g = db.Span(s, e - s);
            var o = ob.Span(s, e - s);
            switch (f)
            {
                case Activation.Relu: ReluBackward(v, g, o); break;
                case Activation.LeakyRelu: for (int i = 0; i < v.Length; i++) o[i] = v[i] > 0 ? g[i] : alpha * g[i]; break;
                case Activation.Sigmoid: for (int i = 0; i < v.Length; i++) o[i] = g[i] * v[i] * (1f - v[i]); break;
                case Activation.Tanh: for (int i = 0; i < v.Length; i++) o[i] = g[i] * (1f - v[i] * v[i]); break;
                default: throw new InvalidOperationException($"act_bwd: activation {f} has no CPU implementation");
            }
        });
    }
}
