using Perturb.Engine.Attacks.Gradient;
using Perturb.Engine.Attacks.Search;
using Perturb.Engine.Attacks.Segmentation;

namespace Perturb.Engine.Attacks;

/// <summary>
/// An attack as the CLI and sweeps see it: its name, whether it takes budgets, and its settings (described once, by
/// <see cref="SettingAttribute"/> on the class; see the top of Settings.cs).
/// </summary>
public sealed class AttackInfo
{
    internal AttackInfo(Type type, string family)
    {
        Type = type; Family = family;
        switch (Activator.CreateInstance(type))
        {
            case IAttack a: Name = a.Name; NeedsEpsilon = a.NeedsEpsilon; break;
            case SegAttack a: Name = a.Name; NeedsEpsilon = a.NeedsEpsilon; break;
            default: throw new ArgumentException($"{type.Name} is neither an IAttack nor a SegAttack");
        }
        Settings = Setting.Of(type);
    }
    public string Name { get; }
    public Type Type { get; }
    /// <summary>"gradient", "search" or "segmentation" (models that output class logits per pixel).</summary>
    public string Family { get; }
    public bool IsSegmentation => Family == "segmentation";
    public bool NeedsEpsilon { get; }
    public IReadOnlyList<Setting> Settings { get; }
    static readonly System.Reflection.PropertyInfo MaxBatchProperty = typeof(Attack).GetProperty(nameof(Attack.MaxBatch))!;
    static readonly System.Reflection.PropertyInfo SegMaxBatchProperty = typeof(SegAttack).GetProperty(nameof(SegAttack.MaxBatch))!;
    public Setting? Find(string name) => Settings.FirstOrDefault(s => s.Name == name);

    /// <summary>
    /// A new attack with the given settings (by snake_case name; values as <see cref="Setting.Parse(string, string)"/>
    /// gives them); settings not given keep the attack's defaults. A name the attack does not have is a usage error.
    /// An <see cref="IAttack"/>, or a <see cref="SegAttack"/> for the segmentation family.
    /// </summary>
    public object New(IReadOnlyDictionary<string, object>? values = null, int maxBatch = 256)
    {
        var a = Setting.Create(Type, values, Name);
        if (a is Attack) MaxBatchProperty.SetValue(a, maxBatch);
        if (a is SegAttack) SegMaxBatchProperty.SetValue(a, maxBatch);
        return a;
    }

    /// <summary><see cref="New"/> for a classification attack.</summary>
    public IAttack Create(IReadOnlyDictionary<string, object>? values = null, int maxBatch = 256) =>
        New(values, maxBatch) as IAttack ?? throw new PerturbException($"{Name} attacks segmentation models (class logits per pixel), not classifiers", 2);

    /// <summary><see cref="New"/> for a segmentation attack.</summary>
    public SegAttack CreateSegmentation(IReadOnlyDictionary<string, object>? values = null, int maxBatch = 64) =>
        New(values, maxBatch) as SegAttack ?? throw new PerturbException($"{Name} attacks classifiers, not segmentation models", 2);
}

/// <summary>Every attack <c>perturb attack NAME</c> and sweeps can run, by name.</summary>
public static class AttackRegistry
{
    /// <summary>The attacks, in the order help and docs list them. To add one, add a line here.</summary>
    public static readonly IReadOnlyList<AttackInfo> Attacks = new AttackInfo[]
    {
        new(typeof(Fgsm), "gradient"), new(typeof(Bim), "gradient"), new(typeof(Pgd), "gradient"), new(typeof(MiFgsm), "gradient"),
        new(typeof(DeepFool), "gradient"), new(typeof(CarliniWagner), "gradient"), new(typeof(Jsma), "gradient"),
        new(typeof(EotPgd), "gradient"), new(typeof(UniversalPerturbation), "gradient"),
        new(typeof(OnePixel), "search"), new(typeof(Square), "search"), new(typeof(PixelSaliency), "search"),
        new(typeof(WhiteBalance), "search"), new(typeof(Moea), "search"),
        new(typeof(Apgd), "gradient"), new(typeof(ApgdDlr), "gradient"), new(typeof(ApgdT), "gradient"), new(typeof(FabT), "gradient"),
        new(typeof(AutoAttack), "gradient"),
        new(typeof(HopSkipJump), "search"), new(typeof(Boundary), "search"),
        new(typeof(SegFgsm), "segmentation"), new(typeof(SegPgd), "segmentation"), new(typeof(Dag), "segmentation"), new(typeof(Asma), "segmentation"),
    };

    public static IEnumerable<string> AllNames => Attacks.Select(a => a.Name);
    public static IEnumerable<string> Names => Attacks.Where(a => a.Family == "gradient").Select(a => a.Name);
    /// <summary>The score-based search attacks (forward passes only, queries counted); fooling images have their own command.</summary>
    public static IEnumerable<string> SearchNames => Attacks.Where(a => a.Family == "search").Select(a => a.Name);
    /// <summary>The attacks on segmentation models (<c>perturb attack seg-pgd</c> and the rest; sweeps run them on mask data).</summary>
    public static IEnumerable<AttackInfo> Segmentation => Attacks.Where(a => a.IsSegmentation);

    public static AttackInfo Get(string name) =>
        Attacks.FirstOrDefault(a => a.Name == name) ?? throw new PerturbException($"unknown attack '{name}' (choose {string.Join(", ", AllNames)})", 2);

    /// <summary>
    /// The attack called <paramref name="name"/> with the given settings (snake_case names). Example:
    /// <code>
    /// var attack = AttackRegistry.Create("pgd", new Dictionary&lt;string, object&gt; { ["steps"] = 20, ["seed"] = 1UL });
    /// var result = attack.Run(model, data.X, data.Labels, AttackGoal.Parse("least-likely", data.Count, 1),
    ///     new[] { 1 / 255f, 2 / 255f, 4 / 255f, 8 / 255f });
    /// </code>
    /// Code that knows the attack can equally write <c>new Pgd { Steps = 20, Seed = 1 }</c>.
    /// </summary>
    public static IAttack Create(string name, IReadOnlyDictionary<string, object>? values = null, int maxBatch = 256) =>
        Get(name).Create(values, maxBatch);

    /// <summary>
    /// The table of every attack's settings (sweep key, <c>perturb attack</c> option, kind, default, meaning) that
    /// docs/sweeps.md holds between <see cref="TableBegin"/> and <see cref="TableEnd"/>; a test checks it matches.
    /// </summary>
    public static string SettingsMarkdown()
    {
        var sb = new System.Text.StringBuilder();
        sb.Append("| attack | sweep key | `perturb attack` option | value | default | meaning |\n|---|---|---|---|---|---|\n");
        foreach (var a in Attacks)
            foreach (var st in a.Settings)
                sb.Append($"| {a.Name} | `{st.Name}` | `{st.Option}` | {st.Kind} | {st.DefaultText} | {st.Help.Replace("|", "\\|")} |\n");
        return sb.ToString();
    }

    public const string TableBegin = "<!-- settings table: generated from the attacks' [Setting] descriptors (AttackRegistry.SettingsMarkdown); do not edit by hand -->";
    public const string TableEnd = "<!-- end of settings table -->";
}
