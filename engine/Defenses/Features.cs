using Perturb.Engine.Data;
using Perturb.Engine.Nn;

namespace Perturb.Engine.Defenses;

/// <summary>
/// Per-sample activations of one layer. <see cref="DefaultLayer"/>: the last convolutional features (the input of
/// the first Linear layer); <see cref="PenultimateLayer"/>: the input of the last node. On small networks such as
/// LeNet the last convolutional features separate a backdoor far better than the narrow fully connected layers
/// (measured on the synthetic shapes: spectral-signature recall 100% against 40% at LeNet's relu4).
/// </summary>
public static class Features
{
    /// <summary>The layer that feeds the first Linear layer (else the penultimate layer).</summary>
    public static string DefaultLayer(Model m)
    {
        int i = m.Nodes.ToList().FindIndex(n => n.Layer.Type == "Linear");
        if (i > 0 && m.Nodes[i].Inputs is [var j] && j >= 0) return m.Nodes[j].Layer.Name;
        return PenultimateLayer(m);
    }

    /// <summary>The name of the layer that feeds the model's last node.</summary>
    public static string PenultimateLayer(Model m)
    {
        var last = m.Nodes[^1];
        if (last.Inputs.Length != 1 || last.Inputs[0] < 0) throw new PerturbException($"cannot find the penultimate layer of a model whose last node '{last.Layer.Name}' reads {last.Inputs.Length} inputs");
        return m.Nodes[last.Inputs[0]].Layer.Name;
    }

    /// <summary>Features [N][D] of the data set in eval mode (layer: <see cref="DefaultLayer"/> when null).</summary>
    public static float[][] Extract(Model m, Dataset d, string? layer = null, int batchSize = 256)
    {
        layer ??= DefaultLayer(m);
        bool wasTraining = m.Training, wasFolding = m.FoldEval;
        m.Eval();
        m.FoldEval = false;   // the layer read may be a convolution that folding would merge with what follows it
        var be = m.Backend;
        var f = new float[d.Count][];
        for (int start = 0; start < d.Count; start += batchSize)
        {
            int n = Math.Min(batchSize, d.Count - start);
            using var x = be.FromArray(d.X.AsSpan(start * d.SampleSize, n * d.SampleSize), n, d.Channels, d.Height, d.Width);
            m.Forward(x);
            var a = m.NodeOutput(layer).ToArray();
            int dim = a.Length / n;
            for (int i = 0; i < n; i++) f[start + i] = a.AsSpan(i * dim, dim).ToArray();
        }
        m.ReleaseActivations();
        m.FoldEval = wasFolding;
        m.Train(wasTraining);
        return f;
    }
}

/// <summary>Which training samples a detector flags, with per-sample scores (higher: more suspicious).</summary>
public sealed record DetectionResult(string Method, int[] Flagged, double[] Scores)
{
    /// <summary>Precision and recall of the flagged set against the known poison (NaN where undefined).</summary>
    public (double Precision, double Recall) PrecisionRecall(bool[] poison)
    {
        int tp = Flagged.Count(i => poison[i]), pos = poison.Count(b => b);
        return (Flagged.Length == 0 ? double.NaN : (double)tp / Flagged.Length, pos == 0 ? double.NaN : (double)tp / pos);
    }
}

/// <summary>Small dense linear algebra on host feature rows.</summary>
static class Linalg
{
    public static double[] Mean(float[][] rows, int[] idx, int dim)
    {
        var mu = new double[dim];
        foreach (var i in idx) for (int j = 0; j < dim; j++) mu[j] += rows[i][j];
        for (int j = 0; j < dim; j++) mu[j] /= Math.Max(1, idx.Length);
        return mu;
    }

    /// <summary>Centred rows [idx.Length][dim].</summary>
    public static double[][] Centre(float[][] rows, int[] idx)
    {
        int dim = rows[idx[0]].Length;
        var mu = Mean(rows, idx, dim);
        return idx.Select(i => Enumerable.Range(0, dim).Select(j => rows[i][j] - mu[j]).ToArray()).ToArray();
    }

    /// <summary>The top k right singular vectors of M (rows x dim) by power iteration on M^T M with deflation.</summary>
    public static double[][] TopSingularVectors(double[][] m, int k, ulong seed, int iters = 100)
    {
        int dim = m[0].Length;
        var rng = new SplitMix64(seed);
        var vs = new List<double[]>();
        for (int c = 0; c < Math.Min(k, dim); c++)
        {
            var v = Enumerable.Range(0, dim).Select(_ => rng.Normal()).ToArray();
            for (int it = 0; it < iters; it++)
            {
                var w = new double[dim];
                foreach (var row in m)
                {
                    double p = Dot(row, v);
                    for (int j = 0; j < dim; j++) w[j] += p * row[j];
                }
                foreach (var u in vs) { double p = Dot(w, u); for (int j = 0; j < dim; j++) w[j] -= p * u[j]; }
                double nrm = Math.Sqrt(Dot(w, w));
                if (nrm < 1e-12) break;
                for (int j = 0; j < dim; j++) w[j] /= nrm;
                v = w;
            }
            vs.Add(v);
        }
        return vs.ToArray();
    }

