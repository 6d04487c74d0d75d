namespace Perturb.Engine;

/// <summary>
/// Shape of a 2-D convolution. Input x: [N, C, H, W]; weights w: [K, C/Groups, R, S]; output y: [N, K, OutH, OutW].
/// OutH = (H + 2*PadH - DilH*(R-1) - 1) / StrideH + 1 (floor), likewise OutW.
/// </summary>
public readonly record struct ConvShape(
    int N, int C, int H, int W, int K, int R, int S,
    int StrideH = 1, int StrideW = 1, int PadH = 0, int PadW = 0, int DilH = 1, int DilW = 1, int Groups = 1)
{
    public int OutH => (H + 2 * PadH - DilH * (R - 1) - 1) / StrideH + 1;
    public int OutW => (W + 2 * PadW - DilW * (S - 1) - 1) / StrideW + 1;
    public int CPerGroup => C / Groups;
    public int KPerGroup => K / Groups;
    /// <summary>Multiply-adds times two of the forward pass (equal for backward-data and backward-weights).</summary>
    public long Flops => 2L * N * K * OutH * OutW * CPerGroup * R * S;
    public ConvShape WithN(int n) => this with { N = n };
}

/// <summary>
/// Shape of a 2-D pooling window. x: [N, C, H, W]; y: [N, C, OutH, OutW].
/// OutH = floor((H + 2*PadH - KH) / StrideH) + 1 (ceil instead when CeilMode, with the last window starting inside
/// the input or left padding, as PyTorch). Padded positions never win a max; for average pooling they count in the
/// divisor only when CountIncludePad (the divisor then still excludes positions past the right/bottom padding).
/// </summary>
public readonly record struct PoolShape(
    int N, int C, int H, int W, int KH, int KW, int StrideH, int StrideW, int PadH = 0, int PadW = 0,
    bool CeilMode = false, bool CountIncludePad = false)
{
    public int OutH => OutSize(H, KH, StrideH, PadH, CeilMode);
    public int OutW => OutSize(W, KW, StrideW, PadW, CeilMode);
    static int OutSize(int size, int k, int s, int p, bool ceil)
    {
        int num = size + 2 * p - k;
        int o = (ceil ? (num + s - 1) / s : num / s) + 1;
        if (ceil && (o - 1) * s >= size + p) o--;
        return o;
    }
    public PoolShape WithN(int n) => this with { N = n };
}

/// <summary>Activation functions; the values are the kernels' codes (Perturb.Kernels.ActivationKind).</summary>
public enum Activation
{
    Relu = Perturb.Kernels.ActivationKind.Relu,
    LeakyRelu = Perturb.Kernels.ActivationKind.LeakyRelu,
    Sigmoid = Perturb.Kernels.ActivationKind.Sigmoid,
    Tanh = Perturb.Kernels.ActivationKind.Tanh,
}

/// <summary>Per-row reductions; the values are the kernels' codes (Perturb.Kernels.ReduceKind).</summary>
public enum Reduction
{
    Sum = Perturb.Kernels.ReduceKind.Sum,
    Max = Perturb.Kernels.ReduceKind.Max,
    L0 = Perturb.Kernels.ReduceKind.L0,
    L2 = Perturb.Kernels.ReduceKind.L2,
    Linf = Perturb.Kernels.ReduceKind.Linf,
}

/// <summary>
/// An affine map of pixel coordinates for <see cref="IBackend.WarpAffine"/>: output pixel (ox, oy) (column, row) reads
/// the source point (A ox + B oy + C, D ox + E oy + F). Must be invertible (A E - B D != 0) with finite coefficients.
/// </summary>
public readonly record struct WarpMap(float A, float B, float C, float D, float E, float F)
{
    public double Det => (double)A * E - (double)B * D;

    /// <summary>
    /// Rotation by <paramref name="degrees"/> and scaling by <paramref name="scale"/> about the centre of an h x w
    /// image, then a translation by (tx, ty) pixels: the source point of output (x, y) is
    /// R(-angle) ((x - cx - tx, y - cy - ty)) / scale + (cx, cy), with (cx, cy) = ((w-1)/2, (h-1)/2).
    /// </summary>
    public static WarpMap RotateScaleTranslate(double degrees, double scale, double tx, double ty, int h, int w)
    {
        double a = degrees * Math.PI / 180, cos = Math.Cos(a) / scale, sin = Math.Sin(a) / scale;
        double cy = (h - 1) / 2.0, cx = (w - 1) / 2.0;
        // sx = cos (x - cx - tx) + sin (y - cy - ty) + cx;  sy = -sin (x - cx - tx) + cos (y - cy - ty) + cy
        return new((float)cos, (float)sin, (float)(cx - cos * (cx + tx) - sin * (cy + ty)),
            (float)-sin, (float)cos, (float)(cy + sin * (cx + tx) - cos * (cy + ty)));
    }

    /// <summary>The kernels' coefficients: the map and its inverse (computed in double).</summary>
    internal Perturb.Kernels.WarpCoefs Coefs()
    {
        double det = Det;
        return new Perturb.Kernels.WarpCoefs
        {
            A = A, B = B, C = C, D = D, E = E, F = F,
            IA = (float)(E / det), IB = (float)(-B / det), IC = (float)(((double)B * F - (double)E * C) / det),
            ID = (float)(-D / det), IE = (float)(A / det), IF = (float)(((double)D * C - (double)A * F) / det),
        };
    }
}
