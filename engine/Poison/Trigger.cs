using Perturb.Engine.Data;

namespace Perturb.Engine.Poison;

public enum TriggerKind { Checkerboard, Square, Image }

/// <summary>
/// A BadNets trigger: a small pattern stamped on an image at a fixed place, blended with weight <see cref="Alpha"/>
/// (1: the pattern replaces the pixels). Place: a corner ("br", "bl", "tr", "tl") with <see cref="Margin"/> pixels to
/// the border, or an explicit top-left offset (<see cref="X"/>, <see cref="Y"/>).
/// </summary>
public sealed record Trigger
{
    public TriggerKind Kind { get; init; } = TriggerKind.Checkerboard;
    /// <summary>Side of the square trigger in pixels.</summary>
    public int Size { get; init; } = 4;
    public string Corner { get; init; } = "br";
    public int Margin { get; init; } = 1;
    public int? X { get; init; }
    public int? Y { get; init; }
    public float Alpha { get; init; } = 1f;
    /// <summary>For <see cref="TriggerKind.Image"/>: the pattern, channels x Size x Size in [0,1].</summary>
    public float[]? Pattern { get; init; }

    /// <summary>The pattern value at (c, py, px) of the trigger.</summary>
    public float Value(int c, int py, int px) => Kind switch
    {
        TriggerKind.Checkerboard => ((py + px) & 1) == 0 ? 1f : 0f,
        TriggerKind.Square => 1f,
        _ => Pattern![(c * Size + py) * Size + px],
    };

    /// <summary>The top-left corner of the trigger in an h x w image.</summary>
    public (int Y, int X) Place(int h, int w)
    {
        if (X is { } x && Y is { } y) return (y, x);
        return Corner switch
        {
            "br" => (h - Size - Margin, w - Size - Margin),
            "bl" => (h - Size - Margin, Margin),
            "tr" => (Margin, w - Size - Margin),
            "tl" => (Margin, Margin),
            _ => throw new PerturbException($"trigger place '{Corner}' is not one of br, bl, tr, tl", 2),
        };
    }

    public void Validate(int c, int h, int w)
    {
        if (Size < 1) throw new PerturbException($"trigger size must be at least 1 pixel, got {Size}", 2);
        if (!(Alpha > 0 && Alpha <= 1)) throw new PerturbException($"trigger alpha must be in (0, 1], got {Alpha}", 2);
        var (y0, x0) = Place(h, w);
        if (y0 < 0 || x0 < 0 || y0 + Size > h || x0 + Size > w)
            throw new PerturbException($"a {Size}x{Size} trigger at ({x0}, {y0}) does not fit a {w}x{h} image", 2);
        if (Kind == TriggerKind.Image && (Pattern == null || Pattern.Length != c * Size * Size))
            throw new PerturbException($"image trigger needs {c}x{Size}x{Size} values", 2);
    }

    /// <summary>Stamps the trigger on one CHW image in place.</summary>
    public void Apply(Span<float> chw, int c, int h, int w)
    {
        var (y0, x0) = Place(h, w);
        for (int ch = 0; ch < c; ch++)
            for (int py = 0; py < Size; py++)
                for (int px = 0; px < Size; px++)
                {
                    int i = (ch * h + y0 + py) * w + x0 + px;
                    chw[i] = (1 - Alpha) * chw[i] + Alpha * Value(ch, py, px);
                }
    }

    /// <summary>A trigger from its CLI spelling: "checkerboard", "square", or the path of an image file.</summary>
    public static Trigger Parse(string kind, int size, string place, float alpha, int channels)
    {
        Trigger t = kind switch
        {
            "checkerboard" => new Trigger { Kind = TriggerKind.Checkerboard },
            "square" => new Trigger { Kind = TriggerKind.Square },
            _ when ImageFile.IsImage(kind) => new Trigger { Kind = TriggerKind.Image, Pattern = ImageFile.Load(kind, channels, size, size) },
            _ => throw new PerturbException($"--trigger '{kind}': choose checkerboard, square, or an image file (.png, .jpg, .bmp)", 2),
        };
        t = t with { Size = size, Alpha = alpha };
        var parts = place.Split(',');
        if (parts.Length == 2)
        {
            if (!int.TryParse(parts[0], out var x) || !int.TryParse(parts[1], out var y))
                throw new PerturbException($"--trigger-place '{place}': give a corner (br, bl, tr, tl) or X,Y", 2);
            return t with { X = x, Y = y };
        }
        return t with { Corner = place };
    }
}
