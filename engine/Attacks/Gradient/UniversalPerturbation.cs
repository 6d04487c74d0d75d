using Perturb.Engine.Data;
using Perturb.Engine.Nn;

namespace Perturb.Engine.Attacks.Gradient;

/// <summary>
/// Universal adversarial perturbation (Moosavi-Dezfooli et al.): one perturbation v for the whole input set, with
/// ||v|| &lt;= eps (Linf or L2), such that clamp(x + v, 0, 1) changes the model's prediction on as many samples as
/// possible. Passes over the data (in a seeded order) in mini-batches of <see cref="UpdateBatch"/>; each update sums
/// the cross-entropy gradients of the samples v does not fool yet (a device mask from the CW margin's sign), and takes
/// one fused projected step on v (sign step for Linf, normalised step for L2, size <see cref="RelStepSize"/> * eps),
/// a PGD-like variant of the original DeepFool-based inner step. After each pass the fooling rate over all samples
/// (prediction differs from the clean prediction; targeted: equals the target) is measured; the run stops at
/// <see cref="FoolingTarget"/> or after <see cref="MaxPasses"/>. The result carries v and its fooling rate
/// (<see cref="EpsResult.UniversalPerturbation"/>, <see cref="EpsResult.FoolingRate"/>); the adversarials are
/// clamp(x + v). Each epsilon of a list is fitted in turn (the universal update couples all samples of one epsilon).
/// v is stored on the device as 0.5 + v, so eps may be at most 0.5 per value (Linf).
/// </summary>
public sealed class UniversalPerturbation : Attack
{
    public override string Name => "uap";
    public override bool NeedsEpsilon => true;
    [Setting("norm", "the ball: linf or l2")]
    public Norm Norm { get; init; } = Norm.Linf;
    [Setting("max_passes", "most passes over the data", Min = 1)]
    public int MaxPasses { get; init; } = 10;
    [Setting("fooling_target", "stop once this fraction of samples is fooled", Min = 0, MinOpen = true, Max = 1)]
    public double FoolingTarget { get; init; } = 0.8;
    [Setting("rel_step_size", "step size as a fraction of eps", Min = 0, MinOpen = true)]
    public float RelStepSize { get; init; } = 0.1f;
    [Setting("update_batch", "samples per update of the perturbation", Min = 1)]
    public int UpdateBatch { get; init; } = 32;

    protected override void Validate()
    {
        if (MaxPasses < 1) throw new PerturbException($"{Name}: passes must be at least 1, got {MaxPasses}", 2);
        if (!(FoolingTarget > 0 && FoolingTarget <= 1)) throw new PerturbException($"{Name}: fooling-rate target must be in (0, 1], got {FoolingTarget}", 2);
        if (!(RelStepSize > 0)) throw new PerturbException($"{Name}: relative step size must be positive, got {RelStepSize}", 2);
        if (UpdateBatch < 1) throw new PerturbException($"{Name}: update batch must be at least 1, got {UpdateBatch}", 2);
    }

    Tensor? _v, _half, _shift, _ones, _g, _epsT, _stepT;

