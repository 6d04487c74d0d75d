using System.Text.Json.Nodes;
using Perturb.Engine.Backends;
using Perturb.Engine.Data;
using Perturb.Engine.IO;
using Perturb.Engine.Nn;
using Perturb.Engine.Report;
using Perturb.Engine.Training;

namespace Perturb.Tests.Sweep;

/// <summary>Two small LeNets (1x28x28, 4 classes) trained for one epoch on 240 synthetic shapes, saved once per test class.</summary>
public sealed class SweepFixture : IDisposable
{
    public string Folder { get; } = Path.Combine(Path.GetTempPath(), "perturb-sweep-fixture-" + Guid.NewGuid().ToString("N"));
    public string ModelA => Path.Combine(Folder, "a.safetensors");
    public string ModelB => Path.Combine(Folder, "b.safetensors");

    /// <summary>The data set of every test spec (generated, small).</summary>
    public const string Data = "synthetic:train=48,test=16";

    public SweepFixture()
    {
        Directory.CreateDirectory(Folder);
        var data = SyntheticShapes.Create(21, trainCount: 240, testCount: 16);
        using var be = new CpuBackend();
        ulong seed = 3;
        foreach (var path in new[] { ModelA, ModelB })
        {
            using var m = Presets.Create("lenet", be, 1, 28, 28, 4, seed++);
            Trainer.Fit(m, data.Train, null, new TrainOptions { Epochs = 1, BatchSize = 32, LearningRate = 3e-3f, Seed = seed });
            ModelFile.Save(m, path);
        }
    }

    /// <summary>Copies both models into <paramref name="dir"/> (specs name them relative to their folder).</summary>
    public void CopyModels(string dir)
    {
        File.Copy(ModelA, Path.Combine(dir, "a.safetensors"), true);
        File.Copy(ModelB, Path.Combine(dir, "b.safetensors"), true);
    }

    /// <summary>
    /// A 6-cell spec: 2 models x 1 data set x (fgsm with two budgets, pgd with a grid of two step counts), on 12 images.
    /// </summary>
    public static string SpecJson(string extra = "") => $$$"""
        {
          "models": ["a.safetensors", "b.safetensors"],
          "data": ["{{{Data}}}"],
          "split": "test", "n": 12, "seed": 7, "device": "cpu", "batch_size": 64,{{{extra}}}
          "attacks": [
            {"name": "fgsm", "eps": ["1/255", "8/255"]},
            {"name": "pgd", "eps": [0.03], "rel_step_size": 0.3, "grid": {"steps": [2, 3], "norm": ["linf"]}}
          ]
        }
        """;

    /// <summary>A row as comparable JSON text, without the timing figures (seconds, images/s).</summary>
    public static string Comparable(ResultRow r)
    {
        var j = r.ToJson();
        j.Remove("seconds"); j.Remove("images_per_second");
        return j.ToJsonString();
    }

    public static List<string> Comparable(IEnumerable<ResultRow> rows) => rows.Select(Comparable).ToList();

    public void Dispose() { try { Directory.Delete(Folder, true); } catch (IOException) { } }
}
