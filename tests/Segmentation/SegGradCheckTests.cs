using Perturb.Engine;
using Perturb.Engine.Backends;
using Perturb.Engine.Nn;
using Perturb.Tests.Nn;

namespace Perturb.Tests.Segmentation;

/// <summary>
/// Gradient checks for segmentation: ConvTranspose2d (input, weight, bias) against the scatter definition, the
/// per-pixel losses against a plain double reference, and the U-Net end to end.
/// </summary>
public class SegGradCheckTests
{
    public static IEnumerable<object[]> Cases() => new[]
    {
        //          cin h  w  cout k  stride pad outpad dil groups bias
        new object[] { 3, 4, 5, 2, 2, 2, 0, 0, 1, 1, true },   // the U-Net's up-convolution
        new object[] { 2, 3, 3, 3, 3, 1, 1, 0, 1, 1, false },  // stride 1, padding
        new object[] { 2, 3, 4, 2, 3, 2, 1, 1, 1, 1, true },   // output padding
        new object[] { 4, 3, 3, 6, 3, 2, 0, 0, 2, 2, true },   // dilation and groups
        new object[] { 1, 2, 2, 1, 1, 3, 0, 2, 1, 1, true },   // 1x1, stride 3: uncovered outputs hold only the bias
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void ConvTranspose2dGradients(int cin, int h, int w, int cout, int k, int stride, int pad, int outPad, int dil, int groups, bool bias)
    {
        using var be = new CpuBackend();
        var layer = new ConvTranspose2d(cin, cout, k, stride, pad, outPad, dil, groups, bias);
        var m = GradCheckTests.Single(be, new[] { cin, h, w }, layer);
        Assert.Equal((h - 1) * stride - 2 * pad + dil * (k - 1) + outPad + 1, m.OutputShape[1]);
        Assert.Equal(new[] { cin, cout / groups, k, k }, layer.Weight.Value.Shape);
        GradCheckTests.Check(m, 2, false);
    }

    /// <summary>Stride, padding, output_padding and dilation that differ between H and W (the W settings).</summary>
    public static IEnumerable<object[]> UnequalCases() => new[]
    {
        //          cin h  w  cout kh kw  stride sW pad pW outpad opW dil dW groups
        new object[] { 2, 3, 4, 3, 3, 2, 2, 1, 1, 0, 1, 0, 1, 1, 1 },   // stride 2x1, pad 1x0, output_padding on H only
        new object[] { 4, 2, 3, 2, 2, 3, 1, 3, 0, 1, 0, 2, 2, 1, 2 },   // stride 1x3, output_padding 2 on W, dilation 2x1, groups
    };

    [Theory]
    [MemberData(nameof(UnequalCases))]
    public void ConvTranspose2dUnequalAxesGradients(int cin, int h, int w, int cout, int kh, int kw, int stride, int strideW,
        int pad, int padW, int outPad, int outPadW, int dil, int dilW, int groups)
    {
        using var be = new CpuBackend();
        var layer = new ConvTranspose2d(cin, cout, kh, stride, pad, outPad, dil, groups, true, kw)
            { StrideW = strideW, PaddingW = padW, OutputPaddingW = outPadW, DilationW = dilW };
        var m = GradCheckTests.Single(be, new[] { cin, h, w }, layer);
        Assert.Equal((h - 1) * stride - 2 * pad + dil * (kh - 1) + outPad + 1, m.OutputShape[1]);
        Assert.Equal((w - 1) * strideW - 2 * padW + dilW * (kw - 1) + outPadW + 1, m.OutputShape[2]);
        GradCheckTests.Check(m, 2, false);
        // the W settings survive the model file's architecture JSON
        var back = ConvTranspose2d.FromConfig(layer.Config());
        Assert.Equal((strideW, padW, outPadW, dilW), (back.StrideW, back.PaddingW, back.OutputPaddingW, back.DilationW));
    }

    [Fact]
    public void ConvTranspose2dOnIlgpuMatchesCpu()
    {
        using var cpu = new CpuBackend();
        using var il = IlgpuBackend.CreateCpuAccelerator();
        var a = GradCheckTests.Single(cpu, new[] { 2, 3, 3 }, new ConvTranspose2d(2, 3, 3, 2, 1, 1));
        var b = GradCheckTests.Single(il, new[] { 2, 3, 3 }, new ConvTranspose2d(2, 3, 3, 2, 1, 1));
        var x = Enumerable.Range(0, 2 * 18).Select(i => (float)Math.Sin(i)).ToArray();
        using var xa = cpu.FromArray(x, 2, 2, 3, 3); using var xb = il.FromArray(x, 2, 2, 3, 3);
        Ref.AssertClose(Ref.D(a.Forward(xa).ToArray()), b.Forward(xb).ToArray(), 1e-5, 1e-5, "ConvTranspose2d forward, ilgpu vs cpu");
        // unequal H/W settings on the GPU kernels too
        ConvTranspose2d Odd() => new(2, 3, 3, 2, 1, 1, 1, 1, true, 2) { StrideW = 1, PaddingW = 0, OutputPaddingW = 0, DilationW = 2 };
        var c = GradCheckTests.Single(cpu, new[] { 2, 3, 3 }, Odd());
        var d = GradCheckTests.Single(il, new[] { 2, 3, 3 }, Odd());
        Ref.AssertClose(Ref.D(c.Forward(xa).ToArray()), d.Forward(xb).ToArray(), 1e-5, 1e-5, "ConvTranspose2d unequal H/W forward, ilgpu vs cpu");
    }

    [Fact]
    public void ConvTranspose2dRejectsBadSettings()
    {
        Assert.Throws<PerturbException>(() => new ConvTranspose2d(2, 2, 2, stride: 2, outputPadding: 2));
        Assert.Throws<PerturbException>(() => new ConvTranspose2d(3, 2, 2, groups: 2));
        using var be = new CpuBackend();
        Assert.Throws<PerturbException>(() => GradCheckTests.Single(be, new[] { 2, 1, 1 }, new ConvTranspose2d(2, 2, 1, padding: 1)));
        var err = Assert.Throws<PerturbException>(() => GradCheckTests.Single(be, new[] { 2, 3, 3 }, new ConvTranspose2d(2, 2, 2, stride: 2) { StrideW = 1, OutputPaddingW = 1 }));
        Assert.Contains("output_padding", err.Message);
    }

    // ---------------------------------------------------------------- losses

    /// <summary>Plain double reference of <see cref="PixelLoss"/>: per-sample losses of logits [N, K, P].</summary>
    static double[] RefLoss(double[] z, int[] t, int n, int k, int p, int ignore, SegLossKind kind)
    {
        var loss = new double[n];
        for (int i = 0; i < n; i++)
        {
            var prob = new double[k, p];
            double ce = 0; int valid = 0;
            for (int j = 0; j < p; j++)
            {
                double mx = double.NegativeInfinity;
                for (int c = 0; c < k; c++) mx = Math.Max(mx, z[(i * k + c) * p + j]);
                double se = 0;
                for (int c = 0; c < k; c++) se += Math.Exp(z[(i * k + c) * p + j] - mx);
                for (int c = 0; c < k; c++) prob[c, j] = Math.Exp(z[(i * k + c) * p + j] - mx) / se;
                int tj = t[i * p + j];
                if (tj == ignore) continue;
                valid++;
                ce += mx + Math.Log(se) - z[(i * k + tj) * p + j];
            }
            double dice = 0;
            for (int c = 0; c < k; c++)
            {
                double inter = 0, ps = 0, gs = 0;
                for (int j = 0; j < p; j++)
                {
                    int tj = t[i * p + j];
                    if (tj == ignore) continue;
                    double g = tj == c ? 1 : 0;
                    inter += prob[c, j] * g; ps += prob[c, j]; gs += g;
                }
                dice += (2 * inter + 1) / (ps + gs + 1);
            }
            double l = 0;
            if (kind != SegLossKind.Dice) l += valid == 0 ? 0 : ce / valid;
            if (kind != SegLossKind.CrossEntropy) l += 1 - dice / k;
            loss[i] = l;
        }
        return loss;
    }

    [Theory]
    [InlineData(SegLossKind.CrossEntropy, 2, -1, "cpu")]
    [InlineData(SegLossKind.CrossEntropy, 3, 255, "cpu")]
    [InlineData(SegLossKind.Dice, 2, -1, "cpu")]
    [InlineData(SegLossKind.Dice, 3, 255, "cpu")]
    [InlineData(SegLossKind.CeDice, 3, 255, "cpu")]
    [InlineData(SegLossKind.CeDice, 3, 255, "ilgpu-cpu")]
    public void PixelLossMatchesReferenceAndFiniteDifferences(SegLossKind kind, int k, int ignore, string backend)
    {
        using IBackend be = backend == "cpu" ? new CpuBackend() : IlgpuBackend.CreateCpuAccelerator();
        int n = 2, h = 3, w = 4, p = h * w;
        var rng = new Random(11 + k);
        var z = Enumerable.Range(0, n * k * p).Select(_ => rng.NextDouble() * 4 - 2).ToArray();
        var t = Enumerable.Range(0, n * p).Select(_ => rng.Next(k)).ToArray();
        if (ignore >= 0) { t[3] = ignore; t[p + 5] = ignore; t[p + 6] = ignore; }
        var rowScale = new[] { 0.7f, -1.3f };
        using var loss = new PixelLoss(be, n, k, h, w, t, rowScale, ignore);
        using var zt = be.FromArray(Ref.F(z), n, k, h, w);
        loss.Compute(zt, kind);
        var refL = RefLoss(z, t, n, k, p, ignore, kind);
        Ref.AssertClose(refL, loss.Loss.ToArray(), 1e-5, 1e-5, "per-sample loss");
        var g = loss.Grad.ToArray();
        const double hd = 1e-6;
        for (int i = 0; i < z.Length; i++)
        {
            double keep = z[i];
            z[i] = keep + hd; var lp = RefLoss(z, t, n, k, p, ignore, kind);
            z[i] = keep - hd; var lm = RefLoss(z, t, n, k, p, ignore, kind);
            z[i] = keep;
            int s = i / (k * p);
            double num = rowScale[s] * (lp[s] - lm[s]) / (2 * hd);
            Assert.True(Math.Abs(num - g[i]) <= 1e-5 + 1e-3 * Math.Abs(num), $"{kind} dL/dz[{i}]: analytic {g[i]:G6}, numeric {num:G6}");
        }
        // Ignored pixels get no gradient at all.
        if (ignore >= 0)
            for (int c = 0; c < k; c++) Assert.Equal(0f, g[(0 * k + c) * p + 3]);
    }

    [Fact]
    public void PixelWeightsSwitchPixelsOff()
    {
        using var be = new CpuBackend();
        int k = 2, p = 4;
        var t = new[] { 0, 1, 1, 0 };
        using var loss = new PixelLoss(be, 1, k, 2, 2, t, new[] { 1f });
        loss.SetPixelWeights(new[] { 1f, 0f, 1f, 0f });
        var z = new[] { 0.3, -0.2, 1.0, 0.5, -0.4, 0.8, 0.1, 0.2 };
        using var zt = be.FromArray(Ref.F(z), 1, k, 2, 2);
        loss.Compute(zt, SegLossKind.CrossEntropy);
        // Only pixels 0 and 2 count: the loss is the mean of their two cross-entropies; pixels 1 and 3 get no gradient.
        double Ce(int j) { double a = z[j], b = z[p + j]; double lse = Math.Log(Math.Exp(a) + Math.Exp(b)); return lse - (t[j] == 0 ? a : b); }
        Assert.Equal((Ce(0) + Ce(2)) / 2, loss.Loss.ToArray()[0], 5);
        var g = loss.Grad.ToArray();
        Assert.Equal(0f, g[1]); Assert.Equal(0f, g[3]); Assert.Equal(0f, g[p + 1]); Assert.Equal(0f, g[p + 3]);
        Assert.NotEqual(0f, g[0]);
    }

    // ---------------------------------------------------------------- U-Net

    [Fact]
    public void UnetEndToEndGradients()
    {
        using var be = new CpuBackend();
        var m = Presets.Create("unet:depth=2,width=2", be, 2, 8, 8, 3, 5);
        Assert.Equal(new[] { 3, 8, 8 }, m.OutputShape);
        Assert.True(Presets.IsSegmentation(m));
        Assert.Contains(m.Nodes, nd => nd.Layer is ConvTranspose2d);
        Assert.Contains(m.Nodes, nd => nd.Layer is Concat);
        GradCheckTests.Check(m, 2, training: true, maxPerTensor: 12);
        GradCheckTests.Check(m, 2, training: false, maxPerTensor: 12);
    }

    [Fact]
    public void UnetPresetsAndSettings()
    {
        using var be = new CpuBackend();
        using var small = Presets.Create("unet-small", be, 3, 32, 32, 2, 1);
        Assert.Equal(new[] { 2, 32, 32 }, small.OutputShape);
        Assert.Equal(2, small.Nodes.Count(nd => nd.Layer is Pool2d));
        using var u = Presets.Create("unet", be, 3, 32, 32, 2, 1);
        Assert.Equal(3, u.Nodes.Count(nd => nd.Layer is Pool2d));
        Assert.Equal(128, ((Conv2d)u.Nodes.First(nd => nd.Layer.Name == "bottleneck.conv1").Layer).OutChannels);
        var e = Assert.Throws<PerturbException>(() => Presets.Create("unet:depth=3", be, 3, 20, 20, 2, 1));
        Assert.Contains("multiples of 8", e.Message);
        Assert.Throws<PerturbException>(() => Presets.Create("unet:size=3", be, 3, 32, 32, 2, 1));
        // A segmentation model is no classifier: classification training and attacks refuse it with one clear line.
        var hist = Perturb.Engine.Data.SyntheticHistology.Create(1, 4, 2, 32).Train;
        Assert.Contains("segmentation", Assert.Throws<PerturbException>(() => Perturb.Engine.Training.Trainer.Fit(small, hist, null, new Perturb.Engine.Training.TrainOptions { Epochs = 1 })).Message);
        Assert.Contains("seg-pgd", Assert.Throws<PerturbException>(() => new Perturb.Engine.Attacks.Gradient.Pgd().Run(small, hist.X, hist.Labels, Perturb.Engine.Attacks.AttackGoal.Untargeted, new[] { 0.1f })).Message);
        // The architecture round-trips through its JSON (model files).
        using var back = Model.FromArchitecture(be, (System.Text.Json.Nodes.JsonObject)System.Text.Json.Nodes.JsonNode.Parse(small.ArchitectureJson().ToJsonString())!, 1);
        Assert.Equal(small.ParameterCount, back.ParameterCount);
    }
}
