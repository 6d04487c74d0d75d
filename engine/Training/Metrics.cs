namespace Perturb.Engine.Training;

/// <summary>Classification metrics over host arrays.</summary>
public static class Metrics
{
    /// <summary>
    /// Area under the ROC curve of scores for the positive class: the Mann-Whitney U statistic divided by
    /// (positives x negatives), ties counted as one half (average ranks). NaN when one class is absent.
    /// </summary>
    public static double Auc(ReadOnlySpan<double> scores, ReadOnlySpan<bool> positive)
    {
        int n = scores.Length;
        var idx = new int[n];
        for (int i = 0; i < n; i++) idx[i] = i;
        var s = scores.ToArray();
        Array.Sort(idx, (a, b) => s[a].CompareTo(s[b]));
        double rankSumPos = 0; long pos = 0;
        for (int i = 0; i < n;)
        {
            int j = i;
            while (j + 1 < n && s[idx[j + 1]] == s[idx[i]]) j++;
            double avgRank = (i + j) / 2.0 + 1; // ranks are 1-based
            for (int k = i; k <= j; k++) if (positive[idx[k]]) { rankSumPos += avgRank; pos++; }
            i = j + 1;
        }
        long neg = n - pos;
        if (pos == 0 || neg == 0) return double.NaN;
        return (rankSumPos - pos * (pos + 1) / 2.0) / ((double)pos * neg);
    }

    /// <summary>
    /// AUC of a classifier: for two classes, the AUC of class 1's probability; for more, the mean of the one-vs-rest
    /// AUCs of every class present (MedMNIST's convention). Also returns each class's one-vs-rest AUC.
    /// </summary>
    public static (double Auc, double[] PerClass) Auc(float[][] probs, int[] labels, int numClasses)
    {
        int n = labels.Length;
        var per = new double[numClasses];
        var scores = new double[n]; var pos = new bool[n];
        for (int c = 0; c < numClasses; c++)
        {
            for (int i = 0; i < n; i++) { scores[i] = probs[i][c]; pos[i] = labels[i] == c; }
            per[c] = Auc(scores, pos);
        }
        if (numClasses == 2) return (per[1], per);
        var present = per.Where(double.IsFinite).ToArray();
        return (present.Length == 0 ? double.NaN : present.Average(), per);
    }
}
