using ILGPU;
using ILGPU.Algorithms;

namespace Perturb.Kernels;

/// <summary>
/// An adversarial patch put on images (IBackend.PatchApply) and its adjoint (IBackend.PatchApplyAdjoint).
/// Layout: patch and dpatch [c, size, size], mask [size, size] (non-zero: inside), x and dx [n, c, h, w], place [n, 5]
/// = (top, left, side, cos, sin) per image. The patch is scaled to a side x side box at (top, left), rotated by the
/// angle of (cos, sin) about the box centre; box pixel (by, bx) takes, by its centre's inverse map
/// (u, v) = (cos dx + sin dy, -sin dx + cos dy) * size / side + size / 2 with (dx, dy) = (bx, by) + 0.5 - side / 2,
/// the patch pixel (floor(u), floor(v)) when that is inside the patch and the mask (nearest neighbour). The adjoint
/// gathers, per patch pixel, the box pixels whose source it is (found around the forward image of the patch pixel,
/// the same <see cref="Source"/> deciding), images in order and box pixels row-major: the exact transpose,
/// deterministic (no atomics). The CPU twin (engine/Backends/Cpu/CpuPatch.cs) and the host renderer
/// (engine/Attacks/Patch/AdversarialPatch.cs) call <see cref="Source"/> too.
/// </summary>
public static class Patch
{
    /// <summary>Integer-valued floats accepted as top, left and side (larger ones, and NaN, place nothing).</summary>
    const float Big = 1 << 24;

    /// <summary>The box of a placement: false when it places nothing (side below 1, a value not finite or too large).</summary>
    public static bool Box(float top, float left, float side, out int t, out int l, out int s)
    {
        t = l = s = 0;
        if (!(side >= 1f && side < Big && top > -Big && top < Big && left > -Big && left < Big)) return false;
        t = (int)top; l = (int)left; s = (int)side;
        return true;
    }

    /// <summary>The patch pixel (su, sv) box pixel (by, bx) of a side s box takes; false when its source is outside the patch.</summary>
    public static bool Source(int s, float cos, float sin, int by, int bx, int size, out int su, out int sv)
    {
        float c = s / 2f, k = size / (float)s, half = size / 2f;
        float dy = by + 0.5f - c, dx = bx + 0.5f - c;
        float u = (cos * dx + sin * dy) * k + half, v = (-sin * dx + cos * dy) * k + half;
        float fu = XMath.Floor(u), fv = XMath.Floor(v);
        su = -1; sv = -1;
        if (!(fu >= 0f && fu < size && fv >= 0f && fv < size)) return false;
        su = (int)fu; sv = (int)fv;
        return true;
    }

    /// <summary>
    /// Box pixels that may take patch pixel (su, sv): the forward image of its cell (a square of side 1/k turned by the
    /// map's angle, k = size / side * (cos^2 + sin^2)), one pixel of margin, clipped to the box.
    /// </summary>
    public static void Candidates(int s, float cos, float sin, int su, int sv, int size, out int byLo, out int byHi, out int bxLo, out int bxHi)
    {
        float q = cos * cos + sin * sin;
        byLo = 0; byHi = s - 1; bxLo = 0; bxHi = s - 1;
        if (!(q > 1e-12f)) return; // a degenerate map: every box pixel may read this patch pixel
        float k = size / (float)s, half = size / 2f, c = s / 2f;
        float uu = (su + 0.5f - half) / (k * q), vv = (sv + 0.5f - half) / (k * q);
        float dx = cos * uu - sin * vv, dy = sin * uu + cos * vv;
        float r = (XMath.Abs(cos) + XMath.Abs(sin)) * 0.5f / (k * q) + 1f;
        float bx = dx + c - 0.5f, by = dy + c - 0.5f;
        bxLo = (int)XMath.Max(0f, XMath.Floor(bx - r)); bxHi = (int)XMath.Min(s - 1f, XMath.Ceiling(bx + r));
        byLo = (int)XMath.Max(0f, XMath.Floor(by - r)); byHi = (int)XMath.Min(s - 1f, XMath.Ceiling(by + r));
    }

    // x[n, ch, py, px] = patch[ch, sv, su] for every covered pixel; i indexes [n, h, w] (each thread writes its pixel's channels)
    public static void Apply(Index1D i, ArrayView<float> patch, ArrayView<float> mask, ArrayView<float> place, ArrayView<float> x,
        int c, int h, int w, int size)
    {
        int n = i / (h * w), p = i - n * h * w, py = p / w, px = p - py * w;
        long pl = (long)n * 5;
        if (!Box(place[pl], place[pl + 1], place[pl + 2], out int t, out int l, out int s)) return;
        int by = py - t, bx = px - l;
        if (by < 0 || by >= s || bx < 0 || bx >= s) return;
        if (!Source(s, place[pl + 3], place[pl + 4], by, bx, size, out int su, out int sv)) return;
        int sp = sv * size + su;
        if (mask[sp] == 0f) return;
        long hw = (long)h * w, ss = (long)size * size;
        for (int ch = 0; ch < c; ch++) x[((long)n * c + ch) * hw + p] = patch[ch * ss + sp];
    }

    // dpatch[ch, sv, su] = sum over images n and box pixels taking (su, sv) of dx[n, ch, py, px]; i indexes [c, size, size]
    public static void Adjoint(Index1D i, ArrayView<float> dx, ArrayView<float> mask, ArrayView<float> place, ArrayView<float> dpatch,
        int n, int c, int h, int w, int size)
    {
        int ss = size * size, ch = i / ss, sp = i - ch * ss, sv = sp / size, su = sp - sv * size;
        float sum = 0f;
        if (mask[sp] != 0f)
            for (int img = 0; img < n; img++)
            {
                long pl = (long)img * 5;
                if (!Box(place[pl], place[pl + 1], place[pl + 2], out int t, out int l, out int s)) continue;
                float cos = place[pl + 3], sin = place[pl + 4];
                Candidates(s, cos, sin, su, sv, size, out int byLo, out int byHi, out int bxLo, out int bxHi);
                long plane = ((long)img * c + ch) * h * w;
                for (int by = byLo; by <= byHi; by++)
                {
                    int py = t + by;
                    if (py < 0 || py >= h) continue;
                    for (int bx = bxLo; bx <= bxHi; bx++)
                    {
                        int px = l + bx;
                        if (px < 0 || px >= w) continue;
                        if (Source(s, cos, sin, by, bx, size, out int u, out int v) && u == su && v == sv) sum += dx[plane + (long)py * w + px];
                    }
                }
            }
        dpatch[i] = sum;
    }
}
