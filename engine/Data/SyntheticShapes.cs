namespace Perturb.Engine.Data;

/// <summary>
/// A synthetic image set generated in code from a seed (no download): four classes of bright shapes on a textured,
/// noisy background: a filled disc, a ring, a square outline, and a plus-shaped cross. Position, size, thickness,
/// contrast and noise vary per image, so a classifier must learn shape rather than one pixel.
/// Used by unit tests and as a small default; not medical data.
/// </summary>
public static class SyntheticShapes
{
    public static readonly string[] Classes = { "disc", "ring", "square", "cross" };

    public static DataSplits Create(ulong seed, int trainCount = 2000, int testCount = 500, int channels = 1, int size = 28, int classes = 4)
    {
        if (classes < 2 || classes > Classes.Length) throw new PerturbException($"synthetic: classes must be 2 to {Classes.Length}, got {classes}", 2);
        if (size < 12) throw new PerturbException($"synthetic: image size must be at least 12, got {size}", 2);
        if (channels != 1 && channels != 3) throw new PerturbException($"synthetic: channels must be 1 or 3, got {channels}", 2);
        var names = Classes.Take(classes).ToArray();
        var train = Make(new SplitMix64(seed * 2 + 1), trainCount, channels, size, names);
        var val = Make(new SplitMix64(seed * 2 + 7919), Math.Max(testCount / 2, 1), channels, size, names);
        var test = Make(new SplitMix64(seed * 2 + 2), testCount, channels, size, names);
        return new DataSplits("synthetic", train, val, test);
    }

    static Dataset Make(SplitMix64 r, int n, int channels, int size, string[] names)
    {
        int k = names.Length, hw = size * size;
        var x = new float[n * channels * hw];
        var y = new int[n];
        var img = new float[hw];
        for (int i = 0; i < n; i++)
        {
            int label = i % k; // balanced
            y[i] = label;
            Draw(r, label, size, img);
            // Colour: a random tint per image for RGB; the shape's brightness is what matters.
            for (int c = 0; c < channels; c++)
            {
                float tint = channels == 1 ? 1f : (float)r.Range(0.7, 1.0);
                var dst = x.AsSpan((i * channels + c) * hw, hw);
                for (int p = 0; p < hw; p++) dst[p] = Math.Clamp(img[p] * tint, 0f, 1f);
            }
        }
        return new Dataset(x, y, channels, size, size, names) { Name = "synthetic" };
    }

    static void Draw(SplitMix64 r, int label, int size, float[] img)
    {
        double bg = r.Range(0.05, 0.3), fg = bg + r.Range(0.35, 0.65), noise = r.Range(0.02, 0.08);
        double fx = r.Range(0.1, 0.4), fy = r.Range(0.1, 0.4), ph = r.Range(0, 6.28); // background texture
        double rad = r.Range(0.22, 0.36) * size, th = r.Range(0.09, 0.14) * size;
        double cx = r.Range(rad + 1, size - rad - 1), cy = r.Range(rad + 1, size - rad - 1);
        for (int py = 0; py < size; py++)
            for (int px = 0; px < size; px++)
            {
                double dx = px + 0.5 - cx, dy = py + 0.5 - cy, d = Math.Sqrt(dx * dx + dy * dy);
                double ax = Math.Abs(dx), ay = Math.Abs(dy), cheb = Math.Max(ax, ay);
                bool on = label switch
                {
                    0 => d <= rad,
                    1 => d <= rad && d >= rad - th,
                    2 => cheb <= rad * 0.85 && cheb >= rad * 0.85 - th,
                    _ => (ax <= th / 2 + 0.5 && ay <= rad) || (ay <= th / 2 + 0.5 && ax <= rad),
                };
                double v = bg + 0.05 * Math.Sin(fx * px + fy * py + ph) + (on ? fg - bg : 0) + noise * r.Normal();
                img[py * size + px] = (float)v;
            }
    }
}
