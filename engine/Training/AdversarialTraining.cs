using System.Diagnostics;
using Perturb.Engine.Attacks;
using Perturb.Engine.Data;
using Perturb.Engine.Nn;

namespace Perturb.Engine.Training;

/// <summary>PGD adversarial training settings (Linf, pixel units).</summary>
public sealed record AdversarialOptions
{
    public float Eps { get; init; } = 8f / 255;
    public int Steps { get; init; } = 7;
    /// <summary>Absolute step size; default 2.5 * eps / steps (Madry et al.).</summary>
    public float? StepSize { get; init; }
    public bool RandomStart { get; init; } = true;

    public float Step => StepSize ?? 2.5f * Eps / Steps;

    public void Validate()
    {
        if (!(Eps > 0 && Eps <= 1)) throw new PerturbException($"adversarial training: eps must be in (0, 1], got {Eps}", 2);
        if (Steps < 1) throw new PerturbException($"adversarial training: steps must be at least 1, got {Steps}", 2);
        if (StepSize is { } s && !(s > 0)) throw new PerturbException($"adversarial training: step size must be positive, got {s}", 2);
    }
}

/// <summary>
/// PGD adversarial training (Madry et al. 2018): every batch is replaced by Linf PGD adversarials made against the
/// current model (eval mode, input-only backward, random start in the eps-box, fused sign step + projection on the
/// device), then the model takes one optimiser step on them in train mode.
/// </summary>
public static class AdversarialTraining
{
    public static TrainResult Fit(Model model, Dataset train, Dataset? val, TrainOptions o, AdversarialOptions a,
        Action<int, int, int>? progress = null, Action<EpochStats>? epochDone = null)
    {
        a.Validate();
        var r = Trainer.Fit(model, train, val, o with { KeepBest = false }, progress, epochDone, (x, y, batchNo) =>
        {
            var adv = model.Backend.Allocate(x.Shape);
            model.Eval();
            Perturb(model, x, y, adv, a, o.Seed ^ 0xAD7E_0000UL, batchNo);
            return adv;
        });
        return r;
    }

    /// <summary>
    /// Linf PGD from x (labels y) into <paramref name="adv"/> against the model as it is (call in eval mode):
    /// adv = clamp(x + U(-eps, eps), 0, 1), then Steps times adv = clamp(proj(adv + step * sign(dCE/dadv)), 0, 1).
    /// </summary>
    public static void Perturb(Model model, Tensor x, Tensor y, Tensor adv, AdversarialOptions a, ulong seed, ulong stream)
    {
        var be = model.Backend;
        int n = x.N, d = x.PerSample;
        using var step = be.Allocate(n); be.Fill(step, a.Step);
        using var eps = be.Allocate(n); be.Fill(eps, a.Eps);
        be.Copy(x, adv);
        if (a.RandomStart)
        {
            using var noise = be.Allocate(x.Shape);
            be.RandomUniform(noise, seed, stream * (ulong)x.Length);
            be.Scale(2 * a.Eps, noise, noise);
            be.Axpy(1f, noise, adv);
            using var shift = be.Allocate(x.Shape); be.Fill(shift, -a.Eps);
            be.Axpy(1f, shift, adv);
            be.Clamp(adv, 0f, 1f, adv);
        }
        for (int t = 0; t < a.Steps; t++)
        {
            var logits = model.Forward(adv);
            using var loss = Losses.CrossEntropy(be, logits, y, 1f);
            var g = model.Backward(loss.Grad!, BackwardMode.InputOnly)!;
            be.AttackStepLinf(adv, x, g, step, eps, n, d);
        }
        model.ReleaseActivations();
    }

    /// <summary>Accuracy under Linf PGD (the attack engine's PGD, <paramref name="steps"/> steps, random start) at eps.</summary>
    public static double RobustAccuracy(Model model, Dataset d, float eps, int steps, ulong seed)
    {
        var attack = new Perturb.Engine.Attacks.Gradient.Pgd { Steps = steps, Seed = seed, EarlyStop = true };
        return attack.Run(model, d.X, d.Labels, AttackGoal.Untargeted, new[] { eps }).Results[0].RobustAccuracy;
    }

    /// <summary>
    /// The adversarial-versus-standard comparison: a standard model made by <paramref name="makeStandard"/> (same
    /// architecture, data and seed) trained with <paramref name="o"/> and no adversarials, then both models' clean
    /// and PGD-robust test accuracy (PGD with twice the training steps, at the training eps).
    /// </summary>
    public static AdversarialComparison CompareWithStandard(Model trained, Func<Model> makeStandard, DataSplits splits, TrainOptions o,
        AdversarialOptions a, Action<string>? log = null)
    {
        using var std = makeStandard();
        log?.Invoke("training the standard model with the same seed for comparison");
        Trainer.Fit(std, splits.Train, null, o with { KeepBest = false });
        int evalSteps = 2 * a.Steps;
        return new AdversarialComparison(a, evalSteps,
            Evaluator.Evaluate(trained, splits.Test).Accuracy, RobustAccuracy(trained, splits.Test, a.Eps, evalSteps, o.Seed),
            Evaluator.Evaluate(std, splits.Test).Accuracy, RobustAccuracy(std, splits.Test, a.Eps, evalSteps, o.Seed));
    }
}

/// <summary>Clean and PGD-robust test accuracy of an adversarially trained model and of its standard twin.</summary>
public sealed record AdversarialComparison(AdversarialOptions Options, int EvalSteps, double CleanAccuracy, double RobustAccuracy,
    double StandardCleanAccuracy, double StandardRobustAccuracy)
{
    public string Summary =>
        $"PGD-{EvalSteps} eps {Options.Eps:G3}: adversarially trained: clean {CleanAccuracy:P2}, robust {RobustAccuracy:P2}; standard: clean {StandardCleanAccuracy:P2}, robust {StandardRobustAccuracy:P2}";

    public System.Text.Json.Nodes.JsonObject ToJson() => new()
    {
        ["method"] = "pgd", ["eps"] = Options.Eps, ["steps"] = Options.Steps, ["step_size"] = Options.Step, ["eval_steps"] = EvalSteps,
        ["clean_accuracy"] = CleanAccuracy, ["robust_accuracy"] = RobustAccuracy,
        ["standard_clean_accuracy"] = StandardCleanAccuracy, ["standard_robust_accuracy"] = StandardRobustAccuracy,
    };

    /// <summary>Writes adversarial.json into <paramref name="dir"/>.</summary>
    public void Save(string dir)
    {
        Directory.CreateDirectory(dir);
        IO.AtomicFile.WriteText(Path.Combine(dir, "adversarial.json"), ToJson().ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n");
    }
}
