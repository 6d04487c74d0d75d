using System.Diagnostics;
using Perturb.Engine.Attacks;
using Perturb.Engine.Attacks.Patch;
using Perturb.Engine.Attacks.Search;
using Perturb.Engine.Data;
using Perturb.Engine.Nn;
using Perturb.Engine.Poison;
using Perturb.Engine.Report;

namespace Perturb.Engine.Sweep;

/// <summary>What a sweep cell of an experiment needs besides its settings.</summary>
public enum ExperimentNeeds
{
    /// <summary>A trained model (fooling images: the model alone; the cell's data set only fixes nothing but the id).</summary>
    Model,
    /// <summary>A trained model, the data set's training split to learn on and the spec's split to evaluate on (the patch).</summary>
    ModelAndTrainSplit,
    /// <summary>An architecture (the "arch" key) to train from: the training split to poison, the spec's split to test on.</summary>
    Architecture,
}

/// <summary>What a cell of an experiment runs with.</summary>
public sealed record ExperimentInput(IBackend Backend, Model? Model, Dataset? Train, Dataset Eval, string ModelName, string DataName, string Split, string? Arch);

/// <summary>
/// An experiment a sweep runs that is not an <see cref="IAttack"/> (patch, fooling images, poisoning). Its settings
/// are the [Setting] descriptors of <see cref="Type"/>, exactly as for an attack: the sweep keys, ranges, defaults,
/// the row's params and the table in docs/sweeps.md come from them.
/// </summary>
public sealed class ExperimentInfo
{
    internal ExperimentInfo(string name, Type type, ExperimentNeeds needs, int rows, string help, Action<object> check,
        Func<object, ExperimentInput, List<ResultRow>> run)
    {
        Name = name; Type = type; Needs = needs; Rows = rows; Help = help; _check = check; _run = run;
        Settings = Setting.Of(type);
    }

    readonly Action<object> _check;
    readonly Func<object, ExperimentInput, List<ResultRow>> _run;
    public string Name { get; }
    /// <summary>The settings class (its [Setting] properties).</summary>
    public Type Type { get; }
    public ExperimentNeeds Needs { get; }
    /// <summary>Result rows of one cell.</summary>
    public int Rows { get; }
    public string Help { get; }
    public IReadOnlyList<Setting> Settings { get; }
    public Setting? Find(string name) => Settings.FirstOrDefault(s => s.Name == name);

    /// <summary>The settings object with the given values (the rest at their defaults), checked alone and together.</summary>
    public object Create(IReadOnlyDictionary<string, object>? values)
    {
        var o = Setting.Create(Type, values, Name);
        _check(o);
        return o;
    }

    /// <summary>Runs one cell; its rows carry the experiment's params (no cell id yet).</summary>
    public List<ResultRow> Run(object settings, ExperimentInput input) => _run(settings, input);
}

/// <summary>The experiments sweeps run besides the attacks of <see cref="AttackRegistry"/>. To add one, add a line here.</summary>
public static class ExperimentRegistry
{
    /// <summary>The key naming the architecture of a poisoning cell (a preset; a string, so not a [Setting]).</summary>
    public const string ArchKey = "arch";

    /// <summary>The presets a poisoning cell may train: the classifiers (the U-Nets segment).</summary>
    public static IEnumerable<string> Archs => Presets.Names.Where(n => !Presets.IsUnet(n));

    public static readonly IReadOnlyList<ExperimentInfo> Experiments = new ExperimentInfo[]
    {
        new("patch", typeof(PatchOptions), ExperimentNeeds.ModelAndTrainSplit, 2,
            "adversarial patch learned on the training split, evaluated on the spec's split; a second row for the natural control patch",
            o => ((PatchOptions)o).Check(), RunPatch),
        new("fooling", typeof(FoolingImages), ExperimentNeeds.Model, 1,
            "evolved fooling images for every class of the model (the data set is not used)", _ => { }, RunFooling),
        new("badnets", typeof(BadNetsSettings), ExperimentNeeds.Architecture, 1,
            "BadNets backdoor: a poisoned and a clean model trained from the architecture", o => ((BadNetsSettings)o).Check(), RunBadNets),
        new("label-flip", typeof(LabelFlipSettings), ExperimentNeeds.Architecture, 1,
            "label flipping at one rate: one model trained from the architecture", _ => { }, RunLabelFlip),
        new("generative", typeof(GenerativePoisonOptions), ExperimentNeeds.Architecture, 1,
            "generative poisoning: victims trained from the architecture on clean + poison, clean, and clean + random noise", _ => { }, RunGenerative),
    };

