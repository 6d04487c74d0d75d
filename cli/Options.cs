using System.CommandLine;
using System.CommandLine.Parsing;
using Perturb.Engine;

namespace Perturb.Cli;

/// <summary>
/// Numeric options, each parsed by the engine's one parser per kind of value (<see cref="Values"/>) and checked
/// against its range while the command line is parsed: a bad value is a usage error (exit 2) naming the option,
/// before anything runs. Numbers accept fractions (<c>4/255</c>); NaN and infinities are refused everywhere.
/// </summary>
public static class Opt
{
    static Option<T> Make<T>(string name, string desc, Func<string, T> parse, Func<T>? def)
    {
        var o = new Option<T>(name)
        {
            Description = desc,
            CustomParser = r =>
            {
                if (r.Tokens.Count == 0) return def == null ? default! : def();
                try { return parse(r.Tokens[^1].Value); }
                catch (PerturbException e) { r.AddError(e.Message); return default!; }
            },
        };
        o.DefaultValueFactory = _ => def == null ? default! : def();
        return o;
    }

    public static Option<int> Int(string name, string desc, int def, ValueRange range) =>
        Make(name, $"{desc} ({range.Describe()})", t => Values.Int(t, name, range), () => def);

    public static Option<int?> OptionalInt(string name, string desc, ValueRange range) =>
        Make<int?>(name, $"{desc} ({range.Describe()})", t => Values.Int(t, name, range), null);

    public static Option<double> Number(string name, string desc, double def, ValueRange range) =>
        Make(name, $"{desc} ({range.Describe()})", t => Values.Number(t, name, range), () => def);

    public static Option<float> Float(string name, string desc, float def, ValueRange range) =>
        Make(name, $"{desc} ({range.Describe()})", t => (float)Values.Number(t, name, range), () => def);

    /// <summary>A comma-separated list of numbers or fractions (1/255,2/255); null when not given.</summary>
    public static Option<double[]?> NumberList(string name, string desc, ValueRange range, bool distinct = true) =>
        Make<double[]?>(name, desc, t => Values.NumberList(t, name, range, distinct), null);

    /// <summary>A comma-separated list of whole numbers (0,2); null when not given (or <paramref name="def"/>); <paramref name="allWord"/>, when set, is a word that stands for every value (an empty list).</summary>
    public static Option<int[]?> IntList(string name, string desc, ValueRange range, int[]? def = null, string? allWord = null) =>
        Make<int[]?>(name, desc, t => t.Trim() == allWord ? Array.Empty<int>() : Values.IntList(t, name, range, distinct: true), def == null ? null : () => def);

    /// <summary>A list option's value; null when it was not given (System.CommandLine gives an empty array then).</summary>
    public static T[]? ListValue<T>(this ParseResult pr, Option<T[]?> o) => pr.GetValue(o) is { Length: > 0 } v ? v : null;

    public static Option<ulong> Seed(string name, string desc) =>
        Make(name, desc, t => Values.Seed(t, name), () => 0UL);
}
