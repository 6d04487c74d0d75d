using System.Globalization;
using System.Text.Json.Nodes;

namespace Perturb.Engine;

/// <summary>
/// The allowed interval of a numeric value: [Min, Max], either end open. Every number is also finite: no range
/// admits NaN or an infinity.
/// </summary>
public readonly record struct ValueRange(double Min, double Max, bool MinOpen = false, bool MaxOpen = false)
{
    public static readonly ValueRange Any = new(double.NegativeInfinity, double.PositiveInfinity);
    public static readonly ValueRange NonNegative = new(0, double.PositiveInfinity);
    public static readonly ValueRange Positive = new(0, double.PositiveInfinity, MinOpen: true);
    public static readonly ValueRange Fraction = new(0, 1);
    public static ValueRange AtLeast(double min) => new(min, double.PositiveInfinity);

    public bool Contains(double v) =>
        double.IsFinite(v) && (MinOpen ? v > Min : v >= Min) && (MaxOpen ? v < Max : v <= Max);

    /// <summary>"in [0, 1]", "at least 1", "positive", "a finite number".</summary>
    public string Describe()
    {
        var inv = CultureInfo.InvariantCulture;
        bool lo = double.IsFinite(Min), hi = double.IsFinite(Max);
        if (lo && hi) return $"in {(MinOpen ? "(" : "[")}{Min.ToString(inv)}, {Max.ToString(inv)}{(MaxOpen ? ")" : "]")}";
        if (lo && Min == 0) return MinOpen ? "positive" : "0 or more";
        if (lo) return MinOpen ? $"more than {Min.ToString(inv)}" : $"at least {Min.ToString(inv)}";
        if (hi) return MaxOpen ? $"less than {Max.ToString(inv)}" : $"at most {Max.ToString(inv)}";
        return "a finite number";
    }
}

