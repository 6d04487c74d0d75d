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
    static void ValidatePool(in PoolShape s, string op)
    {
        if (s.N < 0 || s.C <= 0 || s.H <= 0 || s.W <= 0 || s.KH <= 0 || s.KW <= 0 || s.StrideH <= 0 || s.StrideW <= 0
            || s.PadH < 0 || s.PadW < 0 || 2 * s.PadH > s.KH || 2 * s.PadW > s.KW)
            throw new ArgumentException($"{op}: invalid shape {s}");
        if (s.OutH <= 0 || s.OutW <= 0) throw new ArgumentException($"{op}: empty output for {s}");
    }

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
    /// Counts the op and runs body(plane index, input plane, output plane) for every (n, c) plane, in parallel when large. Forward passes
    /// read x planes of H*W and write y planes of OH*OW; backward passes (backward = true) read dy and write dx.
    /// </summary>
    void ForPlanes(in PoolShape s, Tensor inT, Tensor outT, bool backward, string op, Action<int, Span<float>, Span<float>> body)
    {
        int hw = s.H * s.W, p = s.OutH * s.OutW, planes = s.N * s.C;
        int il = backward ? p : hw, ol = backward ? hw : p;
        var ib = B(inT, (long)planes * il, op, backward ? "dy" : "x");
        var ob = B(outT, (long)planes * ol, op, backward ? "dx" : "y");
        Counters.Hit(op, (long)planes * p * s.KH * s.KW);
        For(planes, (long)s.KH * s.KW * p, i => body(i, ib.Span((long)i * il, il), ob.Span((long)i * ol, ol)));
    }

    public void MaxPoolForward(in PoolShape s, Tensor x, Tensor y)
    {
        const string op = "maxpool_fwd";
        ValidatePool(s, op);
        var sh = s;
        ForPlanes(s, x, y, false, op, (_, xp, yp) =>
        {
            for (int oh = 0; oh < sh.OutH; oh++)
                for (int ow = 0; ow < sh.OutW; ow++)
                {
                    int a = WindowArgmax(xp, sh.W, WindowAt(sh, oh, ow));
                    yp[oh * sh.OutW + ow] = a < 0 ? float.NegativeInfinity : xp[a];
                }
        });
    }

    public void MaxPoolBackward(in PoolShape s, Tensor x, Tensor dy, Tensor dx)
    {
        const string op = "maxpool_bwd";
        ValidatePool(s, op);
        var sh = s;
        int hw = s.H * s.W;
        var xb = B(x, (long)s.N * s.C * hw, op, "x");
        ForPlanes(s, dy, dx, true, op, (i, dyp, dxp) =>
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

    public void AvgPoolForward(in PoolShape s, Tensor x, Tensor y)
    {
        const string op = "avgpool_fwd";
        ValidatePool(s, op);
        var sh = s;
        ForPlanes(s, x, y, false, op, (_, xp, yp) =>
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

    public void AvgPoolBackward(in PoolShape s, Tensor dy, Tensor dx)
    {
        const string op = "avgpool_bwd";
        ValidatePool(s, op);
        var sh = s;
        ForPlanes(s, dy, dx, true, op, (_, dyp, dxp) =>
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

    public void GlobalAvgPoolForward(Tensor x, Tensor y, int n, int c, int hw)
    {
        const string op = "gap_fwd";
        Counters.Hit(op, (long)n * c * hw);
        var xb = B(x, (long)n * c * hw, op, "x");
        var yb = B(y, (long)n * c, op, "y");
        For(n * c, hw, i => yb[i] = (float)(SumD(xb.Span((long)i * hw, hw)) / hw));
    }

    public void GlobalAvgPoolBackward(Tensor dy, Tensor dx, int n, int c, int hw)
    {
        const string op = "gap_bwd";
        Counters.Hit(op, (long)n * c * hw);
        var db = B(dy, (long)n * c, op, "dy");
        var xb = B(dx, (long)n * c * hw, op, "dx");
        For(n * c, hw, i => xb.Span((long)i * hw, hw).Fill(db[i] / hw));
    }
}
