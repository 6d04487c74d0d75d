using System.CommandLine;
using System.Text.Json.Nodes;
using Perturb.Cli;
using Perturb.Engine;
using Perturb.Engine.Attacks;
using Perturb.Engine.Attacks.Gradient;
using Perturb.Engine.Sweep;

namespace Perturb.Tests.Attacks;

/// <summary>The one settings table: every attack setting reaches the CLI, sweeps, results and docs from its descriptor.</summary>
public class SettingsTests : TempDirTest
{
    /// <summary>A valid value other than the default, for each kind of setting.</summary>
    static object OtherValue(Setting s)
    {
        if (s.Type == typeof(bool)) return !(bool)s.Default!;
        if (s.Type == typeof(ulong)) return 5UL;
        if (s.Type.IsEnum) return Enum.GetValues(s.Type).Cast<object>().First(v => !v.Equals(s.Default));
        double d = s.Default == null ? 0.5 : Convert.ToDouble(s.Default);
        var candidates = s.Type == typeof(int) ? new double[] { d + 2, d + 4, s.Range.Min + 2 } : new[] { d * 0.5, 0.5, d + 1, 2, 0.25 };
        double v = candidates.First(c => c != d && s.Range.Contains(c));
        return s.Type == typeof(int) ? (object)(int)v : s.Type == typeof(float) ? (object)(float)v : v;
    }

    static Command AttackCli() => AttackCommand.Build(new CliIO(TextWriter.Null, TextWriter.Null));

    [Fact]
    public void EverySettingIsReachableFromTheCliAndASweepWithTheSameNameAndDefault()
    {
        var cli = AttackCli();
        int checkedSettings = 0;
        foreach (var a in AttackRegistry.Attacks)
        {
            var sub = cli.Subcommands.Single(c => c.Name == a.Name);
            var fresh = Setting.Params(a.New());
            Assert.NotEmpty(a.Settings);
            foreach (var s in a.Settings)
            {
                // The default the docs and help show is the one a fresh attack has.
                Assert.Equal(s.ToJson(s.Default)?.ToJsonString(), fresh[s.Name]?.ToJsonString());
                var opt = sub.Options.SingleOrDefault(o => o.Name == s.Option);
                Assert.True(opt != null, $"{a.Name}: setting {s.Name} has no CLI option {s.Option}");
                Assert.Contains($"default {s.DefaultText}", opt!.Description);

                // CLI: the option parses a non-default value into the same value the binder applies.
                var v = OtherValue(s);
                string text = Setting.Text(v);
                var pr = sub.Parse(new[] { "--model", "m.safetensors", s.Option, text });
                Assert.True(pr.Errors.Count == 0, $"{a.Name} {s.Option} {text}: {string.Join("; ", pr.Errors.Select(e => e.Message))}");
                Assert.Equal(v, pr.GetValue((Option<object?>)opt));
                var viaCli = Setting.Params(a.New(new Dictionary<string, object> { [s.Name] = pr.GetValue((Option<object?>)opt)! }));
                Assert.Equal(s.ToJson(v)!.ToJsonString(), viaCli[s.Name]!.ToJsonString());

                // Sweep: the same name as a fixed key gives the same value, and the cell's attack carries it.
                var attack = new JsonObject { ["name"] = a.Name, [s.Name] = s.ToJson(v) };
                if (a.NeedsEpsilon) attack["eps"] = new JsonArray("1/255");
                var spec = new JsonObject { ["models"] = "m.safetensors", ["data"] = "synthetic", ["attacks"] = new JsonArray(attack) };
                var cell = SweepSpec.Parse(spec, Path.Combine(Dir, "s.json"), checkFiles: false).Cells.Single();
                Assert.Equal(v, cell.Settings[s.Name]);
                var viaSweep = Setting.Params(AttackRegistry.Get(cell.Attack).New(cell.Settings));
                Assert.Equal(viaCli.ToJsonString(), viaSweep.ToJsonString());
                checkedSettings++;
            }
        }
        Assert.True(checkedSettings >= 50, $"only {checkedSettings} settings");
    }

