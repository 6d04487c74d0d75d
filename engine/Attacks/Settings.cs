using System.Globalization;
using System.Reflection;
using System.Text.Json.Nodes;

namespace Perturb.Engine.Attacks;

// HOW TO ADD AN ATTACK SETTING (the only place a setting is described):
//   put [Setting("snake_name", "help text", Min = .., Max = ..)] on the attack's init property. Its default is the
//   property's value on a fresh instance. From that one line the binder below gives the `perturb attack NAME`
//   option --snake-name, the sweep spec key snake_name (fixed or in a grid), the range and finiteness check, the
//   entry in the results' "params", and the row of the table in docs/sweeps.md (a test checks that table).
// HOW TO ADD AN ATTACK: write the class (a short file on Attack or SearchAttack), describe its settings as above,
//   and add one line to AttackRegistry.Attacks. Settings of a base class are inherited; [OmitSettings] drops some.

/// <summary>Marks an attack property as a user setting: its snake_case name, help, and the allowed range of numbers.</summary>
[AttributeUsage(AttributeTargets.Property)]
public sealed class SettingAttribute : Attribute
{
    public SettingAttribute(string name, string help) { Name = name; Help = help; }
    public string Name { get; }
    public string Help { get; }
    public double Min { get; set; } = double.NegativeInfinity;
    public double Max { get; set; } = double.PositiveInfinity;
    public bool MinOpen { get; set; }
    public bool MaxOpen { get; set; }
}

/// <summary>Drops settings a subclass inherits but does not use (e.g. BIM has no random start).</summary>
[AttributeUsage(AttributeTargets.Class)]
public sealed class OmitSettingsAttribute : Attribute
{
    public OmitSettingsAttribute(params string[] names) { Names = names; }
    public string[] Names { get; }
}

/// <summary>One setting of one attack class: name, type, default, range, help, and how to parse, check and write it.</summary>
public sealed class Setting
{
    readonly PropertyInfo _prop;
    internal Setting(PropertyInfo prop, SettingAttribute a, object? def)
    {
        _prop = prop; Name = a.Name; Help = a.Help; Default = def;
        Range = new ValueRange(a.Min, a.Max, a.MinOpen, a.MaxOpen);
        Type = Nullable.GetUnderlyingType(prop.PropertyType) ?? prop.PropertyType;
        Optional = Nullable.GetUnderlyingType(prop.PropertyType) != null;
    }

    /// <summary>snake_case, as in sweep specs and results' params.</summary>
    public string Name { get; }
    /// <summary>The <c>perturb attack</c> option: --kebab-case.</summary>
    public string Option => "--" + Name.Replace('_', '-');
    public string Help { get; }
    /// <summary>int, float, double, bool, ulong or an enum.</summary>
    public Type Type { get; }
    /// <summary>Whether the property may stay unset (null): its default is then derived from other settings.</summary>
    public bool Optional { get; }
    /// <summary>The value on a fresh instance of the attack (null for an optional setting left to the attack).</summary>
    public object? Default { get; }
    public ValueRange Range { get; }

    /// <summary>What the value looks like, for help and docs: "int, at least 1", "number, positive", "linf or l2".</summary>
    public string Kind =>
        Type.IsEnum ? string.Join(" or ", Enum.GetValues(Type).Cast<Enum>().Select(Values.EnumName))
        : Type == typeof(bool) ? "true or false"
        : Type == typeof(ulong) ? "seed"
        : (Type == typeof(int) ? "int" : "number") + (Range == ValueRange.Any ? "" : ", " + Range.Describe());

    /// <summary>The default as users write it ("auto" for an optional setting the attack derives).</summary>
    public string DefaultText => Default == null ? "auto" : Text(Default);

    public static string Text(object v) => v switch
    {
        Enum e => Values.EnumName(e),
        bool b => b ? "true" : "false",
        float f => f.ToString("R", CultureInfo.InvariantCulture),
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        IFormattable x => x.ToString(null, CultureInfo.InvariantCulture),
        _ => v.ToString() ?? "",
    };

    /// <summary>Parses a command-line value; <paramref name="where"/> names the option in errors.</summary>
    public object Parse(string text, string where)
    {
        if (Type.IsEnum) return Values.Enum(Type, text, where);
        if (Type == typeof(bool)) return Values.Bool(text, where);
        if (Type == typeof(ulong)) return Values.Seed(text, where);
        if (Type == typeof(int)) return Values.Int(text, where, Range);
        double v = Values.Number(text, where, Range);
        return Type == typeof(float) ? FloatIn(v, where, text) : (object)v;
    }

