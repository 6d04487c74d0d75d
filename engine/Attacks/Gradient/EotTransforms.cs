using Perturb.Engine.Data;

namespace Perturb.Engine.Attacks.Gradient;

/// <summary>The ranges EOT-PGD samples its transformations from (all inclusive, uniform).</summary>
public sealed record EotRanges
{
    /// <summary>Rotation in degrees, +-.</summary>
    public float MaxRotation { get; init; } = 15f;
    public float MinScale { get; init; } = 0.9f;
    public float MaxScale { get; init; } = 1.1f;
    /// <summary>Translation in pixels, +- on each axis.</summary>
    public float MaxTranslation { get; init; } = 2f;
    /// <summary>Added to every value, +-.</summary>
    public float MaxBrightness { get; init; } = 0.1f;
    public float MinContrast { get; init; } = 0.8f;
    public float MaxContrast { get; init; } = 1.2f;
    /// <summary>Standard deviation of additive Gaussian noise.</summary>
    public float NoiseStd { get; init; } = 0.02f;
}

/// <summary>
/// One random transformation: t(x) = contrast * (W x - 0.5) + 0.5 + brightness (+ noise), W a bilinear warp
/// (rotation and scale about the image centre, then translation; zero outside the image): the backend op
/// <see cref="IBackend.WarpAffine"/> with <see cref="Map"/>. It is affine in x, so its adjoint is exact:
/// dL/dx = contrast * W^T dL/dt (<see cref="IBackend.WarpAffineAdjoint"/>). Any image size.
/// </summary>
public sealed record EotTransform(float AngleDegrees, float Scale, float Tx, float Ty, float Brightness, float Contrast)
{
    public static EotTransform Sample(SplitMix64 rng, EotRanges r) => new(
        (float)rng.Range(-r.MaxRotation, r.MaxRotation), (float)rng.Range(r.MinScale, r.MaxScale),
        (float)rng.Range(-r.MaxTranslation, r.MaxTranslation), (float)rng.Range(-r.MaxTranslation, r.MaxTranslation),
        (float)rng.Range(-r.MaxBrightness, r.MaxBrightness), (float)rng.Range(r.MinContrast, r.MaxContrast));

    /// <summary>The geometric part as the warp op's map for h x w images.</summary>
    public WarpMap Map(int h, int w) => WarpMap.RotateScaleTranslate(AngleDegrees, Scale, Tx, Ty, h, w);

    /// <summary>
    /// Applies the transformation to n host images (C x H x W each) on <paramref name="be"/>, with Gaussian noise of
    /// the given standard deviation from <paramref name="rng"/>, and clamps to [0,1] (for evaluating how well
    /// adversarials survive).
    /// </summary>
    public float[] Apply(IBackend be, float[] images, int n, int c, int h, int w, float noiseStd, SplitMix64 rng)
    {
        using var x = be.FromArray(images, n * c, h, w);
        using var y = be.Allocate(n * c, h, w);
        be.WarpAffine(x, y, n * c, h, w, Map(h, w), 1f, 0f);
        var outp = y.ToArray();
        for (int i = 0; i < outp.Length; i++)
        {
            double v = Contrast * (outp[i] - 0.5) + 0.5 + Brightness + (noiseStd > 0 ? noiseStd * rng.Normal() : 0);
            outp[i] = (float)Math.Clamp(v, 0, 1);
        }
        return outp;
    }
}
