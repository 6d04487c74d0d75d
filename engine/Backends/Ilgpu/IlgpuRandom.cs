using ILGPU;
using ILGPU.Runtime;
using Perturb.Kernels;
using KR = Perturb.Kernels.Random;
using V1 = ILGPU.ArrayView<float>;

namespace Perturb.Engine.Backends;

/// <summary>Philox random numbers and dropout (kernels/Random.cs), one thread per element. The CPU twin is CpuRandom.cs.</summary>
public sealed partial class IlgpuBackend
{
    Action<Index1D, V1, ulong, ulong>? _uniform;
    Action<Index1D, V1, ulong, ulong, float, float>? _normal;
    Action<Index1D, V1, V1, V1, float, ulong, ulong>? _dropout;

    protected override void RandomUniformCore(Tensor t, ulong seed, ulong offset)
    {
        (_uniform ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, ulong, ulong>(KR.Uniform))(t.Length, V(t), seed, offset);
    }

    protected override void RandomNormalCore(Tensor t, ulong seed, ulong offset, float mean, float std)
    {
        (_normal ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, ulong, ulong, float, float>(KR.Normal))(t.Length, V(t), seed, offset, mean, std);
    }

    protected override void DropoutForwardCore(Tensor x, Tensor y, Tensor mask, float p, ulong seed, ulong offset)
    {
        (_dropout ??= _acc.LoadAutoGroupedStreamKernel<Index1D, V1, V1, V1, float, ulong, ulong>(KR.Dropout))(x.Length, V(x), V(y), V(mask), p, seed, offset);
    }
}
