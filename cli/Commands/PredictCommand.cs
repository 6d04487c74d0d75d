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
        var input = new Option<string>("--input") { Description = "an image file (.png, .jpg, .jpeg, .bmp) or a folder of them (searched recursively)", Required = true };
        var batch = CommonOptions.BatchSize(64);
        var device = CommonOptions.Device();
        var json = CommonOptions.Json();
        var cmd = new Command("predict", "classify image files: the class and the probabilities per image (images are resized to the model's input with antialiased bilinear filtering)");
        foreach (var o in new Option[] { model, input, batch, device, json }) cmd.Options.Add(o);
        cmd.SetAction(pr =>
        {
            var path = pr.GetValue(input)!;
            string[] files;
            if (Directory.Exists(path))
                files = SafeFiles.FilesRecursive(path).Where(ImageFile.IsImage).ToArray();
            else if (File.Exists(path))
                files = ImageFile.IsImage(path) ? new[] { path } : throw new PerturbException($"{path}: not an image file (expected {string.Join(", ", ImageFile.Extensions)})");
            else throw new PerturbException($"{path}: no such file or folder");
            if (files.Length == 0) throw new PerturbException($"{path}: holds no image files ({string.Join(", ", ImageFile.Extensions)})");

            using var be = CliUtil.OpenDevice(pr.GetValue(device)!, io);
            using var m = ModelFile.Load(pr.GetValue(model)!, be);
            m.Eval();
            if (m.InputShape.Length != 3) throw new PerturbException($"{pr.GetValue(model)}: the model takes {Tensor.ShapeString(m.InputShape)} inputs, not images");
            int c = m.InputShape[0], h = m.InputShape[1], w = m.InputShape[2], bs = Math.Max(1, pr.GetValue(batch));
            var names = m.ClassNames ?? Enumerable.Range(0, m.NumClasses).Select(i => i.ToString()).ToArray();
            var results = new JsonArray();
            var bar = new ProgressBar(io.Err, "predict");
            for (int start = 0; start < files.Length; start += bs)
            {
                int n = Math.Min(bs, files.Length - start);
                var x = new float[n * c * h * w];
                for (int i = 0; i < n; i++) ImageFile.Load(files[start + i], c, h, w).CopyTo(x, i * c * h * w);
                using var xt = be.FromArray(x, n, c, h, w);
                var probs = Losses.Probabilities(be, m.Infer(xt));
                for (int i = 0; i < n; i++)
                {
                    var p = probs[i];
                    int arg = 0; for (int j = 1; j < p.Length; j++) if (p[j] > p[arg]) arg = j;
                    string label = arg < names.Length ? names[arg] : arg.ToString();
                    io.Out.WriteLine($"{files[start + i]}\t{label}\t{p[arg]:F4}");
                    results.Add(new JsonObject
                    {
                        ["file"] = files[start + i], ["class"] = arg, ["label"] = label,
                        ["probabilities"] = new JsonArray(p.Select(v => (JsonNode)(double)v).ToArray()),
                    });
                }
                bar.Update(start + n, files.Length);
            }
            bar.Done($"{files.Length} images");
            var jpath = pr.GetValue(json);
            if (jpath != null)
                CliUtil.WriteJson(jpath, new JsonObject
                {
                    ["model"] = pr.GetValue(model), ["device"] = be.Name, ["n"] = files.Length,
                    ["classes"] = new JsonArray(names.Select(s => (JsonNode)s).ToArray()), ["predictions"] = results,
                });
            return 0;
        });
        return cmd;
    }
}
