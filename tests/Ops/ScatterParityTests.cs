using Perturb.Engine;

namespace Perturb.Tests.Ops;

/// <summary>
/// The search attacks' candidate images (<see cref="IBackend.ScatterRows"/>) on both backends against the plain
/// reference: guarded views for every operand, a NaN-filled output, repeated sources, an edit list with repeated
/// indices (the later one wins), skipped indices (-1, cols, NaN), fractional indices (truncated), and a row whose source
/// is out of range (NaN but for its edits).
/// </summary>
[Collection("ops")]
public class ScatterParityTests
{
    public static IEnumerable<object[]> Backends() => new[] { new object[] { TestBackends.Cpu }, new object[] { TestBackends.IlgpuCpu } };

    [Theory, MemberData(nameof(Backends))]
    public void ScatterRowsMatchesReference(string backend)
    {
        const int images = 3, rows = 6, cols = 23, edits = 4;
        using var h = new OpHarness(backend);
        var x = Ref.D(Ref.F(Ref.Rand(images * cols, 1)));
        double[] src = [2, 0, 0, 1, 2.75, -1];
        double[] idx =
        [
            0, 22, 5, 5,          // the last write of index 5 wins
            -1, 3, double.NaN, 7, // skipped edits
            23, 1e6, 0, 22,       // out of range, then both ends
            4.9, 11, 12, 13,      // truncated to 4
            1, 2, 3, 1,           // repeated on a fractional source (2.75 -> 2)
            0, 1, 2, 3,           // source out of range: the whole row is NaN
        ];
        var val = Ref.D(Ref.F(Ref.Rand(rows * edits, 2)));
        var ty = h.Out(true, rows, cols);
        h.Op("scatter_rows", () => h.Be.ScatterRows(h.V(x, images, cols), h.V(src, rows), h.V(idx, rows, edits), h.V(val, rows, edits), ty, images, rows, cols, edits),
            (long)rows * (cols + edits));
        var want = Ref.ScatterRows(x, src, idx, val, images, rows, cols, edits);
        Ref.AssertClose(want, h.GetF(ty), 0, 0, $"{backend} scatter_rows");
        // the reference itself: row 0 holds image 2 with index 5 set by the later edit, row 5 is NaN but for its edits
        Assert.Equal((float)val[3], h.GetF(ty)[5]);
        Assert.True(double.IsNaN(want[5 * cols + 10]) && want[5 * cols] == val[5 * edits]);
        // No edits: plain row copies.
        var tz = h.Out(false, rows - 1, cols);
        h.Op("scatter_rows", () => h.Be.ScatterRows(h.T(x, images, cols), h.T(src[..5], 5), h.T([], 0), h.T([], 0), tz, images, 5, cols, 0), 5L * cols);
        Ref.AssertClose(Ref.ScatterRows(x, src[..5], [], [], images, 5, cols, 0), h.GetF(tz), 0, 0, $"{backend} scatter_rows without edits");
        h.CheckGuards();
    }
}
