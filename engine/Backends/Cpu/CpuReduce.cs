using System.Numerics.Tensors;

namespace Perturb.Engine.Backends;

/// <summary>Per-row reductions and argmax, one row per work item, sums accumulated in double; the double-accumulating span helpers the other families use. The kernel twin is IlgpuReduce.cs.</summary>
public sealed partial class CpuBackend
{
    protected override void ReduceRowsCore(Reduction kind, Tensor x, Tensor outp, int rows, int cols)
    {
        var xb = B(x);
        var ob = B(outp);
        For(rows, cols, r =>
        {
            var v = xb.Span((long)r * cols, cols);
            ob[r] = kind switch
            {
                Reduction.Sum => (float)SumD(v),
                Reduction.Max => cols == 0 ? float.NegativeInfinity : TensorPrimitives.Max(v),
                Reduction.L0 => CountNonZero(v),
                Reduction.L2 => (float)Math.Sqrt(SumSqD(v)),
                Reduction.Linf => cols == 0 ? 0f : TensorPrimitives.MaxMagnitude(v) is var m ? MathF.Abs(m) : 0f,
                _ => throw new InvalidOperationException($"reduce: reduction {kind} has no CPU implementation"),
            };
        });
    }

    static float CountNonZero(ReadOnlySpan<float> v)
    {
        int c = 0;
        foreach (var e in v) if (MathF.Abs(e) > 0) c++;
        return c;
    }

    /// <summary>Sum in double, vectorised 16 floats at a time per block of 1024.</summary>
    static double SumD(ReadOnlySpan<float> v)
    {
        double s = 0;
        for (int i = 0; i < v.Length; i += 1024) s += TensorPrimitives.Sum<float>(v.Slice(i, Math.Min(1024, v.Length - i)));
        return s;
    }

    static double SumSqD(ReadOnlySpan<float> v)
    {
        double s = 0;
        for (int i = 0; i < v.Length; i += 1024) s += TensorPrimitives.SumOfSquares<float>(v.Slice(i, Math.Min(1024, v.Length - i)));
        return s;
    }

    static double DotD(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i += 1024)
        {
            int l = Math.Min(1024, a.Length - i);
            s += TensorPrimitives.Dot(a.Slice(i, l), b.Slice(i, l));
        }
        return s;
    }

    protected override void ArgmaxRowsCore(Tensor x, Tensor outp, int rows, int cols)
    {
        var xb = B(x);
        var ob = B(outp);
        For(rows, cols, r => ob[r] = FirstArgmax(xb.Span((long)r * cols, cols), -1));
    }

    /// <summary>Index of the first maximum of v, skipping index <paramref name="skip"/>; -1 when nothing is left.</summary>
    static int FirstArgmax(ReadOnlySpan<float> v, int skip)
    {
        int best = -1; float m = 0;
        for (int j = 0; j < v.Length; j++)
        {
            if (j == skip) continue;
            if (best < 0 || v[j] > m) { best = j; m = v[j]; }
        }
        return best;
    }
}
