using Perturb.Engine.Nn;

namespace Perturb.Engine.Attacks.Gradient;

/// <summary>
/// Carlini-Wagner L2. Optimises w in tanh space, x' = (tanh(w) + 1) / 2, minimising ||x' - x||_2^2 + c * f(x') with f
/// the CW margin loss (IBackend.CwMarginLoss, confidence <see cref="Kappa"/>), by Adam on w (on the device, the
/// backend's Adam op, lr <see cref="LearningRate"/>). A binary search over c per sample (<see cref="BinarySteps"/>
/// rounds from <see cref="InitialC"/>; c times 10 until a first success, then bisection) runs on the host between
/// rounds; inside a round nothing leaves the device. The best (lowest L2) successful x' per sample (successful: margin below -kappa) is kept on the
/// device across all iterations and rounds; samples never fooled come back unchanged. No budget (eps null).
/// Early abort (<see cref="AbortEarly"/>, as Carlini's code and Foolbox): every ceil(steps / 10) iterations the chunk's
/// summed loss sum_r ||x'_r - x_r||^2 + c_r f(x'_r) is read back, and the round ends when it is not below 0.9999 times
/// its value at the previous check: a round whose iterates have settled costs a tenth of the steps, not all of them.
/// </summary>
public sealed class CarliniWagner : Attack
{
    public override string Name => "cw";
    public override bool NeedsEpsilon => false;
    [Setting("steps", "Adam iterations per binary-search round", Min = 1)]
    public int Steps { get; init; } = 100;
    [Setting("binary_steps", "rounds of the binary search over c", Min = 1)]
    public int BinarySteps { get; init; } = 9;
    [Setting("initial_c", "the first trade-off constant c", Min = 0, MinOpen = true)]
    public float InitialC { get; init; } = 1e-2f;
    [Setting("kappa", "confidence margin", Min = 0)]
    public float Kappa { get; init; }
    [Setting("learning_rate", "Adam learning rate in tanh space", Min = 0, MinOpen = true)]
    public float LearningRate { get; init; } = 0.01f;
    [Setting("abort_early", "end a binary-search round when its summed loss fell by less than 0.01% over the last tenth of the steps (Carlini's code, Foolbox)")]
    public bool AbortEarly { get; init; } = true;

    /// <summary>
    /// Test instrumentation: called after every iteration with the chunk, the binary-search round, the iteration, and
    /// the device tensors of each row's L2 distance and success (1/0) at that iterate. Null (the default) costs nothing.
    /// </summary>
    internal Action<AttackBatch, int, int, Tensor, Tensor>? Observe { get; init; }

    protected override void Validate()
    {
        if (Steps < 1) throw new PerturbException($"{Name}: steps must be at least 1, got {Steps}", 2);
        if (BinarySteps < 1) throw new PerturbException($"{Name}: binary search steps must be at least 1, got {BinarySteps}", 2);
        if (!(InitialC > 0)) throw new PerturbException($"{Name}: initial c must be positive, got {InitialC}", 2);
        if (!(Kappa >= 0)) throw new PerturbException($"{Name}: kappa must be non-negative, got {Kappa}", 2);
        if (!(LearningRate > 0)) throw new PerturbException($"{Name}: learning rate must be positive, got {LearningRate}", 2);
    }

    protected override void AttackChunk(AttackBatch b)
    {
        var be = b.Be; int rows = b.Rows, d = b.Cols;
        var shape = b.Shape(rows);
        var x0 = b.X0.ToArray();
        var w0 = x0.Select(v => (float)Math.Atanh(Math.Clamp(2.0 * v - 1, -1 + 1e-6, 1 - 1e-6))).ToArray();
        using var w = be.Allocate(shape);
        using var m = be.Allocate(shape);
        using var v = be.Allocate(shape);
        using var t = be.Allocate(shape);
        using var xp = be.Allocate(shape);
        using var diff = be.Allocate(shape);
        using var g = be.Allocate(shape);
        using var scratch = be.Allocate(shape);
        using var cT = be.Allocate(rows);
        using var succ = be.Allocate(rows);
        using var l2 = be.Allocate(rows);
        using var better = be.Allocate(rows);
        using var bestL2 = be.Allocate(rows);
        using var anySucc = be.Allocate(rows);
        be.Fill(bestL2, 1e10f);
        be.Copy(b.X0, b.Adv); // best so far: the clean image
        var c = Enumerable.Repeat((double)InitialC, rows).ToArray();
        var lower = new double[rows];
        var upper = Enumerable.Repeat(1e10, rows).ToArray();
        int checkEvery = (Steps + 9) / 10;
        for (int round = 0; round < BinarySteps; round++)
        {
            double lastCheck = double.PositiveInfinity;
            be.Upload(w, w0);
            be.Fill(m, 0f); be.Fill(v, 0f); be.Fill(anySucc, 0f);
            be.Upload(cT, c.Select(x => (float)x).ToArray());
            for (int it = 1; it <= Steps; it++)
            {
                // x' = (tanh(w) + 1) / 2
                be.ActivationForward(Activation.Tanh, 0f, w, t);
                b.Affine(t, 0.5f, 0.5f, xp);
                var dx = b.Gradient(xp, LossKind.CwMargin, cT, Kappa); // c * d f / d x'
                bool check = AbortEarly && (it - 1) % checkEvery == 0;
                var f = check ? b.Loss.ToArray() : null; // f(x') per row, before SuccessMask reuses the loss buffer
                // Keep the lowest-L2 successful point.
                b.SuccessMask(b.Logits!, succ, Kappa);
                be.Copy(xp, diff);
                be.Axpy(-1f, b.X0, diff);
                be.ReduceRows(Reduction.L2, diff, l2, rows, d);
                be.Greater(bestL2, l2, better);
                be.Mul(better, succ, better);
                b.SelectRows(bestL2, l2, better);
                b.SelectRows(b.Adv, xp, better);
                be.Where(succ, succ, anySucc, anySucc, rows, 1); // anySucc |= succ
                Observe?.Invoke(b, round, it, l2, succ);
                if (check)
                {
                    var dist = l2.ToArray();
                    double loss = 0;
                    for (int r = 0; r < rows; r++) loss += (double)dist[r] * dist[r] + c[r] * f![r];
                    if (!(loss <= 0.9999 * lastCheck)) break;
                    lastCheck = loss;
                }
                // d/dw = (2 (x' - x) + c df/dx') * (1 - tanh(w)^2) / 2
                be.Copy(dx, g);
                be.Axpy(2f, diff, g);
                be.Mul(t, t, scratch);
                b.Affine(scratch, -0.5f, 0.5f, scratch);
                be.Mul(g, scratch, g);
                be.AdamUpdate(w, g, m, v, LearningRate, 0.9f, 0.999f, 1e-8f, 0f, it);
                b.Affine(b.StepCount, 1f, 1f, b.StepCount);
            }
            if (round == BinarySteps - 1) break;
            var ok = anySucc.ToArray();
            for (int r = 0; r < rows; r++)
            {
                if (ok[r] > 0.5f)
                {
                    upper[r] = Math.Min(upper[r], c[r]);
                    c[r] = (lower[r] + upper[r]) / 2;
                }
                else
                {
                    lower[r] = Math.Max(lower[r], c[r]);
                    c[r] = upper[r] < 1e9 ? (lower[r] + upper[r]) / 2 : c[r] * 10;
                }
            }
        }
    }
}
