using System.Text.Json;

namespace Perturb.Engine.Data;

/// <summary>
/// Segmentation data from files.
/// <list type="bullet">
/// <item>A folder <c>ROOT/images/*.png</c> (or .jpg, .bmp) with <c>ROOT/masks/</c> holding one mask image of the same
/// stem for each (any image extension). A mask pixel's class is its grey value (8-bit, or 16-bit PNG: the stored
/// value itself, not scaled), or, with <c>ROOT/palette.json</c>
/// (<c>{"classes": ["background", "nucleus"], "colors": [[0,0,0], [255,255,255]]}</c>, grey masks may give single
/// values), the index of its colour, compared at the mask's own depth (0-255, or 0-65535 for 16-bit masks). Images are resized (antialiased bilinear) to the size setting, masks with nearest
/// neighbour so classes never blend; without a size setting every image must have the first image's size. A
/// missing mask, a mask whose size differs from its image, or a value outside the classes is an error naming the file.
/// Test split: a seeded fraction (the test setting) of the images.</item>
/// <item>A <c>.npz</c> with <c>train_images</c>/<c>train_masks</c>, <c>test_images</c>/<c>test_masks</c> (and
/// optionally <c>val_*</c>): images N×H×W or N×H×W×3 (uint8 or float in [0,1]), masks N×H×W of integer classes;
/// the class count is the largest value + 1.</item>
/// </list>
/// </summary>
public static class MaskData
{
    public static bool IsMaskFolder(string root) =>
        Directory.Exists(Path.Combine(root, "images")) && Directory.Exists(Path.Combine(root, "masks"));

    public static bool IsMaskNpz(string path)
    {
        using var npz = new NpzFile(path);
        return npz.Has("train_masks") || npz.Has("test_masks");
    }

    sealed record Palette(string[] Classes, int[][] Colors);

