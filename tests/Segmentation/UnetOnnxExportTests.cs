using Perturb.Engine.Backends;
using Perturb.Engine.IO;
using Perturb.Engine.Nn;
using Perturb.Tests.Nn;
using Perturb.Tests.Onnx;

namespace Perturb.Tests.Segmentation;

/// <summary>
/// unet-small exported to ONNX (ConvTranspose with output padding, Concat, BatchNormalization) runs in ONNX Runtime
/// with the engine's logits, within 1e-4 relative. Import of ConvTranspose belongs to the ONNX importer (issue 11), so
/// this test does not re-import.
/// </summary>
public class UnetOnnxExportTests : TempDirTest
{
    [Fact]
    public void UnetSmallExportMatchesOnnxRuntime()
    {
        using var be = new CpuBackend();
        using var m = Presets.Create("unet-small", be, 3, 16, 16, 3, 4);
        GradCheckTests.RandomiseBn(m);
        var shape = GradCheckTests.Batch(2, m.InputShape);
        var x = Ox.Rand(shape.Aggregate(1, (a, b) => a * b), 42, 0f, 1f);
        var eng = Ox.RunEngine(m, x, shape);
        var path = Path.Combine(Dir, "unet-small.onnx");
        ModelFile.Save(m, path);
        Ox.AssertClose(Ox.RunOrt(path, x, shape), eng, 1e-4, 1e-5, "unet-small: engine vs ONNX Runtime");
    }

    [Fact]
    public void ConvTransposeWithOutputPaddingMatchesOnnxRuntime()
    {
        using var be = new CpuBackend();
        var g = new GraphBuilder(4, 3, 5);
        g.Add("up", new ConvTranspose2d(4, 6, 3, stride: 2, padding: 1, outputPadding: 1, dilation: 1, groups: 2), GraphBuilder.Input);
        using var m = g.Build(be, 3);
        var shape = GradCheckTests.Batch(2, m.InputShape);
        var x = Ox.Rand(shape.Aggregate(1, (a, b) => a * b), 7, -1f, 1f);
        var eng = Ox.RunEngine(m, x, shape);
        var path = Path.Combine(Dir, "convt.onnx");
        ModelFile.Save(m, path);
        Ox.AssertClose(Ox.RunOrt(path, x, shape), eng, 1e-4, 1e-5, "ConvTranspose2d: engine vs ONNX Runtime");
    }
}
