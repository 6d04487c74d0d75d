namespace Perturb.Engine;

/// <summary>Argument checks used by <c>Backends.BackendBase</c>.</summary>
public static class Check
{
    public static void Len(Tensor t, long need, string op, string name)
    {
        if (t.Length < need) throw new ArgumentException($"{op}: {name} has {t.Length} elements [{Tensor.ShapeString(t.Shape)}], needs {need}");
    }
    public static void Same(Tensor a, Tensor b, string op)
    {
        if (a.Length != b.Length) throw new ArgumentException($"{op}: lengths differ, [{Tensor.ShapeString(a.Shape)}] and [{Tensor.ShapeString(b.Shape)}]");
    }
}

/// <summary>An error meant for the user: the CLI prints its message as one line and exits with <see cref="ExitCode"/>.</summary>
public class PerturbException : Exception
{
    public int ExitCode { get; }
    public PerturbException(string message, int exitCode = 1, Exception? inner = null) : base(message, inner) { ExitCode = exitCode; }
}
