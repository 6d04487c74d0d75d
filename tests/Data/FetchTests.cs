using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Perturb.Engine;
using Perturb.Engine.Data;

namespace Perturb.Tests.Data;

/// <summary>Serves a byte array over HTTP from memory, honouring Range; can cut the body short or ignore Range.</summary>
sealed class MemoryServer : HttpMessageHandler
{
    readonly byte[] _content;
    public int FailAfter { get; set; } = -1;   // throw an IOException after this many body bytes (once)
    public bool IgnoreRange { get; set; }
    public List<long?> RangeStarts { get; } = new();

    public MemoryServer(byte[] content) { _content = content; }

    protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken ct)
    {
        long from = request.Headers.Range?.Ranges.First().From ?? 0;
        RangeStarts.Add(request.Headers.Range?.Ranges.First().From);
        if (IgnoreRange) from = 0;
        if (from >= _content.Length && from > 0)
            return Task.FromResult(new HttpResponseMessage(HttpStatusCode.RequestedRangeNotSatisfiable));
        var body = _content.AsSpan((int)from).ToArray();
        Stream s = new MemoryStream(body);
        if (FailAfter >= 0) { s = new FailingStream(s, FailAfter); FailAfter = -1; }
        var resp = new HttpResponseMessage(from > 0 ? HttpStatusCode.PartialContent : HttpStatusCode.OK) { Content = new StreamContent(s) };
        resp.Content.Headers.ContentLength = body.Length;
        if (from > 0) resp.Content.Headers.ContentRange = new System.Net.Http.Headers.ContentRangeHeaderValue(from, _content.Length - 1, _content.Length);
        return Task.FromResult(resp);
    }

    sealed class FailingStream(Stream inner, int limit) : Stream
    {
        int _done;
        public override int Read(byte[] buffer, int offset, int count)
        {
            if (_done >= limit) throw new IOException("connection reset by peer");
            int k = inner.Read(buffer, offset, Math.Min(count, Math.Min(1000, limit - _done)));
            _done += k;
            return k;
        }
        public override bool CanRead => true; public override bool CanSeek => false; public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException(); public override long Position { get => _done; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long o, SeekOrigin s) => throw new NotSupportedException();
        public override void SetLength(long v) => throw new NotSupportedException();
        public override void Write(byte[] b, int o, int c) => throw new NotSupportedException();
    }
}

sealed class NoNetwork : HttpMessageHandler
{
    public int Calls;
    protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken ct)
    {
        Calls++;
        throw new HttpRequestException(HttpRequestError.NameResolutionError, "Name or service not known (zenodo.org:443)", new SocketException((int)SocketError.HostNotFound));
    }
}

public class FetchTests : TempDirTest
{
    static readonly Uri Url = new("https://example.invalid/files/x.npz?download=1");

    static byte[] Content(int n)
    {
        var b = new byte[n];
        new Random(5).NextBytes(b);
        return b;
    }

    static string Md5(byte[] b) => Convert.ToHexStringLower(MD5.HashData(b));

    [Fact]
    public void InterruptedDownloadResumesWithARangeRequest()
    {
        var content = Content(300_000);
        var server = new MemoryServer(content) { FailAfter = 123_000 };
        var dest = Path.Combine(Dir, "cache", "x.npz");
        var e = Assert.Throws<PerturbException>(() => Fetch.Download(Url, dest, Md5(content), server));
        Assert.Contains("interrupted after 123000 of 300000 bytes", e.Message);
        Assert.Contains("resume", e.Message);
        Assert.False(File.Exists(dest));
        Assert.Equal(123_000, new FileInfo(dest + ".part").Length);

        var seen = new List<(long, long?)>();
        Fetch.Download(Url, dest, Md5(content), server, (d, t) => seen.Add((d, t)));
        Assert.Equal(new long?[] { null, 123_000 }, server.RangeStarts);
        Assert.Equal(content, File.ReadAllBytes(dest));
        Assert.False(File.Exists(dest + ".part"));
        Assert.Equal((123_000L, (long?)300_000), seen[0]);
        Assert.Equal((300_000L, (long?)300_000), seen[^1]);
    }