    static Palette? ReadPalette(string root)
    {
        var file = Path.Combine(root, "palette.json");
        if (!File.Exists(file)) return null;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(file));
            var classes = doc.RootElement.GetProperty("classes").EnumerateArray().Select(e => e.GetString() ?? "").ToArray();
            var colors = doc.RootElement.GetProperty("colors").EnumerateArray()
                .Select(e => e.ValueKind == JsonValueKind.Number ? new[] { e.GetInt32() } : e.EnumerateArray().Select(v => v.GetInt32()).ToArray()).ToArray();
            if (classes.Length < 2 || classes.Length != colors.Length || colors.Any(c => c.Length is not (1 or 3) || c.Any(v => v is < 0 or > 65535)))
                throw new PerturbException($"{file}: needs 'classes' (at least 2 names) and as many 'colors' (a grey value or [r, g, b], 0-255, or 0-65535 for 16-bit masks)");
            return new Palette(classes, colors);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new PerturbException($"{file}: not a palette ({e.Message}); expected {{\"classes\": [...], \"colors\": [...]}}");
        }
    }

    /// <summary>Loads the folder as train and test splits (height/width 0: the first image's size; channels 0: the first image's).</summary>
    public static DataSplits LoadFolder(string root, int height = 0, int width = 0, int channels = 0, double testFraction = 0.2, ulong seed = 0)
    {
        var images = Directory.GetFiles(Path.Combine(root, "images")).Where(ImageFile.IsImage).OrderBy(f => f, StringComparer.Ordinal).ToArray();
        if (images.Length < 2) throw new PerturbException($"{root}/images: needs at least 2 images, found {images.Length}");
        var maskDir = Path.Combine(root, "masks");
        var maskByStem = Directory.GetFiles(maskDir).Where(ImageFile.IsImage).GroupBy(f => Path.GetFileNameWithoutExtension(f)).ToDictionary(g => g.Key, g => g.First());
        var palette = ReadPalette(root);
        var first = ImageFile.Decode(images[0]);
        int c = channels > 0 ? channels : first.Channels, h = height > 0 ? height : first.Height, w = width > 0 ? width : first.Width;
        bool resize = height > 0;
        int n = images.Length, hw = h * w;
        var x = new float[(long)n * c * hw];
        var masks = new int[(long)n * hw];
        int maxValue = 0;
        for (int i = 0; i < n; i++)
        {
            var stem = Path.GetFileNameWithoutExtension(images[i]);
            if (!maskByStem.TryGetValue(stem, out var mf))
                throw new PerturbException($"{images[i]}: no mask for it in {maskDir} (expected {stem}.png)");
            var img = ImageFile.Decode(images[i]);
            if (IsInterlaced16BitPng(mf))
                throw new PerturbException($"{mf}: an interlaced 16-bit PNG mask; its classes would be read at 8 bits (the high byte), so save it non-interlaced");
            var m = ImageFile.Decode(mf);
            if (m.Height != img.Height || m.Width != img.Width)
                throw new PerturbException($"{mf}: mask of {m.Width}x{m.Height} pixels for an image of {img.Width}x{img.Height} ({images[i]})");
            if (!resize && (img.Height != h || img.Width != w))
                throw new PerturbException($"{images[i]}: {img.Width}x{img.Height} pixels, the first image has {w}x{h} (give a size setting, ROOT:size=S, to resize all)");
            var px = ImageFile.ConvertChannels(img, c, images[i]);
            if (img.Height != h || img.Width != w) px = ImageFile.Resize(px, c, img.Height, img.Width, h, w);
            px.CopyTo(x, (long)i * c * hw);
            var cls = Classes(m, palette, mf);
            var dst = masks.AsSpan(i * hw, hw);
            for (int y = 0; y < h; y++)
                for (int xx = 0; xx < w; xx++)
                {
                    // Nearest neighbour: the source pixel whose centre is nearest to this pixel's centre.
                    int sy = Math.Min(m.Height - 1, (int)((y + 0.5) * m.Height / h)), sx = Math.Min(m.Width - 1, (int)((xx + 0.5) * m.Width / w));
                    dst[y * w + xx] = cls[sy * m.Width + sx];
                }
            foreach (var v in dst) maxValue = Math.Max(maxValue, v);
        }
        string[] names;
        if (palette != null) names = palette.Classes;
        else
        {
            if (maxValue >= 64)
                throw new PerturbException($"{maskDir}: mask values go up to {maxValue}; masks hold class indices 0, 1, 2, ... (or give {Path.Combine(root, "palette.json")} to map values or colours to classes)");
            names = Enumerable.Range(0, Math.Max(2, maxValue + 1)).Select(k => k == 0 ? "background" : $"class {k}").ToArray();
        }
        var perm = new SplitMix64(seed ^ 0x5E6_0000UL).Permutation(n);
        int nTest = Math.Clamp((int)Math.Round(n * testFraction), 1, n - 1);
        var testIdx = perm.Take(nTest).OrderBy(i => i).ToArray();
        var trainIdx = perm.Skip(nTest).OrderBy(i => i).ToArray();
        Dataset Part(int[] idx, string split)
        {
            var xs = new float[(long)idx.Length * c * hw]; var ms = new int[(long)idx.Length * hw];
            for (int k = 0; k < idx.Length; k++)
            {
                Array.Copy(x, (long)idx[k] * c * hw, xs, (long)k * c * hw, c * hw);
                Array.Copy(masks, (long)idx[k] * hw, ms, (long)k * hw, hw);
            }
            var name = Path.GetFileName(Path.TrimEndingDirectorySeparator(root));
            return new Dataset(xs, new int[idx.Length], c, h, w, new[] { "image" }) { Name = $"{name}/{split}" }.WithMasks(ms, names);
        }
        return new DataSplits(Path.GetFileName(Path.TrimEndingDirectorySeparator(root)), Part(trainIdx, "train"), null, Part(testIdx, "test"));
    }

    /// <summary>Whether the file is a PNG of 16 bits per sample stored interlaced (which only SkiaSharp's 8-bit decoder reads).</summary>
    static bool IsInterlaced16BitPng(string file)
    {
        var head = new byte[29];
        using (var f = File.OpenRead(file))
            if (f.ReadAtLeast(head, head.Length, throwOnEndOfStream: false) < head.Length) return false;
        return head[0] == 137 && head[1] == (byte)'P' && head[2] == (byte)'N' && head[3] == (byte)'G' && head[24] == 16 && head[28] == 1;
    }

    /// <summary>Class per pixel of one decoded mask: its stored grey value (8 or 16 bits), or its palette index.</summary>
    static int[] Classes(ImageData m, Palette? palette, string file)
    {
        int hw = m.Height * m.Width, max = m.MaxValue;
        var r = new int[hw];
        for (int j = 0; j < hw; j++)
        {
            int v0 = (int)Math.Round(m.Pixels[j] * max);
            if (palette == null)
            {
                if (m.Channels == 3 && ((int)Math.Round(m.Pixels[hw + j] * max) != v0 || (int)Math.Round(m.Pixels[2 * hw + j] * max) != v0))
                    throw new PerturbException($"{file}: a colour mask (pixel ({j / m.Width}, {j % m.Width})) needs a palette.json beside images/ and masks/");
                r[j] = v0;
                continue;
            }
            int k = -1;
            for (int q = 0; q < palette.Colors.Length && k < 0; q++)
            {
                var col = palette.Colors[q];
                bool match = col.Length == 1
                    ? v0 == col[0] && (m.Channels == 1 || ((int)Math.Round(m.Pixels[hw + j] * max) == col[0] && (int)Math.Round(m.Pixels[2 * hw + j] * max) == col[0]))
                    : Enumerable.Range(0, 3).All(ch => (int)Math.Round(m.Pixels[(m.Channels == 3 ? ch : 0) * hw + j] * max) == col[ch]);
                if (match) k = q;
            }
            if (k < 0) throw new PerturbException($"{file}: pixel ({j / m.Width}, {j % m.Width}) has a colour that palette.json does not list");
            r[j] = k;
        }
        return r;
    }

    /// <summary>Loads train and test (and val when present) from an .npz of *_images and *_masks.</summary>
    public static DataSplits LoadNpz(string path)
    {
        using var npz = new NpzFile(path);
        int k = 0;
        foreach (var s in new[] { "train", "val", "test" })
            if (npz.Has(s + "_masks")) k = Math.Max(k, MaxClass(npz.Read(s + "_masks"), $"{path}: member '{s}_masks'") + 1);
        var names = Enumerable.Range(0, Math.Max(2, k)).Select(c => c == 0 ? "background" : $"class {c}").ToArray();
        var val = npz.Has("val_images") ? Split(npz, "val", names) : null;
        return new DataSplits(Path.GetFileNameWithoutExtension(path), Split(npz, "train", names), val, Split(npz, "test", names));
    }

    static int MaxClass(NpyArray a, string where)
    {
        if (!a.IsInteger) throw new PerturbException($"{where}: masks of dtype {a.Type}; integer classes are expected");
        int mx = 0;
        for (long i = 0; i < a.Count; i++)
        {
            double v = a[i];
            if (v < 0 || v >= 64) throw new PerturbException($"{where}: mask value {v} at element {i}; classes are 0 to 63");
            mx = Math.Max(mx, (int)v);
        }
        return mx;
    }

    static Dataset Split(NpzFile npz, string split, string[] names)
    {
        string im = split + "_images", mk = split + "_masks";
        if (!npz.Has(im) || !npz.Has(mk))
            throw new PerturbException($"{npz.Path}: the {split} split is missing (needs members {im} and {mk}; has {string.Join(", ", npz.Names)})");
        var img = npz.Read(im);
        var (n, c, h, w) = MedMnist.ImageShape(img.Shape, $"{npz.Path}: member '{im}'");
        var m = npz.Read(mk);
        if (m.Shape.Length != 3 || m.Shape[0] != n || m.Shape[1] != h || m.Shape[2] != w)
            throw new PerturbException($"{npz.Path}: {mk} has shape ({string.Join(", ", m.Shape)}), expected ({n}, {h}, {w}) to match {im}");
        var masks = new int[m.Count];
        for (long i = 0; i < m.Count; i++) masks[i] = (int)m[i];
        var x = MedMnist.ToNchw(img, n, c, h, w, $"{npz.Path}: member '{im}'");
        return new Dataset(x, new int[n], c, h, w, new[] { "image" }) { Name = $"{Path.GetFileNameWithoutExtension(npz.Path)}/{split}" }.WithMasks(masks, names);
    }
}
