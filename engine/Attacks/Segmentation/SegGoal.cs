using System.Globalization;

namespace Perturb.Engine.Attacks.Segmentation;

public enum SegGoalKind { Untargeted, Erase, ForgeRegion, ForgeOther, Masks }

/// <summary>
/// What a segmentation attack drives the model to. Untargeted: away from the clean prediction. Targeted, a mask
/// per image: <c>erase</c> (every pixel background: the finding vanishes); <c>forge:y0,x0,y1,x1</c> (the clean
/// prediction with the rectangle [y0, y1) x [x0, x1) made nucleus: a finding appears); <c>forge</c> or
/// <c>forge:other</c> (another image's true mask: image i gets the mask of image (i+1) mod n); or masks given.
/// </summary>
public sealed record SegGoal(SegGoalKind Kind, int Y0 = 0, int X0 = 0, int Y1 = 0, int X1 = 0, int ForgeClass = 1, int[]? Given = null)
{
    public const string Help = "untargeted (default), erase (every nucleus becomes background), forge (each image gets the next image's true mask), " +
        "or forge:Y0,X0,Y1,X1 (the clean prediction with that rectangle, rows Y0..Y1-1 and columns X0..X1-1, made nucleus)";

    public static readonly SegGoal Untargeted = new(SegGoalKind.Untargeted);
    public static readonly SegGoal Erase = new(SegGoalKind.Erase);
    public static readonly SegGoal ForgeOther = new(SegGoalKind.ForgeOther);
    public bool Targeted => Kind != SegGoalKind.Untargeted;

    public static SegGoal Parse(string? s)
    {
        if (s == null || s == "untargeted") return Untargeted;
        if (s == "erase") return Erase;
        if (s is "forge" or "forge:other") return ForgeOther;
        if (s.StartsWith("forge:"))
        {
            var p = s[6..].Split(',');
            if (p.Length == 4 && p.All(v => int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out var i) && i >= 0))
            {
                var v = p.Select(q => int.Parse(q, CultureInfo.InvariantCulture)).ToArray();
                if (v[2] > v[0] && v[3] > v[1]) return new SegGoal(SegGoalKind.ForgeRegion, v[0], v[1], v[2], v[3]);
            }
            throw new PerturbException($"--target {s}: a forged region is forge:Y0,X0,Y1,X1 with Y1 > Y0 and X1 > X0 (pixels)", 2);
        }
        throw new PerturbException($"--target {s}: choose {Help}", 2);
    }

    public override string ToString() => Kind switch
    {
        SegGoalKind.Untargeted => "untargeted",
        SegGoalKind.Erase => "erase",
        SegGoalKind.ForgeOther => "forge:other",
        SegGoalKind.ForgeRegion => $"forge:{Y0},{X0},{Y1},{X1}",
        _ => "masks",
    };

    /// <summary>The target mask of each image [n*h*w], or null for untargeted.</summary>
    public int[]? Resolve(int[] cleanPred, int[]? truth, int n, int h, int w, int classes)
    {
        int p = h * w;
        switch (Kind)
        {
            case SegGoalKind.Untargeted: return null;
            case SegGoalKind.Erase: return new int[n * p];
            case SegGoalKind.ForgeOther:
                if (truth == null) throw new PerturbException("--target forge needs true masks to take another image's from", 2);
                if (n < 2) throw new PerturbException("--target forge needs at least 2 images (each takes the next one's mask)", 2);
                var t = new int[n * p];
                for (int i = 0; i < n; i++) Array.Copy(truth, (long)((i + 1) % n) * p, t, (long)i * p, p);
                return t;
            case SegGoalKind.ForgeRegion:
                if (Y1 > h || X1 > w) throw new PerturbException($"--target {this}: the region leaves the {h}x{w} image", 2);
                if (ForgeClass <= 0 || ForgeClass >= classes) throw new PerturbException($"forge class {ForgeClass} is not a nucleus class of the model's {classes}", 2);
                var r = (int[])cleanPred.Clone();
                for (int i = 0; i < n; i++)
                    for (int y = Y0; y < Y1; y++)
                        for (int x = X0; x < X1; x++) r[i * p + y * w + x] = ForgeClass;
                return r;
            default:
                if (Given == null || Given.Length != n * p) throw new PerturbException($"target masks: {n} masks of {h}x{w} needed");
                foreach (var v in Given) if (v < 0 || v >= classes) throw new PerturbException($"target mask value {v} outside the model's {classes} classes");
                return (int[])Given.Clone();
        }
    }
}
