namespace Perturb.Engine.Attacks;

/// <summary>Image-quality figures between a clean and a perturbed image, both in [0,1], laid out C x H x W.</summary>
public static class ImageMetrics
{
    /// <summary>PSNR in dB with peak 1: 10 log10(1 / MSE); +infinity for identical images.</summary>
    public static double Psnr(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i++) { double d = a[i] - b[i]; s += d * d; }
        double mse = s / a.Length;
        return mse == 0 ? double.PositiveInfinity : 10 * Math.Log10(1 / mse);
    }

    /// <summary>
    /// Mean SSIM over channels, each channel with a uniform 7 x 7 window (scikit-image's default: valid windows only,
    /// sample covariance with N/(N-1), data range 1, C1 = 0.01^2, C2 = 0.03^2). Images smaller than 7 pixels on a side
    /// use a window as large as the smaller side (made odd).
    /// </summary>
    public static double Ssim(ReadOnlySpan<float> a, ReadOnlySpan<float> b, int c, int h, int w)
    {
        int win = Math.Min(7, Math.Min(h, w));
        if (win % 2 == 0) win--;
        const double C1 = 0.01 * 0.01, C2 = 0.03 * 0.03;
        double np = win * win, cov = np > 1 ? np / (np - 1) : 1;
        double total = 0;
        for (int ch = 0; ch < c; ch++)
        {
            var pa = a.Slice(ch * h * w, h * w);
            var pb = b.Slice(ch * h * w, h * w);
            double sum = 0; int count = 0;
            for (int y = 0; y + win <= h; y++)
                for (int x = 0; x + win <= w; x++)
                {
                    double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
                    for (int dy = 0; dy < win; dy++)
                        for (int dx = 0; dx < win; dx++)
                        {
                            double u = pa[(y + dy) * w + x + dx], v = pb[(y + dy) * w + x + dx];
                            sa += u; sb += v; saa += u * u; sbb += v * v; sab += u * v;
                        }
                    double ma = sa / np, mb = sb / np;
                    double va = cov * (saa / np - ma * ma), vb = cov * (sbb / np - mb * mb), vab = cov * (sab / np - ma * mb);
                    sum += (2 * ma * mb + C1) * (2 * vab + C2) / ((ma * ma + mb * mb + C1) * (va + vb + C2));
                    count++;
                }
            total += sum / Math.Max(1, count);
        }
        return total / c;
    }
}
