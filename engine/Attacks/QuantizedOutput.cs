using System.Text.Json.Nodes;
using Perturb.Engine.Data;
using Perturb.Engine.IO;
using Perturb.Engine.Nn;

namespace Perturb.Engine.Attacks;

/// <summary>What <see cref="QuantizedOutput.Save"/> writes: PNGs at a depth, DICOM files, or both.</summary>
public sealed record QuantizedOutputOptions
{
    /// <summary>8 or 16: every adversarial image as a PNG of that depth; null writes none.</summary>
    public int? PngBits { get; init; }
    /// <summary>Every adversarial image as a DICOM file beside its source's metadata (the data must be DICOM files).</summary>
    public bool Dicom { get; init; }
    public int MaxBatch { get; init; } = 256;
}

/// <summary>
/// The attack after the pixels are stored: one budget's images written as files, read back, and classified again.
/// <c>SuccessRate</c> is over the samples classified correctly before the attack, as <see cref="EpsResult.SuccessRate"/>.
/// <c>MaxErrorLevels</c>: the largest difference between an image read back and the image written, in grey levels of
/// the file (at the source's size, before any resize to the model).
/// </summary>
public sealed record QuantizedCheck(string Kind, float? Eps, int Files, double SuccessRate, double RobustAccuracy, double MaxErrorLevels);

/// <summary>
/// Writes adversarial images as files that keep only what the file format can hold, reads them back and re-runs the
/// model on the pixels read, so that an attack that works only in float shows. PNG: <c>png&lt;bits&gt;_&lt;tag&gt;/</c>, one
/// grey or RGB file per image at 8 or 16 bits. DICOM: <c>dicom_&lt;tag&gt;/</c>, one single-frame file per image, written
/// by <see cref="Dicom.WriteDerived"/> at the source's size and bit depth; an image that the data loader resized keeps
/// the source's resolution: the source frame is changed so that resizing it to the model gives the adversarial image
/// (<see cref="ToSource"/>), and the file read back is resized to the model again before it is classified.
/// </summary>
public static class QuantizedOutput
{
    public static List<QuantizedCheck> Save(string dir, AttackResult r, Dataset d, Model model, string attack, QuantizedOutputOptions o)
    {
        var checks = new List<QuantizedCheck>();
        if (o.PngBits == null && !o.Dicom) return checks;
        if (r.SampleShape.Length != 3 || r.SampleShape[0] is not (1 or 3))
            throw new PerturbException($"{dir}: the model's inputs ({string.Join("x", r.SampleShape)}) are not images; PNG and DICOM output need 1 or 3 channels", 2);
        if (o.PngBits is { } b && b is not (8 or 16)) throw new PerturbException($"--png-bits must be 8 or 16, got {b}", 2);
        if (o.Dicom) CheckDicomSources(d, r.N);
        foreach (var e in r.Results)
        {
            if (o.PngBits is { } bits) checks.Add(Png(dir, r, e, model, bits, o.MaxBatch));
            if (o.Dicom) checks.Add(DicomFiles(dir, r, e, d, model, attack, o.MaxBatch));
        }
        return checks;
    }

    /// <summary>Adds each check to its budget's entry of an attack's --json summary: success_rate_&lt;kind&gt; and so on.</summary>
    public static void AddTo(JsonObject json, IReadOnlyList<EpsResult> results, IEnumerable<QuantizedCheck> checks)
    {
        var arr = json["results"]!.AsArray();
        static JsonNode? D(double v) => double.IsFinite(v) ? JsonValue.Create(v) : null;
        foreach (var c in checks)
        {
            int e = results.ToList().FindIndex(x => x.Eps == c.Eps);
            var entry = arr[e]!.AsObject();
            entry[$"success_rate_{c.Kind}"] = D(c.SuccessRate);
            entry[$"robust_accuracy_{c.Kind}"] = D(c.RobustAccuracy);
            entry[$"max_error_levels_{c.Kind}"] = D(c.MaxErrorLevels);
            entry[$"files_{c.Kind}"] = c.Files;
        }
    }

    static void CheckDicomSources(Dataset d, int n)
    {
        if (d.Sources == null) throw new PerturbException($"--dicom: the data set {d.Name} was not read from DICOM files (give --data a folder of class folders of .dcm files)", 2);
        foreach (var s in d.Sources.Take(n))
            if (!Dicom.IsDicom(s.File)) throw new PerturbException($"--dicom: {s.File} is not a DICOM file; every image must come from a .dcm file", 2);
    }

    static QuantizedCheck Png(string dir, AttackResult r, EpsResult e, Model model, int bits, int maxBatch)
    {
        int c = r.SampleShape[0], h = r.SampleShape[1], w = r.SampleShape[2], size = c * h * w;
        var sub = Path.Combine(dir, $"png{bits}_{AttackOutput.Tag(e.Eps)}");
        var reread = new float[(long)r.N * size];
        double maxErr = 0, level = bits == 8 ? 255 : 65535;
        for (int i = 0; i < r.N; i++)
        {
            var adv = e.Adversarial.AsSpan(i * size, size);
            var path = Path.Combine(sub, $"{i:D4}_label{r.Labels[i]}_pred{e.PredictedAfter[i]}.png");
            AtomicFile.WriteBytes(path, ImageWriter.EncodePng(adv, c, h, w, bits));
            var back = ImageFile.Decode(path);
            if (back.Channels != c || back.Height != h || back.Width != w) throw new PerturbException($"{path}: read back as {back.Channels}x{back.Height}x{back.Width}, written {c}x{h}x{w}");
            back.Pixels.CopyTo(reread, (long)i * size);
            for (int k = 0; k < size; k++) maxErr = Math.Max(maxErr, Math.Abs(back.Pixels[k] - adv[k]) * level);
        }
        return Check($"png{bits}", r, e, model, reread, maxBatch, maxErr);
    }

