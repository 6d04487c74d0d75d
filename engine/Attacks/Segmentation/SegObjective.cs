using Perturb.Engine.Nn;

namespace Perturb.Engine.Attacks.Segmentation;

/// <summary>
/// The loss a segmentation PGD row ascends (<see cref="SegPgdLoss"/>, resolved: not auto), its input gradient, and
/// each row's ascended value after every <see cref="Gradient"/> (<see cref="RowLoss"/>, for the APGD schedule):
/// margin, sum_j min(goal lead, kappa); ce and dice, the batch's <see cref="PixelLoss"/> times its row scale (+1
/// away from the clean prediction, -1 toward a target); flip, minus the cross-entropy toward the inverted clean
/// prediction.
/// </summary>
public sealed class SegObjective : IDisposable
{
    readonly SegBatch _b;
    readonly SegPgdLoss _loss;
    readonly float _kappa;
    readonly PixelLoss? _flip;
    public double[] RowLoss { get; }

    public SegObjective(SegBatch b, SegPgdLoss loss, float kappa)
    {
        if (loss == SegPgdLoss.Auto) throw new ArgumentException("resolve auto first", nameof(loss));
        _b = b; _loss = loss; _kappa = kappa;
        RowLoss = new double[b.Rows];
        if (loss == SegPgdLoss.Flip)
            _flip = new PixelLoss(b.Be, b.Rows, b.K, b.H, b.W, Inverted(b.CleanPrediction), Enumerable.Repeat(-1f, b.Rows).ToArray());
    }

    /// <summary>The inverted mask: nucleus (any class above 0) becomes background, background becomes class 1.</summary>
    public static int[] Inverted(int[] mask) => mask.Select(c => c > 0 ? 0 : 1).ToArray();

    public Tensor Gradient(Tensor x)
    {
        if (_loss == SegPgdLoss.Margin) return _b.MarginGradient(x, _kappa, RowLoss);
        var pl = _flip ?? _b.Loss;
        var g = _b.Gradient(x, _loss == SegPgdLoss.Dice ? SegLossKind.Dice : SegLossKind.CrossEntropy, pl);
        var l = pl.Loss.ToArray();
        double sign = _flip != null || _b.Targeted ? -1 : 1;
        for (int r = 0; r < RowLoss.Length; r++) RowLoss[r] = sign * l[r];
        return g;
    }

    public void Dispose() => _flip?.Dispose();
}

/// <summary>
/// Auto-PGD's step-size schedule (Croce and Hein 2020), per row, for a run of n iterations: checkpoints every k
/// iterations, k starting at 0.22 n and shrinking by 0.03 n to at least 0.06 n. At a checkpoint a row halves its step
/// (and its caller sends it back to its highest-loss point) when its loss rose in at most 75% of the iterations
/// since the last checkpoint, or when its best loss did not improve since then and its step was not halved there.
/// </summary>
public sealed class StepHalving
{
    int _k, _counter;
    readonly int _decr, _kMin;
    readonly double[] _best, _bestAtCheck, _last;
    readonly int[] _rose;
    readonly bool[] _halvedAtCheck;
    /// <summary>Each row's step size now.</summary>
    public double[] Step { get; }

    public StepHalving(int n, double[] step, double[] loss)
    {
        _k = Math.Max((int)(0.22 * n), 1); _decr = Math.Max((int)(0.03 * n), 1); _kMin = Math.Max((int)(0.06 * n), 1);
        Step = (double[])step.Clone();
        _best = (double[])loss.Clone(); _bestAtCheck = (double[])loss.Clone(); _last = (double[])loss.Clone();
        _rose = new int[step.Length]; _halvedAtCheck = new bool[step.Length];
    }

    /// <summary>Records row r's loss after an iteration; true when it is the row's best so far.</summary>
    public bool Record(int r, double loss)
    {
        if (loss > _last[r]) _rose[r]++;
        _last[r] = loss;
        if (!(loss > _best[r])) return false;
        _best[r] = loss;
        return true;
    }

    /// <summary>Ends an iteration: at a checkpoint, halves the steps of the rows that stalled and returns them (else none).</summary>
    public List<int> Checkpoint()
    {
        var halved = new List<int>();
        if (++_counter < _k) return halved;
        for (int r = 0; r < Step.Length; r++)
        {
            bool halve = _rose[r] <= 0.75 * _k || (!_halvedAtCheck[r] && _bestAtCheck[r] >= _best[r]);
            _halvedAtCheck[r] = halve;
            _bestAtCheck[r] = _best[r];
            _rose[r] = 0;
            if (!halve) continue;
            Step[r] /= 2;
            halved.Add(r);
        }
        _counter = 0;
        _k = Math.Max(_k - _decr, _kMin);
        return halved;
    }
}
