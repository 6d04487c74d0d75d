using System.CommandLine;
using Perturb.Engine;

namespace Perturb.Cli;

public static class Program
{
    public static int Main(string[] args) => Run(args);

    /// <summary>Runs the CLI in-process. Usage errors exit 2, failures 1, each with one line on stderr and no stack trace.</summary>
    public static int Run(string[] args, TextWriter? stdout = null, TextWriter? stderr = null)
    {
        var io = new CliIO(stdout ?? Console.Out, stderr ?? Console.Error);
        var root = new RootCommand("perturb: adversarial attacks on medical-image classifiers, with a CNN engine that runs on CUDA or the CPU.");
        root.Subcommands.Add(InfoCommand.Build(io));
        root.Subcommands.Add(ParityCommand.Build(io));
        root.Subcommands.Add(TrainCommand.Build(io));
        root.Subcommands.Add(EvalCommand.Build(io));
        root.Subcommands.Add(DataCommand.Build(io));
        root.Subcommands.Add(PredictCommand.Build(io));
        root.Subcommands.Add(AttackCommand.Build(io));
        root.Subcommands.Add(PoisonCommand.Build(io));
        root.Subcommands.Add(DemoCommand.Build(io));
        root.Subcommands.Add(ReportCommand.Build(io));
        root.Subcommands.Add(SweepCommand.Build(io));
        root.Subcommands.Add(MergeCommand.Build(io));
        root.Subcommands.Add(WsiCommand.Build(io));
        Engine.BatchGuard.Log = io.Err.WriteLine;

        ParseResult pr;
        try { pr = root.Parse(args); }
        catch (Exception e) { io.Err.WriteLine($"error: {e.Message}"); return 2; }
        if (pr.Errors.Count > 0)
        {
            var msg = string.Join(" ", pr.Errors[0].Message.Split(new[] { '\n', '\r', '\t' }, StringSplitOptions.RemoveEmptyEntries).Select(x => x.Trim()));
            // An option an attack does not have: say which settings it does have.
            if (args.Length > 1 && args[0] == "attack" && msg.StartsWith("Unrecognized", StringComparison.Ordinal)
                && Engine.Attacks.AttackRegistry.Attacks.FirstOrDefault(a => a.Name == args[1]) is { } info)
                msg += $" ({info.Name}'s settings: {string.Join(", ", info.Settings.Select(x => x.Option))})";
            io.Err.WriteLine($"error: {msg} (see perturb --help)");
            return 2;
        }
        try
        {
            var cfg = new InvocationConfiguration { Output = io.Out, Error = io.Err, EnableDefaultExceptionHandler = false };
            return pr.Invoke(cfg);
        }
        catch (Exception e)
        {
            var (line, code) = ErrorLine(e, args);
            io.Err.WriteLine(line);
            return code;
        }
    }

    /// <summary>
    /// The one line an error prints, and the exit code. Errors meant for the user (<see cref="PerturbException"/>)
    /// print their message. Anything else is a fault of ours that escaped the checks: it prints what it says without
    /// the .NET exception type, and asks for a report. An out-of-memory names no --batch-size: batched steps halve their
    /// batch on their own (BatchGuard), so one that reaches here came from something else (a data set, a model, a limit).
    /// </summary>
    public static (string Line, int Code) ErrorLine(Exception e, string[] args)
    {
        var inner = e;
        while (inner is AggregateException { InnerException: { } ie } || inner is System.Reflection.TargetInvocationException { InnerException: { } }) inner = inner.InnerException!;
        string cmd = args.Length > 0 && !args[0].StartsWith('-') ? $"perturb {args[0]}" : "perturb";
        return inner switch
        {
            PerturbException pe => ($"error: {pe.Message}", pe.ExitCode),
            _ when Engine.BatchGuard.IsOutOfMemory(inner) =>
                ("error: out of memory: the data set, the model or a setting needs more memory than is free (batched steps already halve their batch on their own; see docs/limits.md for the size limits)", 1),
            IOException or UnauthorizedAccessException => ($"error: {cmd}: cannot read or write a file: {inner.Message}", 1),
            _ => ($"error: {cmd} failed unexpectedly: {inner.Message} (this is a bug in perturb; please report it with the command line)", 1),
        };
    }
}

/// <summary>Where a command prints: results to Out, progress and errors to Err.</summary>
public sealed record CliIO(TextWriter Out, TextWriter Err);
