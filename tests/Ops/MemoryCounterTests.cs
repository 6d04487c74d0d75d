using Perturb.Engine;

namespace Perturb.Tests.Ops;

/// <summary>The backend's memory counters: allocations and their bytes, host-to-device and device-to-host bytes, reset.</summary>
[Collection("ops")]
public class MemoryCounterTests
{
    [Theory, InlineData(TestBackends.Cpu), InlineData(TestBackends.IlgpuCpu)]
    public void CountsAllocationsAndCopies(string backend)
    {
        var be = TestBackends.Get(backend);
        be.Counters.Reset();
        Assert.True(be.Counters.Traffic.IsZero);
        // 32781 floats: above the CPU backend's pooling threshold, so a freed array is reused, not allocated again.
        const int n = (1 << 15) + 13;
        var t = be.Allocate(n);
        Assert.Equal(new MemoryTraffic(1, 4L * n, 0, 0), be.Counters.Traffic);
        be.Upload(t, new float[n]);
        Assert.Equal(4L * n, be.Counters.HostToDeviceBytes);
        using var small = be.FromArray([1f, 2f, 3f], 3);
        Assert.Equal(2, be.Counters.Allocations);
        Assert.Equal(4L * n + 12, be.Counters.HostToDeviceBytes);
        Assert.Equal([1f, 2f, 3f], small.ToArray());
        Assert.Equal(12, be.Counters.DeviceToHostBytes);
        // Ops on the device move nothing.
        var before = be.Counters.Traffic;
        be.Fill(t, 2f); be.Scale(3f, t, t);
        Assert.True((be.Counters.Traffic - before).IsZero);
        t.Dispose();
        be.Counters.Reset();
        Assert.True(be.Counters.Traffic.IsZero);
    }

    [Theory, InlineData(TestBackends.Cpu), InlineData(TestBackends.IlgpuCpu)]
    public void LabelsAreReadOnceWhileUnchangedAndAgainAfterAWrite(string backend)
    {
        var be = TestBackends.Get(backend);
        using var z = be.FromArray([1f, 2f, 3f, 3f, 2f, 1f], 2, 3);
        using var y = be.FromArray([2f, 0f], 2);
        using var loss = be.Allocate(2);
        using var g = be.Allocate(2, 3);
        using var s = be.FromArray([1f, 1f], 2);
        be.CrossEntropy(z, y, loss, g, s, 2, 3);
        be.Synchronize();
        var t0 = be.Counters.Traffic;
        for (int i = 0; i < 3; i++) { be.CrossEntropy(z, y, loss, g, s, 2, 3); be.CwMarginLoss(z, y, loss, g, s, false, 0f, 2, 3); }
        Assert.True((be.Counters.Traffic - t0).IsZero, $"{be.Counters.Traffic - t0}");
        // A write to the labels makes the next loss check them again, and a bad label fails every time.
        be.Upload(y, [3f, 0f]);
        for (int i = 0; i < 2; i++)
        {
            var e = Assert.Throws<ArgumentException>(() => be.CrossEntropy(z, y, loss, g, s, 2, 3));
            Assert.Equal("ce_loss: label 3 of row 0 is not a class index in [0, 3)", e.Message);
        }
        // A view of the labels shares their version: writing through it invalidates the check too.
        be.Upload(y, [1f, 0f]);
        be.CrossEntropy(z, y, loss, g, s, 2, 3);
        be.Upload(y.Slice(1, 1), [7f]);
        Assert.Throws<ArgumentException>(() => be.CwMarginLoss(z, y, loss, g, s, false, 0f, 2, 3));
    }
}
