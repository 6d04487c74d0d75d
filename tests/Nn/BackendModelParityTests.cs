using Perturb.Engine;
using Perturb.Engine.Backends;
using Perturb.Engine.IO;
using Perturb.Engine.Nn;

namespace Perturb.Tests.Nn;

/// <summary>
/// Whole networks on both backends: the same model file run on CpuBackend and on the ILGPU kernels (ILGPU's CPU
/// accelerator) gives the same logits, input gradients and weight gradients, within 1e-4 relative (+1e-5 absolute).
/// Small shapes: the ILGPU CPU accelerator emulates GPU threads and is slow.
/// </summary>
public class BackendModelParityTests : TempDirTest
{

    static (float[] logits, float[] dx, Dictionary<string, float[]> grads) Run(Model m, float[] x, float[] r, bool training)
    {
        var be = m.Backend;
        m.Train(training);
        m.SetDropoutStream(3);
        using var xt = be.FromArray(x, GradCheckTests.Batch(x.Length / Layer.Product(m.InputShape), m.InputShape));
        var logits = m.Forward(xt).ToArray();
        using var rt = be.FromArray(r, x.Length / Layer.Product(m.InputShape), m.NumOutputs);
        var dx = m.Backward(rt, BackwardMode.InputAndWeights)!.ToArray();
        var grads = m.NamedParameters().Where(p => p.P.Trainable).ToDictionary(p => p.Name, p => p.P.Grad!.ToArray());
        return (logits, dx, grads);
    }

    [Theory]
    [InlineData("lenet", 1, 12, false)]
    [InlineData("cnn-small", 3, 8, true)]
    public void SameResultsOnBothBackends(string arch, int c, int size, bool training)
    {
        var path = Path.Combine(Dir, arch + ".safetensors");
        using (var cpu0 = new CpuBackend())
        {
            var m0 = Presets.Create(arch, cpu0, c, size, size, 3, 8);
            GradCheckTests.RandomiseBn(m0);
            ModelFile.Save(m0, path);
        }
        int n = 2;
        var rng = new Random(2);
        var x = Enumerable.Range(0, n * c * size * size).Select(_ => (float)rng.NextDouble()).ToArray();
        var r = Enumerable.Range(0, n * 3).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
        using var cpu = new CpuBackend();
        using var gpu = IlgpuBackend.CreateCpuAccelerator();
        using var mc = ModelFile.Load(path, cpu);
        using var mg = ModelFile.Load(path, gpu);
        var a = Run(mc, x, r, training);
        var b = Run(mg, x, r, training);
        Ref.AssertClose(Ref.D(a.logits), b.logits, 1e-4, 1e-5, $"{arch} logits");
        Ref.AssertClose(Ref.D(a.dx), b.dx, 1e-4, 1e-5, $"{arch} dL/dx");
        foreach (var (name, g) in a.grads) Ref.AssertClose(Ref.D(g), b.grads[name], 1e-3, 1e-5, $"{arch} dL/d{name}");
    }
}