    public static IEnumerable<string> Names => Experiments.Select(e => e.Name);

    public static ExperimentInfo? Find(string name) => Experiments.FirstOrDefault(e => e.Name == name);

    /// <summary>The table of every experiment's settings, as docs/sweeps.md holds it between the markers below.</summary>
    public static string SettingsMarkdown()
    {
        var sb = new System.Text.StringBuilder();
        sb.Append("| experiment | sweep key | value | default | meaning |\n|---|---|---|---|---|\n");
        foreach (var e in Experiments)
        {
            if (e.Needs == ExperimentNeeds.Architecture)
                sb.Append($"| {e.Name} | `{ArchKey}` | {string.Join(", ", Archs)} | required | the architecture every model of the cell is trained from |\n");
            foreach (var st in e.Settings)
                sb.Append($"| {e.Name} | `{st.Name}` | {st.Kind} | {st.DefaultText} | {st.Help.Replace("|", "\\|")} |\n");
        }
        return sb.ToString();
    }

    public const string TableBegin = "<!-- experiments table: generated from the experiments' [Setting] descriptors (ExperimentRegistry.SettingsMarkdown); do not edit by hand -->";
    public const string TableEnd = "<!-- end of experiments table -->";

    static List<ResultRow> RunPatch(object s, ExperimentInput c)
    {
        var o = (PatchOptions)s;
        var r = AdversarialPatch.Run(c.Model!, c.Train!, c.Eval, o);
        return ResultRow.FromPatch(r, o, c.ModelName, c.DataName, c.Split, c.Backend.Name).ToList();
    }

    static List<ResultRow> RunFooling(object s, ExperimentInput c)
    {
        var f = (FoolingImages)s;
        return new() { ResultRow.FromFooling(f.Run(c.Model!), f, c.ModelName, c.DataName, c.Backend.Name) };
    }

    /// <summary>The data a poisoning cell trains on and tests on, and its model maker (same architecture and seed for every model).</summary>
    static (DataSplits Splits, Func<Model> Make) Poisoning(ExperimentInput c, PoisonTraining t)
    {
        var tr = c.Train!;
        int classes = Math.Max(tr.NumClasses, c.Eval.NumClasses);
        var names = tr.ClassNames.Length >= classes ? tr.ClassNames : c.Eval.ClassNames;
        Model Make() { var m = Presets.Create(c.Arch!, c.Backend, tr.Channels, tr.Height, tr.Width, classes, t.Seed); m.ClassNames = names; return m; }
        return (new DataSplits(c.DataName, tr, null, c.Eval), Make);
    }

    static List<ResultRow> RunBadNets(object s, ExperimentInput c)
    {
        var b = (BadNetsSettings)s;
        var sw = Stopwatch.StartNew();
        var (splits, make) = Poisoning(c, b);
        var trigger = b.MakeTrigger(splits.Train.Channels);
        trigger.Validate(splits.Train.Channels, splits.Train.Height, splits.Train.Width);
        var rep = PoisonExperiments.BadNets(make, splits, trigger, b.Rate, b.Target, b.Training);
        return new() { ResultRow.FromBadNets(rep, b, c.Arch, c.DataName, c.Split, c.Backend.Name, sw.Elapsed.TotalSeconds) };
    }

    static List<ResultRow> RunLabelFlip(object s, ExperimentInput c)
    {
        var l = (LabelFlipSettings)s;
        var sw = Stopwatch.StartNew();
        var (splits, make) = Poisoning(c, l);
        var rep = PoisonExperiments.LabelFlip(make, splits, new[] { l.Rate }, l.Training);
        return new() { ResultRow.FromLabelFlip(rep, l, c.Eval.Count, c.Arch, c.DataName, c.Split, c.Backend.Name, sw.Elapsed.TotalSeconds) };
    }

    static List<ResultRow> RunGenerative(object s, ExperimentInput c)
    {
        var g = (GenerativePoisonOptions)s;
        var sw = Stopwatch.StartNew();
        var (splits, make) = Poisoning(c, g);
        var r = GenerativePoisoning.Run(make, splits, g, g.Training);
        return new() { ResultRow.FromGenerative(r, g, c.Eval.Count, c.Arch, c.DataName, c.Split, c.Backend.Name, sw.Elapsed.TotalSeconds) };
    }
}