    [Fact]
    public void ACorruptDownloadIsDeletedAndAnError()
    {
        var content = Content(50_000);
        var dest = Path.Combine(Dir, "x.npz");
        var e = Assert.Throws<PerturbException>(() => Fetch.Download(Url, dest, Md5(Content(10)), new MemoryServer(content)));
        Assert.Contains("MD5", e.Message); Assert.Contains(Md5(content), e.Message);
        Assert.False(File.Exists(dest)); Assert.False(File.Exists(dest + ".part"));
        // a wrong part file left from before: resuming gives a bad MD5, the part is dropped, the next run succeeds
        File.WriteAllBytes(dest + ".part", new byte[1000]);
        var server = new MemoryServer(content);
        Assert.Throws<PerturbException>(() => Fetch.Download(Url, dest, Md5(content), server));
        Assert.False(File.Exists(dest + ".part"));
        Fetch.Download(Url, dest, Md5(content), server);
        Assert.Equal(content, File.ReadAllBytes(dest));
    }

    [Fact]
    public void AServerIgnoringRangeRestartsAndACompletePartIsKept()
    {
        var content = Content(20_000);
        var dest = Path.Combine(Dir, "x.npz");
        File.WriteAllBytes(dest + ".part", content[..5000]);
        Fetch.Download(Url, dest, Md5(content), new MemoryServer(content) { IgnoreRange = true });
        Assert.Equal(content, File.ReadAllBytes(dest));
        File.Delete(dest);
        File.WriteAllBytes(dest + ".part", content); // complete already: the server answers 416
        var server = new MemoryServer(content);
        Fetch.Download(Url, dest, Md5(content), server);
        Assert.Equal(new long?[] { 20_000 }, server.RangeStarts);
        Assert.Equal(content, File.ReadAllBytes(dest));
    }

    [Fact]
    public void NoNetworkIsOneLineAndUnknownNamesAreUsageErrors()
    {
        var e = Assert.Throws<PerturbException>(() => Fetch.MedMnistFile("breastmnist", Path.Combine(Dir, "c"), new NoNetwork()));
        Assert.StartsWith("no network: cannot reach zenodo.org", e.Message);
        Assert.Equal(1, e.ExitCode);
        Assert.DoesNotContain("\n", e.Message);
        var u = Assert.Throws<PerturbException>(() => Fetch.MedMnistFile("nosuchmnist", Dir, new NoNetwork()));
        Assert.Equal(2, u.ExitCode); Assert.Contains("pneumoniamnist", u.Message);
        Assert.Equal("https://zenodo.org/records/10519652/files/dermamnist.npz?download=1", Fetch.UrlOf("dermamnist").ToString());
        Assert.Equal(12, MedMnist.Sets.Count);
        Assert.All(MedMnist.Sets.Values, s => Assert.Matches("^[0-9a-f]{32}$", s.Md5));
    }

    [SharedDataFact]
    public void ACachedFileWithTheOfficialMd5NeedsNoNetwork()
    {
        var cache = Path.Combine(Dir, "cache");
        Directory.CreateDirectory(cache);
        File.Copy(SharedData.PathOf("medmnist", "breastmnist.npz"), Path.Combine(cache, "breastmnist.npz"));
        var net = new NoNetwork();
        Assert.Equal(Path.Combine(cache, "breastmnist.npz"), Fetch.MedMnistFile("BreastMNIST.npz", cache, net));
        Assert.Equal(0, net.Calls);
        // a damaged cached copy is fetched again (here: no network, so an error, and the bad copy is gone)
        File.WriteAllBytes(Path.Combine(cache, "pneumoniamnist.npz"), new byte[10]);
        Assert.Throws<PerturbException>(() => Fetch.MedMnistFile("pneumoniamnist", cache, net));
        Assert.Equal(1, net.Calls);
        Assert.False(File.Exists(Path.Combine(cache, "pneumoniamnist.npz")));
    }
}
