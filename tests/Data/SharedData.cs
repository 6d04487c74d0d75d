namespace Perturb.Tests.Data;

/// <summary>
/// The shared real data (../shared/data beside the repository): found by walking up from the test binaries to the
/// folder holding Engine.sln, then its parent's shared/data. Null when absent.
/// </summary>
public static class SharedData
{
    public static readonly string? Root = Find();

    static string? Find()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (System.IO.File.Exists(Path.Combine(d.FullName, "Engine.sln")))
            {
                var p = d.Parent == null ? null : Path.Combine(d.Parent.FullName, "shared", "data");
                return p != null && Directory.Exists(p) ? p : null;
            }
        return null;
    }

    public static string PathOf(params string[] parts) =>
        Path.Combine(new[] { Root ?? throw new InvalidOperationException("../shared/data is absent beside the repository (CI=true runs the tests that need it)") }.Concat(parts).ToArray());
}

/// <summary>
/// A fact that is skipped, with the reason, where ../shared/data is absent on a developer's machine. Under CI=true it
/// always runs, and fails when the data is missing (as the WSI tests do).
/// </summary>
public sealed class SharedDataFactAttribute : FactAttribute
{
    public SharedDataFactAttribute()
    {
        if (SharedData.Root == null && Environment.GetEnvironmentVariable("CI") != "true")
            Skip = "../shared/data (real MedMNIST files and sample images) is absent beside the repository (with CI=true this test runs and fails instead)";
    }
}
