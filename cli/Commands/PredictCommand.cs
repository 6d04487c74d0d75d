using System.CommandLine;
using System.Text.Json.Nodes;
using Perturb.Engine;
using Perturb.Engine.Data;
using Perturb.Engine.IO;
using Perturb.Engine.Nn;
using Perturb.Engine.Training;

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
            var dicom = CommonOptions.Dicom(pr.GetValue(window), pr.GetValue(frame));
            var files = ImageFile.ListInputs(pr.GetValue(input)!, dicom);
            using var be = CliUtil.OpenDevice(pr.GetValue(device)!, io);
            var modelPath = pr.GetValue(model)!;
            using var m = CliUtil.LoadModel(modelPath, be, io);
            var bar = new ProgressBar(io.Err, "predict");
            PredictionResult r;
            try { r = Predictor.Run(m, files, pr.GetValue(batch), dicom, (done, total) => bar.Update(done, total)); }
            catch (PerturbException e) when (e.Message.StartsWith("the model takes", StringComparison.Ordinal)) { throw new PerturbException($"{modelPath}: {e.Message}", e.ExitCode); }
            bar.Done($"{files.Count} images");
            for (int i = 0; i < files.Count; i++)
                io.Out.WriteLine($"{r.Name(i)}\t{r.Label(i)}\t{r.Probabilities[i][r.Classes[i]]:F4}");
            var jpath = pr.GetValue(json);
            if (jpath != null) CliUtil.WriteJson(jpath, r.ToJson(modelPath, be.Name));
            return 0;
        });
        return cmd;
    }
}
