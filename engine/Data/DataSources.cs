namespace Perturb.Engine.Data;

/// <summary>
/// Resolves a --data argument to splits. "synthetic" is the generated shapes set; "synthetic:train=2000,test=500,
/// channels=1,size=28,classes=4" sets its sizes. Generated from the data seed, so train and eval see the same split.
/// </summary>
public static class DataSources
{
    public static DataSplits Load(string spec, ulong dataSeed = 0)
    {
        if (spec == "synthetic" || spec.StartsWith("synthetic:"))
        {
            var kv = ParseOptions(spec, "synthetic");
            int Get(string k, int d) => kv.TryGetValue(k, out var v) ? (int.TryParse(v, out var i) && i > 0 ? i : throw new PerturbException($"--data {spec}: '{k}' must be a positive integer", 2)) : d;
            var known = new[] { "train", "test", "channels", "size", "classes" };
            foreach (var k in kv.Keys) if (!known.Contains(k)) throw new PerturbException($"--data {spec}: unknown setting '{k}' (known: {string.Join(", ", known)})", 2);
            return SyntheticShapes.Create(dataSeed, Get("train", 2000), Get("test", 500), Get("channels", 1), Get("size", 28), Get("classes", 4));
        }
        if (File.Exists(spec) || Directory.Exists(spec))
            throw new PerturbException($"{spec}: reading data files is not supported yet (use --data synthetic)");
        throw new PerturbException($"{spec}: no such data set or file (use --data synthetic)");
    }

    static Dictionary<string, string> ParseOptions(string spec, string prefix)
    {
        var d = new Dictionary<string, string>();
        if (spec.Length <= prefix.Length + 1) return d;
        foreach (var part in spec[(prefix.Length + 1)..].Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = part.IndexOf('=');
            if (eq <= 0) throw new PerturbException($"--data {spec}: expected key=value, got '{part}'", 2);
            d[part[..eq].Trim()] = part[(eq + 1)..].Trim();
        }
        return d;
    }
}
