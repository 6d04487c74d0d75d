using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Perturb.Engine.Backends;

/// <summary>
/// Pooling over x[N,C,H,W] -> y[N,C,OH,OW], one (n, c) plane per work item, so backward passes can accumulate into
/// their plane of dx without races. Window (oh, ow) covers rows [oh*strideH - padH, + KH) and columns likewise,
/// clipped to the input; max pooling takes the first maximum in row-major window order (strict &gt;).
/// Average pooling divides by the clipped window size, or with CountIncludePad by the window clipped to the padded
/// input [-pad, size + pad) (PyTorch's rule, which matters in ceil mode).
/// Global average pooling: y[n, c] = mean of x[n, c, :].
/// </summary>
public sealed partial class CpuBackend
{
    /// <summary>One pooling window: clipped input rows [h0, h1), columns [w0, w1) and the average divisor.</summary>
    readonly record struct Window(int H0, int H1, int W0, int W1, int Divisor);

    static Window WindowAt(in PoolShape s, int oh, int ow)
    {
        int hs = oh * s.StrideH - s.PadH, ws = ow * s.StrideW - s.PadW;
        int he = Math.Min(hs + s.KH, s.H + s.PadH), we = Math.Min(ws + s.KW, s.W + s.PadW);
        int padded = (he - hs) * (we - ws);
        int h0 = Math.Max(hs, 0), w0 = Math.Max(ws, 0), h1 = Math.Min(he, s.H), w1 = Math.Min(we, s.W);
        int div = s.CountIncludePad ? padded : (h1 - h0) * (w1 - w0);
        return new Window(h0, h1, w0, w1, div);
    }

    /// <summary>Index (within the plane) of the window's first maximum, or -1 for an empty window.</summary>
    static int WindowArgmax(ReadOnlySpan<float> plane, int width, in Window w)
    {
        int best = -1; float m = 0;
        for (int h = w.H0; h < w.H1; h++)
            for (int x = w.W0; x < w.W1; x++)
            {
                float v = plane[h * width + x];
                if (best < 0 || v > m) { best = h * width + x; m = v; }
            }
        return best;
    }

    /// <summary>
    /// Runs body(plane index, input plane, output plane) for every (n, c) plane, in parallel when large. Forward passes
    /// read x planes of H*W and write y planes of OH*OW; backward passes (backward = true) read dy and write dx.
    /// </summary>
    void ForPlanes(in PoolShape s, Tensor inT, Tensor outT, bool backward, Action<int, Span<float>, Span<float>> body)
    {
        int hw = s.H * s.W, p = s.OutH * s.OutW, planes = s.N * s.C;
        int il = backward ? p : hw, ol = backward ? hw : p;
        var ib = B(inT);
        var ob = B(outT);
        For(planes, (long)s.KH * s.KW * p, i => body(i, ib.Span((long)i * il, il), ob.Span((long)i * ol, ol)));
    }

    /// <summary>
    /// A 2x2 window with stride 2, no padding, every window inside the input (any odd last row or column is in no
    /// window): the fast path of max pooling (cnn-small, LeNet), the same comparisons in the same order as the general
    /// loop, so the same first maximum (ties, signed zeros and NaN included).
    /// </summary>
    static bool IsPool2x2(in PoolShape s) =>
        s.KH == 2 && s.KW == 2 && s.StrideH == 2 && s.StrideW == 2 && s.PadH == 0 && s.PadW == 0
        && 2 * s.OutH <= s.H && 2 * s.OutW <= s.W;

    /// <summary>
    /// (v &gt; m) ? v : m without a branch (MAXSS keeps its second operand unless the first is greater, NaN and equal
    /// values included): the general loop's strict-&gt; update. Post-ReLU windows make that branch unpredictable
    /// (measured 3x slower than branch-free on cnn-small's activations).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Above(float v, float m) => Sse.IsSupported
        ? Sse.MaxScalar(Vector128.CreateScalarUnsafe(v), Vector128.CreateScalarUnsafe(m)).ToScalar()
        : v > m ? v : m;

    /// <summary>1 where v == m (IEEE: NaN equals nothing, -0 equals +0), else 0, without a branch.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static int Same(float v, float m) => Sse.IsSupported
        ? BitConverter.SingleToInt32Bits(Sse.CompareScalarEqual(Vector128.CreateScalarUnsafe(v), Vector128.CreateScalarUnsafe(m)).ToScalar()) & 1
        : v == m ? 1 : 0;

