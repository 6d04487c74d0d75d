using System.Text.Json.Nodes;

namespace Perturb.Engine.Nn;

/// <summary>
/// Batch normalisation over channels of [N, C, H, W] (or [N, C]). Training: batch statistics, running averages
/// updated (PyTorch's momentum and unbiased running variance). Eval: the running statistics as one per-channel affine.
/// </summary>
public sealed class BatchNorm2d : Layer
{
    public int Channels { get; }
    public float Eps { get; }
    public float Momentum { get; }
    public Parameter Gamma { get; private set; } = null!;
    public Parameter Beta { get; private set; } = null!;
    public Parameter RunningMean { get; private set; } = null!;
    public Parameter RunningVar { get; private set; } = null!;
    Tensor? _x, _mean, _invStd, _scale, _shift;
    bool _trainPass;
    long _cacheVersion = -1;

    public BatchNorm2d(int channels, float eps = 1e-5f, float momentum = 0.1f)
    {
        if (channels <= 0) throw new PerturbException($"BatchNorm2d: invalid channel count {channels}");
        Channels = channels; Eps = eps; Momentum = momentum;
    }

    public override string Type => "BatchNorm2d";

    protected override int[] BuildCore(IBackend be, int[][] inShapes, ulong seed)
    {
        var s = inShapes[0];
        if ((s.Length != 3 && s.Length != 1) || s[0] != Channels) throw ShapeError($"{Channels}xHxW", s);
        var ones = Enumerable.Repeat(1f, Channels).ToArray();
        Gamma = AddParam("weight", be.FromArray(ones, Channels), decay: false);
        Beta = AddParam("bias", be.Allocate(Channels), decay: false);
        RunningMean = AddParam("running_mean", be.Allocate(Channels), trainable: false);
        RunningVar = AddParam("running_var", be.FromArray(ones, Channels), trainable: false);
        return (int[])s.Clone();
    }

    int Hw => InShapes[0].Length == 3 ? InShapes[0][1] * InShapes[0][2] : 1;

    /// <summary>Folded into the convolution before it (eval mode, set by Model): the node passes its input through.</summary>
    internal bool Absorbed { get; set; }

    public override Tensor Forward(PassContext c, Tensor[] x)
    {
        CheckInput(x[0], 0);
        if (Absorbed) return x[0];
        _x = x[0];
        int n = _x.N;
        var y = c.Alloc(_x.Shape);
        _trainPass = c.Training;
        if (c.Training)
        {
            _mean = c.Alloc(Channels); _invStd = c.Alloc(Channels);
            c.Be.BatchNormForwardTrain(_x, Gamma.Value, Beta.Value, y, _mean, _invStd, RunningMean.Value, RunningVar.Value, Momentum, Eps, n, Channels, Hw);
        }
        else
        {
            EnsureEvalAffine(c);
            c.Be.ChannelAffine(_x, _scale!, _shift!, y, n, Channels, Hw);
        }
        return y;
    }

    /// <summary>
    /// scale = gamma / sqrt(var + eps), shift = beta - mean * scale, recomputed when parameters are marked changed or
    /// any of the four tensors has been written since (their versions: an Upload needs no MarkParametersChanged).
    /// </summary>
    void EnsureEvalAffine(PassContext c)
    {
        long tensors = TensorVersions();
        if (_scale != null && _cacheVersion == c.ParamVersion && _tensorVersions == tensors) return;
        var g = Gamma.Value.ToArray(); var b = Beta.Value.ToArray();
        var m = RunningMean.Value.ToArray(); var v = RunningVar.Value.ToArray();
        var sc = new float[Channels]; var sh = new float[Channels];
        for (int i = 0; i < Channels; i++)
        {
            sc[i] = (float)(g[i] / Math.Sqrt((double)v[i] + Eps));
            sh[i] = b[i] - m[i] * sc[i];
        }
        _scale?.Dispose(); _shift?.Dispose();
        _scale = c.Be.FromArray(sc, Channels); _shift = c.Be.FromArray(sh, Channels);
        _cacheVersion = c.ParamVersion;
        _tensorVersions = TensorVersions();   // after the reads above, which count as writes
    }

    long _tensorVersions;
    long TensorVersions() => Gamma.Value.Version + Beta.Value.Version + RunningMean.Value.Version + RunningVar.Value.Version;