    /// <summary>Parses a sweep spec value (a JSON number, bool, or string in the command-line form).</summary>
    public object Parse(JsonNode? v, string where)
    {
        if (Type.IsEnum || v is JsonValue sv && sv.TryGetValue(out string? _) && Type != typeof(double) && Type != typeof(float))
            return Parse(Values.String(v, where), where);
        if (Type == typeof(bool)) return Values.Bool(v, where);
        if (Type == typeof(ulong)) return Values.Seed(v, where);
        if (Type == typeof(int)) return Values.Int(v, where, Range);
        double d = Values.Number(v, where, Range);
        return Type == typeof(float) ? FloatIn(d, where, v!.ToJsonString()) : (object)d;
    }

    float FloatIn(double v, string where, string text)
    {
        float f = (float)v;
        if (!Range.Contains(f)) throw new PerturbException($"{where}: expected a number {Range.Describe()}, got '{text}' (out of single precision)", 2);
        return f;
    }

    /// <summary>Checks a value given in code: its type, and for numbers the range (and finiteness).</summary>
    public object Check(object v, string where)
    {
        object c;
        try { c = Type.IsEnum ? (v.GetType() == Type ? v : throw new InvalidCastException()) : Convert.ChangeType(v, Type, CultureInfo.InvariantCulture); }
        catch (Exception e) when (e is InvalidCastException or FormatException or OverflowException)
        { throw new PerturbException($"{where}: expected {Kind}, got {Text(v)}", 2); }
        if (c is int or float or double && !Range.Contains(Convert.ToDouble(c, CultureInfo.InvariantCulture)))
            throw new PerturbException($"{where}: expected a number {Range.Describe()}, got {Text(v)}", 2);
        return c;
    }

    public JsonNode? ToJson(object? v) => v switch
    {
        null => null,
        Enum e => JsonValue.Create(Values.EnumName(e)),
        bool b => JsonValue.Create(b),
        int i => JsonValue.Create(i),
        ulong u => JsonValue.Create(u),
        float f => JsonValue.Create(double.Parse(f.ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture)), // the float's shortest decimal
        double d => JsonValue.Create(d),
        _ => throw new InvalidOperationException($"setting {Name}: no JSON form for {v.GetType().Name}"),
    };

    internal object? Get(object attack) => _prop.GetValue(attack);
    internal void Set(object attack, object value) => _prop.SetValue(attack, value);

    /// <summary>The settings of an attack class, in declaration order (base class first), without those it omits.</summary>
    public static IReadOnlyList<Setting> Of(Type t)
    {
        lock (Cache)
        {
            if (Cache.TryGetValue(t, out var s)) return s;
            var fresh = Activator.CreateInstance(t);
            var omit = t.GetCustomAttributes<OmitSettingsAttribute>(true).SelectMany(a => a.Names).ToHashSet();
            var chain = new List<Type>();
            for (var b = t; b != null && b != typeof(object); b = b.BaseType) chain.Insert(0, b);
            var list = new List<Setting>();
            foreach (var b in chain)
                foreach (var p in b.GetProperties(BindingFlags.Public | BindingFlags.Instance | BindingFlags.DeclaredOnly))
                    if (p.GetCustomAttribute<SettingAttribute>() is { } a && !omit.Contains(a.Name))
                    {
                        if (list.Any(x => x.Name == a.Name)) throw new InvalidOperationException($"{t.Name}: setting '{a.Name}' described twice");
                        list.Add(new Setting(p, a, fresh == null ? null : p.GetValue(fresh)));
                    }
            return Cache[t] = list;
        }
    }

    static readonly Dictionary<Type, IReadOnlyList<Setting>> Cache = new();

    /// <summary>
    /// A new <typeparamref name="T"/> with the given settings (by snake_case name) and the rest at their defaults;
    /// <paramref name="who"/> names it in errors (a name it lacks, a value of the wrong type or out of range).
    /// </summary>
    public static T Create<T>(IReadOnlyDictionary<string, object>? values, string who) where T : new() => (T)Create(typeof(T), values, who);

    public static object Create(Type t, IReadOnlyDictionary<string, object>? values, string who)
    {
        var o = Activator.CreateInstance(t)!;
        if (values == null) return o;
        var all = Of(t);
        foreach (var (k, v) in values)
        {
            var s = all.FirstOrDefault(x => x.Name == k)
                ?? throw new PerturbException($"{who} has no setting '{k}' (its settings: {string.Join(", ", all.Select(x => x.Name))})", 2);
            s.Set(o, s.Check(v, $"{who}: {k}"));
        }
        return o;
    }

    /// <summary>Every setting's current value on <paramref name="attack"/>, keys sorted: the "params" of its results.</summary>
    public static JsonObject Params(object attack)
    {
        var o = new JsonObject();
        foreach (var s in Of(attack.GetType()).OrderBy(s => s.Name, StringComparer.Ordinal)) o[s.Name] = s.ToJson(s.Get(attack));
        return o;
    }
}
