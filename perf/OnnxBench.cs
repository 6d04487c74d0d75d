using System.Text.Json.Nodes;
using Perturb.Engine;
using Perturb.Engine.Data;
using Perturb.Engine.Nn;
using Perturb.Engine.Onnx;

namespace Perturb.Perf;

/// <summary>
/// Imported ONNX models (made by perf/onnx_models.py from torchvision with random weights): for every NAME.onnx in
/// the folder, forward and input-gradient images/s at its input size, and, when NAME.npz (PyTorch's answers) is
/// beside it, the largest probability difference and the input-gradient sign agreement where PyTorch's float32
/// agrees with its float64.
/// </summary>
public static class OnnxBench
{
    public static void Run(IBackend be, Report r, Effort e, string dir, int batch)
    {
        foreach (var path in Directory.EnumerateFiles(dir, "*.onnx").OrderBy(p => p, StringComparer.Ordinal))
        {
            string name = Path.GetFileNameWithoutExtension(path);
            Benches.Progress($"onnx {name}");
            Model m;
            try { m = OnnxImporter.Load(path, be); }
            catch (PerturbException ex)
            {
                // one model that does not load must not lose the rest of the table: it is reported and has no figure
                Console.Error.WriteLine($"  {Path.GetFileName(path)} does not load: {ex.Message}");
                continue;
            }
            using var _ = m;
            m.Eval();
            var detail = new JsonObject { ["file"] = Path.GetFileName(path), ["input"] = Tensor.ShapeString(m.InputShape), ["batch"] = batch };
            var refPath = Path.ChangeExtension(path, ".npz");
            if (File.Exists(refPath)) Compare(m, refPath, detail);

            using var x = be.Allocate(new[] { batch }.Concat(m.InputShape).ToArray());
            be.RandomUniform(x, 7, 0);
            using var g = be.Allocate(batch, m.NumOutputs);
            be.Fill(g, 1f / m.NumOutputs);
            var tf = Timing.Measure(() => m.Forward(x), be.Synchronize, e.Warmup, e.MinReps, e.MaxReps, e.BudgetS);
            var tb = Timing.Measure(() => { m.Forward(x); m.Backward(g, BackwardMode.InputOnly); }, be.Synchronize, e.Warmup, e.MinReps, e.MaxReps, e.BudgetS);
            m.ReleaseActivations();
            r.Add(new Figure("onnx", $"{name} forward B={batch}", batch / tf.MedianS, "images/s", null, (JsonObject)detail.DeepClone()));
            r.Add(new Figure("onnx", $"{name} forward+input gradient B={batch}", batch / tb.MedianS, "images/s", null, detail));
        }
    }

    static float[] Floats(NpyArray a) => Enumerable.Range(0, (int)a.Count).Select(i => BitConverter.ToSingle(a.Data, i * 4)).ToArray();

    static void Compare(Model m, string refPath, JsonObject detail)
    {
        var be = m.Backend;
        using var z = new NpzFile(refPath);
        var xa = z.Read("x");
        using var x = be.FromArray(Floats(xa), xa.Shape);
        var logits = m.Forward(x);
        var p = Losses.Probabilities(m, logits).SelectMany(v => v).ToArray();
        var want = Floats(z.Read("out"));
        if (m.NumOutputs == 1) p = p.Where((_, i) => i % 2 == 1).ToArray();
        double maxDiff = want.Length == p.Length ? want.Zip(p, (a, b) => Math.Abs((double)a - b)).Max() : double.NaN;
        var rr = Floats(z.Read("r"));
        using var rt = be.FromArray(rr, xa.Shape[0], rr.Length / xa.Shape[0]);
        var dx = m.Backward(rt, BackwardMode.InputOnly)!.ToArray();
        var grad = Floats(z.Read("grad")); var agree = z.Read("agree").Data;
        int counted = 0, same = 0;
        for (int i = 0; i < dx.Length; i++)
        {
            if (agree[i] == 0) continue;
            counted++;
            if (Math.Sign(dx[i]) == Math.Sign(grad[i])) same++;
        }
        m.ReleaseActivations();
        detail["max_probability_diff"] = maxDiff;
        detail["gradient_sign_agreement"] = counted > 0 ? (double)same / counted : double.NaN;
        detail["gradient_elements_compared"] = counted;
        Console.Error.WriteLine($"  probabilities max |diff| {maxDiff:G3}, gradient sign agreement {(counted > 0 ? (double)same / counted : double.NaN):P2} of {counted}");
    }
}