/// <summary>
/// One parser per kind of value, used by every command's options and by sweep specs: numbers (finite, with fractions
/// like <c>4/255</c>), lists of them (<c>1/255,2/255</c>), integers, seeds, booleans, enum names. Each takes
/// <c>where</c> (the option or the spec file and key) and throws a <see cref="PerturbException"/> with exit code 2
/// whose message names it and says what is wrong.
/// </summary>
public static class Values
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    static PerturbException Bad(string where, string what, string got) => new($"{where}: expected {what}, got {got}", 2);

    /// <summary>A finite number, written as a decimal ("0.03", "1e-3") or a fraction "A/B" ("4/255"), inside <paramref name="range"/>.</summary>
    public static double Number(string text, string where, ValueRange range)
    {
        if (!TryNumber(text, out double v)) throw Bad(where, $"a number or a fraction like 4/255 ({range.Describe()})", $"'{text}'");
        if (!range.Contains(v)) throw Bad(where, $"a number {range.Describe()}", $"'{text}'");
        return v;
    }

    static bool TryNumber(string text, out double v)
    {
        v = double.NaN;
        var parts = text.Trim().Split('/');
        if (parts.Length > 2) return false;
        if (!double.TryParse(parts[0].Trim(), NumberStyles.Float, Inv, out v)) return false;
        if (parts.Length == 2)
        {
            if (!double.TryParse(parts[1].Trim(), NumberStyles.Float, Inv, out double d) || d == 0) { v = double.NaN; return false; }
            v /= d;
        }
        return double.IsFinite(v);
    }

    /// <summary>A comma-separated list of numbers or fractions ("1/255,2/255,0.03"), at least one, each inside the range.</summary>
    public static double[] NumberList(string text, string where, ValueRange range, bool distinct = false)
    {
        var items = text.Split(',', StringSplitOptions.TrimEntries);
        if (items.Length == 0 || items.Any(s => s.Length == 0))
            throw Bad(where, "a comma-separated list of numbers like 1/255,2/255", $"'{text}'");
        var list = items.Select(s => Number(s, where, range)).ToArray();
        if (distinct && list.Distinct().Count() != list.Length) throw Bad(where, "each value once", $"'{text}'");
        return list;
    }

    /// <summary>A whole number inside the range (and inside Int32).</summary>
    public static int Int(string text, string where, ValueRange range)
    {
        if (!int.TryParse(text.Trim(), NumberStyles.AllowLeadingSign, Inv, out int v))
            throw Bad(where, $"a whole number {range.Describe()}", $"'{text}'");
        if (!range.Contains(v)) throw Bad(where, $"a whole number {range.Describe()}", $"'{text}'");
        return v;
    }

    /// <summary>A comma-separated list of whole numbers ("0,2,5"), at least one, each inside the range.</summary>
    public static int[] IntList(string text, string where, ValueRange range, bool distinct = false)
    {
        var items = text.Split(',', StringSplitOptions.TrimEntries);
        if (items.Any(s => s.Length == 0)) throw Bad(where, "a comma-separated list of whole numbers like 0,2", $"'{text}'");
        var list = items.Select(s => Int(s, where, range)).ToArray();
        if (distinct && list.Distinct().Count() != list.Length) throw Bad(where, "each value once", $"'{text}'");
        return list;
    }

    /// <summary>A seed: a whole number from 0 to 2^64 - 1.</summary>
    public static ulong Seed(string text, string where) =>
        ulong.TryParse(text.Trim(), NumberStyles.None, Inv, out ulong v) ? v : throw Bad(where, "a seed (a whole number, 0 or more)", $"'{text}'");

    public static bool Bool(string text, string where) => text.Trim().ToLowerInvariant() switch
    {
        "true" or "1" or "yes" or "on" => true,
        "false" or "0" or "no" or "off" => false,
        _ => throw Bad(where, "true or false", $"'{text}'"),
    };

    /// <summary>The name of an enum value as users write it: Linf -> "linf", CrossEntropy -> "cross-entropy".</summary>
    public static string EnumName(Enum v) => Kebab(v.ToString());

    public static string Kebab(string pascal) =>
        string.Concat(pascal.Select((c, i) => char.IsUpper(c) && i > 0 && !char.IsDigit(pascal[i - 1]) && !char.IsUpper(pascal[i - 1]) ? "-" + char.ToLowerInvariant(c) : char.ToLowerInvariant(c).ToString()));

    public static object Enum(Type t, string text, string where)
    {
        foreach (var v in System.Enum.GetValues(t))
            if (EnumName((Enum)v) == text.Trim().ToLowerInvariant()) return v;
        throw Bad(where, string.Join(" or ", System.Enum.GetValues(t).Cast<Enum>().Select(EnumName)), $"'{text}'");
    }

    // JSON forms (sweep specs): a number may be a JSON number or a string in the text form ("8/255").

    static string Show(JsonNode? v) => v?.ToJsonString() ?? "null";

    /// <summary>A value as parsed from text: values built in code (JsonValue.Create(12)) convert to nothing but their own type.</summary>
    static JsonNode? Parsed(JsonNode? v) => v is JsonValue ? JsonNode.Parse(v.ToJsonString()) : v;

    public static double Number(JsonNode? v, string where, ValueRange range)
    {
        v = Parsed(v);
        if (v is JsonValue jv && jv.TryGetValue(out double d))
            return range.Contains(d) ? d : throw Bad(where, $"a number {range.Describe()}", Show(v));
        if (v is JsonValue sv && sv.TryGetValue(out string? s) && s != null) return Number(s, where, range);
        throw Bad(where, $"a number or a fraction like \"8/255\" ({range.Describe()})", Show(v));
    }

    public static int Int(JsonNode? v, string where, ValueRange range)
    {
        v = Parsed(v);
        if (v is JsonValue jv && jv.TryGetValue(out double d) && d == Math.Floor(d) && d >= int.MinValue && d <= int.MaxValue)
            return range.Contains(d) ? (int)d : throw Bad(where, $"a whole number {range.Describe()}", Show(v));
        throw Bad(where, $"a whole number {range.Describe()}", Show(v));
    }

    public static ulong Seed(JsonNode? v, string where) =>
        Parsed(v) is JsonValue jv && jv.TryGetValue(out ulong u) ? u : throw Bad(where, "a seed (a whole number, 0 or more)", Show(v));

    public static bool Bool(JsonNode? v, string where) =>
        Parsed(v) is JsonValue jv && jv.TryGetValue(out bool b) ? b : throw Bad(where, "true or false", Show(v));

    public static string String(JsonNode? v, string where) =>
        Parsed(v) is JsonValue jv && jv.TryGetValue(out string? s) && !string.IsNullOrWhiteSpace(s) ? s : throw Bad(where, "a non-empty string", Show(v));
}
