using Perturb.Engine;
using Perturb.Engine.Attacks;
using Perturb.Engine.Attacks.Gradient;
using Perturb.Engine.Nn;

namespace Perturb.Tests.Attacks;

/// <summary>
/// JSMA on the device (stop test, one-hot gradients and the pair step as backend ops) gives the host algorithm's
/// results bit for bit on cpu: the same images, successes, steps and gradients, targeted and untargeted, theta up
/// and down, and for a one-output model.
/// </summary>
[Collection("trained-lenet")]
public class JsmaDeviceTests(TrainedLeNet f)
{
    [Theory, InlineData(true, 1f), InlineData(false, -1f)]
    public void DeviceJsmaGivesTheHostAlgorithmsResults(bool targeted, float theta)
    {
        var d = f.Take(6);
        var goal = targeted ? AttackGoal.Random(4) : AttackGoal.Untargeted;
        var dev = new Jsma { Gamma = 0.1f, Theta = theta }.Run(f.Model, d.X, d.Labels, goal).Results[0];
        var host = new HostJsma { Gamma = 0.1f, Theta = theta }.Run(f.Model, d.X, d.Labels, goal).Results[0];
        Assert.Equal(host.Adversarial, dev.Adversarial);
        Assert.Equal(host.Success, dev.Success);
        Assert.Equal(host.Steps, dev.Steps);
        Assert.Equal(host.Gradients, dev.Gradients);
        Assert.Contains(dev.Steps, s => s > 1);
    }

    [Fact]
    public void DeviceJsmaOnAOneOutputModelGivesTheHostAlgorithmsResults()
    {
        using var be = new Perturb.Engine.Backends.CpuBackend();
        using var m = Presets.Create("lenet", be, 1, 28, 28, 2, 5, singleOutput: true);
        m.Eval();
        var rng = new Random(3);
        var x = Enumerable.Range(0, 4 * 784).Select(_ => (float)rng.NextDouble()).ToArray();
        var y = new[] { 0, 1, 0, 1 };
        var dev = new Jsma { Gamma = 0.02f }.Run(m, x, y, AttackGoal.Untargeted).Results[0];
        var host = new HostJsma { Gamma = 0.02f }.Run(m, x, y, AttackGoal.Untargeted).Results[0];
        Assert.Equal(host.Adversarial, dev.Adversarial);
        Assert.Equal(host.Steps, dev.Steps);
        Assert.Contains(dev.Steps, s => s > 1);
    }
}

/// <summary>The host JSMA before the device pair step (the reference): logits and both gradients downloaded every iteration, the pair search on the host.</summary>
internal sealed class HostJsma : Attack
{
    public override string Name => "jsma-host";
    public override bool NeedsEpsilon => false;
    // The settings of Jsma, unchecked here (Jsma's own tests check them).
    public float Theta { get; init; } = 1f;
    public float Gamma { get; init; } = 0.1f;
    protected override void Validate() { }

    protected override void AttackChunk(AttackBatch b)
    {
        var be = b.Be; int rows = b.Rows, d = b.Cols, k = b.Outputs, nc = b.Classes;
        var adv = b.X0.ToArray();
        var target = new int[rows];
        for (int r = 0; r < rows; r++)
        {
            if (b.Targeted) { target[r] = b.LossLabels[r]; continue; }
            var z = Losses.ClassLogits(b.CleanLogits, r, k);
            target[r] = Enumerable.Range(0, nc).Where(c => c != b.TrueLabels[r]).OrderByDescending(c => z[c]).ThenBy(c => c).First();
        }
        var domain = new bool[(long)rows * d];
        for (long i = 0; i < domain.Length; i++) domain[i] = Theta > 0 ? adv[i] < 1f : adv[i] > 0f;
        var changed = new int[rows];
        var done = new bool[rows];
        var steps = new int[rows];
        int maxChanged = (int)Math.Floor(Gamma * d);
        using var dz = be.Allocate(rows, k);
        var dzHost = new float[rows * k];
        while (true)
        {
            be.Upload(b.Adv, adv);
            var logits = b.Forward(b.Adv).ToArray();
            bool any = false;
            for (int r = 0; r < rows; r++)
            {
                if (done[r]) continue;
                int pred = Losses.PredictRow(logits, r, k);
                if (pred == target[r] || changed[r] + 2 > maxChanged) done[r] = true;
                else any = true;
            }
            if (!any) break;
            float[] alpha, beta;
            if (k == 1)
            {
                be.Fill(dz, 1f);
                var g = b.Model.Backward(dz, BackwardMode.InputOnly)!.ToArray();
                b.CountGradients();
                alpha = new float[g.Length]; beta = new float[g.Length];
                for (int r = 0; r < rows; r++)
                {
                    float s = target[r] == 1 ? 1f : -1f;
                    for (int j = 0; j < d; j++) { alpha[(long)r * d + j] = s * g[(long)r * d + j]; beta[(long)r * d + j] = -s * g[(long)r * d + j]; }
                }
            }
            else
            {
                Array.Clear(dzHost);
                for (int r = 0; r < rows; r++) dzHost[r * k + target[r]] = 1f;
                be.Upload(dz, dzHost);
                alpha = b.Model.Backward(dz, BackwardMode.InputOnly)!.ToArray();
                for (int i = 0; i < dzHost.Length; i++) dzHost[i] = 1f - dzHost[i];
                be.Upload(dz, dzHost);
                beta = b.Model.Backward(dz, BackwardMode.InputOnly)!.ToArray();
                b.CountGradients(2);
            }
            Parallel.For(0, rows, r =>
            {
                if (done[r]) return;
                steps[r]++;
                long o = (long)r * d;
                float sgn = Theta > 0 ? 1f : -1f;
                double best = 0; int bp = -1, bq = -1;
                for (int p = 0; p < d; p++)
                {
                    if (!domain[o + p]) continue;
                    float ap = sgn * alpha[o + p], bpv = sgn * beta[o + p];
                    for (int q = p + 1; q < d; q++)
                    {
                        if (!domain[o + q]) continue;
                        float a = ap + sgn * alpha[o + q], bb = bpv + sgn * beta[o + q];
                        if (a <= 0 || bb >= 0) continue;
                        double sc = (double)a * -bb;
                        if (sc > best) { best = sc; bp = p; bq = q; }
                    }
                }
                if (bp < 0) { done[r] = true; return; }
                foreach (var p in new[] { bp, bq })
                {
                    adv[o + p] = Math.Clamp(adv[o + p] + Theta, 0f, 1f);
                    domain[o + p] = false;
                }
                changed[r] += 2;
            });
        }
        be.Upload(b.Adv, adv);
        b.StepsHost = steps;
    }
}
