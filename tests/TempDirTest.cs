namespace Perturb.Tests;

/// <summary>Base for tests that write files: a fresh temporary folder per test, removed afterwards.</summary>
public abstract class TempDirTest : IDisposable
{
    protected readonly string Dir = Path.Combine(Path.GetTempPath(), "perturb-test-" + Guid.NewGuid().ToString("N"));
    protected TempDirTest() { Directory.CreateDirectory(Dir); }
    public void Dispose() { try { Directory.Delete(Dir, true); } catch (IOException) { } GC.SuppressFinalize(this); }
}
