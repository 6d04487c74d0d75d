using System.Text.Json.Nodes;

namespace Perturb.Engine.IO;

/// <summary>
/// A results folder written as one unit: the files go into a hidden temporary folder beside it
/// (<c>.NAME.tmp-PID</c>), which is renamed to NAME only when every file is written. A kill or a full disk leaves
/// the temporary folder (and any earlier results untouched), never a folder of partial files that looks finished;
/// a rerun replaces the whole folder, so no old run's files stay beside the new ones. The folder holds a marker,
/// <see cref="Marker"/>, naming what wrote it. An existing non-empty folder without the marker is someone else's:
/// it is refused unless the caller passes <c>overwrite</c> (the CLI's --overwrite).
/// </summary>
public static class OutputFolder
{
    public const string Marker = ".perturb-output.json";

    /// <summary>Fails now (before any work) when <paramref name="dir"/> may not be written; see the class summary.</summary>
    public static void Check(string dir, bool overwrite)
    {
        var full = Path.GetFullPath(dir);
        if (File.Exists(full)) throw new PerturbException($"--out {dir}: is a file, not a folder", 2);
        if (!Directory.Exists(full) || overwrite || File.Exists(Path.Combine(full, Marker))) return;
        bool empty;
        try { empty = !Directory.EnumerateFileSystemEntries(full).Any(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new PerturbException($"--out {dir}: cannot list the folder: {e.Message}"); }
        if (!empty)
            throw new PerturbException($"--out {dir}: the folder is not empty and was not written by perturb; choose another --out, or pass --overwrite to replace it", 2);
    }

    /// <summary>Runs <paramref name="write"/> on a temporary folder, then puts it in place of <paramref name="dir"/>.</summary>
    public static void Write(string dir, bool overwrite, string writtenBy, Action<string> write)
    {
        Check(dir, overwrite);
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir));
        var parent = Path.GetDirectoryName(full) ?? throw new PerturbException($"--out {dir}: cannot write the root folder", 2);
        var name = Path.GetFileName(full);
        var tmp = Path.Combine(parent, $".{name}.tmp-{Environment.ProcessId}");
        var old = Path.Combine(parent, $".{name}.old-{Environment.ProcessId}");
        try
        {
            Directory.CreateDirectory(parent);
            if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
            Directory.CreateDirectory(tmp);
            write(tmp);
            AtomicFile.WriteText(Path.Combine(tmp, Marker), new JsonObject { ["written_by"] = writtenBy, ["complete"] = true, ["utc"] = DateTime.UtcNow.ToString("O") }.ToJsonString() + "\n");
            if (Directory.Exists(full))
            {
                if (Directory.Exists(old)) Directory.Delete(old, true);
                Directory.Move(full, old);
                Directory.Move(tmp, full);
                Directory.Delete(old, true);
            }
            else Directory.Move(tmp, full);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(tmp);
            throw new PerturbException($"--out {dir}: cannot write the results folder: {e.Message}");
        }
        catch
        {
            TryDelete(tmp);
            throw;
        }
    }

    static void TryDelete(string d)
    {
        try { if (Directory.Exists(d)) Directory.Delete(d, true); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }
}
