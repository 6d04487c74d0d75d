using ILGPU;
using ILGPU.Algorithms;

namespace Perturb.Kernels;

/// <summary>
/// An affine map of pixel coordinates and its inverse: output pixel (ox, oy) reads the source point
/// (sx, sy) = (A ox + B oy + C, D ox + E oy + F); (IA..IF) map a source point back to output coordinates.
/// </summary>
public struct WarpCoefs
{
    public float A, B, C, D, E, F;
    public float IA, IB, IC, ID, IE, IF;
}

/// <summary>
/// Bilinear affine warp of planes [planes, h, w] (one plane = one channel of one image), zero outside the image:
/// y[p, oy, ox] = alpha * sum over the four neighbours (y0 + a, x0 + b), a, b in {0, 1}, of
/// w_ab * x[p, y0 + a, x0 + b] (+ beta * y), with x0 = floor(sx), fx = sx - x0 (likewise y), w_00 = (1-fx)(1-fy),
/// w_01 = fx(1-fy), w_10 = (1-fx)fy, w_11 = fx fy. The adjoint gathers, per source pixel, the outputs whose four
/// neighbours include it (found through the inverse map), with the same weights computed by the same code, so it is
/// the exact transpose of the forward operator and deterministic (no atomics). CpuWarp.cs calls <see cref="Source"/>
/// and <see cref="Outputs"/> too.
/// </summary>
public static class Warp
{
    /// <summary>The source point of output pixel (ox, oy): its top-left neighbour and the fractions.</summary>
    public static void Source(WarpCoefs m, int ox, int oy, out int x0, out int y0, out float fx, out float fy)
    {
        float sx = m.A * ox + m.B * oy + m.C, sy = m.D * ox + m.E * oy + m.F;
        float fl = XMath.Floor(sx), gl = XMath.Floor(sy);
        x0 = (int)fl; y0 = (int)gl;
        fx = sx - fl; fy = sy - gl;
    }

    /// <summary>Output pixels that may read source pixel (ix, iy): a box around the inverse image of [ix-1, ix+1] x [iy-1, iy+1].</summary>
    public static void Outputs(WarpCoefs m, int ix, int iy, int h, int w, out int xLo, out int xHi, out int yLo, out int yHi)
    {
        float lx = float.MaxValue, hx = float.MinValue, ly = float.MaxValue, hy = float.MinValue;
        for (int c = 0; c < 4; c++)
        {
            float sx = ix + ((c & 1) == 0 ? -1f : 1f), sy = iy + ((c & 2) == 0 ? -1f : 1f);
            float ox = m.IA * sx + m.IB * sy + m.IC, oy = m.ID * sx + m.IE * sy + m.IF;
            lx = XMath.Min(lx, ox); hx = XMath.Max(hx, ox); ly = XMath.Min(ly, oy); hy = XMath.Max(hy, oy);
        }
        // one pixel of margin against rounding; clipped to the image (an empty range when the box misses it)
        xLo = (int)XMath.Max(0f, XMath.Floor(lx) - 1f); xHi = (int)XMath.Min(w - 1f, XMath.Ceiling(hx) + 1f);
        yLo = (int)XMath.Max(0f, XMath.Floor(ly) - 1f); yHi = (int)XMath.Min(h - 1f, XMath.Ceiling(hy) + 1f);
    }

    /// <summary>The weight with which output (ox, oy) reads source pixel (ix, iy): 0 unless it is one of its four neighbours.</summary>
    public static float Weight(WarpCoefs m, int ox, int oy, int ix, int iy)
    {
        Source(m, ox, oy, out int x0, out int y0, out float fx, out float fy);
        int a = iy - y0, b = ix - x0;
        if (a < 0 || a > 1 || b < 0 || b > 1) return 0f;
        return (b == 0 ? 1f - fx : fx) * (a == 0 ? 1f - fy : fy);
    }

    // y[i] = alpha * (bilinear read of plane p at output pixel o) (+ beta * y[i]), i = p * h*w + o. beta == 0: y is not read.
    public static void Forward(Index1D i, ArrayView<float> x, ArrayView<float> y, WarpCoefs m, int h, int w, float alpha, float beta)
    {
        int hw = h * w, o = i % hw, ox = o % w, oy = o / w;
        long b = (long)((int)i / hw) * hw;
        Source(m, ox, oy, out int x0, out int y0, out float fx, out float fy);
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
                s += (c == 0 ? 1f - fx : fx) * wy * x[b + yy * w + xx];
            }
        }
        y[i] = beta == 0f ? alpha * s : alpha * s + beta * y[i];
    }

    // dx[i] = alpha * sum_o Weight(o -> source pixel j) * dy[p, o] (+ beta * dx[i]), i = p * h*w + j. beta == 0: dx is not read.
    public static void Adjoint(Index1D i, ArrayView<float> dy, ArrayView<float> dx, WarpCoefs m, int h, int w, float alpha, float beta)
    {
        int hw = h * w, j = i % hw, ix = j % w, iy = j / w;
        long b = (long)((int)i / hw) * hw;
        Outputs(m, ix, iy, h, w, out int xLo, out int xHi, out int yLo, out int yHi);
        float s = 0f;
        for (int oy = yLo; oy <= yHi; oy++)
            for (int ox = xLo; ox <= xHi; ox++)
            {
                float wt = Weight(m, ox, oy, ix, iy);
                if (wt != 0f) s += wt * dy[b + oy * w + ox];
            }
        dx[i] = beta == 0f ? alpha * s : alpha * s + beta * dx[i];
    }
}