    static QuantizedCheck DicomFiles(string dir, AttackResult r, EpsResult e, Dataset d, Model model, string attack, int maxBatch)
    {
        int c = r.SampleShape[0], h = r.SampleShape[1], w = r.SampleShape[2], size = c * h * w;
        string tag = AttackOutput.Tag(e.Eps);
        var sub = Path.Combine(dir, $"dicom_{tag}");
        var reread = new float[(long)r.N * size];
        double maxErr = 0;
        DicomRaw? raw = null;
        for (int i = 0; i < r.N; i++)
        {
            var src = d.Sources![i];
            if (raw?.Path != src.File) raw = DicomCodec.Read(src.File); // one file at a time: frames of a file are neighbours
            if (raw.Samples != c)
                throw new PerturbException($"--dicom: {src.File} has {raw.Samples} channel(s), the model {c}; writing back needs the same channels", 2);
            var orig = Dicom.Decode(raw, src.Frame, d.Dicom).Pixels;
            var adv = e.Adversarial.AsSpan(i * size, size);
            var target = new float[orig.Length];
            if (raw.Rows == h && raw.Columns == w) adv.CopyTo(target);
            else ToSource(orig, raw.Rows, raw.Columns, adv, c, h, w, target);
            var name = Path.GetFileNameWithoutExtension(src.File) + (raw.Frames > 1 ? $"_frame{src.Frame}" : "");
            var path = Path.Combine(sub, $"{i:D4}_{name}.dcm");
            Directory.CreateDirectory(sub);
            Dicom.WriteDerived(raw, src.Frame, d.Dicom, target, path,
                $"Perturb adversarial image: {attack}, {(e.Eps is { } v ? $"eps {v:G4}" : "no budget")}, {(r.Targets != null ? "targeted" : "untargeted")}; pixel data changed from {Path.GetFileName(src.File)}{(raw.Frames > 1 ? $" frame {src.Frame}" : "")}");
            var backRaw = DicomCodec.Read(path);
            var back = Dicom.Decode(backRaw, 0, d.Dicom);
            double lvl = Dicom.GreyLevel(raw, d.Dicom);
            for (int k = 0; k < target.Length; k++) maxErr = Math.Max(maxErr, Math.Abs(back.Pixels[k] - target[k]) / lvl);
            ImageFile.Resize(back.Pixels, c, raw.Rows, raw.Columns, h, w).CopyTo(reread, (long)i * size);
        }
        return Check("dicom", r, e, model, reread, maxBatch, maxErr);
    }

    /// <summary>
    /// The source-size image whose resize to the model is the adversarial image: the source frame plus a perturbation
    /// found by back-projection (d += Up(adv - Down(clamp(orig + d))), Up and Down the antialiased bilinear resize),
    /// up to 100 rounds or until the residual is under a 65535th. Plain upsampling of the perturbation would not do:
    /// resizing down again blurs a perturbation made at the model's size, and measured here that undid a PGD attack.
    /// </summary>
    static void ToSource(float[] orig, int rows, int cols, ReadOnlySpan<float> adv, int c, int h, int w, float[] target)
    {
        int size = c * h * w;
        var d = new float[orig.Length];
        var half = new float[size];
        for (int round = 0; round < 100; round++)
        {
            for (int k = 0; k < orig.Length; k++) target[k] = Math.Clamp(orig[k] + d[k], 0f, 1f);
            var down = ImageFile.Resize(target, c, rows, cols, h, w);
            float worst = 0;
            for (int k = 0; k < size; k++) { float r = adv[k] - down[k]; worst = Math.Max(worst, Math.Abs(r)); half[k] = 0.5f + 0.5f * r; }
            if (worst < 1f / 65535) break;
            // Resize clamps to [0,1]: resize 0.5 + r/2 and undo the offset.
            var up = ImageFile.Resize(half, c, h, w, rows, cols);
            for (int k = 0; k < orig.Length; k++) d[k] += 2 * (up[k] - 0.5f);
        }
        for (int k = 0; k < orig.Length; k++) target[k] = Math.Clamp(orig[k] + d[k], 0f, 1f);
    }

    static QuantizedCheck Check(string kind, AttackResult r, EpsResult e, Model model, float[] x, int maxBatch, double maxErr)
    {
        var pred = Classify(model, x, r.N, maxBatch);
        int correct = 0, success = 0, robust = 0;
        for (int i = 0; i < r.N; i++)
        {
            if (pred[i] == r.Labels[i]) robust++;
            if (r.PredictedBefore[i] != r.Labels[i]) continue;
            correct++;
            if (r.Targets != null ? pred[i] == r.Targets[i] : pred[i] != r.Labels[i]) success++;
        }
        return new QuantizedCheck(kind, e.Eps, r.N, correct == 0 ? double.NaN : success / (double)correct, r.N == 0 ? double.NaN : robust / (double)r.N, maxErr);
    }

    static int[] Classify(Model model, float[] x, int n, int maxBatch)
    {
        var be = model.Backend;
        int d = Layer.Product(model.InputShape);
        var pred = new int[n];
        for (int s = 0; s < n; s += maxBatch)
        {
            int m = Math.Min(maxBatch, n - s);
            using var t = be.FromArray(x.AsSpan((int)((long)s * d), m * d), new[] { m }.Concat(model.InputShape).ToArray());
            Losses.Predict(be, model.Infer(t)).CopyTo(pred, s);
        }
        model.ReleaseActivations();
        return pred;
    }
}
