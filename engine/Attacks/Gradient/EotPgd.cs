using Perturb.Engine.Data;
using Perturb.Engine.Nn;

namespace Perturb.Engine.Attacks.Gradient;

/// <summary>
/// PGD with expectation over transformation (Athalye et al.): each step averages the loss gradient over
/// <see cref="Samples"/> random transformations t (rotation, scale, translation, brightness, contrast, Gaussian noise;
/// see <see cref="EotTransform"/>), dL/dx = mean_t contrast_t * W_t^T dL/dt(x), then takes the usual fused step; the
/// perturbation stays in the eps-ball of the original image. Everything runs on the device: the warp and its exact
/// adjoint are the backend's bilinear warp ops (<see cref="IBackend.WarpAffine"/>, <see cref="IBackend.WarpAffineAdjoint"/>),
/// given the transformation's map as six numbers, so a step moves nothing between host and device (any image size).
/// The geometric and photometric parts of each transformation are shared by the chunk's rows and drawn from
/// (seed, restart, step, sample), so they do not depend on the batch layout; the noise is per row (its own stream).
/// The transformed images are not clamped (the map stays affine). Early stop is off by default: the aim is an
/// adversarial that keeps working under the transformations, not the first point that fools the plain model.
/// </summary>
public sealed class EotPgd : Pgd
{
    public override string Name => "eot-pgd";
    /// <summary>Transformations sampled per step.</summary>
    [Setting("eot_samples", "random transformations averaged per step", Min = 1)]
    public int Samples { get; init; } = 8;
    public EotRanges Ranges { get; init; } = new();

    public EotPgd() { EarlyStop = false; }

    protected override bool LogitsAreOfAdv => false;

    protected override void Validate()
    {
        base.Validate();
        if (Samples < 1) throw new PerturbException($"{Name}: samples per step must be at least 1, got {Samples}", 2);
    }

    Tensor? _sum, _xt, _noise, _shift;
    int _h, _w, _c;

    protected override void AttackChunk(AttackBatch b)
    {
        var s = b.SampleShape;
        (_c, _h, _w) = s.Length == 3 ? (s[0], s[1], s[2]) : (1, 1, b.Cols);
        var be = b.Be;
        using var sum = be.Allocate(b.Shape(b.Rows));
        using var xt = be.Allocate(b.Shape(b.Rows));
        using var noise = be.Allocate(b.Shape(b.Rows));
        using var shift = be.Allocate(1);
        (_sum, _xt, _noise, _shift) = (sum, xt, noise, shift);
        try { base.AttackChunk(b); }
        finally { (_sum, _xt, _noise, _shift) = (null, null, null, null); }
    }

    protected override Tensor StepGradient(AttackBatch b, Tensor gradScale, int restart, int step)
    {
        var be = b.Be;
        int planes = b.Rows * _c;
        be.Fill(_sum!, 0f);
        for (int t = 0; t < Samples; t++)
        {
            ulong tag = ((ulong)restart << 48) ^ ((ulong)step << 24) ^ (ulong)t;
            var tr = EotTransform.Sample(new SplitMix64(Seed ^ (0xD1B54A32D192ED03UL * (tag + 1))), Ranges);
            var map = tr.Map(_h, _w);
            // xt = contrast * W Adv + (0.5 - 0.5 contrast + brightness) + noise
            be.WarpAffine(b.Adv, _xt!, planes, _h, _w, map, tr.Contrast, 0f);
            // the shift changes every sample: a device fill (b.Affine would cache a constant per value)
            be.Fill(_shift!, 0.5f - 0.5f * tr.Contrast + tr.Brightness);
            be.ChannelAffine(_xt!, b.Const(1f), _shift!, _xt!, 1, 1, _xt!.Length);
            if (Ranges.NoiseStd > 0)
            {
                b.NormalRows(_noise!, 0xE07UL ^ (tag << 8), Ranges.NoiseStd);
                be.Axpy(1f, _noise!, _xt!);
            }
            var g = b.Gradient(_xt!, Loss, gradScale, Kappa);
            // sum += contrast / T * W^T g
            be.WarpAffineAdjoint(g, _sum!, planes, _h, _w, map, tr.Contrast / Samples, 1f);
        }
        return _sum!;
    }
}
