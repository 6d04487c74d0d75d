namespace Perturb.Engine.Attacks.Search;

/// <summary>
/// Boundary attack (Brendel, Rauber and Bethge 2018), L2, label-only: a random walk along the decision boundary toward
/// the original. Each step from the current adversarial x_a (distance r to the original x): an orthogonal step, a
/// Gaussian direction made orthogonal to x - x_a and scaled to spherical * r, put back on the sphere of radius r
/// around x (the factor 1/sqrt(1 + spherical^2)) and clipped; then a step toward x by source * r. Both candidates are
/// queried (2 queries a step); the second replaces x_a when it is adversarial. The step sizes adapt as in the
/// reference: every 10 steps, over the last 100 orthogonal candidates, a success rate above 0.5 multiplies both by 1.5
/// and below 0.2 divides them; over the last 30 steps toward x, above 0.25 multiplies the source step, below 0.1 divides it.
/// </summary>
public sealed class Boundary : DecisionAttack
{
    public override string Name => "boundary";
    [Setting("spherical_step", "initial orthogonal step, relative to the distance", Min = 0, MinOpen = true)]
    public double SphericalStep { get; init; } = 1e-2;
    [Setting("source_step", "initial step toward the original, relative to the distance", Min = 0, MinOpen = true)]
    public double SourceStep { get; init; } = 1e-2;
    [Setting("adaptation", "factor by which the steps grow or shrink", Min = 1, MinOpen = true)]
    public double Adaptation { get; init; } = 1.5;

    protected override IEnumerable<Probe> Attack(Image s)
    {
        int d = s.X.Length;
        double sph = SphericalStep, src = SourceStep;
        var sphStats = new Queue<bool>(); var srcStats = new Queue<bool>();
        var x = s.X;
        for (int step = 1; s.Left >= 2; step++)
        {
            s.Steps++;
            var xa = s.Best!;
            var toSrc = new double[d]; double r = 0;
            for (int j = 0; j < d; j++) { toSrc[j] = x[j] - xa[j]; r += toSrc[j] * toSrc[j]; }
            r = Math.Sqrt(r);
            if (!(r > 0)) yield break;
            // Orthogonal perturbation of norm sph * r.
            var eta = new double[d]; double dot = 0;
            for (int j = 0; j < d; j++) { eta[j] = s.Rng.Normal(); dot += eta[j] * toSrc[j] / r; }
            double en = 0;
            for (int j = 0; j < d; j++) { eta[j] -= dot * toSrc[j] / r; en += eta[j] * eta[j]; }
            en = Math.Sqrt(en);
            double D = 1 / Math.Sqrt(sph * sph + 1);
            var spherical = new float[d];
            for (int j = 0; j < d; j++) spherical[j] = (float)Math.Clamp(x[j] + D * (eta[j] * sph * r / en - toSrc[j]), 0, 1);
            // Toward the original by src * r, measured from the sphere.
            double nn = 0;
            for (int j = 0; j < d; j++) { double v = x[j] - spherical[j]; nn += v * v; }
            nn = Math.Sqrt(nn);
            double len = nn > 0 ? Math.Max(0, src * r + nn - r) / nn : 0;
            var cand = new float[d];
            for (int j = 0; j < d; j++) cand[j] = (float)Math.Clamp(spherical[j] + len * (x[j] - spherical[j]), 0, 1);
            var p = new Probe().Add(spherical).Add(cand);
            yield return p;
            if (p.Adversarial.Length < 2) yield break;
            Push(sphStats, p.Adversarial[0], 100);
            if (p.Adversarial[0]) Push(srcStats, p.Adversarial[1], 30);
            if (p.Adversarial[1]) Offer(s, cand);
            if (step % 10 != 0) continue;
            if (sphStats.Count == 100)
            {
                double rate = sphStats.Count(v => v) / 100.0;
                if (rate > 0.5) { sph *= Adaptation; src *= Adaptation; }
                else if (rate < 0.2) { sph /= Adaptation; src /= Adaptation; }
                if (rate > 0.5 || rate < 0.2) sphStats.Clear();
            }
            if (srcStats.Count == 30)
            {
                double rate = srcStats.Count(v => v) / 30.0;
                if (rate > 0.25) src *= Adaptation;
                else if (rate < 0.1) src /= Adaptation;
                if (rate > 0.25 || rate < 0.1) srcStats.Clear();
            }
        }
    }

    static void Push(Queue<bool> q, bool v, int cap) { q.Enqueue(v); while (q.Count > cap) q.Dequeue(); }
}