    [Fact]
    public void OutOfRangeAndNonFiniteValuesAreRefusedByCliAndSweepNamingTheSetting()
    {
        var cli = AttackCli();
        foreach (var a in AttackRegistry.Attacks)
            foreach (var s in a.Settings.Where(s => s.Type == typeof(int) || s.Type == typeof(float) || s.Type == typeof(double)))
            {
                var bad = new List<string> { "NaN", "inf", "x" };
                if (double.IsFinite(s.Range.Min)) bad.Add(Setting.Text(s.Range.Min - 1));
                if (double.IsFinite(s.Range.Max)) bad.Add(Setting.Text(s.Range.Max + 1));
                foreach (var b in bad)
                {
                    var pr = cli.Subcommands.Single(c => c.Name == a.Name).Parse(new[] { "--model", "m", s.Option, b });
                    Assert.True(pr.Errors.Count > 0, $"{a.Name} {s.Option} {b} was accepted");
                    Assert.StartsWith(s.Option + ": expected", pr.Errors[0].Message);
                    var attack = new JsonObject { ["name"] = a.Name, [s.Name] = b == "x" || b == "NaN" || b == "inf" ? b : JsonValue.Create(double.Parse(b, System.Globalization.CultureInfo.InvariantCulture)) };
                    if (a.NeedsEpsilon) attack["eps"] = new JsonArray(0.1);
                    var spec = new JsonObject { ["models"] = "m.safetensors", ["data"] = "synthetic", ["attacks"] = new JsonArray(attack) };
                    var e = Assert.Throws<PerturbException>(() => SweepSpec.Parse(spec, "s.json", checkFiles: false));
                    Assert.Equal(2, e.ExitCode);
                    Assert.StartsWith($"s.json: attacks[0] ({a.Name}).{s.Name}: expected", e.Message);
                }
            }
        // Values given in code are checked too.
        var ce = Assert.Throws<PerturbException>(() => AttackRegistry.Create("pgd", new Dictionary<string, object> { ["steps"] = 0 }));
        Assert.Contains("steps", ce.Message);
        Assert.Throws<PerturbException>(() => AttackRegistry.Create("pgd", new Dictionary<string, object> { ["kappa"] = float.NaN }));
        Assert.Throws<PerturbException>(() => AttackRegistry.Create("fgsm", new Dictionary<string, object> { ["steps"] = 3 }));
    }

    [Fact]
    public void ResultsCarryEverySettingAsParams()
    {
        using var be = new Perturb.Engine.Backends.CpuBackend();
        using var model = Perturb.Engine.Nn.Presets.Create("lenet", be, 1, 28, 28, 4, 1);
        var rng = new Random(1);
        var x = Enumerable.Range(0, 4 * 784).Select(_ => (float)rng.NextDouble()).ToArray();
        var r = new Pgd { Steps = 2, Seed = 9 }.Run(model, x, new[] { 0, 1, 2, 3 }, AttackGoal.Untargeted, new[] { 0.1f });
        Assert.Equal(AttackRegistry.Get("pgd").Settings.Select(s => s.Name).OrderBy(n => n, StringComparer.Ordinal), r.Params!.Select(p => p.Key));
        Assert.Equal(2, (int)r.Params!["steps"]!);
        Assert.Equal("linf", (string)r.Params["norm"]!);
        var j = r.ToJson("m");
        Assert.Equal(r.Params.ToJsonString(), j["params"]!.ToJsonString());
        var row = Perturb.Engine.Report.ResultRow.FromAttack(r, "m", "d", "test", "cpu").Single();
        Assert.Equal("linf", row.Norm);
        Assert.Equal(9UL, row.Seed);
        Assert.Equal(r.Params.ToJsonString(), row.Params!.ToJsonString());
        // The --json entry of a budget is the result row itself.
        Assert.Equal(row with { Seconds = double.NaN, ImagesPerSecond = double.NaN, Data = null, Split = null, Device = null },
            Perturb.Engine.Report.ResultRow.FromJson(j["results"]![0]!.AsObject(), "j") with { Seconds = double.NaN, ImagesPerSecond = double.NaN },
            new RowComparer());
    }