    protected override float[][] Produce(RunContext c)
    {
        if (Norm == Norm.Linf && c.Eps.Any(e => e > 0.5f)) throw new PerturbException($"{Name}: Linf eps must be at most 0.5", 2);
        var be = c.Model.Backend;
        int n = c.N, d = c.D, k = c.Model.NumOutputs;
        var adv = new float[c.Eps.Length][];
        var order = new SplitMix64(Seed).Permutation(n);
        using var v = be.Allocate(1, d); using var half = be.Allocate(1, d); using var shift = be.Allocate(d);
        using var ones = be.Allocate(d); using var g = be.Allocate(1, d);
        using var epsT = be.Allocate(1); using var stepT = be.Allocate(1);
        (_v, _half, _shift, _ones, _g, _epsT, _stepT) = (v, half, shift, ones, g, epsT, stepT);
        try
        {
            be.Fill(half, 0.5f); be.Fill(ones, 1f);
            for (int e = 0; e < c.Eps.Length; e++)
            {
                be.Fill(v, 0.5f);
                be.Fill(epsT, c.Eps[e]); be.Fill(stepT, RelStepSize * c.Eps[e]);
                double rate = 0; float[] pert = new float[d]; float[] xa = c.X;
                for (int pass = 0; pass < MaxPasses; pass++)
                {
                    for (int s = 0; s < n; s += UpdateBatch)
                    {
                        int rows = Math.Min(UpdateBatch, n - s);
                        var si = order.AsSpan(s, rows).ToArray();
                        var x0 = new float[(long)rows * d]; var zl = new float[rows * k];
                        for (int r = 0; r < rows; r++)
                        {
                            Array.Copy(c.X, (long)si[r] * d, x0, (long)r * d, d);
                            Array.Copy(c.CleanLogits, (long)si[r] * k, zl, (long)r * k, k);
                        }
                        using var b = new AttackBatch(c.Model, si, new int[rows], Enumerable.Repeat(c.Eps[e], rows).ToArray(),
                            si.Select(i => c.CleanPred[i]).ToArray(), c.Targets == null ? null : si.Select(i => c.Targets[i]).ToArray(), x0, zl, Seed);
                        AttackChunk(b);
                        foreach (var i in si) { c.Gradients[e][i]++; c.Steps[e][i]++; }
                    }
                    pert = v.ToArray().Select(x => x - 0.5f).ToArray();
                    xa = Perturbed(c.X, pert, n, d);
                    var (pred, _, _) = Classify(c.Model, xa, n);
                    rate = Enumerable.Range(0, n).Count(i => c.Targets != null ? pred[i] == c.Targets[i] : pred[i] != c.CleanPred[i]) / (double)Math.Max(1, n);
                    if (rate >= FoolingTarget) break;
                }
                adv[e] = xa == c.X ? (float[])c.X.Clone() : xa;
                c.Universal[e] = pert;
                c.FoolingRate[e] = rate;
            }
        }
        finally { (_v, _half, _shift, _ones, _g, _epsT, _stepT) = (null, null, null, null, null, null, null); }
        return adv;
    }

    static float[] Perturbed(float[] x, float[] v, int n, int d)
    {
        var a = new float[x.Length];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < d; j++) a[(long)i * d + j] = Math.Clamp(x[(long)i * d + j] + v[j], 0f, 1f);
        return a;
    }

    /// <summary>One update of v on a mini-batch: the summed gradient of the samples not fooled yet, one projected step.</summary>
    protected override void AttackChunk(AttackBatch b)
    {
        var be = b.Be; int rows = b.Rows, d = b.Cols;
        // Adv = clamp(X0 + v), v broadcast over rows (ChannelAffine with one "channel" per value).
        b.Affine(_v!, 1f, -0.5f, _shift!);
        be.ChannelAffine(b.X0, _ones!, _shift!, b.Adv, rows, d, 1);
        be.Clamp(b.Adv, 0f, 1f, b.Adv);
        var dx = b.Gradient(b.Adv, LossKind.CrossEntropy, b.Direction);
        using var mask = be.Allocate(rows);
        b.SuccessMask(b.Logits!, mask);
        b.Affine(mask, -1f, 1f, mask);
        b.ScaleRows(dx, mask, dx);
        using var onesRows = be.Allocate(1, rows);
        be.Fill(onesRows, 1f);
        be.Gemm(false, false, 1, d, rows, 1f, onesRows, dx, 0f, _g!);
        if (Norm == Norm.Linf) be.AttackStepLinf(_v!, _half!, _g!, _stepT!, _epsT!, 1, d);
        else be.AttackStepL2(_v!, _half!, _g!, _stepT!, _epsT!, 1, d);
    }
}
