using System.Numerics.Tensors;

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
                case Activation.Relu: for (int i = 0; i < v.Length; i++) o[i] = v[i] > 0 ? g[i] : 0f; break;
                case Activation.LeakyRelu: for (int i = 0; i < v.Length; i++) o[i] = v[i] > 0 ? g[i] : alpha * g[i]; break;
                case Activation.Sigmoid: for (int i = 0; i < v.Length; i++) o[i] = g[i] * v[i] * (1f - v[i]); break;
                case Activation.Tanh: for (int i = 0; i < v.Length; i++) o[i] = g[i] * (1f - v[i] * v[i]); break;
                default: throw new InvalidOperationException($"act_bwd: activation {f} has no CPU implementation");
            }
        });
    }
}
