using System.Text.Json.Nodes;
using Perturb.Engine.Attacks;
using Perturb.Engine.Attacks.Patch;
using Perturb.Engine.Attacks.Search;
using Perturb.Engine.Poison;

namespace Perturb.Engine.Report;

// The rows of the experiments that are not an IAttack (patch, fooling images, poisoning), as the demo and sweeps
// write them. Params hold every setting of the experiment as it ran (from its [Setting] descriptors), then its own
// figures; the columns' meaning per experiment is in docs/sweeps.md.
public sealed partial record ResultRow
{
    /// <summary>
    /// The patch row and the natural-control row. Patch: clean accuracy without a patch, robust accuracy with the
    /// learned patch, success the share of non-target images now called the target. The control row pastes a natural
    /// patch of the same size.
    /// </summary>
    public static IEnumerable<ResultRow> FromPatch(PatchResult r, PatchOptions o, string? model, string? data, string? split, string? device, string? cell = null)
    {
        var prm = Setting.Params(o);
        prm["patch_side"] = r.Side; prm["auc"] = D(r.Learned.Auc); prm["n_not_target"] = r.Learned.NonTarget;
        yield return new ResultRow
        {
            Cell = cell, Model = model, Data = data, Split = split, Attack = "patch", Targeted = true, Params = prm, N = r.Learned.N,
            CleanAccuracy = r.Clean.Accuracy, RobustAccuracy = r.Learned.Accuracy, SuccessRate = r.Learned.TargetedSuccess,
            Seconds = r.Seconds, Device = device, Seed = o.Seed,
        };
        var cp = Setting.Params(o);
        cp["patch_side"] = r.Side; cp["auc"] = D(r.Control.Auc); cp["n_not_target"] = r.Control.NonTarget;
        yield return new ResultRow
        {
            Cell = cell, Model = model, Data = data, Split = split, Attack = "patch-control", Targeted = true, Params = cp, N = r.Control.N,
            CleanAccuracy = r.Clean.Accuracy, RobustAccuracy = r.Control.Accuracy, SuccessRate = r.Control.TargetedSuccess, Device = device, Seed = o.Seed,
        };
    }

    /// <summary>
    /// Fooling images: n is the number of classes asked for, success the share of them reached at the target
    /// confidence, mean queries the model queries of the whole run per class; params add the classes reached, the
    /// mean and lowest best confidence and the generations run.
    /// </summary>
    public static ResultRow FromFooling(FoolingResult r, FoolingImages f, string? model, string? data, string? device, string? cell = null)
    {
        var prm = Setting.Params(f);
        int reached = r.ReachedAt.Count(g => g >= 0);
        prm["classes_reached"] = reached;
        prm["mean_best_confidence"] = D(r.BestConfidence.Average());
        prm["min_best_confidence"] = D(r.BestConfidence.Min());
        prm["generations"] = r.Generations;
        return new ResultRow
        {
            Cell = cell, Model = model, Data = data, Attack = "fooling", Targeted = true, Params = prm, N = r.Classes.Length,
            SuccessRate = (double)reached / r.Classes.Length, MeanQueries = (double)r.Queries / r.Classes.Length,
            Seconds = r.Seconds, Device = device, Seed = r.Seed,
        };
    }

    /// <summary>
    /// BadNets: clean accuracy of the poisoned model on the clean test images, success its attack success rate on
    /// the triggered test images of the other classes (n of them); params add the clean twin's figures.
    /// </summary>
    public static ResultRow FromBadNets(BadNetsReport rep, BadNetsSettings s, string? model, string? data, string? split, string? device,
        double seconds, string? cell = null)
    {
        var prm = Setting.Params(s);
        prm["poisoned_samples"] = rep.PoisonCount; prm["baseline_clean_accuracy"] = rep.BaselineCleanAccuracy;
        prm["baseline_attack_success"] = D(rep.BaselineAttackSuccessRate);
        return new ResultRow
        {
            Cell = cell, Model = model, Data = data, Split = split, Attack = "badnets", Targeted = true, Params = prm, N = rep.TriggeredTestCount,
            CleanAccuracy = rep.CleanAccuracy, SuccessRate = rep.AttackSuccessRate, Seconds = seconds, Device = device, Seed = s.Seed,
        };
    }

    /// <summary>Label flipping at one rate: clean accuracy of the model trained on the flipped labels (n test images); params add the labels flipped and the AUC.</summary>
    public static ResultRow FromLabelFlip(LabelFlipReport rep, LabelFlipSettings s, int n, string? model, string? data, string? split, string? device,
        double seconds, string? cell = null)
    {
        var p = rep.Points.Single();
        var prm = Setting.Params(s);
        prm["flipped"] = p.Flipped; prm["auc"] = D(p.Auc);
        return new ResultRow
        {
            Cell = cell, Model = model, Data = data, Split = split, Attack = "label-flip", Params = prm, N = n, CleanAccuracy = p.CleanAccuracy,
            Seconds = seconds, Device = device, Seed = s.Seed,
        };
    }

    /// <summary>
    /// Generative poisoning: clean accuracy of the victim trained with the poison (n test images); params add the
    /// clean victim's and the random-noise control victim's accuracy, the drops, and how often the crafting victim
    /// puts the poison (and the control) in the generator's target class.
    /// </summary>
    public static ResultRow FromGenerative(GenerativePoisonReport r, GenerativePoisonOptions g, int n, string? model, string? data, string? split,
        string? device, double seconds, string? cell = null)
    {
        var prm = Setting.Params(g);
        prm["n_poison"] = r.PoisonCount; prm["baseline_clean_accuracy"] = r.CleanAccuracy; prm["control_clean_accuracy"] = r.ControlAccuracy;
        prm["accuracy_drop"] = r.AccuracyDrop; prm["drop_versus_control"] = r.DropVersusControl; prm["max_linf"] = r.MaxLinf;
        prm["poison_target_rate"] = r.PoisonTargetRate; prm["control_target_rate"] = r.ControlTargetRate;
        return new ResultRow
        {
            Cell = cell, Model = model, Data = data, Split = split, Attack = "generative", Params = prm, N = n, CleanAccuracy = r.PoisonedAccuracy,
            Seconds = seconds, Device = device, Seed = g.Seed,
        };
    }
}
