using Perturb.Engine;
using Perturb.Engine.Nn;
using Perturb.Tests.Ops;

namespace Perturb.Tests.Attacks.Robust;

/// <summary>
/// The input gradient of a model whose true-class probability rounds to 1 in float32. The model is Flatten + Linear on
/// 1x4x4 inputs, 3 classes: pixel c (c &lt; 3) feeds only class c with weight 30, the other pixels have weights in
/// [-1, 1]; sample i lights pixel t_i, so its true logit leads by about 30 (p_t = 1 - 1e-13, which is 1 in float32).
/// Written as p_t - 1, the true class's gradient term vanishes and dL/dx keeps only the other classes' terms, whose
/// signs differ from the float64 reference's on many pixels; from the log-sum-exp at the target every sign matches.
/// </summary>
[Collection("ops")]
public class ConfidentGradientTests
{
    const int In = 16, K = 3, N = 3;
    const double Lead = 30;

    [Theory, InlineData(TestBackends.Cpu), InlineData(TestBackends.IlgpuCpu)]
    public void InputGradientSignMatchesDoubleReferenceWhenPtRoundsToOne(string backend)
    {
        var be = TestBackends.Get(backend);
        var g = new GraphBuilder(1, 4, 4);
        g.Add("flat", new Flatten(), GraphBuilder.Input);
        g.Add("fc", new Linear(In, K));
        using var m = g.Build(be, 5);
        var w = Ref.Rand(K * In, 7, -1, 1);
        for (int c = 0; c < K; c++) for (int j = 0; j < K; j++) w[c * In + j] = c == j ? Lead : 0;
        var x = Ref.Rand(N * In, 8, 0, 1);
        var labels = new[] { 0, 1, 2 };
        for (int i = 0; i < N; i++) for (int j = 0; j < K; j++) x[i * In + j] = j == labels[i] ? 1 : 0;
        var ps = m.NamedParameters().ToDictionary(p => p.Name, p => p.P);
        be.Upload(ps["fc.weight"].Value, Ref.F(w));
        be.Upload(ps["fc.bias"].Value, new float[K]);
        m.MarkParametersChanged();
        m.Eval();

        // float64 reference: z = W x, dL/dz from the reference cross-entropy, dL/dx = W^T dL/dz.
        var xf = Ref.D(Ref.F(x));
        var z = new double[N * K];
        for (int i = 0; i < N; i++) for (int c = 0; c < K; c++) for (int j = 0; j < In; j++) z[i * K + c] += w[c * In + j] * xf[i * In + j];
        var (_, dz) = Ref.CrossEntropy(z, labels.Select(v => (double)v).ToArray(), Ref.Full(N, 1), N, K);
        var dx = new double[N * In];
        for (int i = 0; i < N; i++) for (int c = 0; c < K; c++) for (int j = 0; j < In; j++) dx[i * In + j] += w[c * In + j] * dz[i * K + c];

        using var xt = be.FromArray(Ref.F(x), N, 1, 4, 4);
        var logits = m.Forward(xt);
        var p = Losses.Probabilities(be, logits);
        for (int i = 0; i < N; i++) Assert.Equal(1f, p[i][labels[i]]);   // p_t rounds to 1: the case under test
        using var yt = be.FromArray(labels.Select(v => (float)v).ToArray(), N);
        using var loss = Losses.CrossEntropy(be, logits, yt, 1f);
        var gx = m.Backward(loss.Grad!, BackwardMode.InputOnly)!.ToArray();
        m.ReleaseActivations();
        int checkedSigns = 0;
        for (int i = 0; i < N; i++)
        {
            double scale = Enumerable.Range(0, In).Max(j => Math.Abs(dx[i * In + j]));
            Assert.True(scale > 0);
            for (int j = 0; j < In; j++)
            {
                double r = dx[i * In + j];
                if (Math.Abs(r) < 1e-3 * scale) continue;
                checkedSigns++;
                Assert.True(Math.Sign(gx[i * In + j]) == Math.Sign(r), $"{backend}: sample {i} pixel {j}: gradient {gx[i * In + j]:R}, float64 reference {r:R}");
            }
        }
        Assert.True(checkedSigns >= N * (In - 3), $"only {checkedSigns} signs checked");
        Ref.AssertClose(dx, gx, 1e-3, 1e-6 * dx.Max(Math.Abs), $"{backend} dL/dx against float64");
    }
}
