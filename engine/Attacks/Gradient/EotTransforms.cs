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
/// (rotation and scale about the image centre, then translation; zero outside the image). It is affine in x, so its
/// adjoint is exact: dL/dx = contrast * W^T dL/dt. W acts on each channel alike and is held as a dense
/// (H*W) x (H*W) matrix, which limits EOT-PGD to images of at most 64 x 64 pixels per channel.
/// </summary>
public sealed record EotTransform(float AngleDegrees, float Scale, float Tx, float Ty, float Brightness, float Contrast)
{
    public const int MaxPixels = 64 * 64;

    public static EotTransform Sample(SplitMix64 rng, EotRanges r) => new(
        (float)rng.Range(-r.MaxRotation, r.MaxRotation), (float)rng.Range(r.MinScale, r.MaxScale),
        (float)rng.Range(-r.MaxTranslation, r.MaxTranslation), (float)rng.Range(-r.MaxTranslation, r.MaxTranslation),
        (float)rng.Range(-r.MaxBrightness, r.MaxBrightness), (float)rng.Range(r.MinContrast, r.MaxContrast));

    /// <summary>The warp as a dense row-major matrix M[out, in] over one channel's h*w pixels.</summary>
    public float[] WarpMatrix(int h, int w)
    {
        if ((long)h * w > MaxPixels) throw new PerturbException($"EOT transformations support at most {MaxPixels} pixels per channel, got {h}x{w}", 2);
        int p = h * w;
        var m = new float[(long)p * p];
        double a = AngleDegrees * Math.PI / 180, cos = Math.Cos(a), sin = Math.Sin(a);
        double cy = (h - 1) / 2.0, cx = (w - 1) / 2.0;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                // Inverse map: output pixel -> source coordinates.
                double u = x - cx - Tx, v = y - cy - Ty;
                double sx = (cos * u + sin * v) / Scale + cx, sy = (-sin * u + cos * v) / Scale + cy;
                int x0 = (int)Math.Floor(sx), y0 = (int)Math.Floor(sy);
                double fx = sx - x0, fy = sy - y0;
                long row = (long)(y * w + x) * p;
                void Put(int yy, int xx, double wt)
                {
                    if (wt != 0 && yy >= 0 && yy < h && xx >= 0 && xx < w) m[row + yy * w + xx] += (float)wt;
                }
                Put(y0, x0, (1 - fx) * (1 - fy)); Put(y0, x0 + 1, fx * (1 - fy));
                Put(y0 + 1, x0, (1 - fx) * fy); Put(y0 + 1, x0 + 1, fx * fy);
            }
        return m;
    }

    /// <summary>
    /// Applies the transformation on the host to n images (C x H x W each), with Gaussian noise of the given standard
    /// deviation from <paramref name="rng"/>, and clamps to [0,1] (for evaluating how well adversarials survive).
    /// </summary>
    public float[] Apply(float[] images, int n, int c, int h, int w, float noiseStd, SplitMix64 rng)
    {
        var m = WarpMatrix(h, w);
        int p = h * w;
        var outp = new float[images.Length];
        for (int i = 0; i < n * c; i++)
            for (int o = 0; o < p; o++)
            {
                double s = 0;
                long row = (long)o * p;
                for (int j = 0; j < p; j++) { float wt = m[row + j]; if (wt != 0) s += wt * images[(long)i * p + j]; }
                double v = Contrast * (s - 0.5) + 0.5 + Brightness + (noiseStd > 0 ? noiseStd * rng.Normal() : 0);
                outp[(long)i * p + o] = (float)Math.Clamp(v, 0, 1);
            }
        return outp;
    }
}
