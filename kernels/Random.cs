using ILGPU;
using ILGPU.Algorithms;

namespace Perturb.Kernels;

/// <summary>
/// Philox4x32-10 (Salmon et al., SC'11), counter-based: the same (key, counter) gives the same four words anywhere.
/// The one copy of this arithmetic: the kernels below and the CPU backend (and the engine's host-side draws) call it.
/// Element i of a stream uses counter (lo32(offset + i), hi32(offset + i), 0, 0) and key (lo32(seed), hi32(seed)).
/// </summary>
public static class Philox
{
    const uint M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9, W1 = 0xBB67AE85;
    const float Inv24 = 1.0f / 16777216f;

    // Ten rounds on (c0, c1, c2, c3) with key (k0, k1); the four output words.
    public static void Rounds(ref uint c0, ref uint c1, ref uint c2, ref uint c3, uint k0, uint k1)
    {
        for (int r = 0; r < 10; r++)
        {
            ulong p0 = (ulong)M0 * c0, p1 = (ulong)M1 * c2;
            uint hi0 = (uint)(p0 >> 32), lo0 = (uint)p0, hi1 = (uint)(p1 >> 32), lo1 = (uint)p1;
            uint n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
            c0 = n0; c1 = n1; c2 = n2; c3 = n3;
            k0 += W0; k1 += W1;
        }
    }

    /// <summary>The four words of one block (host use: tests, known-answer checks).</summary>
    public static (uint, uint, uint, uint) Block(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1)
    {
        Rounds(ref c0, ref c1, ref c2, ref c3, k0, k1);
        return (c0, c1, c2, c3);
    }

    // The first two words for stream element counter = offset + i under key seed.
    public static void Words(ulong counter, ulong seed, out uint w0, out uint w1)
    {
        uint c0 = (uint)counter, c1 = (uint)(counter >> 32), c2 = 0, c3 = 0;
        Rounds(ref c0, ref c1, ref c2, ref c3, (uint)seed, (uint)(seed >> 32));
        w0 = c0; w1 = c1;
    }

    // Uniform in [0, 1): (w >> 8) * 2^-24.
    public static float ToUniform(uint w) => (w >> 8) * Inv24;

    // Uniform in (0, 1]: ((w >> 8) + 1) * 2^-24 (safe under a logarithm).
    public static float ToUniformOpen(uint w) => ((w >> 8) + 1) * Inv24;

    /// <summary>Uniform in [0,1) for element index i, as IBackend.RandomUniform defines it.</summary>
    public static float Uniform(ulong seed, ulong offset, long i)
    {
        Words(offset + (ulong)i, seed, out uint w0, out _);
        return ToUniform(w0);
    }

    /// <summary>
    /// Standard normal for element index i, as IBackend.RandomNormal defines it, with the host's MathF (the CPU
    /// backend's arithmetic; the kernel <see cref="Random.Normal"/> uses XMath on the same words).
    /// </summary>
    public static float Normal(ulong seed, ulong offset, long i)
    {
        Words(offset + (ulong)i, seed, out uint w0, out uint w1);
        float u1 = ToUniformOpen(w0), u2 = ToUniform(w1);
        return MathF.Sqrt(-2f * MathF.Log(u1)) * MathF.Cos(2f * MathF.PI * u2);
    }
}

/// <summary>Random-number kernels over <see cref="Philox"/>, one thread per element.</summary>
public static class Random
{
    const float TwoPi = 2f * 3.14159265358979323846f;

    // t[i] = (w0 >> 8) * 2^-24, uniform in [0, 1).
    public static void Uniform(Index1D i, ArrayView<float> t, ulong seed, ulong offset)
    {
        Philox.Words(offset + (ulong)i.X, seed, out uint w0, out _);
        t[i] = Philox.ToUniform(w0);
    }

    // t[i] = mean + std * sqrt(-2 ln u1) * cos(2 pi u2), u1 = ((w0 >> 8) + 1) * 2^-24, u2 = (w1 >> 8) * 2^-24.
    public static void Normal(Index1D i, ArrayView<float> t, ulong seed, ulong offset, float mean, float std)
    {
        Philox.Words(offset + (ulong)i.X, seed, out uint w0, out uint w1);
        float u1 = Philox.ToUniformOpen(w0), u2 = Philox.ToUniform(w1);
        t[i] = mean + std * (XMath.Sqrt(-2f * XMath.Log(u1)) * XMath.Cos(TwoPi * u2));
    }

    // Inverted dropout: mask[i] = u_i >= p ? 1/(1-p) : 0 (u_i as in Uniform), y[i] = x[i] * mask[i].
    public static void Dropout(Index1D i, ArrayView<float> x, ArrayView<float> y, ArrayView<float> mask, float p, ulong seed, ulong offset)
    {
        Philox.Words(offset + (ulong)i.X, seed, out uint w0, out _);
        float u = Philox.ToUniform(w0);
        float m = u >= p ? 1f / (1f - p) : 0f;
        mask[i] = m;
        y[i] = x[i] * m;
    }
}
