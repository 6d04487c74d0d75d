using Perturb.Engine.Attacks.Gradient;
using Perturb.Engine.Attacks.Search;
using Perturb.Engine.Nn;

namespace Perturb.Engine.Attacks;

/// <summary>
/// Settings the CLI collects for <c>perturb attack NAME</c>. Null means the attack's own default; settings an attack
/// does not use are ignored.
/// </summary>
public sealed record AttackSettings
{
    public Norm? Norm { get; init; }
    public int? Steps { get; init; }
    /// <summary>Absolute step size in pixel units (PGD, BIM, EOT-PGD, MI-FGSM).</summary>
    public float? StepSize { get; init; }
    /// <summary>Step size as a fraction of eps (PGD, BIM, EOT-PGD, UAP).</summary>
    public float? RelStepSize { get; init; }
    public int? Restarts { get; init; }
    public bool? RandomStart { get; init; }
    public bool? EarlyStop { get; init; }
    public ulong Seed { get; init; }
    /// <summary>Most rows (samples times epsilons) on the device at once.</summary>
    public int MaxBatch { get; init; } = 256;
    /// <summary>Confidence margin (C&amp;W; PGD with the CW loss).</summary>
    public float? Kappa { get; init; }
    public int? BinarySteps { get; init; }
    public float? InitialC { get; init; }
    public float? LearningRate { get; init; }
    public float? Momentum { get; init; }
    public int? TopK { get; init; }
    public float? Overshoot { get; init; }
    public float? Theta { get; init; }
    public float? Gamma { get; init; }
    /// <summary>EOT-PGD: transformations per step.</summary>
    public int? EotSamples { get; init; }
    public EotRanges? EotRanges { get; init; }
    public double? FoolingTarget { get; init; }
    public int? MaxPasses { get; init; }
    /// <summary>Search attacks: pixels changed (one-pixel), population, iterations (generations), query budget (Square).</summary>
    public int? Pixels { get; init; }
    public int? Population { get; init; }
    public int? Iterations { get; init; }
    public int? Queries { get; init; }
    /// <summary>Fooling images: the classes to fool (null: all).</summary>
    public int[]? Classes { get; init; }
    /// <summary>Search attacks: most candidate images per forward pass.</summary>
    public int? QueryBatch { get; init; }
    /// <summary>pixel-saliency: candidate positions (0: automatic).</summary>
    public int? Candidates { get; init; }
    /// <summary>AutoAttack: standard, plus or rand.</summary>
    public AutoAttackVersion? Version { get; init; }
}

