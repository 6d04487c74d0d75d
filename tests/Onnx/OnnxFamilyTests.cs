using Perturb.Engine;
using Perturb.Engine.Nn;
using Perturb.Tests.Ops;

namespace Perturb.Tests.Onnx;

/// <summary>
/// torchvision's classifier families at tiny widths (made by fixtures/make_fixtures.py with PyTorch 1.13): exported at
/// opsets 11, 13 and 17 with a dynamic batch, and at opset 13 with a static batch and no constant folding. Each loads
/// and matches PyTorch: logits within 1e-4, input-gradient signs (where PyTorch's float32 agrees with its float64)
/// on at least 99% of the elements. The op set each needs: squeeze-excitation (broadcast Mul), HardSigmoid/HardSwish,
/// ReduceMean, Reshape/Transpose/Split/Slice/Concat, LayerNorm (decomposed, and LayerNormalization at 17), Erf.
/// </summary>
public class OnnxFamilyTests
{
    public static IEnumerable<object[]> Cases()
    {
        foreach (var fam in new[] { "efficientnet", "mobilenet_v3", "mnasnet", "shufflenet_v2", "regnet", "convnext" })
            foreach (var v in new[] { "op11", "op13", "op17", "op13_static_nofold" })
                yield return new object[] { $"{fam}_{v}" };
        // Elu, Selu, Softplus, Gelu, Sqrt, Exp, Log, Abs, Max/Min, Split, strided Slice, Transpose, ReduceMax/L2/Sum,
        // Tile-free repeat, GroupNorm and InstanceNorm, Unsqueeze/Squeeze, MatMul over the last axis of [N, 1, F]
        yield return new object[] { "ops_op13" };
        yield return new object[] { "ops_op17" };
        // Resize (nearest asymmetric/floor by a factor and to sizes, linear half_pixel and align_corners) and PRelu;
        // MatMul of two computed tensors (broadcast batch axes), flip (Slice with negative steps), Gather of index lists
        foreach (var v in new[] { "op11", "op13", "op17" })
        {
            yield return new object[] { $"resize_{v}" };
            yield return new object[] { $"misc_{v}" };
            yield return new object[] { $"convtranspose_{v}" };   // stride, padding, output_padding, groups, dilation
            yield return new object[] { $"convtranspose_hw_{v}" };   // the same (and Conv) unequal between H and W
        }
    }

    [Theory, MemberData(nameof(Cases))]
    public void LoadsAndMatchesPyTorch(string name)
    {
        var (m, _) = Fixture.Load(name).Check(TestBackends.Get(TestBackends.Cpu));
        m.Dispose();
    }
}
