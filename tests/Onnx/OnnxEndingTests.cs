using Perturb.Engine;
using Perturb.Engine.Nn;
using Perturb.Engine.Onnx;
using Perturb.Tests.Ops;

namespace Perturb.Tests.Onnx;

/// <summary>
/// Graphs ending in Softmax, LogSoftmax or Sigmoid (PyTorch-made fixtures): the ending is removed at import, the model
/// returns PyTorch's logits, the engine's probabilities equal PyTorch's outputs, gradients are those of the logits,
/// the metadata says what was done, and export writes the ending back.
/// </summary>
public class OnnxEndingTests : TempDirTest
{
    static IBackend Cpu => TestBackends.Get(TestBackends.Cpu);

    [Theory]
    [InlineData("ending_softmax_2", "Softmax", "softmax")]
    [InlineData("ending_softmax_4", "Softmax", "softmax")]
    [InlineData("ending_softmax_3_flat", "Softmax", "softmax")]
    [InlineData("ending_log_softmax_2", "LogSoftmax", "softmax")]
    [InlineData("ending_log_softmax_3", "LogSoftmax", "softmax")]
    [InlineData("ending_sigmoid_1", "Sigmoid", "sigmoid")]
    [InlineData("ending_sigmoid_1_flat", "Sigmoid", "sigmoid")]
    [InlineData("ending_sigmoid_3", "Sigmoid", "sigmoid")]
    public void EndingIsRemovedAndProbabilitiesMatchPyTorch(string name, string op, string probs)
    {
        var f = Fixture.Load(name);
        var (m, _) = f.Check(Cpu);
        using var _m = m;
        Assert.Equal(op, m.Info["onnx.ending_op"]);
        Assert.Equal(probs, m.Info[Model.ProbabilitiesKey]);
        Assert.Contains(op, m.Info[Model.EndingKey]);
        Assert.DoesNotContain(m.Nodes, nd => nd.Layer is SoftmaxLayer || nd.Layer is ActivationLayer { Function: Activation.Sigmoid });
        using var xt = Cpu.FromArray(f.X, f.XShape);
        var p = Losses.Probabilities(m, m.Forward(xt));
        int k = f.Out.Length / f.N;
        for (int i = 0; i < f.N; i++)
            for (int j = 0; j < k; j++)
            {
                double want = op == "LogSoftmax" ? Math.Exp(f.Out[i * k + j]) : f.Out[i * k + j];
                // one-output sigmoid models report (1 - s, s)
                double got = k == 1 ? p[i][1] : p[i][j];
                Assert.True(Math.Abs(want - got) <= 1e-4, $"{name}: probability [{i},{j}] PyTorch {want:G6}, engine {got:G6}");
            }
        if (k == 1) Assert.True(Math.Abs(p[0][0] + p[0][1] - 1) < 1e-6);
    }

    /// <summary>The CLI says once on stderr what the import did, and evaluates and attacks the model on its logits.</summary>
    [Fact]
    public void CliSaysItOnceAndAttacks()
    {
        var f = Fixture.Load("ending_softmax_4");
        var data = "synthetic:train=8,test=8,channels=3,size=12,classes=4";
        var (code, _, err) = CliRunner.Run("eval", "--model", f.OnnxPath, "--data", data, "--device", "cpu");
        Assert.True(code == 0, err);
        Assert.Equal(1, err.Split('\n').Count(l => l.Contains("ends in Softmax")));
        (code, _, err) = CliRunner.Run("attack", "fgsm", "--model", f.OnnxPath, "--data", data, "--n", "4", "--eps", "8/255", "--device", "cpu");
        Assert.True(code == 0, err);
        Assert.Equal(1, err.Split('\n').Count(l => l.Contains("ends in Softmax")));
    }

    [Fact]
    public void ExportWritesTheEndingBack()
    {
        var f = Fixture.Load("ending_sigmoid_3");
        using var m = OnnxImporter.Load(f.OnnxPath, Cpu);
        var path = Path.Combine(Dir, "rt.onnx");
        OnnxExporter.Save(m, path);
        Ox.AssertClose(f.Out, Ox.RunOrt(path, f.X, f.XShape), 1e-4, 1e-4, "exported graph vs PyTorch output");
        using var back = OnnxImporter.Load(path, Cpu);
        Assert.Equal("Sigmoid", back.Info["onnx.ending_op"]);
        Assert.True(back.IndependentSigmoids);
    }
}
