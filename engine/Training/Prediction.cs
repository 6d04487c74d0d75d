using System.Text.Json.Nodes;
using Perturb.Engine.Data;
using Perturb.Engine.IO;
using Perturb.Engine.Nn;

namespace Perturb.Engine.Training;

/// <summary>Classifies image files: the class and the probabilities of each (<c>perturb predict</c>).</summary>
public static class Predictor
{
    /// <summary>
    /// Classifies <paramref name="files"/> (from <see cref="ImageFile.ListInputs"/>: files, DICOM frames) in batches of
    /// <paramref name="batchSize"/>, each image resized to the model's input (antialiased bilinear).
    /// <paramref name="progress"/>(done, total) after each batch.
    /// </summary>
    public static PredictionResult Run(Model m, IReadOnlyList<ImageSource> files, int batchSize, DicomOptions? dicom = null, Action<int, int>? progress = null)
    {
        if (batchSize < 1) throw new PerturbException($"batch size must be at least 1, got {batchSize}", 2);
        if (m.InputShape.Length != 3) throw new PerturbException($"the model takes {Tensor.ShapeString(m.InputShape)} inputs, not images");
        m.Eval();
        var be = m.Backend;
        int c = m.InputShape[0], h = m.InputShape[1], w = m.InputShape[2];
        var names = m.ClassNames ?? Enumerable.Range(0, m.NumClasses).Select(i => i.ToString()).ToArray();
        var cls = new int[files.Count]; var probs = new float[files.Count][];
        for (int start = 0; start < files.Count; start += batchSize)
        {
            int n = Math.Min(batchSize, files.Count - start);
            var x = new float[n * c * h * w];
            for (int i = 0; i < n; i++) ImageFile.Load(files[start + i], c, h, w, dicom).CopyTo(x, i * c * h * w);
            using var xt = be.FromArray(x, n, c, h, w);
            var z = m.Infer(xt);
            Losses.Predict(be, z).CopyTo(cls, start);
            Losses.Probabilities(m, z).CopyTo(probs, start);
            progress?.Invoke(start + n, files.Count);
        }
        m.ReleaseActivations();
        return new PredictionResult(files.ToArray(), names, cls, probs);
    }
}

/// <summary>Per image (a file, or a DICOM frame): the predicted class (the first maximum), its name, and every class's probability.</summary>
public sealed record PredictionResult(ImageSource[] Files, string[] ClassNames, int[] Classes, float[][] Probabilities)
{
    public string Label(int i) => Classes[i] < ClassNames.Length ? ClassNames[Classes[i]] : Classes[i].ToString();

    /// <summary>The image as printed: the file, with #frame for DICOM.</summary>
    public string Name(int i) => Files[i].File + (Dicom.IsDicom(Files[i].File) ? $"#{Files[i].Frame}" : "");

    public JsonObject ToJson(string? model = null, string? device = null) => new()
    {
        ["model"] = model, ["device"] = device, ["n"] = Files.Length,
        ["classes"] = new JsonArray(ClassNames.Select(s => (JsonNode)s).ToArray()),
        ["predictions"] = new JsonArray(Files.Select((f, i) => (JsonNode)new JsonObject
        {
            ["file"] = f.File, ["frame"] = Dicom.IsDicom(f.File) ? f.Frame : null, ["class"] = Classes[i], ["label"] = Label(i),
            ["probabilities"] = new JsonArray(Probabilities[i].Select(v => (JsonNode)(double)v).ToArray()),
        }).ToArray()),
    };

    /// <summary>Writes predictions.json into <paramref name="dir"/>.</summary>
    public void Save(string dir, string? model = null, string? device = null)
    {
        Directory.CreateDirectory(dir);
        AtomicFile.WriteText(Path.Combine(dir, "predictions.json"), ToJson(model, device).ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n");
    }
}
