using Perturb.Engine.Data;
using Perturb.Engine.Nn;
using Perturb.Engine.Training;

namespace Perturb.Engine.Attacks.Patch;

public enum PatchShape { Square, Round }

/// <summary>One placement of a patch on an image: top-left corner of its box, scale of its side, rotation.</summary>
public readonly record struct PatchPlacement(int Y, int X, int Side, double Angle);

/// <summary>
/// A patch (C x S x S with a square or round mask) and how it is put on an image: the patch is scaled to
/// round(S * scale) pixels, rotated by an angle about its centre, and placed at an integer position. Rendering is a
/// nearest-neighbour gather (each covered image pixel copies one patch pixel), so its adjoint, a scatter-add of the
/// image gradient back to the patch pixels, is exact.
/// </summary>
public sealed class PatchRenderer
{
    public int Channels { get; }
    public int Size { get; }
    public PatchShape Shape { get; }
    public bool[] Mask { get; }

    public PatchRenderer(int channels, int size, PatchShape shape)
    {
        if (size < 1) throw new PerturbException($"patch side must be at least 1 pixel, got {size}", 2);
        Channels = channels; Size = size; Shape = shape;
        Mask = new bool[size * size];
        double r = size / 2.0;
        for (int y = 0; y < size; y++)
            for (int x = 0; x < size; x++)
            {
                double dy = y + 0.5 - r, dx = x + 0.5 - r;
                Mask[y * size + x] = shape == PatchShape.Square || dx * dx + dy * dy <= r * r;
            }
    }

    /// <summary>The patch side for a fraction of an h x w image's area (a round patch's disc covers that fraction).</summary>
    public static int SideFor(double fraction, int h, int w, PatchShape shape)
    {
        if (!(fraction > 0 && fraction <= 1)) throw new PerturbException($"patch size must be a fraction of the image in (0, 1], got {fraction}", 2);
        double area = fraction * h * w;
        int s = (int)Math.Round(shape == PatchShape.Square ? Math.Sqrt(area) : Math.Sqrt(4 * area / Math.PI));
        return Math.Clamp(s, 1, Math.Min(h, w));
    }

    /// <summary>A random placement: scale in [scaleMin, scaleMax], angle in ±maxDegrees, a position where the box fits.</summary>
    public PatchPlacement Sample(SplitMix64 r, int h, int w, double scaleMin, double scaleMax, double maxDegrees)
    {
        int side = Math.Clamp((int)Math.Round(Size * r.Range(scaleMin, scaleMax)), 1, Math.Min(h, w));
        double ang = r.Range(-maxDegrees, maxDegrees) * Math.PI / 180;
        return new PatchPlacement(r.NextInt(h - side + 1), r.NextInt(w - side + 1), side, ang);
    }

    /// <summary>
    /// Pairs (image pixel within one channel plane, patch pixel within one channel plane) covered by the placement:
    /// the inverse map of each box pixel (un-rotate, un-scale) to the nearest patch pixel inside the mask, computed by
    /// the kernels' own helper (<see cref="Perturb.Kernels.Patch.Source"/>, float arithmetic) from <see cref="Place"/>,
    /// so the host covers the pixels <see cref="IBackend.PatchApply"/> covers.
    /// </summary>
    public (int[] Dst, int[] Src) Map(PatchPlacement p, int h, int w)
    {
        var dst = new List<int>(); var src = new List<int>();
        var q = Place(p);
        for (int y = 0; y < p.Side; y++)
            for (int x = 0; x < p.Side; x++)
            {
                if (!Perturb.Kernels.Patch.Source(p.Side, q[3], q[4], y, x, Size, out int su, out int sv) || !Mask[sv * Size + su]) continue;
                dst.Add((p.Y + y) * w + p.X + x); src.Add(sv * Size + su);
            }
        return (dst.ToArray(), src.ToArray());
    }

    /// <summary>A placement as the five numbers <see cref="IBackend.PatchApply"/> reads: (top, left, side, cos, sin).</summary>
    public static float[] Place(PatchPlacement p) => [p.Y, p.X, p.Side, (float)Math.Cos(p.Angle), (float)Math.Sin(p.Angle)];

