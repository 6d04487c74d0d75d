using Perturb.Engine;
using Perturb.Engine.Data;
using Perturb.Engine.Nn;
using Perturb.Engine.Onnx;

namespace Perturb.Tests.Onnx;

/// <summary>
/// The PyTorch-made fixtures of tests/Onnx/fixtures (made by make_fixtures.py): NAME.onnx and NAME.npz with x, out
/// (the graph's output), logits (before a probability ending), r, grad = d sum(r * logits)/dx in float32 and agree
/// (1 where PyTorch's float32 and float64 gradient signs agree).
/// </summary>
sealed class Fixture
{
    public static readonly string Dir = FindDir();
    static string FindDir()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Engine.sln"))) return Path.Combine(d.FullName, "tests", "Onnx", "fixtures");
        throw new InvalidOperationException("cannot find the repository root (Engine.sln) above " + AppContext.BaseDirectory);
    }

    public string Name = "", OnnxPath = "";
    public float[] X = [], Out = [], Logits = [], R = [], Grad = [];
    public byte[] Agree = [];
    public int[] XShape = [];
    public int N => XShape[0];

    public static Fixture Load(string name)
    {
        var f = new Fixture { Name = name, OnnxPath = Path.Combine(Dir, name + ".onnx") };
        using var z = new NpzFile(Path.Combine(Dir, name + ".npz"));
        var x = z.Read("x");
        f.XShape = x.Shape; f.X = Floats(x);
        f.Out = Floats(z.Read("out")); f.Logits = Floats(z.Read("logits")); f.R = Floats(z.Read("r")); f.Grad = Floats(z.Read("grad"));
        var g = z.Read("agree");
        Assert.Equal(NpyType.UInt8, g.Type);
        f.Agree = g.Data;
        return f;
    }

    static float[] Floats(NpyArray a)
    {
        Assert.Equal(NpyType.Float32, a.Type);
        return Enumerable.Range(0, (int)a.Count).Select(i => BitConverter.ToSingle(a.Data, i * 4)).ToArray();
    }

    /// <summary>
    /// Imports the fixture on the backend and checks it against PyTorch: logits within 1e-4 (relative to the largest),
    /// and input-gradient signs agreeing on at least 99% of the elements where PyTorch's float32 and float64 agree.
    /// Returns the model (owned by the caller) and the engine's logits.
    /// </summary>
    public (Model M, float[] Logits) Check(IBackend be, double tol = 1e-4)
    {
        var m = OnnxImporter.Load(OnnxPath, be);
        try
        {
            m.Eval();
            using var xt = be.FromArray(X, XShape);
            var z = m.Forward(xt).ToArray();
            Ox.AssertClose(Logits, z, tol, tol, $"{Name} logits");
            using var rt = be.FromArray(R, N, R.Length / N);
            var dx = m.Backward(rt, BackwardMode.InputOnly)!.ToArray();
            int agree = 0, counted = 0;
            for (int i = 0; i < dx.Length; i++)
            {
                if (Agree[i] == 0) continue;
                counted++;
                if (Math.Sign(dx[i]) == Math.Sign(Grad[i])) agree++;
            }
            Assert.True(counted > dx.Length / 2, $"{Name}: PyTorch's float32 and float64 gradients agree on only {counted} of {dx.Length} signs");
            Assert.True(agree >= 0.99 * counted, $"{Name}: input-gradient signs agree on {agree} of {counted}");
            Ox.AssertClose(Grad, dx, 1e-3, 1e-3, $"{Name} input gradient");
            return (m, z);
        }
        catch { m.Dispose(); throw; }
    }
}
