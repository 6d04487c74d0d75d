using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Security.Cryptography;

namespace Perturb.Engine.Data;

/// <summary>
/// Downloads MedMNIST v2 files (the 28x28 ones) from the official Zenodo record into a cache folder, resumably: bytes
/// go to NAME.npz.part; a later run asks for the rest with an HTTP Range request from the part file's size; the part
/// file becomes NAME.npz only when complete and its MD5 equals the official one (<see cref="MedMnist.Sets"/>).
/// A mismatch deletes the part file and is an error. Without a network it says so in one line.
/// </summary>
public static class Fetch
{
    public const string BaseUrl = "https://zenodo.org/records/10519652/files/";

    public static string DefaultCache =>
        Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "perturb", "medmnist");

    public static Uri UrlOf(string name) => new($"{BaseUrl}{name}.npz?download=1");

    /// <summary>
    /// Makes sure CACHE/NAME.npz is present with the official MD5, downloading what is missing, and returns its path.
    /// <paramref name="progress"/> gets (bytes so far, total bytes when known).
    /// </summary>
    public static string MedMnistFile(string name, string? cacheDir = null, HttpMessageHandler? handler = null, Action<long, long?>? progress = null)
    {
        var key = name.Trim().ToLowerInvariant();
        if (key.EndsWith(".npz")) key = key[..^4];
        if (!MedMnist.Sets.TryGetValue(key, out var set))
            throw new PerturbException($"unknown MedMNIST set '{name}' (known: {string.Join(", ", MedMnist.Sets.Keys)})", 2);
        var dest = Path.Combine(cacheDir ?? DefaultCache, key + ".npz");
        if (File.Exists(dest))
        {
            if (Md5Of(dest) == set.Md5) return dest;
            File.Delete(dest); // a damaged copy: fetch it again
        }
        Download(UrlOf(key), dest, set.Md5, handler, progress);
        return dest;
    }

    public static string Md5Of(string path)
    {
        using var fs = Npy.OpenRead(path);
        return Convert.ToHexStringLower(MD5.HashData(fs));
    }

    /// <summary>Downloads <paramref name="url"/> to <paramref name="dest"/> through DEST.part, resuming it, then checks the MD5.</summary>
    public static void Download(Uri url, string dest, string md5, HttpMessageHandler? handler = null, Action<long, long?>? progress = null)
    {
        try { Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(dest))!); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new PerturbException($"{dest}: cannot create the cache folder: {e.Message}"); }
        var part = dest + ".part";
        DownloadAsync(url, part, handler, progress).GetAwaiter().GetResult();
        var got = Md5Of(part);
        if (!string.Equals(got, md5, StringComparison.OrdinalIgnoreCase))
        {
            File.Delete(part);
            throw new PerturbException($"{url.GetLeftPart(UriPartial.Path)}: MD5 of the download is {got}, the official one is {md5}; the partial file was deleted, run again to download afresh");
        }
        File.Move(part, dest, overwrite: true);
    }

    static async Task DownloadAsync(Uri url, string part, HttpMessageHandler? handler, Action<long, long?>? progress)
    {
        string host = url.Host;
        using var client = handler != null ? new HttpClient(handler, disposeHandler: false) : new HttpClient(new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(20) });
        client.Timeout = Timeout.InfiniteTimeSpan;
        long offset = File.Exists(part) ? new FileInfo(part).Length : 0;
        using var req = new HttpRequestMessage(HttpMethod.Get, url);
        if (offset > 0) req.Headers.Range = new RangeHeaderValue(offset, null);
        HttpResponseMessage resp;
        try { resp = await client.SendAsync(req, HttpCompletionOption.ResponseHeadersRead); }
        catch (HttpRequestException e) when (e.InnerException is SocketException || e.HttpRequestError is HttpRequestError.NameResolutionError or HttpRequestError.ConnectionError)
        { throw new PerturbException($"no network: cannot reach {host} ({e.Message})"); }
        catch (HttpRequestException e) { throw new PerturbException($"{url.GetLeftPart(UriPartial.Path)}: request failed: {e.Message}"); }
        catch (TaskCanceledException) { throw new PerturbException($"no network: connecting to {host} timed out"); }
        using (resp)
        {
            if (resp.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable && offset > 0) return; // the part file is whole already
            if (!resp.IsSuccessStatusCode)
                throw new PerturbException($"{url.GetLeftPart(UriPartial.Path)}: HTTP {(int)resp.StatusCode} {resp.ReasonPhrase}");
            bool append = resp.StatusCode == HttpStatusCode.PartialContent;
            if (append && resp.Content.Headers.ContentRange?.From is long from && from != offset)
                throw new PerturbException($"{url.GetLeftPart(UriPartial.Path)}: the server resumed at byte {from}, not {offset}; delete {part} and run again");
            if (!append) offset = 0; // the server sent the whole file
            long? total = resp.Content.Headers.ContentLength is long len ? len + offset : null;
            long done = offset;
            progress?.Invoke(done, total);
            await using var body = await resp.Content.ReadAsStreamAsync();
            await using var fs = new FileStream(part, append ? FileMode.Append : FileMode.Create, FileAccess.Write);
            var buf = new byte[1 << 16];
            try
            {
                int k;
                while ((k = await body.ReadAsync(buf)) > 0)
                {
                    await fs.WriteAsync(buf.AsMemory(0, k));
                    done += k;
                    progress?.Invoke(done, total);
                }
            }
            catch (Exception e) when (e is IOException or HttpRequestException)
            {
                throw new PerturbException($"{url.GetLeftPart(UriPartial.Path)}: download interrupted after {done}{(total.HasValue ? $" of {total}" : "")} bytes ({e.Message}); run the same command again to resume");
            }
            if (total.HasValue && done < total)
                throw new PerturbException($"{url.GetLeftPart(UriPartial.Path)}: download ended after {done} of {total} bytes; run the same command again to resume");
        }
    }
}
