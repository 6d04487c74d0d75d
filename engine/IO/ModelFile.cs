using System.Text.Json;
using System.Text.Json.Nodes;
using Perturb.Engine.Nn;
using Perturb.Engine.Onnx;

namespace Perturb.Engine.IO;

/// <summary>
/// Model files: .safetensors holding every weight and buffer (BatchNorm running statistics, Normalize constants are
/// in the architecture) under PyTorch-style names, with the architecture as JSON in __metadata__["perturb.architecture"].
/// </summary>
public static class ModelFile
{
    public const string ArchKey = "perturb.architecture";

    public static void Save(Model model, string path)
    {
        if (path.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase)) { OnnxExporter.Save(model, path); return; }
        var meta = new Dictionary<string, string>
        {
            [ArchKey] = model.ArchitectureJson().ToJsonString(),
            ["format"] = "pt",
            ["perturb.seed"] = model.Seed.ToString(),
        };
        foreach (var kv in model.Info) meta["perturb.info." + kv.Key] = kv.Value;
        var tensors = model.NamedParameters().Select(np => new NamedArray(np.Name, np.P.Value.Shape, np.P.Value.ToArray()));
        SafeTensors.Write(path, tensors, meta);
    }

    public static Model Load(string path, IBackend be)
    {
        if (path.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase)) return OnnxImporter.Load(path, be);
        var (tensors, meta) = SafeTensors.Read(path);
        if (!meta.TryGetValue(ArchKey, out var archText))
            throw new PerturbException($"{path}: safetensors file has no '{ArchKey}' metadata (not a perturb model; import other models through ONNX)");
        JsonObject arch;
        try { arch = JsonNode.Parse(archText) as JsonObject ?? throw new PerturbException($"{path}: architecture metadata is not a JSON object"); }
        catch (JsonException e) { throw new PerturbException($"{path}: architecture metadata is not valid JSON ({e.Message})"); }
        ulong seed = meta.TryGetValue("perturb.seed", out var s) && ulong.TryParse(s, out var sv) ? sv : 0;
        Model model;
        var shapes = new Dictionary<string, int[]>();
        foreach (var t in tensors) shapes[t.Name] = t.Shape;
        try { model = Model.FromArchitecture(be, arch, seed, shapes); }
        catch (PerturbException e) { throw new PerturbException($"{path}: {e.Message}"); }
        var byName = new Dictionary<string, NamedArray>();
        foreach (var t in tensors) byName[t.Name] = t;
        foreach (var (name, p) in model.NamedParameters())
        {
            if (!byName.Remove(name, out var t))
            { model.Dispose(); throw new PerturbException($"{path}: tensor '{name}' is missing"); }
            if (!t.Shape.SequenceEqual(p.Value.Shape))
            { model.Dispose(); throw new PerturbException($"{path}: tensor '{name}' has shape {Tensor.ShapeString(t.Shape)}, the architecture needs {Tensor.ShapeString(p.Value.Shape)}"); }
            be.Upload(p.Value, t.Data);
        }
        if (byName.Count > 0)
        { model.Dispose(); throw new PerturbException($"{path}: tensor '{byName.Keys.First()}' does not belong to the architecture"); }
        foreach (var kv in meta)
            if (kv.Key.StartsWith("perturb.info.")) model.Info[kv.Key["perturb.info.".Length..]] = kv.Value;
        model.MarkParametersChanged();
        return model;
    }
}