    /// <summary>
    /// One plane of the 2x2/2 forward: each window's first maximum by the general loop's comparisons in its order
    /// (row 0 left, right, row 1 left, right; strict &gt;), so NaN and signed zeros come out the same.
    /// </summary>
    static unsafe void MaxPool2x2Plane(float* x, float* y, int w, int oh, int ow)
    {
        for (int i = 0; i < oh; i++)
        {
            float* r0 = x + 2 * i * w, r1 = r0 + w, o = y + i * ow;
            for (int j = 0; j < ow; j++)
                o[j] = Above(r1[2 * j + 1], Above(r1[2 * j], Above(r0[2 * j + 1], r0[2 * j])));
        }
    }

    /// <summary>
    /// One plane of the 2x2/2 backward, every element of dx written once: 0 + dy at each window's first maximum (as
    /// the general loop's clear and +=), +0 elsewhere, found without branches: the strict-&gt; maximum m as in the
    /// forward, then the first of the four equal to m (the position the general loop's updates end on), or the
    /// first when none is (m NaN, from the first value). Rows and columns in no window are cleared.
    /// </summary>
    static unsafe void MaxPool2x2BackwardPlane(float* x, float* dy, float* dx, int h, int w, int oh, int ow)
    {
        for (int i = 0; i < oh; i++)
        {
            int row = 2 * i * w;
            float* r0 = x + row, r1 = r0 + w, g = dy + i * ow, d0 = dx + row, d1 = d0 + w;
            int j = 0;
            if (Sse.IsSupported && ow >= 4)
            {
                // Four windows at once, lane-wise the same selection; a last group that would pass the row's end
                // moves back to end at it and recomputes windows already written (each write is the same value).
                for (int j0 = 0; ; j0 += 4)
                {
                    if (j0 + 4 > ow) { if (j0 == ow) break; j0 = ow - 4; }
                    Window4(r0 + 2 * j0, r1 + 2 * j0, g + j0, d0 + 2 * j0, d1 + 2 * j0);
                    if (j0 + 4 == ow) break;
                }
                j = ow;
            }
            for (; j < ow; j++)
            {
                float a = r0[2 * j], b = r0[2 * j + 1], c = r1[2 * j], d = r1[2 * j + 1];
                float m = Above(d, Above(c, Above(b, a)));
                int ea = Same(a, m), eb = Same(b, m), ec = Same(c, m), ed = Same(d, m);
                int na = 1 - ea, kb = na & eb, kc = na & (1 - eb) & ec, kd = na & (1 - eb) & (1 - ec) & ed, ka = 1 - kb - kc - kd;
                int gv = BitConverter.SingleToInt32Bits(0f + g[j]);
                d0[2 * j] = BitConverter.Int32BitsToSingle(gv & -ka);
                d0[2 * j + 1] = BitConverter.Int32BitsToSingle(gv & -kb);
                d1[2 * j] = BitConverter.Int32BitsToSingle(gv & -kc);
                d1[2 * j + 1] = BitConverter.Int32BitsToSingle(gv & -kd);
            }
            for (int k = 2 * ow; k < w; k++) d0[k] = d1[k] = 0f;
        }
        new Span<float>(dx + 2 * oh * w, (h - 2 * oh) * w).Clear();
    }

    /// <summary>
    /// Four adjacent 2x2 windows of the backward (rows r0, r1 from their first column; dy g; dx rows d0, d1): the
    /// scalar loop's selection lane by lane (MAXPS is the same strict-&gt; update, CMPEQPS the same equality).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static unsafe void Window4(float* r0, float* r1, float* g, float* d0, float* d1)
    {
        Vector128<float> x0 = Sse.LoadVector128(r0), x1 = Sse.LoadVector128(r0 + 4), y0 = Sse.LoadVector128(r1), y1 = Sse.LoadVector128(r1 + 4);
        var a = Sse.Shuffle(x0, x1, 0b10_00_10_00); var b = Sse.Shuffle(x0, x1, 0b11_01_11_01);
        var c = Sse.Shuffle(y0, y1, 0b10_00_10_00); var d = Sse.Shuffle(y0, y1, 0b11_01_11_01);
        var m = Sse.Max(d, Sse.Max(c, Sse.Max(b, a)));
        var ea = Sse.CompareEqual(a, m); var eb = Sse.CompareEqual(b, m); var ec = Sse.CompareEqual(c, m); var ed = Sse.CompareEqual(d, m);
        var kb = Sse.AndNot(ea, eb); var ab = Sse.Or(ea, eb);
        var kc = Sse.AndNot(ab, ec); var kd = Sse.AndNot(Sse.Or(ab, ec), ed);
        var gv = Sse.Add(Vector128<float>.Zero, Sse.LoadVector128(g));
        var oa = Sse.AndNot(Sse.Or(kb, Sse.Or(kc, kd)), gv);
        var ob = Sse.And(kb, gv); var oc = Sse.And(kc, gv); var od = Sse.And(kd, gv);
        Sse.Store(d0, Sse.UnpackLow(oa, ob)); Sse.Store(d0 + 4, Sse.UnpackHigh(oa, ob));
        Sse.Store(d1, Sse.UnpackLow(oc, od)); Sse.Store(d1 + 4, Sse.UnpackHigh(oc, od));
    }