    public override Tensor?[] Backward(PassContext c, Tensor dy, bool weights, bool[] needDx)
    {
        if (Absorbed) return new Tensor?[] { needDx[0] ? dy : null };
        int n = _x!.N;
        var dx = c.Alloc(_x.Shape);
        if (_trainPass)
        {
            c.Be.BatchNormBackward(_x, dy, Gamma.Value, _mean!, _invStd!, dx,
                weights ? Gamma.EnsureGrad() : null, weights ? Beta.EnsureGrad() : null, n, Channels, Hw);
        }
        else if (!weights)
        {
            c.Be.ChannelAffineBackward(dy, _scale!, dx, null, null, null, n, Channels, Hw);
        }
        else
        {
            // Eval-mode weight gradients: y = gamma * (x - mean) * r + beta, r = 1/sqrt(var + eps):
            // dgamma = r * (sum(dy*x) - mean*sum(dy)), dbeta = sum(dy).
            var dsx = c.Alloc(Channels); var ds = c.Alloc(Channels);
            c.Be.ChannelAffineBackward(dy, _scale!, dx, _x, dsx, ds, n, Channels, Hw);
            var sx = dsx.ToArray(); var s = ds.ToArray();
            var m = RunningMean.Value.ToArray(); var v = RunningVar.Value.ToArray();
            var dg = new float[Channels];
            for (int i = 0; i < Channels; i++) dg[i] = (float)((sx[i] - (double)m[i] * s[i]) / Math.Sqrt((double)v[i] + Eps));
            c.Be.Upload(Gamma.EnsureGrad(), dg);
            c.Be.Copy(ds, Beta.EnsureGrad());
        }
        return new Tensor?[] { needDx[0] ? dx : null };
    }

    public override JsonObject Config() => new() { ["channels"] = Channels, ["eps"] = Eps, ["momentum"] = Momentum };
    internal static BatchNorm2d FromConfig(JsonObject o) => new(o.I("channels"), o.F("eps", 1e-5f), o.F("momentum", 0.1f));
}

/// <summary>
/// Per-channel input normalisation, (x - mean[c]) / std[c], as the model's first layer, so attack budgets stay in
/// pixel units. One mean and std may serve every channel.
/// </summary>
public sealed class Normalize : Layer
{
    public float[] Mean { get; }
    public float[] Std { get; }
    Tensor? _scale, _shift;
    int _c, _hw;

    public Normalize(float[] mean, float[] std)
    {
        if (mean.Length == 0 || mean.Length != std.Length) throw new PerturbException("Normalize: mean and std must have the same, non-zero length");
        if (std.Any(s => !(s > 0))) throw new PerturbException("Normalize: every std must be positive");
        Mean = mean; Std = std;
    }

    public override string Type => "Normalize";

    protected override int[] BuildCore(IBackend be, int[][] inShapes, ulong seed)
    {
        var s = inShapes[0];
        if (s.Length != 3) throw ShapeError("CxHxW", s);
        _c = s[0]; _hw = s[1] * s[2];
        if (Mean.Length != 1 && Mean.Length != _c) throw ShapeError($"{Mean.Length}xHxW (one mean per channel)", s);
        var sc = new float[_c]; var sh = new float[_c];
        for (int i = 0; i < _c; i++)
        {
            float m = Mean[Mean.Length == 1 ? 0 : i], sd = Std[Std.Length == 1 ? 0 : i];
            sc[i] = 1f / sd; sh[i] = -m / sd;
        }
        _scale = be.FromArray(sc, _c); _shift = be.FromArray(sh, _c);
        return (int[])s.Clone();
    }

    public override Tensor Forward(PassContext c, Tensor[] x)
    {
        CheckInput(x[0], 0);
        var y = c.AllocOutput(x[0].Shape);
        c.Be.ChannelAffine(x[0], _scale!, _shift!, y, x[0].N, _c, _hw);
        return y;
    }

    public override Tensor?[] Backward(PassContext c, Tensor dy, bool weights, bool[] needDx)
    {
        if (!needDx[0]) return new Tensor?[] { null };
        var dx = c.AllocOutput(dy.Shape);
        c.Be.ChannelAffineBackward(dy, _scale!, dx, null, null, null, dy.N, _c, _hw);
        return new[] { dx };
    }

    public override JsonObject Config() => new()
    {
        ["mean"] = new JsonArray(Mean.Select(v => (JsonNode)JsonValue.Create((double)v)!).ToArray()),
        ["std"] = new JsonArray(Std.Select(v => (JsonNode)JsonValue.Create((double)v)!).ToArray()),
    };
    internal static Normalize FromConfig(JsonObject o) => new(o.Fa("mean"), o.Fa("std"));
}
