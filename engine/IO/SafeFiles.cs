using System.Runtime.InteropServices;

namespace Perturb.Engine.IO;

/// <summary>What a path names, after following symbolic links.</summary>
public enum FileKind { Missing, Regular, Directory, Other }

/// <summary>
/// Reading user files without hanging or running away: only regular files are opened (a FIFO named x.png would block
/// the open forever, /dev/zero never ends), a file read whole is checked against <see cref="Limits.MaxFileBytes"/>
/// first, and folder walks follow a symbolic link only when its target lies inside the walk's root and is not a
/// folder the walk is already in (no escapes, no loops). .NET reports FIFOs and devices as ordinary files, so the
/// file type comes from the runtime's own stat shim (libSystem.Native, which every .NET on Unix ships).
/// </summary>
public static class SafeFiles
{
    /// <summary>The kind of <paramref name="path"/> (links followed).</summary>
    public static FileKind Kind(string path)
    {
        if (OperatingSystem.IsWindows())
            return File.Exists(path) ? FileKind.Regular : Directory.Exists(path) ? FileKind.Directory : FileKind.Missing;
        var buf = new byte[512]; // SystemNative's FileStatus: Flags (int32), Mode (int32), ...
        int rc;
        try { rc = SystemNativeStat(path, buf); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        { return File.Exists(path) ? FileKind.Regular : Directory.Exists(path) ? FileKind.Directory : FileKind.Missing; }
        if (rc != 0) return FileKind.Missing;
        int mode = BitConverter.ToInt32(buf, 4) & 0xF000;
        return mode switch { 0x8000 => FileKind.Regular, 0x4000 => FileKind.Directory, _ => FileKind.Other };
    }

    [DllImport("libSystem.Native", EntryPoint = "SystemNative_Stat")]
    static extern int SystemNativeStat([MarshalAs(UnmanagedType.LPUTF8Str)] string path, byte[] status);

    /// <summary>Fails with one line naming the file unless it is an existing regular file.</summary>
    public static void RequireRegular(string path, string what = "file")
    {
        switch (Kind(path))
        {
            case FileKind.Regular: return;
            case FileKind.Missing: throw new PerturbException($"{path}: no such file");
            case FileKind.Directory: throw new PerturbException($"{path}: is a folder, not a {what}");
            default: throw new PerturbException($"{path}: not a regular file (a device, pipe or socket); only regular files are read");
        }
    }

    /// <summary>Opens a regular file for reading; errors name the file.</summary>
    public static FileStream OpenRead(string path, string what = "file")
    {
        RequireRegular(path, what);
        try { return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read); }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException) { throw new PerturbException($"{path}: no such file"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new PerturbException($"{path}: cannot read: {e.Message}"); }
    }

    /// <summary>Reads a whole regular file of at most <paramref name="maxBytes"/> (default <see cref="Limits.MaxFileBytes"/>).</summary>
    public static byte[] ReadAllBytes(string path, string what = "file", long? maxBytes = null)
    {
        using var fs = OpenRead(path, what);
        long max = Math.Min(maxBytes ?? Limits.MaxFileBytes, Array.MaxLength);
        long len;
        try { len = fs.Length; }
        catch (IOException e) { throw new PerturbException($"{path}: cannot read: {e.Message}"); }
        if (len > max) throw Limits.Exceeded($"{path}: file size in bytes", len, max, "PERTURB_MAX_FILE_BYTES");
        var buf = new byte[len];
        int got = 0;
        try
        {
            while (got < len) { int k = fs.Read(buf, got, (int)(len - got)); if (k <= 0) break; got += k; }
        }
        catch (IOException e) { throw new PerturbException($"{path}: cannot read: {e.Message}"); }
        return got == len ? buf : buf.AsSpan(0, got).ToArray();
    }

