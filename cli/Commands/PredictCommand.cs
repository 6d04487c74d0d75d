using System.CommandLine;
using System.Text.Json.Nodes;
using Perturb.Engine;
using Perturb.Engine.Data;
using Perturb.Engine.IO;
using Perturb.Engine.Nn;

namespace Perturb.Cli;

public static class PredictCommand
{
    public static Command Build(CliIO io)
    {
        var model = new Option<string>("--model") { Description = "model file: .safetensors or .onnx", Required = true };
        var input = new Option<string>("--input") { Description = "an image file (.png, .jpg, .jpeg, .bmp, .dcm) or a folder of them (searched recursively); multi-frame DICOM files give one image per frame", Required = true };
        var window = CommonOptions.Window();
        var frame = CommonOptions.Frame();
        var batch = CommonOptions.BatchSize(64);
        var device = CommonOptions.Device();
        var json = CommonOptions.Json();
        var cmd = new Command("predict", "classify image files: the class and the probabilities per image (images are resized to the model's input with antialiased bilinear filtering)");
        foreach (var o in new Option[] { model, input, window, frame, batch, device, json }) cmd.Options.Add(o);
        cmd.SetAction(pr =>
        {
            var path = pr.GetValue(input)!;
            var dicom = CommonOptions.Dicom(pr.GetValue(window), pr.GetValue(frame));
            var files = ImageFile.ListInputs(path, dicom);

            using var be = CliUtil.OpenDevice(pr.GetValue(device)!, io);
            using var m = ModelFile.Load(pr.GetValue(model)!, be);
            m.Eval();
            if (m.InputShape.Length != 3) throw new PerturbException($"{pr.GetValue(model)}: the model takes {Tensor.ShapeString(m.InputShape)} inputs, not images");
            int c = m.InputShape[0], h = m.InputShape[1], w = m.InputShape[2], bs = Math.Max(1, pr.GetValue(batch));
            var names = m.ClassNames ?? Enumerable.Range(0, m.NumClasses).Select(i => i.ToString()).ToArray();
            var results = new JsonArray();
            var bar = new ProgressBar(io.Err, "predict");
            for (int start = 0; start < files.Count; start += bs)
            {
                int n = Math.Min(bs, files.Count - start);
                var x = new float[n * c * h * w];
                for (int i = 0; i < n; i++) ImageFile.Load(files[start + i], c, h, w, dicom).CopyTo(x, i * c * h * w);
                using var xt = be.FromArray(x, n, c, h, w);
                var probs = Losses.Probabilities(be, m.Infer(xt));
                for (int i = 0; i < n; i++)
                {
                    var p = probs[i];
                    int arg = Losses.Argmax(p);
                    string label = arg < names.Length ? names[arg] : arg.ToString();
                    var src = files[start + i];
                    io.Out.WriteLine($"{src.File}{(Dicom.IsDicom(src.File) ? $"#{src.Frame}" : "")}\t{label}\t{p[arg]:F4}");
                    results.Add(new JsonObject
                    {
                        ["file"] = src.File, ["frame"] = Dicom.IsDicom(src.File) ? src.Frame : null, ["class"] = arg, ["label"] = label,
                        ["probabilities"] = new JsonArray(p.Select(v => (JsonNode)(double)v).ToArray()),
                    });
                }
                bar.Update(start + n, files.Count);
            }
            bar.Done($"{files.Count} images");
            var jpath = pr.GetValue(json);
            if (jpath != null)
                CliUtil.WriteJson(jpath, new JsonObject
                {
                    ["model"] = pr.GetValue(model), ["device"] = be.Name, ["n"] = files.Count,
                    ["classes"] = new JsonArray(names.Select(s => (JsonNode)s).ToArray()), ["predictions"] = results,
                });
            return 0;
        });
        return cmd;
    }
}
