namespace Perturb.Engine;

/// <summary>
/// Philox4x32-10 (Salmon et al., SC'11), counter-based: the same (key, counter) gives the same four words anywhere.
/// The ILGPU kernels carry a copy of this arithmetic (kernels cannot call into the engine); both must stay equal.
/// </summary>
public static class Philox
{
    const uint M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9, W1 = 0xBB67AE85;

    public static (uint, uint, uint, uint) Block(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1)
    {
        for (int r = 0; r < 10; r++)
        {
            ulong p0 = (ulong)M0 * c0, p1 = (ulong)M1 * c2;
            uint hi0 = (uint)(p0 >> 32), lo0 = (uint)p0, hi1 = (uint)(p1 >> 32), lo1 = (uint)p1;
            uint n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
            c0 = n0; c1 = n1; c2 = n2; c3 = n3;
            k0 += W0; k1 += W1;
        }
        return (c0, c1, c2, c3);
    }

    /// <summary>Uniform in [0,1) for element index i, as IBackend.RandomUniform defines it.</summary>
    public static float Uniform(ulong seed, ulong offset, long i)
    {
        ulong c = offset + (ulong)i;
        var (w0, _, _, _) = Block((uint)c, (uint)(c >> 32), 0, 0, (uint)seed, (uint)(seed >> 32));
        return (w0 >> 8) * (1.0f / 16777216f);
    }

    /// <summary>Standard normal for element index i, as IBackend.RandomNormal defines it.</summary>
    public static float Normal(ulong seed, ulong offset, long i)
    {
        ulong c = offset + (ulong)i;
        var (w0, w1, _, _) = Block((uint)c, (uint)(c >> 32), 0, 0, (uint)seed, (uint)(seed >> 32));
        float u1 = ((w0 >> 8) + 1) * (1.0f / 16777216f);
        float u2 = (w1 >> 8) * (1.0f / 16777216f);
        return MathF.Sqrt(-2f * MathF.Log(u1)) * MathF.Cos(2f * MathF.PI * u2);
    }
}
