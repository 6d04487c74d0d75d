using ILGPU;
using ILGPU.Runtime;
using Perturb.Kernels;
using KG = Perturb.Kernels.Gemm;
using V1 = ILGPU.ArrayView<float>;

namespace Perturb.Engine.Backends;

/// <summary>GEMM: one tiled kernel (kernels/Gemm.cs), also batched over groups for convolution. The CPU twin is CpuGemm.cs.</summary>
public sealed partial class IlgpuBackend
{
    Action<KernelConfig, V1, V1, V1, GemmArgs>? _gemm;

    /// <summary>Queues one tiled (batched) GEMM; no counter. batch = number of Grid.IdxZ slices.</summary>
    void GemmRaw(V1 a, V1 b, V1 c, GemmArgs g, int batch = 1)
    {
        if (g.M == 0 || g.N == 0 || batch == 0) return;
        _gemm ??= _acc.LoadStreamKernel<V1, V1, V1, GemmArgs>(KG.TiledGemm);
        var grid = new Index3D((g.N + KG.Tile - 1) / KG.Tile, (g.M + KG.Tile - 1) / KG.Tile, batch);
        _gemm(new KernelConfig(grid, new Index3D(KG.Threads, KG.Threads, 1)), a, b, c, g);
    }

    protected override void GemmCore(bool transA, bool transB, int m, int n, int k, float alpha, Tensor a, Tensor b, float beta, Tensor c)
    {
        var g = new GemmArgs
        {
            M = m, N = n, K = k,
            As0 = transA ? 1 : k, As1 = transA ? m : 1,
            Bs0 = transB ? 1 : n, Bs1 = transB ? k : 1,
            Ldc = n, Alpha = alpha, Beta = beta,
        };
        GemmRaw(V(a), V(b), V(c), g);
    }
}
