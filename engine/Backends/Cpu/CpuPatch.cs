using KP = Perturb.Kernels.Patch;

namespace Perturb.Engine.Backends;

/// <summary>
/// The adversarial patch's placement, one image row (apply) or one patch row (adjoint) per work item, through the
/// kernels' own helpers (<see cref="KP.Box"/>, <see cref="KP.Source"/>, <see cref="KP.Candidates"/>), so both backends
/// cover the same pixels and sum in the same order. The kernel twin is IlgpuPatch.cs.
/// </summary>
public sealed partial class CpuBackend
{
    protected override void PatchApplyCore(Tensor patch, Tensor mask, Tensor place, Tensor x, int n, int c, int h, int w, int size)
    {
        var ps = B(patch); var ms = B(mask); var pls = B(place); var xs = B(x);
        long hw = (long)h * w, ss = (long)size * size;
        For(n * h, 4L * w, row =>
        {
            int img = row / h, py = row % h;
            long pl = (long)img * 5;
            if (!KP.Box(pls[pl], pls[pl + 1], pls[pl + 2], out int t, out int l, out int s)) return;
            int by = py - t;
            if (by < 0 || by >= s) return;
            float cos = pls[pl + 3], sin = pls[pl + 4];
            for (int px = Math.Max(0, l); px < Math.Min(w, l + s); px++)
            {
                if (!KP.Source(s, cos, sin, by, px - l, size, out int su, out int sv)) continue;
                int sp = sv * size + su;
                if (ms[sp] == 0f) continue;
                for (int ch = 0; ch < c; ch++) xs[((long)img * c + ch) * hw + (long)py * w + px] = ps[ch * ss + sp];
            }
        });
    }

    protected override void PatchApplyAdjointCore(Tensor dx, Tensor mask, Tensor place, Tensor dpatch, int n, int c, int h, int w, int size)
    {
        var gs = B(dx); var ms = B(mask); var pls = B(place); var ds = B(dpatch);
        For(c * size, 16L * n * size, row =>
        {
            int ch = row / size, sv = row % size;
            for (int su = 0; su < size; su++)
            {
                int sp = sv * size + su;
                float sum = 0f;
                if (ms[sp] != 0f)
                    for (int img = 0; img < n; img++)
                    {
                        long pl = (long)img * 5;
                        if (!KP.Box(pls[pl], pls[pl + 1], pls[pl + 2], out int t, out int l, out int s)) continue;
                        float cos = pls[pl + 3], sin = pls[pl + 4];
                        KP.Candidates(s, cos, sin, su, sv, size, out int byLo, out int byHi, out int bxLo, out int bxHi);
                        long plane = ((long)img * c + ch) * h * w;
                        for (int by = byLo; by <= byHi; by++)
                        {
                            int py = t + by;
                            if (py < 0 || py >= h) continue;
                            for (int bx = bxLo; bx <= bxHi; bx++)
                            {
                                int px = l + bx;
                                if (px < 0 || px >= w) continue;
                                if (KP.Source(s, cos, sin, by, bx, size, out int u, out int v) && u == su && v == sv) sum += gs[plane + (long)py * w + px];
                            }
                        }
                    }
                ds[(long)ch * size * size + sp] = sum;
            }
        });
    }
}