    protected override void MaxPoolForwardCore(in PoolShape s, Tensor x, Tensor y)
    {
        var sh = s;
        if (IsPool2x2(s))
        {
            ForPlanes(s, x, y, false, (_, xp, yp) =>
            {
                unsafe { fixed (float* px = xp, py = yp) MaxPool2x2Plane(px, py, sh.W, sh.OutH, sh.OutW); }
            });
            return;
        }
        ForPlanes(s, x, y, false, (_, xp, yp) =>
        {
            for (int oh = 0; oh < sh.OutH; oh++)
                for (int ow = 0; ow < sh.OutW; ow++)
                {
                    int a = WindowArgmax(xp, sh.W, WindowAt(sh, oh, ow));
                    yp[oh * sh.OutW + ow] = a < 0 ? float.NegativeInfinity : xp[a];
                }
        });
    }

    protected override void MaxPoolBackwardCore(in PoolShape s, Tensor x, Tensor dy, Tensor dx)
    {
        var sh = s;
        int hw = s.H * s.W;
        var xb = B(x);
        if (IsPool2x2(s))
        {
            ForPlanes(s, dy, dx, true, (i, dyp, dxp) =>
            {
                var xp = xb.Span((long)i * hw, hw);
                unsafe { fixed (float* px = xp, pg = dyp, pd = dxp) MaxPool2x2BackwardPlane(px, pg, pd, sh.H, sh.W, sh.OutH, sh.OutW); }
            });
            return;
        }
        ForPlanes(s, dy, dx, true, (i, dyp, dxp) =>
        {
            var xp = xb.Span((long)i * hw, hw);
            dxp.Clear();
            for (int oh = 0; oh < sh.OutH; oh++)
                for (int ow = 0; ow < sh.OutW; ow++)
                {
                    int a = WindowArgmax(xp, sh.W, WindowAt(sh, oh, ow));
                    if (a >= 0) dxp[a] += dyp[oh * sh.OutW + ow];
                }
        });
    }

    protected override void AvgPoolForwardCore(in PoolShape s, Tensor x, Tensor y)
    {
        var sh = s;
        ForPlanes(s, x, y, false, (_, xp, yp) =>
        {
            for (int oh = 0; oh < sh.OutH; oh++)
                for (int ow = 0; ow < sh.OutW; ow++)
                {
                    var w = WindowAt(sh, oh, ow);
                    float sum = 0;
                    for (int h = w.H0; h < w.H1; h++)
                        for (int c = w.W0; c < w.W1; c++) sum += xp[h * sh.W + c];
                    yp[oh * sh.OutW + ow] = w.Divisor > 0 ? sum / w.Divisor : 0f;
                }
        });
    }

    protected override void AvgPoolBackwardCore(in PoolShape s, Tensor dy, Tensor dx)
    {
        var sh = s;
        ForPlanes(s, dy, dx, true, (_, dyp, dxp) =>
        {
            dxp.Clear();
            for (int oh = 0; oh < sh.OutH; oh++)
                for (int ow = 0; ow < sh.OutW; ow++)
                {
                    var w = WindowAt(sh, oh, ow);
                    if (w.Divisor <= 0) continue;
                    float g = dyp[oh * sh.OutW + ow] / w.Divisor;
                    for (int h = w.H0; h < w.H1; h++)
                        for (int c = w.W0; c < w.W1; c++) dxp[h * sh.W + c] += g;
                }
        });
    }

    protected override void GlobalAvgPoolForwardCore(Tensor x, Tensor y, int n, int c, int hw)
    {
        var xb = B(x);
        var yb = B(y);
        For(n * c, hw, i => yb[i] = (float)(SumD(xb.Span((long)i * hw, hw)) / hw));
    }

    protected override void GlobalAvgPoolBackwardCore(Tensor dy, Tensor dx, int n, int c, int hw)
    {
        var db = B(dy);
        var xb = B(dx);
        For(n * c, hw, i => xb.Span((long)i * hw, hw).Fill(db[i] / hw));
    }
}