/// <summary>Makes an attack from its CLI name.</summary>
public static class AttackRegistry
{
    public static readonly string[] Names = { "fgsm", "bim", "pgd", "mifgsm", "deepfool", "cw", "jsma", "eot-pgd", "uap", "apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "autoattack" };
    /// <summary>The score-based search attacks (forward passes only, queries counted); fooling images have their own command.</summary>
    public static readonly string[] SearchNames = { "one-pixel", "square", "pixel-saliency", "white-balance", "moea", "hopskipjump", "boundary" };
    public static IEnumerable<string> AllNames => Names.Concat(SearchNames);

    /// <summary>
    /// The attack called <paramref name="name"/> with the given settings. Example:
    /// <code>
    /// var attack = AttackRegistry.Create("pgd", new AttackSettings { Steps = 20, Norm = Norm.Linf, Seed = 1 });
    /// var result = attack.Run(model, data.X, data.Labels, AttackGoal.Parse("least-likely", data.Count, 1),
    ///     new[] { 1 / 255f, 2 / 255f, 4 / 255f, 8 / 255f });
    /// File.WriteAllText("summary.json", result.ToJson("model.safetensors").ToJsonString());
    /// </code>
    /// </summary>
    public static IAttack Create(string name, AttackSettings s)
    {
        switch (name)
        {
            case "fgsm":
                return new Fgsm { Norm = s.Norm ?? Norm.Linf, Seed = s.Seed, MaxBatch = s.MaxBatch };
            case "bim":
            {
                var d = new Bim();
                return new Bim
                {
                    Norm = s.Norm ?? d.Norm, Steps = s.Steps ?? d.Steps, StepSize = s.StepSize ?? d.StepSize, RelStepSize = s.RelStepSize ?? d.RelStepSize,
                    EarlyStop = s.EarlyStop ?? d.EarlyStop, Kappa = s.Kappa ?? d.Kappa, Seed = s.Seed, MaxBatch = s.MaxBatch,
                };
            }
            case "pgd":
            {
                var d = new Pgd();
                return new Pgd
                {
                    Norm = s.Norm ?? d.Norm, Steps = s.Steps ?? d.Steps, StepSize = s.StepSize ?? d.StepSize, RelStepSize = s.RelStepSize ?? d.RelStepSize,
                    Restarts = s.Restarts ?? d.Restarts, RandomStart = s.RandomStart ?? d.RandomStart, EarlyStop = s.EarlyStop ?? d.EarlyStop,
                    Kappa = s.Kappa ?? d.Kappa, Seed = s.Seed, MaxBatch = s.MaxBatch,
                };
            }
            case "eot-pgd":
            {
                var d = new EotPgd();
                return new EotPgd
                {
                    Norm = s.Norm ?? d.Norm, Steps = s.Steps ?? d.Steps, StepSize = s.StepSize ?? d.StepSize, RelStepSize = s.RelStepSize ?? d.RelStepSize,
                    Restarts = s.Restarts ?? d.Restarts, RandomStart = s.RandomStart ?? d.RandomStart, EarlyStop = s.EarlyStop ?? d.EarlyStop,
                    Samples = s.EotSamples ?? d.Samples, Ranges = s.EotRanges ?? d.Ranges, Seed = s.Seed, MaxBatch = s.MaxBatch,
                };
            }
            case "mifgsm":
            {
                var d = new MiFgsm();
                return new MiFgsm
                {
                    Norm = s.Norm ?? d.Norm, Steps = s.Steps ?? d.Steps, StepSize = s.StepSize ?? d.StepSize, Momentum = s.Momentum ?? d.Momentum,
                    EarlyStop = s.EarlyStop ?? d.EarlyStop, Seed = s.Seed, MaxBatch = s.MaxBatch,
                };
            }
            case "deepfool":
            {
                var d = new DeepFool();
                return new DeepFool
                {
                    Norm = s.Norm ?? d.Norm, MaxIterations = s.Steps ?? d.MaxIterations, Overshoot = s.Overshoot ?? d.Overshoot, TopK = s.TopK ?? d.TopK,
                    Seed = s.Seed, MaxBatch = s.MaxBatch,
                };
            }
            case "cw":
            {
                if (s.Norm == Norm.Linf) throw new PerturbException("cw is the L2 attack; --norm linf does not apply", 2);
                var d = new CarliniWagner();
                return new CarliniWagner
                {
                    Steps = s.Steps ?? d.Steps, BinarySteps = s.BinarySteps ?? d.BinarySteps, InitialC = s.InitialC ?? d.InitialC,
                    Kappa = s.Kappa ?? d.Kappa, LearningRate = s.LearningRate ?? s.StepSize ?? d.LearningRate, Seed = s.Seed, MaxBatch = s.MaxBatch,
                };
            }
            case "jsma":
            {
                var d = new Jsma();
                return new Jsma { Theta = s.Theta ?? d.Theta, Gamma = s.Gamma ?? d.Gamma, Seed = s.Seed, MaxBatch = s.MaxBatch };
            }
            case "uap":
            {
                var d = new UniversalPerturbation();
                return new UniversalPerturbation
                {
                    Norm = s.Norm ?? d.Norm, MaxPasses = s.MaxPasses ?? d.MaxPasses, FoolingTarget = s.FoolingTarget ?? d.FoolingTarget,
                    RelStepSize = s.RelStepSize ?? d.RelStepSize, Seed = s.Seed, MaxBatch = s.MaxBatch,
                };
            }
            case "apgd-ce":
            case "apgd-dlr":
            {
                var d = new Apgd();
                return new Apgd
                {
                    Norm = s.Norm ?? d.Norm, Steps = s.Steps ?? d.Steps, Restarts = s.Restarts ?? d.Restarts, EotSamples = s.EotSamples ?? d.EotSamples,
                    Loss = name == "apgd-dlr" ? LossKind.Dlr : LossKind.CrossEntropy, Seed = s.Seed, MaxBatch = s.MaxBatch,
                };
            }
            case "apgd-t":
            {
                var d = new ApgdT();
                return new ApgdT
                {
                    Norm = s.Norm ?? d.Norm, Steps = s.Steps ?? d.Steps, Restarts = s.Restarts ?? d.Restarts, TargetClasses = s.TopK ?? d.TargetClasses,
                    Seed = s.Seed, MaxBatch = s.MaxBatch,
                };
            }
            case "fab-t":
            {
                var d = new FabT();
                return new FabT
                {
                    Norm = s.Norm ?? d.Norm, Steps = s.Steps ?? d.Steps, Restarts = s.Restarts ?? d.Restarts, TargetClasses = s.TopK ?? d.TargetClasses,
                    Seed = s.Seed, MaxBatch = s.MaxBatch,
                };
            }
            case "autoattack":
            {
                var d = new AutoAttack();
                return new AutoAttack
                {
                    Norm = s.Norm ?? d.Norm, Version = s.Version ?? d.Version, Steps = s.Steps ?? d.Steps, Queries = s.Queries ?? d.Queries,
                    TargetClasses = s.TopK ?? d.TargetClasses, Seed = s.Seed, MaxBatch = s.MaxBatch,
                };
            }
            case "one-pixel":
            {
                var d = new OnePixel();
                return new OnePixel
                {
                    Pixels = s.Pixels ?? d.Pixels, Population = s.Population ?? d.Population, Iterations = s.Iterations ?? s.Steps ?? d.Iterations,
                    QueryBatch = s.QueryBatch ?? d.QueryBatch, Seed = s.Seed, MaxBatch = s.MaxBatch,
                };
            }
            case "hopskipjump":
            {
                var d = new HopSkipJump();
                return new HopSkipJump { Norm = s.Norm ?? d.Norm, Queries = s.Queries ?? d.Queries, QueryBatch = s.QueryBatch ?? d.QueryBatch, Seed = s.Seed, MaxBatch = s.MaxBatch };
            }
            case "boundary":
            {
                if (s.Norm == Norm.Linf) throw new PerturbException("boundary is the L2 attack; --norm linf does not apply", 2);
                var d = new Boundary();
                return new Boundary { Queries = s.Queries ?? d.Queries, QueryBatch = s.QueryBatch ?? d.QueryBatch, Seed = s.Seed, MaxBatch = s.MaxBatch };
            }
            case "square":
            {
                var d = new Square();
                return new Square { Norm = s.Norm ?? d.Norm, Queries = s.Queries ?? d.Queries, QueryBatch = s.QueryBatch ?? d.QueryBatch, Seed = s.Seed, MaxBatch = s.MaxBatch };
            }
            case "pixel-saliency":
            {
                var d = new PixelSaliency();
                return new PixelSaliency
                {
                    Pixels = s.Pixels ?? d.Pixels, Population = s.Population ?? d.Population, Iterations = s.Iterations ?? s.Steps ?? d.Iterations,
                    Candidates = s.Candidates ?? d.Candidates, QueryBatch = s.QueryBatch ?? d.QueryBatch, Seed = s.Seed, MaxBatch = s.MaxBatch,
                };
            }
            case "white-balance":
            {
                var d = new WhiteBalance();
                return new WhiteBalance
                {
                    Population = s.Population ?? d.Population, Iterations = s.Iterations ?? s.Steps ?? d.Iterations,
                    QueryBatch = s.QueryBatch ?? d.QueryBatch, Seed = s.Seed, MaxBatch = s.MaxBatch,
                };
            }
            case "moea":
            {
                var d = new Moea();
                return new Moea { Norm = s.Norm ?? d.Norm, Population = s.Population ?? d.Population, Iterations = s.Iterations ?? s.Steps ?? d.Iterations, QueryBatch = s.QueryBatch ?? d.QueryBatch, Seed = s.Seed, MaxBatch = s.MaxBatch };
            }
            default:
                throw new PerturbException($"unknown attack '{name}' (choose {string.Join(", ", AllNames)})", 2);
        }
    }
}
