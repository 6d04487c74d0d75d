namespace Perturb.Perf;

public static class Program
{
    public static int Main(string[] args)
    {
        Console.Error.WriteLine("perf: benchmark harness (work in progress)");
        return 0;
    }
}
