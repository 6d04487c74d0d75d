using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace Perturb.Engine.Attacks.Search;

/// <summary>A white-balance change: colour temperature (kelvin), green-magenta tint, exposure gain.</summary>
public readonly record struct WhiteBalanceSetting(float Temperature, float Tint, float Gain);

/// <summary>
/// White-balance (colour constancy) attack, after Afifi and Brown, "What else can fool deep learning? Addressing colour
/// constancy errors" (ICCV 2019): looks for a camera-plausible white-balance change that flips the prediction. A change
/// is a colour temperature T (kelvin), a tint t and an exposure gain k. T gives per-channel gains as the ratio of the
/// linear-sRGB white of the Planckian illuminant at T to the one at 6500 K (Kim et al.'s cubic fit of the Planckian
/// locus in CIE xy, then XYZ with Y = 1, then linear sRGB), normalised so the green gain is 1; the tint multiplies the
/// green gain by (1 + t) (positive: greener, negative: magenta); the exposure multiplies every gain by k. The gains
/// apply as a diagonal (von Kries) matrix in linear RGB: undo the sRGB gamma, scale each channel, clip to [0,1], redo
/// the gamma. (6500 K, 0, 1) is the identity.
/// Search: <see cref="DifferentialEvolution"/> over (T, t, k) inside the bounds (one-pixel's DE, genes clamped to the
/// bounds), the populations of all running images as one batch, stopping each image on success. Queries per image:
/// Population for the start plus Population per generation run; images that meet the goal before the attack are left
/// as they are with 0 queries. After <see cref="Attack.Run"/>, <see cref="Found"/> holds each image's chosen setting.
/// </summary>
public sealed class WhiteBalance : SearchAttack, IAttackExtras
{
    /// <summary>white_balance.csv: each image's chosen setting.</summary>
    public void SaveExtras(string dir, AttackResult r)
    {
        if (Found != null) IO.AtomicFile.WriteText(Path.Combine(dir, "white_balance.csv"), SettingsCsv(Found, r.Results[0].Success));
    }

    public void AddJson(JsonObject summary, AttackResult r)
    {
        if (Found != null) summary["white_balance"] = SettingsJson(Found);
    }

    public override string Name => "white-balance";
    public override bool NeedsEpsilon => false;
    [Setting("population", "candidates per image and generation", Min = 4)]
    public int Population { get; init; } = 20;
    [Setting("iterations", "most generations", Min = 0)]
    public int Iterations { get; init; } = 30;
    [Setting("f", "differential evolution scale factor", Min = 0, MinOpen = true)]
    public float F { get; init; } = 0.5f;
    public float TemperatureMin { get; init; } = 2500f;
    public float TemperatureMax { get; init; } = 10000f;
    /// <summary>The tint lies in [-TintMax, TintMax].</summary>
    public float TintMax { get; init; } = 0.15f;
    public float GainMin { get; init; } = 0.6f;
    public float GainMax { get; init; } = 1.5f;

    /// <summary>
    /// Per sample of the last run: the setting that made its image, or null where the image was left as it was (it
    /// already met the goal). Set by <see cref="Attack.Run"/>.
    /// </summary>
    public WhiteBalanceSetting?[]? Found { get; private set; }

    protected override void Validate()
    {
        DifferentialEvolution.CheckSettings(Name, Population, Iterations, F);
        if (!(TemperatureMin >= 1667 && TemperatureMax <= 25000 && TemperatureMin <= TemperatureMax))
            throw new PerturbException($"{Name}: the temperature range must lie in 1667..25000 K, got {TemperatureMin}..{TemperatureMax}", 2);
        if (!(TintMax >= 0 && TintMax < 1)) throw new PerturbException($"{Name}: the tint bound must be in [0, 1), got {TintMax}", 2);
        if (!(GainMin > 0 && GainMin <= GainMax)) throw new PerturbException($"{Name}: the gain range must be positive, got {GainMin}..{GainMax}", 2);
        CheckQueryBatch();
    }

    /// <summary>Chromaticity (x, y) of the Planckian illuminant at <paramref name="t"/> kelvin (Kim et al. 2002, 1667..25000 K).</summary>
    public static (double X, double Y) PlanckianXy(double t)
    {
        double t1 = 1e3 / t, t2 = t1 * t1, t3 = t2 * t1;
        double x = t <= 4000 ? -0.2661239 * t3 - 0.2343589 * t2 + 0.8776956 * t1 + 0.179910
                             : -3.0258469 * t3 + 2.1070379 * t2 + 0.2226347 * t1 + 0.240390;
        double x2 = x * x, x3 = x2 * x;
        double y = t <= 2222 ? -1.1063814 * x3 - 1.34811020 * x2 + 2.18555832 * x - 0.20219683
                 : t <= 4000 ? -0.9549476 * x3 - 1.37418593 * x2 + 2.09137015 * x - 0.16748867
                             : 3.0817580 * x3 - 5.87338670 * x2 + 3.75112997 * x - 0.37001483;
        return (x, y);
    }

