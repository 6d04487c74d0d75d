using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Perturb.Engine.Attacks;

namespace Perturb.Engine.Sweep;

/// <summary>
/// One cell of a sweep: one model, one data set, one attack (or experiment) at one point of its grid. All epsilons of
/// a cell run in one batched attack run and give one result row each (one row with a null epsilon for budget-free
/// attacks; an experiment's own number of rows, <see cref="Rows"/>). A poisoning cell trains from an architecture
/// instead of loading a model: <see cref="Arch"/> names it, and <see cref="Model"/> holds the same name.
/// </summary>
public sealed record SweepCell
{
    /// <summary>Position in the full ordered cell list (0-based; sharding uses it).</summary>
    public required int Index { get; init; }
    /// <summary>Deterministic, readable id, e.g. "model=a.safetensors|data=histology|attack=pgd|norm=linf|steps=10".</summary>
    public required string Id { get; init; }
    /// <summary>The model as written in the spec (used in the id and the rows) and the file it resolves to.</summary>
    public required string Model { get; init; }
    public required string ModelPath { get; init; }
    /// <summary>The data set as written in the spec, and the --data argument it resolves to.</summary>
    public required string Data { get; init; }
    public required string DataSpec { get; init; }
    public required string Attack { get; init; }
    /// <summary>The grid point (keys sorted): the part of the cell id after the attack.</summary>
    public required JsonObject Params { get; init; }
    /// <summary>The attack's settings the spec gives (fixed and grid, by snake_case name); the rest keep their defaults.</summary>
    public required IReadOnlyDictionary<string, object> Settings { get; init; }
    /// <summary>Seed of the attack and of a random target.</summary>
    public ulong Seed { get; init; }
    /// <summary>Most rows on the device at once (the runner replaces it per model when the spec says auto).</summary>
    public int MaxBatch { get; init; } = 256;
    /// <summary>Null (untargeted), "random", "least-likely" or a class index.</summary>
    public string? Targeted { get; init; }
    /// <summary>Budgets in pixel units; null for budget-free attacks.</summary>
    public float[]? Eps { get; init; }
    /// <summary>The architecture preset a poisoning cell trains from (then <see cref="ModelPath"/> is empty); null for a cell on a model file.</summary>
    public string? Arch { get; init; }
    /// <summary>Rows of a cell without budgets (an experiment's count, e.g. 2 for patch and its control).</summary>
    public int Rows { get; init; } = 1;

    /// <summary>Rows a finished cell has in the results file.</summary>
    public int ExpectedRows => Eps?.Length ?? Rows;
}

/// <summary>
/// A sweep.json: models x data sets x attacks x each attack's parameter grid, then data sets x poisoning
/// experiments (trained from an architecture) x their grids. <see cref="Load"/> checks the whole
/// spec (keys, values, attack settings through <see cref="AttackRegistry.Create"/>, that model files and data files
/// exist) and throws one <see cref="PerturbException"/> (exit 2) naming the spec file and the key on the first problem.
/// Relative paths resolve against the spec file's folder. See docs/sweeps.md.
/// </summary>
public sealed class SweepSpec
{
    public required string Path { get; init; }
    public required IReadOnlyList<string> Models { get; init; }
    public required IReadOnlyList<string> Data { get; init; }
    public string Split { get; init; } = "test";
    /// <summary>Attack the first N images of the split (0: all).</summary>
    public int N { get; init; } = 100;
    public ulong Seed { get; init; }
    public ulong DataSeed { get; init; }
    public string Device { get; init; } = "auto";
    /// <summary>Most rows on the device at once; null ("auto", or no batch_size): per model, <see cref="BatchGuard.DefaultBatch"/>.</summary>
    public int? BatchSize { get; init; }
    /// <summary>Every cell in the fixed order: models, then data sets, then attacks (spec order), then grid points.</summary>
    public required IReadOnlyList<SweepCell> Cells { get; init; }

