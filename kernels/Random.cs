using ILGPU;
using ILGPU.Algorithms;

namespace Perturb.Kernels;

/// <summary>
/// Philox4x32-10, a copy of Perturb.Engine.Philox's arithmetic (kernels cannot call the engine): both must stay equal.
/// Element i uses counter (lo32(offset + i), hi32(offset + i), 0, 0) and key (lo32(seed), hi32(seed)).
/// </summary>
public static class Random
{
    const uint M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9, W1 = 0xBB67AE85;
    const float Inv24 = 1.0f / 16777216f;
    const float TwoPi = 2f * 3.14159265358979323846f;

    // Ten Philox rounds on counter (c0, c1, 0, 0); returns the first two output words.
    static void Block(ulong counter, ulong seed, out uint w0, out uint w1)
    {
        uint c0 = (uint)counter, c1 = (uint)(counter >> 32), c2 = 0, c3 = 0;
        uint k0 = (uint)seed, k1 = (uint)(seed >> 32);
        for (int r = 0; r < 10; r++)
        {
            ulong p0 = (ulong)M0 * c0, p1 = (ulong)M1 * c2;
            uint hi0 = (uint)(p0 >> 32), lo0 = (uint)p0, hi1 = (uint)(p1 >> 32), lo1 = (uint)p1;
            uint n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
            c0 = n0; c1 = n1; c2 = n2; c3 = n3;
            k0 += W0; k1 += W1;
        }
        w0 = c0; w1 = c1;
    }

    // t[i] = (w0 >> 8) * 2^-24, uniform in [0, 1).
    public static void Uniform(Index1D i, ArrayView<float> t, ulong seed, ulong offset)
    {
        Block(offset + (ulong)i.X, seed, out uint w0, out _);
        t[i] = (w0 >> 8) * Inv24;
    }

    // t[i] = mean + std * sqrt(-2 ln u1) * cos(2 pi u2), u1 = ((w0 >> 8) + 1) * 2^-24, u2 = (w1 >> 8) * 2^-24.
    public static void Normal(Index1D i, ArrayView<float> t, ulong seed, ulong offset, float mean, float std)
    {
        Block(offset + (ulong)i.X, seed, out uint w0, out uint w1);
        float u1 = ((w0 >> 8) + 1) * Inv24, u2 = (w1 >> 8) * Inv24;
        t[i] = mean + std * (XMath.Sqrt(-2f * XMath.Log(u1)) * XMath.Cos(TwoPi * u2));
    }

    // Inverted dropout: mask[i] = u_i >= p ? 1/(1-p) : 0 (u_i as in Uniform), y[i] = x[i] * mask[i].
    public static void Dropout(Index1D i, ArrayView<float> x, ArrayView<float> y, ArrayView<float> mask, float p, ulong seed, ulong offset)
    {
        Block(offset + (ulong)i.X, seed, out uint w0, out _);
        float u = (w0 >> 8) * Inv24;
        float m = u >= p ? 1f / (1f - p) : 0f;
        mask[i] = m;
        y[i] = x[i] * m;
    }
}