    /// <summary>Linear-sRGB white (Y = 1) of the Planckian illuminant at <paramref name="t"/> kelvin.</summary>
    static (double R, double G, double B) White(double t)
    {
        var (x, y) = PlanckianXy(t);
        double X = x / y, Z = (1 - x - y) / y;
        return (3.2406 * X - 1.5372 - 0.4986 * Z, -0.9689 * X + 1.8758 + 0.0415 * Z, 0.0557 * X - 0.2040 + 1.0570 * Z);
    }

    /// <summary>The per-channel linear-RGB gains of a setting (see the class comment).</summary>
    public static (double R, double G, double B) Gains(WhiteBalanceSetting s)
    {
        var w = White(s.Temperature);
        var r = White(6500);
        double gr = w.R / r.R, gg = w.G / r.G, gb = w.B / r.B;
        return (s.Gain * gr / gg, s.Gain * (1 + (double)s.Tint), s.Gain * gb / gg);
    }

    static double ToLinear(float v) => v <= 0.04045 ? v / 12.92 : Math.Pow((v + 0.055) / 1.055, 2.4);
    static float ToSrgb(double l)
    {
        l = Math.Clamp(l, 0, 1);
        return Math.Clamp((float)(l <= 0.0031308 ? 12.92 * l : 1.055 * Math.Pow(l, 1 / 2.4) - 0.055), 0f, 1f);
    }

    /// <summary>Applies a setting to one RGB image (3 x H x W in [0,1]) into <paramref name="dst"/>.</summary>
    public static void Apply(ReadOnlySpan<float> x, WhiteBalanceSetting s, Span<float> dst)
    {
        var lin = new double[x.Length];
        for (int k = 0; k < x.Length; k++) lin[k] = ToLinear(x[k]);
        ApplyLinear(lin, s, dst);
    }

    static void ApplyLinear(double[] lin, WhiteBalanceSetting s, Span<float> dst)
    {
        var (r, g, b) = Gains(s);
        int hw = lin.Length / 3;
        for (int k = 0; k < hw; k++)
        {
            dst[k] = ToSrgb(lin[k] * r);
            dst[hw + k] = ToSrgb(lin[hw + k] * g);
            dst[2 * hw + k] = ToSrgb(lin[2 * hw + k] * b);
        }
    }

    protected override float[][] Produce(RunContext c)
    {
        var (C, _, _) = ImageShape(c.Model);
        if (C != 3) throw new PerturbException($"{Name} needs RGB images; the model takes {Tensor.ShapeString(c.Model.InputShape)}", 2);
        int d = c.D;
        var goal = c.Targets ?? c.Labels;
        var run = Enumerable.Range(0, c.N).Where(i => !Meets(c.CleanPred[i], goal[i], c.Targets != null)).ToList();
        var lin = new Dictionary<int, double[]>();
        foreach (var i in run)
        {
            var l = new double[d];
            for (int k = 0; k < d; k++) l[k] = ToLinear(c.X[(long)i * d + k]);
            lin[i] = l;
        }
        var lo = new[] { TemperatureMin, -TintMax, GainMin };
        var hi = new[] { TemperatureMax, TintMax, GainMax };
        var de = new DifferentialEvolution { Population = Population, Iterations = Iterations, F = F, QueryBatch = QueryBatch, Lo = lo, Hi = hi };
        var chosen = de.Run(c, 0, run.Select(i => (i, SampleRng(i))).ToList(), (_, rng, genes) =>
        {
            for (int g = 0; g < 3; g++) genes[g] = (float)rng.Range(lo[g], hi[g]);
        }, (i, genes, dst) => ApplyLinear(lin[i], new WhiteBalanceSetting(genes[0], genes[1], genes[2]), dst));
        var adv = (float[])c.X.Clone();
        var found = new WhiteBalanceSetting?[c.N];
        for (int k = 0; k < run.Count; k++)
        {
            var s = new WhiteBalanceSetting(chosen[k][0], chosen[k][1], chosen[k][2]);
            found[run[k]] = s;
            ApplyLinear(lin[run[k]], s, adv.AsSpan(run[k] * d, d));
        }
        Found = found;
        return new[] { adv };
    }

    /// <summary>The chosen settings as a JSON array (null where the image was left as it was), for --json.</summary>
    public static JsonArray SettingsJson(WhiteBalanceSetting?[] found) => new(found.Select(f => f is { } s
        ? (JsonNode)new JsonObject { ["temperature_k"] = s.Temperature, ["tint"] = s.Tint, ["gain"] = s.Gain } : null).ToArray());

    /// <summary>
    /// The chosen settings as CSV (index, temperature_k, tint, gain, success; empty fields where the image was left as
    /// it was), for the CLI's white_balance.csv.
    /// </summary>
    public static string SettingsCsv(WhiteBalanceSetting?[] found, bool[] success)
    {
        var sb = new StringBuilder("index,temperature_k,tint,gain,success\n");
        for (int i = 0; i < found.Length; i++)
        {
            var f = found[i];
            sb.Append(i.ToString(CultureInfo.InvariantCulture)).Append(',');
            sb.Append(f is { } s ? string.Create(CultureInfo.InvariantCulture, $"{s.Temperature:R},{s.Tint:R},{s.Gain:R}") : ",,");
            sb.Append(',').Append(success[i] ? "1" : "0").Append('\n');
        }
        return sb.ToString();
    }
}
