using Perturb.Kernels;
using KW = Perturb.Kernels.Warp;

namespace Perturb.Engine.Backends;

/// <summary>
/// Bilinear affine warps, one plane row per work item, through the kernels' own per-pixel helpers
/// (<see cref="KW.Source"/>, <see cref="KW.Outputs"/>, <see cref="KW.Weight"/>), so both backends compute the same
/// source points and weights. The kernel twin is IlgpuWarp.cs.
/// </summary>
public sealed partial class CpuBackend
{
    protected override void WarpAffineCore(Tensor x, Tensor y, int planes, int h, int w, in WarpCoefs m, float alpha, float beta)
    {
        var xs = B(x); var ys = B(y); var mm = m;
        For(planes * h, 8L * w, row =>
        {
            long b = (long)(row / h) * h * w; int oy = row % h;
            for (int ox = 0; ox < w; ox++)
            {
                KW.Source(mm, ox, oy, out int x0, out int y0, out float fx, out float fy);
                float s = 0f;
                for (int a = 0; a < 2; a++)
                {
                    int yy = y0 + a;
                    if (yy < 0 || yy >= h) continue;
                    float wy = a == 0 ? 1f - fy : fy;
                    for (int c = 0; c < 2; c++)
                    {
                        int xx = x0 + c;
                        if (xx < 0 || xx >= w) continue;
                        s += (c == 0 ? 1f - fx : fx) * wy * xs[b + yy * w + xx];
                    }
                }
                ref float o = ref ys[b + oy * w + ox];
                o = beta == 0f ? alpha * s : alpha * s + beta * o;
            }
        });
    }

    protected override void WarpAffineAdjointCore(Tensor dy, Tensor dx, int planes, int h, int w, in WarpCoefs m, float alpha, float beta)
    {
        var gs = B(dy); var ds = B(dx); var mm = m;
        For(planes * h, 32L * w, row =>
        {
            long b = (long)(row / h) * h * w; int iy = row % h;
            for (int ix = 0; ix < w; ix++)
            {
                KW.Outputs(mm, ix, iy, h, w, out int xLo, out int xHi, out int yLo, out int yHi);
                float s = 0f;
                for (int oy = yLo; oy <= yHi; oy++)
                    for (int ox = xLo; ox <= xHi; ox++)
                    {
                        float wt = KW.Weight(mm, ox, oy, ix, iy);
                        if (wt != 0f) s += wt * gs[b + oy * w + ox];
                    }
                ref float o = ref ds[b + iy * w + ix];
                o = beta == 0f ? alpha * s : alpha * s + beta * o;
            }
        });
    }
}
