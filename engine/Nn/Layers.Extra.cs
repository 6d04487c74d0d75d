using System.Text.Json.Nodes;

namespace Perturb.Engine.Nn;

/// <summary>
/// Constant per-channel affine map y[n, c, i] = x[n, c, i] * scale[c] + shift[c] over [C, H, W] (or per feature over
/// [F]). Imported ONNX Add/Sub/Mul/Div by a constant scalar or per-channel operand become one of these. scale and shift
/// are buffers (saved with the model, not trained).
/// </summary>
public sealed class ChannelAffineLayer : Layer
{
    public int Channels { get; }
    readonly float[] _scale0, _shift0;
    public Parameter Scale { get; private set; } = null!;
    public Parameter Shift { get; private set; } = null!;
    int _hw;

    public ChannelAffineLayer(float[] scale, float[] shift)
    {
        if (scale.Length == 0 || scale.Length != shift.Length) throw new PerturbException("Affine: scale and shift must have the same, non-zero length");
        Channels = scale.Length; _scale0 = scale; _shift0 = shift;
    }

    public override string Type => "Affine";

    protected override int[] BuildCore(IBackend be, int[][] inShapes, ulong seed)
    {
        var s = inShapes[0];
        if ((s.Length != 3 && s.Length != 1) || s[0] != Channels) throw ShapeError($"{Channels}xHxW or {Channels}", s);
        _hw = s.Length == 3 ? s[1] * s[2] : 1;
        Scale = AddParam("scale", be.FromArray(_scale0, Channels), trainable: false);
        Shift = AddParam("shift", be.FromArray(_shift0, Channels), trainable: false);
        return (int[])s.Clone();
    }

    public override Tensor Forward(PassContext c, Tensor[] x)
    {
        CheckInput(x[0], 0);
        var y = c.Alloc(x[0].Shape);
        c.Be.ChannelAffine(x[0], Scale.Value, Shift.Value, y, x[0].N, Channels, _hw);
        return y;
    }

    public override Tensor?[] Backward(PassContext c, Tensor dy, bool weights, bool[] needDx)
    {
        if (!needDx[0]) return new Tensor?[] { null };
        var dx = c.Alloc(dy.Shape);
        c.Be.ChannelAffineBackward(dy, Scale.Value, dx, null, null, null, dy.N, Channels, _hw);
        return new[] { dx };
    }

    public override JsonObject Config() => new() { ["channels"] = Channels };

    internal static ChannelAffineLayer FromConfig(JsonObject o)
    {
        int c = o.I("channels");
        return new(Enumerable.Repeat(1f, c).ToArray(), new float[c]);
    }
}

/// <summary>Element-wise product of two inputs of the same shape: y = a * b; da = dy * b, db = dy * a.</summary>
public sealed class MulLayer : Layer
{
    Tensor? _a, _b;
    public override string Type => "Mul";
    public override int Arity => 2;

    protected override int[] BuildCore(IBackend be, int[][] inShapes, ulong seed)
    {
        if (!inShapes[0].SequenceEqual(inShapes[1]))
            throw new PerturbException($"layer '{Name}' (Mul) needs equal shapes, got {Tensor.ShapeString(inShapes[0])} and {Tensor.ShapeString(inShapes[1])}");
        return (int[])inShapes[0].Clone();
    }

    public override Tensor Forward(PassContext c, Tensor[] x)
    {
        CheckInput(x[0], 0); CheckInput(x[1], 1);
        if (x[0].N != x[1].N) throw new PerturbException($"layer '{Name}' (Mul) got batch sizes {x[0].N} and {x[1].N}");
        _a = x[0]; _b = x[1];
        var y = c.Alloc(x[0].Shape);
        c.Be.Mul(_a, _b, y);
        return y;
    }

    public override Tensor?[] Backward(PassContext c, Tensor dy, bool weights, bool[] needDx)
    {
        Tensor? da = null, db = null;
        if (needDx[0]) { da = c.Alloc(dy.Shape); c.Be.Mul(dy, _b!, da); }
        if (needDx[1]) { db = c.Alloc(dy.Shape); c.Be.Mul(dy, _a!, db); }
        return new[] { da, db };
    }

    public override JsonObject Config() => new();
}

/// <summary>
/// y = min(max(x, Min), Max) (ONNX Clip; ReLU6 for 0 and 6). An infinite bound is no bound.
/// dx = dy where Min &lt; x &lt;= Max, else 0: computed as dy*[x - Min &gt; 0] - dy*[x - Max &gt; 0] with the ReLU
/// derivative, the shifts by the per-tensor affine op.
/// </summary>
public sealed class ClipLayer : Layer
{
    public float Min { get; }
    public float Max { get; }
    Tensor? _x, _one, _negMin, _negMax;
    int _len;

    public ClipLayer(float min, float max)
    {
        if (float.IsNaN(min) || float.IsNaN(max) || min > max) throw new PerturbException($"Clip: invalid bounds [{min}, {max}]");
        Min = min; Max = max;
    }

    public override string Type => "Clip";

    protected override int[] BuildCore(IBackend be, int[][] inShapes, ulong seed)
    {
        _len = Product(inShapes[0]);
        _one = be.FromArray(new[] { 1f }, 1);
        _negMin = be.FromArray(new[] { -Min }, 1);
        _negMax = be.FromArray(new[] { -Max }, 1);
        return (int[])inShapes[0].Clone();
    }

    public override Tensor Forward(PassContext c, Tensor[] x)
    {
        CheckInput(x[0], 0);
        _x = x[0];
        var y = c.Alloc(_x.Shape);
        c.Be.Clamp(_x, Min, Max, y);
        return y;
    }

    public override Tensor?[] Backward(PassContext c, Tensor dy, bool weights, bool[] needDx)
    {
        if (!needDx[0]) return new Tensor?[] { null };
        int n = dy.N;
        var dx = c.Alloc(dy.Shape);
        var t = c.Alloc(dy.Shape);
        if (float.IsFinite(Min))
        {
            c.Be.ChannelAffine(_x!, _one!, _negMin!, t, n, 1, _len);          // t = x - Min
            c.Be.ActivationBackward(Activation.Relu, 0f, t, null, dy, dx);   // dx = dy * [x > Min]
        }
        else c.Be.Copy(dy, dx);
        if (float.IsFinite(Max))
        {
            c.Be.ChannelAffine(_x!, _one!, _negMax!, t, n, 1, _len);         // t = x - Max
            var u = c.Alloc(dy.Shape);
            c.Be.ActivationBackward(Activation.Relu, 0f, t, null, dy, u);    // u = dy * [x > Max]
            c.Be.Axpy(-1f, u, dx);
        }
        return new[] { dx };
    }

    public override JsonObject Config()
    {
        var o = new JsonObject();
        if (float.IsFinite(Min)) o["min"] = Min;
        if (float.IsFinite(Max)) o["max"] = Max;
        return o;
    }

    internal static ClipLayer FromConfig(JsonObject o) => new(o.F("min", float.NegativeInfinity), o.F("max", float.PositiveInfinity));
}