    /// <summary>Puts the patch on one CHW image in place.</summary>
    public void Apply(float[] patch, Span<float> img, (int[] Dst, int[] Src) map, int h, int w)
    {
        int hw = h * w, ss = Size * Size;
        for (int ch = 0; ch < Channels; ch++)
            for (int i = 0; i < map.Dst.Length; i++) img[ch * hw + map.Dst[i]] = patch[ch * ss + map.Src[i]];
    }

    /// <summary>The adjoint of <see cref="Apply"/> with respect to the patch: gPatch += scatter of the image gradient.</summary>
    public void Adjoint(ReadOnlySpan<float> gImg, float[] gPatch, (int[] Dst, int[] Src) map, int h, int w)
    {
        int hw = h * w, ss = Size * Size;
        for (int ch = 0; ch < Channels; ch++)
            for (int i = 0; i < map.Dst.Length; i++) gPatch[ch * ss + map.Src[i]] += gImg[ch * hw + map.Dst[i]];
    }
}

/// <summary>
/// The patch's settings, each described once by <see cref="SettingAttribute"/>: <c>perturb attack patch</c> options
/// and the sweep keys of a "patch" attack object come from these descriptors.
/// </summary>
public sealed record PatchOptions
{
    [Setting("target", "the class the patch pushes images to", Min = 0)]
    public int Target { get; init; }
    [Setting("patch_size", "fraction of the image area the full-scale patch covers", Min = 0, MinOpen = true, Max = 1)]
    public double SizeFraction { get; init; } = 0.2;
    [Setting("shape", "square or round")]
    public PatchShape Shape { get; init; } = PatchShape.Square;
    [Setting("steps", "optimisation steps (one batch of training images each)", Min = 1)]
    public int Steps { get; init; } = 200;
    [Setting("batch_size", "training images per step", Min = 1)]
    public int BatchSize { get; init; } = 32;
    [Setting("lr", "Adam learning rate in pixel units", Min = 0, MinOpen = true)]
    public float LearningRate { get; init; } = 0.05f;
    [Setting("scale_min", "smallest patch scale during training", Min = 0, MinOpen = true, Max = 1)]
    public double ScaleMin { get; init; } = 0.1;
    [Setting("scale_max", "largest patch scale during training", Min = 0, MinOpen = true, Max = 1)]
    public double ScaleMax { get; init; } = 1.0;
    [Setting("rotation", "largest rotation in degrees (both ways) during training", Min = 0, Max = 180)]
    public double MaxRotationDegrees { get; init; } = 22.5;
    /// <summary>Scale of the patch when it is evaluated (ART applies the full patch).</summary>
    [Setting("eval_scale", "scale of the patch when it is evaluated", Min = 0, MinOpen = true, Max = 1)]
    public double EvalScale { get; init; } = 1.0;
    [Setting("seed", "seed of the placements, the batches and the natural control patch")]
    public ulong Seed { get; init; }
    /// <summary>
    /// Printable colours: every patch value is kept in [PrintMin, PrintMax] throughout the optimisation (a printer can
    /// reproduce neither pure black nor pure white, nor fully saturated channels). [0, 1] means no restriction.
    /// </summary>
    [Setting("print_min", "printable colours: lowest value any patch pixel may take (0: no limit)", Min = 0, Max = 1)]
    public float PrintMin { get; init; } = 0f;
    [Setting("print_max", "printable colours: highest value any patch pixel may take (1: no limit)", Min = 0, Max = 1)]
    public float PrintMax { get; init; } = 1f;

    /// <summary>The checks of settings taken together (each one's range is checked by its descriptor).</summary>
    public void Check()
    {
        if (Steps < 1 || BatchSize < 1) throw new PerturbException("patch: steps and batch size must be positive", 2);
        if (!(ScaleMin > 0 && ScaleMin <= ScaleMax && ScaleMax <= 1)) throw new PerturbException($"patch: scales must satisfy 0 < scale_min <= scale_max <= 1, got {ScaleMin}..{ScaleMax}", 2);
        if (!(PrintMin >= 0 && PrintMin < PrintMax && PrintMax <= 1)) throw new PerturbException($"patch: printable colours must satisfy 0 <= print_min < print_max <= 1, got {PrintMin}..{PrintMax}", 2);
        if (!(LearningRate > 0)) throw new PerturbException($"patch: lr must be positive, got {LearningRate}", 2);
    }
}