    sealed class RowComparer : IEqualityComparer<Perturb.Engine.Report.ResultRow>
    {
        public bool Equals(Perturb.Engine.Report.ResultRow? a, Perturb.Engine.Report.ResultRow? b) => a!.ToJson().ToJsonString() == b!.ToJson().ToJsonString();
        public int GetHashCode(Perturb.Engine.Report.ResultRow r) => 0;
    }

    [Fact]
    public void SweepDocsHoldTheGeneratedSettingsTable() =>
        DocsHoldTable(AttackRegistry.TableBegin, AttackRegistry.TableEnd, AttackRegistry.SettingsMarkdown());

    [Fact]
    public void SweepDocsHoldTheGeneratedExperimentsTable() =>
        DocsHoldTable(ExperimentRegistry.TableBegin, ExperimentRegistry.TableEnd, ExperimentRegistry.SettingsMarkdown());

    /// <summary>docs/sweeps.md holds <paramref name="markdown"/> between the markers (PERTURB_UPDATE_DOCS=1 rewrites it).</summary>
    static void DocsHoldTable(string begin, string end, string markdown)
    {
        string? root = null;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Engine.sln"))) { root = dir.FullName; break; }
        Assert.NotNull(root);
        var path = Path.Combine(root!, "docs", "sweeps.md");
        var doc = File.ReadAllText(path);
        int b = doc.IndexOf(begin, StringComparison.Ordinal), e = doc.IndexOf(end, StringComparison.Ordinal);
        Assert.True(b >= 0 && e > b, $"{path} lacks the table markers {begin}");
        var want = begin + "\n" + markdown;
        var have = doc[b..e];
        if (have != want && Environment.GetEnvironmentVariable("PERTURB_UPDATE_DOCS") == "1")
        {
            File.WriteAllText(path, doc[..b] + want + doc[e..]);
            return;
        }
        Assert.True(have == want, $"{path}: the table after {begin} is out of date; rerun this test with PERTURB_UPDATE_DOCS=1 to rewrite it");
    }

    /// <summary>
    /// Every experiment's settings are options of its command (`perturb attack patch|fooling`, `perturb poison NAME`)
    /// with the descriptor's name and default; label-flip's --rate (a list) and badnets' --trigger (a kind or a file)
    /// are spelled by the command, with the same name.
    /// </summary>
    [Fact]
    public void ExperimentSettingsAreCliOptionsWithTheirDefaults()
    {
        var attack = AttackCli();
        var poison = PoisonCommand.Build(new CliIO(TextWriter.Null, TextWriter.Null));
        int n = 0;
        foreach (var e in ExperimentRegistry.Experiments)
        {
            var sub = (e.Needs == ExperimentNeeds.Architecture ? poison : attack).Subcommands.Single(c => c.Name == e.Name);
            foreach (var s in e.Settings)
            {
                var opt = sub.Options.SingleOrDefault(o => o.Name == s.Option);
                Assert.True(opt != null, $"{e.Name}: setting {s.Name} has no CLI option {s.Option}");
                if ((e.Name, s.Name) is ("label-flip", "rate") or ("badnets", "trigger")) continue;
                Assert.Contains($"default {s.DefaultText}", opt!.Description);
                var v = OtherValue(s);
                var args = new List<string> { s.Option, Setting.Text(v) };
                if (e.Needs != ExperimentNeeds.Architecture) args.AddRange(new[] { "--model", "m.safetensors" });
                if (e.Name == "patch" && s.Name != "target") args.AddRange(new[] { "--target", "1" });
                var pr = sub.Parse(args);
                Assert.True(pr.Errors.Count == 0, $"{e.Name} {s.Option}: {string.Join("; ", pr.Errors.Select(x => x.Message))}");
                Assert.Equal(v, pr.GetValue((Option<object?>)opt));
                n++;
            }
        }
        Assert.True(n >= 40, $"only {n} settings");
    }
}
