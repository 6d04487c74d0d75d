using ILGPU;

namespace Perturb.Kernels;

/// <summary>
/// Shape of a convolution over a chunk of N samples. x: [N, C, H, W]; w: [K, C/G, R, S]; y: [N, K, OH, OW].
/// The column matrix holds all N samples side by side: col[(c*R + r)*S + s][n*OH*OW + oh*OW + ow], so one GEMM per
/// group covers the whole chunk. Per group g, rows [g*Cg*R*S, (g+1)*Cg*R*S) of col and channels [g*Kg, (g+1)*Kg)
/// of the output are a contiguous block.
/// </summary>
public struct ConvArgs
{
    public int N, C, H, W, K, R, S, OH, OW;
    public int StrideH, StrideW, PadH, PadW, DilH, DilW;
}

public static class Conv
{
    // col[(c*R + r)*S + s][n*OHW + oh*OW + ow] = x[n, c, oh*sh - ph + r*dh, ow*sw - pw + s*dw]  (0 outside the image)
    // one thread per col element; index i = row * (N*OHW) + column.
    public static void Im2Col(Index1D i, ArrayView<float> x, ArrayView<float> col, ConvArgs a)
    {
        int ohw = a.OH * a.OW, cols = a.N * ohw;
        int row = i / cols, colIdx = i % cols;
        int n = colIdx / ohw, j = colIdx % ohw, oh = j / a.OW, ow = j % a.OW;
        int s = row % a.S, r = (row / a.S) % a.R, ch = row / (a.R * a.S);
        int h = oh * a.StrideH - a.PadH + r * a.DilH, w = ow * a.StrideW - a.PadW + s * a.DilW;
        col[i] = h >= 0 && h < a.H && w >= 0 && w < a.W ? x[((long)(n * a.C + ch) * a.H + h) * a.W + w] : 0f;
    }

    // dx[n, c, h, w] = sum over (r, s) with h = oh*sh - ph + r*dh, w = ow*sw - pw + s*dw for an in-range (oh, ow)
    //                  of dcol[(c*R + r)*S + s][n*OHW + oh*OW + ow]
    // Col2im as a gather: one thread per dx element, no atomics. i indexes dx[N, C, H, W].
    public static void Col2ImGather(Index1D i, ArrayView<float> dcol, ArrayView<float> dx, ConvArgs a)
    {
        int w = i % a.W, h = (i / a.W) % a.H, ch = (i / (a.W * a.H)) % a.C, n = i / (a.W * a.H * a.C);
        int ohw = a.OH * a.OW, cols = a.N * ohw;
        float sum = 0f;
        for (int r = 0; r < a.R; r++)
        {
            int th = h + a.PadH - r * a.DilH;
            if (th < 0 || th % a.StrideH != 0) continue;
            int oh = th / a.StrideH;
            if (oh >= a.OH) continue;
            for (int s = 0; s < a.S; s++)
            {
                int tw = w + a.PadW - s * a.DilW;
                if (tw < 0 || tw % a.StrideW != 0) continue;
                int ow = tw / a.StrideW;
                if (ow >= a.OW) continue;
                sum += dcol[(long)((ch * a.R + r) * a.S + s) * cols + n * ohw + oh * a.OW + ow];
            }
        }
        dx[i] = sum;
    }

    // y[n, k, j] = t[k][n*OHW + j] (+ bias[k] when hasBias != 0)
    // Moves the GEMM result [K][N*OHW] into NCHW. i indexes y[N, K, OHW].
    public static void ColumnsToNchw(Index1D i, ArrayView<float> t, ArrayView<float> y, ArrayView<float> bias, int k, int ohw, int n, int hasBias)
    {
        int j = i % ohw, kk = (i / ohw) % k, nn = i / (ohw * k);
        float v = t[(long)kk * n * ohw + nn * ohw + j];
        y[i] = hasBias != 0 ? v + bias[kk] : v;
    }

    // t[k][n*OHW + j] = dy[n, k, j]
    // The inverse move: NCHW gradients into the column-major-over-samples layout the GEMMs read. i indexes dy.
    public static void NchwToColumns(Index1D i, ArrayView<float> dy, ArrayView<float> t, int k, int ohw, int n)
    {
        int j = i % ohw, kk = (i / ohw) % k, nn = i / (ohw * k);
        t[(long)kk * n * ohw + nn * ohw + j] = dy[i];
    }
}