public sealed record PatchEval(double TargetedSuccess, double Accuracy, double Auc, int NonTarget, int N);

public sealed record PatchResult(float[] Patch, int Side, PatchEval Learned, PatchEval Control, PatchEval Clean, float[] ControlPatch, double Seconds);

/// <summary>
/// Adversarial patch (Brown et al. 2017): a universal patch for a target class, learned by gradient ascent (Adam) on
/// the mean target log-probability over training images with the patch at random places, scales and rotations
/// (expectation over transformation), using input gradients only. Evaluation puts the patch on held-out images at
/// random places and rotations; a natural control patch (a crop of another image, same size, mask and places) shows
/// what the learned patch does beyond hiding pixels.
/// </summary>
public static class AdversarialPatch
{
    public static PatchResult Run(Model model, Dataset train, Dataset test, PatchOptions o, Action<int, int, double>? progress = null)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        if (o.Target < 0 || o.Target >= model.NumClasses) throw new PerturbException($"patch: target {o.Target} outside the model's {model.NumClasses} classes", 2);
        o.Check();
        if (train.Count == 0 || test.Count == 0) throw new PerturbException("patch: needs training and test images", 2);
        int c = train.Channels, h = train.Height, w = train.Width;
        int side = PatchRenderer.SideFor(o.SizeFraction, h, w, o.Shape);
        var ren = new PatchRenderer(c, side, o.Shape);
        var patch = Learn(model, train, ren, o, progress);
        var control = ControlPatch(test, ren, o.Seed);
        var learned = Evaluate(model, test, ren, patch, o);
        var ctrl = Evaluate(model, test, ren, control, o);
        var ev = Evaluator.Evaluate(model, test);
        var clean = new PatchEval(TargetRate(ev.Predictions, test.Labels, o.Target), ev.Accuracy, ev.Auc, test.Labels.Count(l => l != o.Target), test.Count);
        return new PatchResult(patch, side, learned, ctrl, clean, control, sw.Elapsed.TotalSeconds);
    }

    /// <summary>
    /// Adam on the mean target cross-entropy, every step on the device: the training images are uploaded once; a step
    /// uploads the batch's image indices and placements (4 + 20 bytes an image), gathers the images
    /// (<see cref="IBackend.ScatterRows"/>), puts the patch on (<see cref="IBackend.PatchApply"/>), runs the forward
    /// pass, the loss and the input-only backward, takes the patch gradient (<see cref="IBackend.PatchApplyAdjoint"/>)
    /// and the Adam step and clamp (<see cref="IBackend.AdamUpdate"/>, <see cref="IBackend.Clamp"/>), and allocates
    /// nothing after the first. Only with a <paramref name="progress"/> callback does the loss come back (4 bytes an
    /// image a step).
    /// </summary>
    static float[] Learn(Model model, Dataset train, PatchRenderer ren, PatchOptions o, Action<int, int, double>? progress)
    {
        var be = model.Backend;
        int c = train.Channels, h = train.Height, w = train.Width, s = train.SampleSize, S = ren.Size, k = model.NumOutputs;
        var rng = new SplitMix64(o.Seed ^ 0x9A7C_4000UL);
        int len = c * S * S;
        var init = new float[len];
        for (int i = 0; i < len; i++) init[i] = o.PrintMin + (o.PrintMax - o.PrintMin) * (float)rng.NextDouble();
        model.Eval();
        int n = Math.Min(o.BatchSize, train.Count);
        using var patch = be.FromArray(init, c, S, S);
        using var m1 = be.Allocate(len); using var m2 = be.Allocate(len); using var g = be.Allocate(c, S, S);
        using var mask = be.FromArray(ren.Mask.Select(v => v ? 1f : 0f).ToArray(), S * S);
        using var images = be.FromArray(train.X, train.Count, s);
        using var none = be.Allocate(0);
        using var x = be.Allocate(n, c, h, w);
        using var idx = be.Allocate(n); using var place = be.Allocate(n, 5);
        // CE toward the target = -log p(target): descending it ascends the target log-probability.
        using var y = be.FromArray(Enumerable.Repeat((float)o.Target, n).ToArray(), n);
        using var scale = be.Allocate(n); using var loss = be.Allocate(n); using var dz = be.Allocate(n, k);
        be.Fill(scale, 1f / n);
        var idxH = new float[n]; var placeH = new float[n * 5];
        for (int t = 1; t <= o.Steps; t++)
        {
            for (int i = 0; i < n; i++) idxH[i] = rng.NextInt(train.Count);
            for (int i = 0; i < n; i++) Place(ren.Sample(rng, h, w, o.ScaleMin, o.ScaleMax, o.MaxRotationDegrees)).CopyTo(placeH, i * 5);
            be.Upload(idx, idxH); be.Upload(place, placeH);
            be.ScatterRows(images, idx, none, none, x, train.Count, n, s, 0);
            be.PatchApply(patch, mask, place, x, n, c, h, w, S);
            var logits = model.Forward(x);
            if (k == 1) be.BceWithLogits(logits, y, loss, dz, scale, n);
            else be.CrossEntropy(logits, y, loss, dz, scale, n, k);
            var dx = model.Backward(dz, BackwardMode.InputOnly)!;
            be.PatchApplyAdjoint(dx, mask, place, g, n, c, h, w, S);
            // Adam step (descent on the CE), then clamp to the printable range ([0,1] by default).
            be.AdamUpdate(patch, g, m1, m2, o.LearningRate, 0.9f, 0.999f, 1e-8f, 0f, t);
            be.Clamp(patch, o.PrintMin, o.PrintMax, patch);
            if (progress != null) progress(t, o.Steps, loss.ToArray().Average());
        }
        model.ReleaseActivations();
        return patch.ToArray();
    }

    static float[] Place(PatchPlacement p) => PatchRenderer.Place(p);

    /// <summary>A natural control: a crop of a (seeded) test image, the patch's size, at a random place.</summary>
    public static float[] ControlPatch(Dataset d, PatchRenderer ren, ulong seed)
    {
        var r = new SplitMix64(seed ^ 0xC0_47A0_1UL);
        int img = r.NextInt(d.Count), sz = ren.Size, h = d.Height, w = d.Width;
        int y0 = r.NextInt(h - sz + 1), x0 = r.NextInt(w - sz + 1);
        var p = new float[d.Channels * sz * sz];
        var src = d.Sample(img);
        for (int ch = 0; ch < d.Channels; ch++)
            for (int y = 0; y < sz; y++)
                for (int x = 0; x < sz; x++) p[(ch * sz + y) * sz + x] = src[(ch * h + y0 + y) * w + x0 + x];
        return p;
    }

    /// <summary>The test images with the patch at seeded random places and rotations (the same for every patch given the seed).</summary>
    public static Dataset Patched(Dataset d, PatchRenderer ren, float[] patch, PatchOptions o)
    {
        var r = new SplitMix64(o.Seed ^ 0xE7A1_0000UL);
        var x = (float[])d.X.Clone();
        int s = d.SampleSize;
        for (int i = 0; i < d.Count; i++)
        {
            var pl = ren.Sample(r, d.Height, d.Width, o.EvalScale, o.EvalScale, o.MaxRotationDegrees);
            ren.Apply(patch, x.AsSpan(i * s, s), ren.Map(pl, d.Height, d.Width), d.Height, d.Width);
        }
        return new Dataset(x, d.Labels, d.Channels, d.Height, d.Width, d.ClassNames) { Name = d.Name + "+patch" };
    }

    public static PatchEval Evaluate(Model model, Dataset test, PatchRenderer ren, float[] patch, PatchOptions o)
    {
        var pd = Patched(test, ren, patch, o);
        var ev = Evaluator.Evaluate(model, pd);
        return new PatchEval(TargetRate(ev.Predictions, test.Labels, o.Target), ev.Accuracy, ev.Auc, test.Labels.Count(l => l != o.Target), test.Count);
    }

    /// <summary>The share of images not of the target class that are predicted as the target.</summary>
    static double TargetRate(int[] pred, int[] labels, int target)
    {
        int n = 0, hit = 0;
        for (int i = 0; i < labels.Length; i++) if (labels[i] != target) { n++; if (pred[i] == target) hit++; }
        return n == 0 ? double.NaN : (double)hit / n;
    }
}