    public static double Dot(double[] a, double[] b) { double s = 0; for (int i = 0; i < a.Length; i++) s += a[i] * b[i]; return s; }
}

/// <summary>
/// Spectral signatures (Tran et al. 2018): per class, centre the features, take the top singular vector, score each
/// sample by its squared projection on it, and flag the top <see cref="FlagFactor"/> x eps of the class, where eps is
/// the expected poison fraction of a poisoned class (the defender's assumed bound, as in the paper).
/// </summary>
public static class SpectralSignatures
{
    public const double FlagFactor = 1.5;

    public static DetectionResult Detect(float[][] features, int[] labels, int numClasses, double expectedPoisonRate, ulong seed = 0)
    {
        if (!(expectedPoisonRate > 0 && expectedPoisonRate < 1)) throw new PerturbException($"spectral signatures: expected poison rate must be in (0, 1), got {expectedPoisonRate}", 2);
        var scores = new double[labels.Length];
        var flagged = new List<int>();
        for (int c = 0; c < numClasses; c++)
        {
            var idx = Enumerable.Range(0, labels.Length).Where(i => labels[i] == c).ToArray();
            if (idx.Length < 2) continue;
            var m = Linalg.Centre(features, idx);
            var v = Linalg.TopSingularVectors(m, 1, seed + (ulong)c)[0];
            for (int i = 0; i < idx.Length; i++) { double p = Linalg.Dot(m[i], v); scores[idx[i]] = p * p; }
            int k = Math.Min(idx.Length, (int)Math.Round(FlagFactor * expectedPoisonRate * idx.Length));
            flagged.AddRange(idx.OrderByDescending(i => scores[i]).Take(k));
        }
        flagged.Sort();
        return new DetectionResult("spectral-signatures", flagged.ToArray(), scores);
    }
}

/// <summary>
/// Activation clustering (Chen et al. 2018): per class, project the centred features on their top
/// <paramref name="components"/> principal components, split them by 2-means, and flag the smaller cluster when its
/// share of the class is at most <paramref name="maxRelativeSize"/>.
/// </summary>
public static class ActivationClustering
{
    public static DetectionResult Detect(float[][] features, int[] labels, int numClasses, int components = 3, double maxRelativeSize = 0.35, ulong seed = 0)
    {
        if (components < 1) throw new PerturbException($"activation clustering: components must be at least 1, got {components}", 2);
        var scores = new double[labels.Length];
        var flagged = new List<int>();
        for (int c = 0; c < numClasses; c++)
        {
            var idx = Enumerable.Range(0, labels.Length).Where(i => labels[i] == c).ToArray();
            if (idx.Length < 4) continue;
            var m = Linalg.Centre(features, idx);
            var pcs = Linalg.TopSingularVectors(m, components, seed + (ulong)c * 31);
            var z = m.Select(row => pcs.Select(v => Linalg.Dot(row, v)).ToArray()).ToArray();
            var assign = KMeans2(z, seed + (ulong)c);
            int n1 = assign.Count(a => a == 1), n0 = idx.Length - n1;
            int small = n1 <= n0 ? 1 : 0;
            double rel = Math.Min(n0, n1) / (double)idx.Length;
            for (int i = 0; i < idx.Length; i++) scores[idx[i]] = assign[i] == small ? 1 - rel : rel;
            if (rel > 0 && rel <= maxRelativeSize)
                for (int i = 0; i < idx.Length; i++) if (assign[i] == small) flagged.Add(idx[i]);
        }
        flagged.Sort();
        return new DetectionResult("activation-clustering", flagged.ToArray(), scores);
    }

    /// <summary>2-means (Lloyd) with a k-means++ style start: the first centre at a seeded point, the second at the farthest point.</summary>
    static int[] KMeans2(double[][] z, ulong seed)
    {
        int n = z.Length;
        var c0 = (double[])z[new SplitMix64(seed).NextInt(n)].Clone();
        var c1 = (double[])z.OrderByDescending(p => Dist(p, c0)).First().Clone();
        var a = new int[n];
        for (int it = 0; it < 50; it++)
        {
            bool changed = false;
            for (int i = 0; i < n; i++) { int k = Dist(z[i], c1) < Dist(z[i], c0) ? 1 : 0; if (k != a[i]) { a[i] = k; changed = true; } }
            foreach (var (cen, k) in new[] { (c0, 0), (c1, 1) })
            {
                var members = Enumerable.Range(0, n).Where(i => a[i] == k).ToArray();
                if (members.Length == 0) continue;
                for (int j = 0; j < cen.Length; j++) cen[j] = members.Average(i => z[i][j]);
            }
            if (!changed && it > 0) break;
        }
        return a;
    }

    static double Dist(double[] a, double[] b) { double s = 0; for (int i = 0; i < a.Length; i++) s += (a[i] - b[i]) * (a[i] - b[i]); return s; }
}