    /// <summary>
    /// Reads up to <paramref name="n"/> bytes (fewer at the end of the stream). Memory follows the data that actually
    /// arrives, not the size a header claims: a seekable stream is checked against its length first, any other is read
    /// in chunks. So a 100-byte file whose header claims a gigabyte allocates about 100 bytes.
    /// </summary>
    public static byte[] ReadUpTo(Stream s, long n)
    {
        if (n <= 0) return Array.Empty<byte>();
        if (s.CanSeek) n = Math.Min(n, Math.Max(0, s.Length - s.Position));
        if (n > Array.MaxLength) n = Array.MaxLength;
        const int chunk = 16 << 20;
        if (n <= chunk || s.CanSeek)
        {
            var buf = new byte[n];
            int got = 0;
            while (got < n) { int k = s.Read(buf, got, (int)(n - got)); if (k <= 0) break; got += k; }
            return got == n ? buf : buf[..got];
        }
        var parts = new List<byte[]>();
        long total = 0;
        while (total < n)
        {
            var part = new byte[Math.Min(chunk, n - total)];
            int got = 0;
            while (got < part.Length) { int k = s.Read(part, got, part.Length - got); if (k <= 0) break; got += k; }
            parts.Add(got == part.Length ? part : part[..got]);
            total += got;
            if (got < part.Length) break; // the stream ended
        }
        var all = new byte[total];
        long off = 0;
        foreach (var p in parts) { p.CopyTo(all, off); off += p.Length; }
        return all;
    }

    public static string ReadAllText(string path, string what = "file") => System.Text.Encoding.UTF8.GetString(StripBom(ReadAllBytes(path, what)));

    static byte[] StripBom(byte[] b) => b.Length >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF ? b[3..] : b;

    /// <summary>The regular files directly in <paramref name="dir"/> (links followed only inside <paramref name="root"/>), sorted ordinally by name.</summary>
    public static List<string> Files(string dir, string? root = null) =>
        Entries(dir, root ?? dir).Where(e => e.Kind == FileKind.Regular).Select(e => e.Path).ToList();

    /// <summary>The subfolders of <paramref name="dir"/>, without hidden ones, links followed only inside <paramref name="root"/> and never into a folder above.</summary>
    public static List<string> Dirs(string dir, string? root = null) =>
        Entries(dir, root ?? dir).Where(e => e.Kind == FileKind.Directory && !System.IO.Path.GetFileName(e.Path).StartsWith('.')).Select(e => e.Path).ToList();

    /// <summary>Every regular file under <paramref name="root"/> (recursively, sorted ordinally by path), walked as <see cref="Dirs"/> says.</summary>
    public static List<string> FilesRecursive(string root)
    {
        var result = new List<string>();
        var stack = new Stack<string>();
        stack.Push(root);
        var seen = new HashSet<string>(StringComparer.Ordinal) { Canonical(root) };
        while (stack.Count > 0)
        {
            var d = stack.Pop();
            foreach (var (p, kind) in Entries(d, root))
            {
                if (kind == FileKind.Regular) result.Add(p);
                else if (kind == FileKind.Directory && !System.IO.Path.GetFileName(p).StartsWith('.') && seen.Add(Canonical(p))) stack.Push(p);
            }
        }
        result.Sort(StringComparer.Ordinal);
        return result;
    }

    /// <summary>The entries of one folder with their kinds; a link that leaves the root, or points at the root or a folder above the entry, is left out.</summary>
    static List<(string Path, FileKind Kind)> Entries(string dir, string root)
    {
        IEnumerable<FileSystemInfo> infos;
        try { infos = new DirectoryInfo(dir).EnumerateFileSystemInfos().ToList(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new PerturbException($"{dir}: cannot list the folder: {e.Message}"); }
        string rootFull = Canonical(root);
        var r = new List<(string, FileKind)>();
        foreach (var fi in infos.OrderBy(i => i.Name, StringComparer.Ordinal))
        {
            if (fi.LinkTarget != null)
            {
                string? target;
                try { target = fi.ResolveLinkTarget(returnFinalTarget: true)?.FullName; }
                catch (IOException) { continue; } // a loop of links, or a broken one
                if (target == null) continue;
                target = Canonical(target);
                if (!Inside(target, rootFull)) continue; // leaves the root
                if (Inside(Canonical(dir), target)) continue; // points at a folder the walk is in: a loop
            }
            r.Add((fi.FullName, Kind(fi.FullName)));
        }
        return r;
    }

    /// <summary>The full path with links in the last component resolved.</summary>
    static string Canonical(string p)
    {
        var full = System.IO.Path.GetFullPath(p);
        try
        {
            var t = new DirectoryInfo(full).LinkTarget != null ? Directory.ResolveLinkTarget(full, true)?.FullName : null;
            return System.IO.Path.TrimEndingDirectorySeparator(t ?? full);
        }
        catch (IOException) { return System.IO.Path.TrimEndingDirectorySeparator(full); }
    }

    static bool Inside(string path, string folder) =>
        path == folder || path.StartsWith(folder.EndsWith(System.IO.Path.DirectorySeparatorChar) ? folder : folder + System.IO.Path.DirectorySeparatorChar, StringComparison.Ordinal);
}
