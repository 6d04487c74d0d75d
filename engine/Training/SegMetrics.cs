using Perturb.Engine.Nn;

namespace Perturb.Engine.Training;

/// <summary>
/// Mask metrics on the host. A mask is a class per pixel, [H*W] row-major; "foreground" is every class but 0
/// (background), so for nuclei it is "any nucleus". Pixels equal to the ignore label count nowhere.
/// </summary>
public static class SegMetrics
{
    /// <summary>Dice of two pixel sets given as predicates over the pixel index: 2|A∩B| / (|A|+|B|); 1 when both are empty.</summary>
    static double Dice(int inter, int a, int b) => a + b == 0 ? 1.0 : 2.0 * inter / (a + b);

    /// <summary>Foreground (class &gt; 0) Dice between two masks of equal length.</summary>
    public static double ForegroundDice(ReadOnlySpan<int> pred, ReadOnlySpan<int> truth, int ignore = -1)
    {
        int inter = 0, a = 0, b = 0;
        for (int j = 0; j < pred.Length; j++)
        {
            if (truth[j] == ignore) continue;
            bool p = pred[j] > 0, t = truth[j] > 0;
            if (p) a++;
            if (t) b++;
            if (p && t) inter++;
        }
        return Dice(inter, a, b);
    }

    /// <summary>Foreground IoU: |A∩B| / |A∪B|; 1 when both are empty.</summary>
    public static double ForegroundIou(ReadOnlySpan<int> pred, ReadOnlySpan<int> truth, int ignore = -1)
    {
        int inter = 0, uni = 0;
        for (int j = 0; j < pred.Length; j++)
        {
            if (truth[j] == ignore) continue;
            bool p = pred[j] > 0, t = truth[j] > 0;
            if (p && t) inter++;
            if (p || t) uni++;
        }
        return uni == 0 ? 1.0 : (double)inter / uni;
    }

    /// <summary>Fraction of (non-ignored) pixels where the classes agree.</summary>
    public static double PixelAccuracy(ReadOnlySpan<int> pred, ReadOnlySpan<int> truth, int ignore = -1)
    {
        int ok = 0, tot = 0;
        for (int j = 0; j < pred.Length; j++)
        {
            if (truth[j] == ignore) continue;
            tot++;
            if (pred[j] == truth[j]) ok++;
        }
        return tot == 0 ? double.NaN : (double)ok / tot;
    }

    /// <summary>
    /// Connected components of the foreground (class &gt; 0), 8-connected: the nucleus count a grading step reads off a
    /// mask. Components smaller than <paramref name="minArea"/> pixels are not counted.
    /// </summary>
    public static int CountComponents(ReadOnlySpan<int> mask, int h, int w, int minArea = 1)
    {
        var seen = new bool[h * w];
        var stack = new Stack<int>();
        int count = 0;
        for (int s = 0; s < h * w; s++)
        {
            if (seen[s] || mask[s] <= 0) continue;
            int area = 0;
            seen[s] = true; stack.Push(s);
            while (stack.Count > 0)
            {
                int q = stack.Pop(); area++;
                int y = q / w, x = q % w;
                for (int dy = -1; dy <= 1; dy++)
                    for (int dx = -1; dx <= 1; dx++)
                    {
                        int yy = y + dy, xx = x + dx;
                        if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
                        int r = yy * w + xx;
                        if (!seen[r] && mask[r] > 0) { seen[r] = true; stack.Push(r); }
                    }
            }
            if (area >= minArea) count++;
        }
        return count;
    }

    /// <summary>Number of distinct non-zero instance ids.</summary>
    public static int CountInstances(ReadOnlySpan<int> instances)
    {
        var set = new HashSet<int>();
        foreach (var v in instances) if (v > 0) set.Add(v);
        return set.Count;
    }

    /// <summary>Class per pixel (argmax over the K channels) of logits [n, K, H, W] held on the host.</summary>
    public static int[] Argmax(float[] logits, int n, int k, int p)
    {
        var m = new int[n * p];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < p; j++)
            {
                int best = 0; float bv = logits[(long)i * k * p + j];
                for (int c = 1; c < k; c++)
                {
                    float v = logits[((long)i * k + c) * p + j];
                    if (v > bv) { bv = v; best = c; }
                }
                m[i * p + j] = best;
            }
        return m;
    }

    /// <summary>Predicted masks [n*H*W] of n host images, in eval mode, in batches.</summary>
    public static int[] Predict(Model model, float[] x, int n, int batchSize = 64)
    {
        if (!Presets.IsSegmentation(model))
            throw new PerturbException($"the model outputs {Tensor.ShapeString(model.OutputShape)} per image, not a mask of class logits [classes, H, W]");
        bool was = model.Training;
        model.Eval();
        int d = Layer.Product(model.InputShape), k = model.OutputShape[0], p = model.OutputShape[1] * model.OutputShape[2];
        var masks = new int[(long)n * p];
        for (int s = 0; s < n; s += batchSize)
        {
            int m = Math.Min(batchSize, n - s);
            using var t = model.Backend.FromArray(x.AsSpan((int)((long)s * d), m * d), new[] { m }.Concat(model.InputShape).ToArray());
            Argmax(model.Forward(t).ToArray(), m, k, p).CopyTo(masks, (long)s * p);
        }
        model.ReleaseActivations();
        model.Train(was);
        return masks;
    }
}