    static readonly string[] TopKeys = { "models", "data", "split", "n", "seed", "data_seed", "device", "batch_size", "attacks" };
    static readonly string[] AttackOnlyKeys = { "name", "eps", "grid", "label" };
    /// <summary>Keys of an attack object, fixed or in its grid, besides the attack's own settings.</summary>
    public const string GoalKey = "targeted";

    /// <summary>The keys an attack object may hold fixed or in its grid: the attack's settings (from the binder) and the goal.</summary>
    public static IEnumerable<string> SettingKeys(AttackInfo a) => a.Settings.Select(s => s.Name).Append(GoalKey);

    /// <summary>The keys of an experiment's object: its settings, and the architecture of a poisoning experiment.</summary>
    public static IEnumerable<string> SettingKeys(ExperimentInfo e) =>
        e.Needs == ExperimentNeeds.Architecture ? e.Settings.Select(s => s.Name).Append(ExperimentRegistry.ArchKey) : e.Settings.Select(s => s.Name);

    static IEnumerable<string> KindNames => AttackRegistry.AllNames.Concat(ExperimentRegistry.Names);

    /// <param name="checkFiles">Whether model files and data paths must exist (merge only needs the cell list).</param>
    public static SweepSpec Load(string path, bool checkFiles = true)
    {
        string text;
        try { text = IO.SafeFiles.ReadAllText(path, "sweep spec"); }
        catch (PerturbException e) { throw new PerturbException($"{path}: cannot read the sweep spec: {(e.Message.StartsWith(path + ": ") ? e.Message[(path.Length + 2)..] : e.Message)}", 2); }
        JsonNode? root;
        try { root = JsonNode.Parse(text, documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true }); }
        catch (JsonException e) { throw new PerturbException($"{path}: not valid JSON: {e.Message}", 2); }
        if (root is not JsonObject o) throw new PerturbException($"{path}: expected a JSON object with \"models\", \"data\" and \"attacks\"", 2);
        // JsonObject finds a repeated key only when it is first enumerated.
        try { return Parse(o, path, checkFiles); }
        catch (ArgumentException e) when (e is not ArgumentNullException && e.Message.Contains("same key"))
        {
            throw new PerturbException($"{path}: a key appears twice in one object ({e.Message.Split('(')[0].Trim()})", 2);
        }
    }

    public static SweepSpec Parse(JsonObject o, string path, bool checkFiles = true)
    {
        PerturbException Bad(string msg) => new($"{path}: {msg}", 2);
        foreach (var k in o.Select(p => p.Key))
            if (!TopKeys.Contains(k)) throw Bad($"unknown key '{k}' (known: {string.Join(", ", TopKeys)})");
        string folder = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!;

        var models = StringList(o, "models", path, required: false);
        var data = StringList(o, "data", path, required: true);
        string split = o["split"] == null ? "test" : Str(o["split"], "split", path);
        if (split is not ("train" or "val" or "test")) throw Bad($"'split' must be train, val or test, got '{split}'");
        int n = o["n"] == null ? 100 : Values.Int(o["n"], $"{path}: n", ValueRange.NonNegative);
        ulong seed = o["seed"] == null ? 0 : Values.Seed(o["seed"], $"{path}: seed");
        ulong dataSeed = o["data_seed"] == null ? 0 : Values.Seed(o["data_seed"], $"{path}: data_seed");
        string device = o["device"] == null ? "auto" : Str(o["device"], "device", path);
        if (!Devices.Kinds.Contains(device)) throw Bad($"'device' must be one of {string.Join(", ", Devices.Kinds)}, got '{device}'");
        int? batchSize = o["batch_size"] is null || o["batch_size"] is JsonValue bv && bv.TryGetValue(out string? bs) && bs == "auto"
            ? null : Values.Int(o["batch_size"], $"{path}: batch_size (or \"auto\")", ValueRange.AtLeast(1));
        int batch = batchSize ?? 256; // the cells' placeholder when auto: the runner sets each model's own

        var modelPaths = new List<string>();
        foreach (var m in models)
        {
            var full = System.IO.Path.GetFullPath(m, folder);
            if (checkFiles && !File.Exists(full)) throw Bad($"models: '{m}': no such model file ({full})");
            if (!(full.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) || full.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase)))
                throw Bad($"models: '{m}': expected a .safetensors or .onnx file");
            modelPaths.Add(full);
        }
        var dataSpecs = data.Select(d => ResolveData(d, folder, path, checkFiles)).ToList();

        if (o["attacks"] is not JsonArray attacks || attacks.Count == 0)
            throw Bad("'attacks' must be a non-empty array of objects like {\"name\": \"pgd\", \"eps\": [\"1/255\"]}");
        var perAttack = new List<(string Name, string? Label, List<(JsonObject Params, Dictionary<string, object> S, Extra X)> Points, float[]? Eps, ExperimentInfo? Exp)>();
        for (int a = 0; a < attacks.Count; a++)
        {
            if (attacks[a] is not JsonObject ao) throw Bad($"attacks[{a}] must be an object");
            string where = $"attacks[{a}]";
            if (ao["name"] is null) throw Bad($"{where}: missing 'name' (one of {string.Join(", ", KindNames)})");
            string name = Str(ao["name"], $"{where}.name", path);
            if (!KindNames.Contains(name)) throw Bad($"{where}.name: unknown attack '{name}' (choose {string.Join(", ", KindNames)})");
            var exp = ExperimentRegistry.Find(name);
            var info = exp == null ? AttackRegistry.Get(name) : null;
            var keys = (exp != null ? SettingKeys(exp) : SettingKeys(info!)).ToList();
            Func<string, Setting?> find = exp != null ? exp.Find : info!.Find;
            bool archKind = exp?.Needs == ExperimentNeeds.Architecture;
            where = $"attacks[{a}] ({name})";
            foreach (var k in ao.Select(p => p.Key))
                if (!(AttackOnlyKeys.Contains(k) && !(exp != null && k == "eps")) && !keys.Contains(k))
                    throw Bad($"{where}: unknown key '{k}' (known: {string.Join(", ", AttackOnlyKeys.Concat(keys))})");
            string? label = ao["label"] == null ? null : Str(ao["label"], $"{where}.label", path);
            float[]? eps = null;
            // An experiment has no budget list: its "eps" (generative poisoning's) is one of its settings.
            if (exp == null && ao["eps"] is JsonNode en)
            {
                var items = en is JsonArray ea ? ea.ToList() : new List<JsonNode?> { en };
                if (items.Count == 0) throw Bad($"{where}.eps: empty list");
                eps = items.Select((v, i) => (float)Values.Number(v, $"{path}: {where}.eps[{i}]", ValueRange.NonNegative)).ToArray();
                if (eps.Distinct().Count() != eps.Length) throw Bad($"{where}.eps: repeated budget");
            }

            var baseSettings = new Dictionary<string, object> { ["seed"] = seed };
            var extra = new Extra(null, null);
            foreach (var (k, v) in ao)
                if (keys.Contains(k)) extra = Apply(find, baseSettings, extra, k, v, $"{path}: {where}.{k}");

            // The grid: keys sorted, each a non-empty list; the points are their product (last key fastest).
            var gridKeys = new List<(string Key, JsonArray Values)>();
            if (ao["grid"] is JsonNode gn)
            {
                if (gn is not JsonObject go) throw Bad($"{where}.grid must be an object of lists, e.g. {{\"steps\": [10, 20]}}");
                foreach (var (k, v) in go.OrderBy(p => p.Key, StringComparer.Ordinal))
                {
                    if (!keys.Contains(k)) throw Bad($"{where}.grid: unknown key '{k}' (known: {string.Join(", ", keys)})");
                    if (ao.ContainsKey(k)) throw Bad($"{where}: '{k}' is both a fixed setting and a grid key");
                    var arr = v is JsonArray va ? va : new JsonArray(v?.DeepClone());
                    if (arr.Count == 0) throw Bad($"{where}.grid.{k}: empty list");
                    gridKeys.Add((k, arr));
                }
            }
            var points = new List<(JsonObject, Dictionary<string, object>, Extra)>();
            // The grid's size is checked before a single point is made: 1000 x 1000 x 1000 is refused from its counts.
            long gridSize = Limits.Product(gridKeys.Select(g => (long)g.Values.Count));
            long modelPoints = perAttack.Where(p => p.Exp?.Needs != ExperimentNeeds.Architecture).Sum(p => (long)p.Points.Count) + (archKind ? 0 : Math.Max(gridSize, 0));
            long archPoints = perAttack.Where(p => p.Exp?.Needs == ExperimentNeeds.Architecture).Sum(p => (long)p.Points.Count) + (archKind ? Math.Max(gridSize, 0) : 0);
            long onModelCells = Limits.Product(new[] { (long)models.Count, data.Count, modelPoints }), onArchCells = Limits.Product(new[] { (long)data.Count, archPoints });
            long cellsNow = gridSize < 0 || onModelCells < 0 || onArchCells < 0 ? -1 : onModelCells + onArchCells;
            if (cellsNow < 0 || cellsNow > Limits.MaxSweepCells)
                throw new PerturbException($"{path}: {where}: the grid has {(gridSize < 0 ? "more than 2^63" : gridSize.ToString("N0", CultureInfo.InvariantCulture))} points, " +
                    $"which makes {(cellsNow < 0 ? "more than 2^63" : cellsNow.ToString("N0", CultureInfo.InvariantCulture))} cells with {models.Count} models and {data.Count} data sets; the limit is {Limits.MaxSweepCells.ToString("N0", CultureInfo.InvariantCulture)} (set PERTURB_MAX_SWEEP_CELLS to raise it; see docs/limits.md)", 2);
            int total = (int)gridSize;
            for (int pi = 0; pi < total; pi++)
            {
                var prm = new JsonObject();
                var s = new Dictionary<string, object>(baseSettings); var t = extra;
                int rest = pi;
                var idx = new int[gridKeys.Count];
                for (int g = gridKeys.Count - 1; g >= 0; g--) { idx[g] = rest % gridKeys[g].Values.Count; rest /= gridKeys[g].Values.Count; }
                for (int g = 0; g < gridKeys.Count; g++)
                {
                    var (k, vals) = gridKeys[g];
                    var v = vals[idx[g]];
                    t = Apply(find, s, t, k, v, $"{path}: {where}.grid.{k}[{idx[g]}]");
                    prm[k] = v?.DeepClone();
                }
                if (exp != null)
                {
                    try { exp.Create(s); }
                    catch (PerturbException e) { throw Bad($"{where}{(gridKeys.Count > 0 ? " at " + prm.ToJsonString() : "")}: {e.Message}"); }
                    if (archKind)
                    {
                        if (t.Arch == null) throw Bad($"{where}: missing '{ExperimentRegistry.ArchKey}' (the architecture to train: {string.Join(", ", ExperimentRegistry.Archs)})");
                        // The architecture is part of the cell id even when fixed.
                        prm[ExperimentRegistry.ArchKey] = t.Arch;
                        prm = new JsonObject(prm.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => KeyValuePair.Create(p.Key, p.Value?.DeepClone())));
                    }
                    points.Add((prm, s, t));
                    continue;
                }
                // Let the attack check its settings together now, before any work starts.
                bool needsEps;
                try
                {
                    var attack = info!.New(s);
                    (attack as Attack)?.CheckSettings();
                    (attack as Attacks.Segmentation.SegAttack)?.CheckSettings();
                    needsEps = attack is IAttack ia ? ia.NeedsEpsilon : ((Attacks.Segmentation.SegAttack)attack).NeedsEpsilon;
                }
                catch (PerturbException e) { throw Bad($"{where}{(gridKeys.Count > 0 ? " at " + prm.ToJsonString() : "")}: {e.Message}"); }
                if (needsEps && eps == null) throw Bad($"{where}: attack {name} needs 'eps' (e.g. \"eps\": [\"1/255\", \"2/255\"])");
                if (!needsEps && eps != null && !info.IsSegmentation) throw Bad($"{where}: attack {name} has no budget; leave out 'eps'");
                if (t.Targeted != null)
                {
                    // Segmentation goals: erase, forge, forge:Y0,X0,Y1,X1 (untargeted when absent).
                    try { if (info.IsSegmentation) Attacks.Segmentation.SegGoal.Parse(t.Targeted); else AttackGoal.Parse(t.Targeted, 1, seed); }
                    catch (PerturbException e) { throw Bad($"{where}.targeted: {e.Message}"); }
                }
                points.Add((prm, s, t));
            }
            perAttack.Add((name, label, points, eps, exp));
        }

        bool onModels = perAttack.Any(p => p.Exp?.Needs != ExperimentNeeds.Architecture);
        if (onModels && models.Count == 0)
            throw Bad("missing 'models' (a list of model files): the attacks need them; only poisoning experiments (badnets, label-flip, generative) train their own from 'arch'");
        var cells = new List<SweepCell>();
        var ids = new Dictionary<string, string>();
        void AddCell(int a, string? model, string modelPath, int di, JsonObject prm, Dictionary<string, object> s, Extra t)
        {
            var id = (model != null ? $"model={model}|" : "") + $"data={data[di]}|attack={perAttack[a].Name}"
                     + (perAttack[a].Label != null ? $"|label={perAttack[a].Label}" : "")
                     + string.Concat(prm.Select(p => $"|{p.Key}={ValueText(p.Value)}"));
            if (ids.TryGetValue(id, out var first))
                throw Bad($"attacks[{a}] gives the cell '{id}' a second time (first from {first}); give the attacks different grids or a 'label'");
            ids[id] = $"attacks[{a}]";
            cells.Add(new SweepCell
            {
                Index = cells.Count, Id = id, Model = model ?? t.Arch!, ModelPath = modelPath, Data = data[di], DataSpec = dataSpecs[di],
                Attack = perAttack[a].Name, Params = (JsonObject)prm.DeepClone(), Settings = s, Targeted = t.Targeted, Eps = perAttack[a].Eps,
                Seed = (ulong)s["seed"], MaxBatch = batch, Arch = model == null ? t.Arch : null, Rows = perAttack[a].Exp?.Rows ?? 1,
            });
        }
        for (int mi = 0; mi < models.Count; mi++)
            for (int di = 0; di < data.Count; di++)
                for (int a = 0; a < perAttack.Count; a++)
                    if (perAttack[a].Exp?.Needs != ExperimentNeeds.Architecture)
                        foreach (var (prm, s, t) in perAttack[a].Points) AddCell(a, models[mi], modelPaths[mi], di, prm, s, t);
        // Poisoning cells train from an architecture: data sets x experiments x grid points, after the cells on model files.
        for (int di = 0; di < data.Count; di++)
            for (int a = 0; a < perAttack.Count; a++)
                if (perAttack[a].Exp?.Needs == ExperimentNeeds.Architecture)
                    foreach (var (prm, s, t) in perAttack[a].Points) AddCell(a, null, "", di, prm, s, t);

        return new SweepSpec
        {
            Path = path, Models = models, Data = data, Split = split, N = n, Seed = seed, DataSeed = dataSeed, Device = device,
            BatchSize = batchSize, Cells = cells,
        };
    }

    /// <summary>The text of a grid value in a cell id: strings as written, numbers invariant.</summary>
    static string ValueText(JsonNode? v) => v switch
    {
        null => "null",
        JsonValue jv when jv.TryGetValue(out string? s) => s!,
        JsonValue jv when jv.TryGetValue(out bool b) => b ? "true" : "false",
        JsonValue jv when jv.TryGetValue(out double d) => d.ToString("R", CultureInfo.InvariantCulture),
        _ => v.ToJsonString(),
    };

    /// <summary>
    /// The --data argument for a spec entry: the generated sets (histology, histology-seg, synthetic, with ':settings') as they are;
    /// anything else is a path (optionally 'path:k=v,...') resolved against the spec's folder, which must exist
    /// ('NAME' also finds 'NAME.npz').
    /// </summary>
    static string ResolveData(string d, string folder, string path, bool check)
    {
        if (d is "histology" or "histology-seg" or "synthetic" || d.StartsWith("histology:", StringComparison.Ordinal) || d.StartsWith("histology-seg:", StringComparison.Ordinal)
            || d.StartsWith("synthetic:", StringComparison.Ordinal))
            return d;
        string p = d, opts = "";
        int colon = d.LastIndexOf(':');
        if (colon > 1 && d.IndexOf('=', colon) > colon) { p = d[..colon]; opts = d[colon..]; }
        var full = System.IO.Path.GetFullPath(p, folder);
        if (!File.Exists(full) && !Directory.Exists(full) && File.Exists(full + ".npz")) full += ".npz";
        if (check && !File.Exists(full) && !Directory.Exists(full))
            throw new PerturbException($"{path}: data: '{d}': no such data set, file or folder ({full}; the generated sets are 'histology' and 'synthetic')", 2);
        return full + opts;
    }

    /// <summary>The keys of an attack object that are not settings: an attack's goal, a poisoning experiment's architecture.</summary>
    readonly record struct Extra(string? Targeted, string? Arch);

    /// <summary>Puts one spec value into the settings (parsed and range-checked by the binder), or into the goal or architecture.</summary>
    static Extra Apply(Func<string, Setting?> find, Dictionary<string, object> s, Extra x, string key, JsonNode? v, string where)
    {
        if (key == ExperimentRegistry.ArchKey && find(key) == null)
        {
            var arch = Values.String(v, where);
            if (!ExperimentRegistry.Archs.Contains(arch)) throw new PerturbException($"{where}: unknown architecture '{arch}' (choose {string.Join(", ", ExperimentRegistry.Archs)})", 2);
            return x with { Arch = arch };
        }
        if (key == GoalKey && find(key) == null)
            return x with { Targeted = v is JsonValue tv && tv.TryGetValue(out int cls) ? cls.ToString(CultureInfo.InvariantCulture) : Values.String(v, where) };
        s[key] = find(key)!.Parse(v, where);
        return x;
    }

    static List<string> StringList(JsonObject o, string key, string path, bool required)
    {
        var n = o[key];
        if (n == null)
            return required ? throw new PerturbException($"{path}: missing '{key}' (a list of strings)", 2) : new List<string>();
        var items = n is JsonArray a ? a.ToList() : new List<JsonNode?> { n };
        var list = items.Select((v, i) => Str(v, $"{key}[{i}]", path)).ToList();
        if (list.Count == 0) throw new PerturbException($"{path}: '{key}' is empty", 2);
        var dup = list.GroupBy(x => x).FirstOrDefault(g => g.Count() > 1);
        if (dup != null) throw new PerturbException($"{path}: '{key}' lists '{dup.Key}' twice", 2);
        return list;
    }

    static string Str(JsonNode? v, string where, string path) =>
        v is JsonValue jv && jv.TryGetValue(out string? s) && !string.IsNullOrWhiteSpace(s) ? s
            : throw new PerturbException($"{path}: {where}: expected a non-empty string, got {v?.ToJsonString() ?? "null"}", 2);
}
