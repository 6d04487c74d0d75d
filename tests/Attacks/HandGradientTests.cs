using Perturb.Engine;
using Perturb.Engine.Attacks;
using Perturb.Engine.Attacks.Gradient;
using Perturb.Engine.Backends;
using Perturb.Engine.Nn;

namespace Perturb.Tests.Attacks;

/// <summary>
/// FGSM and one PGD step against a closed form: a linear model z = W x + b, whose cross-entropy gradient is
/// dL/dx = W^T (softmax(W x + b) - onehot(y)).
/// </summary>
public class HandGradientTests
{
    static readonly double[] W = { 0.9, -0.4, 0.3, 0.1, -0.5, 0.8, -0.2, 0.6, 0.2, 0.3, -0.7, -0.9 }; // 3 x 4
    static readonly double[] Bias = { 0.05, -0.1, 0.2 };
    static readonly float[] X = { 0.2f, 0.5f, 0.9f, 0.4f, 0.7f, 0.1f, 0.3f, 0.6f, 0.5f, 0.5f, 0.02f, 0.98f };
    static readonly int[] Y = { 0, 1, 2 };

    static Model Linear(IBackend be)
    {
        var g = new GraphBuilder(4);
        g.Add("fc", new Linear(4, 3), GraphBuilder.Input);
        var m = g.Build(be, 1);
        foreach (var (name, p) in m.NamedParameters())
            be.Upload(p.Value, Ref.F(name.EndsWith("weight") ? W : Bias));
        return m;
    }

    static double[] Grad(int i, int? target = null)
    {
        var z = new double[3];
        for (int k = 0; k < 3; k++) { z[k] = Bias[k]; for (int j = 0; j < 4; j++) z[k] += W[k * 4 + j] * X[i * 4 + j]; }
        double mx = z.Max(), s = z.Sum(v => Math.Exp(v - mx));
        var p = z.Select(v => Math.Exp(v - mx) / s).ToArray();
        int lab = target ?? Y[i];
        p[lab] -= 1;
        var g = new double[4];
        for (int j = 0; j < 4; j++) for (int k = 0; k < 3; k++) g[j] += W[k * 4 + j] * p[k];
        return target.HasValue ? g.Select(v => -v).ToArray() : g; // targeted descends toward the target
    }

    [Fact]
    public void FgsmLinfMatchesTheClosedForm()
    {
        using var be = new CpuBackend();
        using var m = Linear(be);
        const float eps = 0.1f;
        var r = new Fgsm().Run(m, X, Y, AttackGoal.Untargeted, new[] { eps });
        for (int i = 0; i < 3; i++)
        {
            var g = Grad(i);
            for (int j = 0; j < 4; j++)
            {
                double want = Math.Clamp(X[i * 4 + j] + eps * Math.Sign(g[j]), 0, 1);
                Assert.Equal(want, r.Results[0].Adversarial[i * 4 + j], 6);
            }
        }
    }

    [Fact]
    public void FgmL2AndTargetedFgsmMatchTheClosedForm()
    {
        using var be = new CpuBackend();
        using var m = Linear(be);
        const float eps = 0.05f; // small: no clamping at 0 or 1 for these pixels except none
        var r = new Fgsm { Norm = Norm.L2 }.Run(m, X, Y, AttackGoal.Untargeted, new[] { eps });
        var t = new Fgsm().Run(m, X, Y, AttackGoal.TargetAll(1, 3), new[] { eps });
        for (int i = 0; i < 3; i++)
        {
            var g = Grad(i);
            double n = Math.Sqrt(g.Sum(v => v * v));
            var gt = Grad(i, 1);
            for (int j = 0; j < 4; j++)
            {
                Assert.Equal(Math.Clamp(X[i * 4 + j] + eps * g[j] / n, 0, 1), r.Results[0].Adversarial[i * 4 + j], 5);
                Assert.Equal(Math.Clamp(X[i * 4 + j] + eps * Math.Sign(gt[j]), 0, 1), t.Results[0].Adversarial[i * 4 + j], 6);
            }
        }
    }

    [Fact]
    public void OnePgdStepMatchesTheClosedForm()
    {
        using var be = new CpuBackend();
        using var m = Linear(be);
        const float eps = 0.08f, a = 0.03f;
        // No random start, one step of size a, then projection onto the eps-ball: a < eps, so just x + a sign(g).
        var r = new Pgd { Steps = 1, StepSize = a, RandomStart = false, EarlyStop = false }.Run(m, X, Y, AttackGoal.Untargeted, new[] { eps });
        var l2 = new Pgd { Norm = Norm.L2, Steps = 1, StepSize = a, RandomStart = false, EarlyStop = false }.Run(m, X, Y, AttackGoal.Untargeted, new[] { eps });
        for (int i = 0; i < 3; i++)
        {
            var g = Grad(i);
            double n = Math.Sqrt(g.Sum(v => v * v));
            for (int j = 0; j < 4; j++)
            {
                Assert.Equal(Math.Clamp(X[i * 4 + j] + a * Math.Sign(g[j]), 0, 1), r.Results[0].Adversarial[i * 4 + j], 6);
                Assert.Equal(Math.Clamp(X[i * 4 + j] + a * g[j] / n, 0, 1), l2.Results[0].Adversarial[i * 4 + j], 5);
            }
            Assert.Equal(1, r.Results[0].Steps[i]);
            Assert.Equal(1, r.Results[0].Gradients[i]);
        }
    }
}

public class AttackRegistryTests
{
    [Fact]
    public void EveryNameMakesItsAttack()
    {
        foreach (var name in AttackRegistry.Names)
        {
            var a = AttackRegistry.Create(name, AttackRegistry.Get(name).Find("steps") != null ? new Dictionary<string, object> { ["seed"] = 3UL, ["steps"] = 7 } : new Dictionary<string, object> { ["seed"] = 3UL });
            Assert.Equal(name, a.Name);
            Assert.Equal(name is not ("deepfool" or "cw" or "jsma"), a.NeedsEpsilon);
        }
        Assert.Equal(7, ((Pgd)AttackRegistry.Create("pgd", new Dictionary<string, object> { ["steps"] = 7 })).Steps);
        Assert.Equal(0.25f, ((Bim)AttackRegistry.Create("bim")).RelStepSize);
        Assert.Throws<PerturbException>(() => AttackRegistry.Create("nope"));
        Assert.Equal(GoalKind.LeastLikely, AttackGoal.Parse("least-likely", 3, 0).Kind);
        Assert.Equal(new[] { 2, 2, 2 }, AttackGoal.Parse("2", 3, 0).Targets);
        Assert.Throws<PerturbException>(() => AttackGoal.Parse("x", 3, 0));
    }
}
