namespace Perturb.Engine.Data;

/// <summary>
/// A SYNTHETIC histology set made in code from a seed (no download, no patient data): RGB tiles coloured like
/// haematoxylin and eosin (H&amp;E) staining, in two classes that differ the way benign and malignant tissue do.
/// <list type="bullet">
/// <item>Colour follows the Beer-Lambert stain model: optical density = c_H · v_H + c_E · v_E per channel (Ruifrok and
/// Johnston's H and E vectors, jittered per tile), pixel = exp(-density). Eosin makes the pink stroma and cytoplasm,
/// with fibre-like texture and a few pale gaps; haematoxylin makes the purple-blue nuclei.</item>
/// <item>Class 0, "benign": small round nuclei of one size per tile, on a jittered regular lattice (evenly spaced),
/// evenly stained.</item>
/// <item>Class 1, "malignant": crowded nuclei at random places, varying in size and shape (elliptical, with irregular
/// outlines), darker (hyperchromatic) with clumped chromatin, and in about half of the tiles one or two atypical
/// mitoses: dark, irregular, clumped figures with spiky arms.</item>
/// <item>Staining strength, stain colour and brightness vary per tile over ranges that overlap between the classes,
/// so mean intensity alone does not tell them apart; the arrangement, size and shape of nuclei do.</item>
/// </list>
/// Balanced (even indices benign, odd malignant); each tile comes from its own generator seeded by (seed, split,
/// index), so the same seed always gives identical data. Pixels in [0,1], 3×S×S.
/// </summary>
public static class SyntheticHistology
{
    public static readonly string[] Classes = { "benign", "malignant" };

    /// <param name="overlap">
    /// 0 (the default) keeps the classes far apart. Above 0, each tile draws a grade g in [0, overlap]: malignant tiles
    /// move toward benign (fewer, smaller, rounder, paler nuclei, fewer mitoses) and benign tiles toward malignant (an
    /// irregular lattice, varied and darker nuclei) by g, so some tiles of the two classes look alike and the task gets
    /// harder. At most 1.
    /// </param>
    public static DataSplits Create(ulong seed, int trainCount = 2000, int testCount = 500, int size = 32, double overlap = 0)
    {
        Check(size, overlap, trainCount, testCount);
        var train = Make(seed, 1, trainCount, size, overlap);
        var val = Make(seed, 2, Math.Max(testCount / 2, 2), size, overlap);
        var test = Make(seed, 3, testCount, size, overlap);
        return new DataSplits("histology", train, val, test);
    }

    static Dataset Make(ulong seed, ulong split, int n, int size, double overlap, int maskClasses = 0, double difficulty = 0)
    {
        int hw = size * size;
        var x = new float[(long)n * 3 * hw];
        var y = new int[n];
        var masks = maskClasses > 0 ? new int[(long)n * hw] : null;
        var inst = maskClasses > 0 ? new int[(long)n * hw] : null;
        Parallel.For(0, n, i =>
        {
            int label = i % 2;
            y[i] = label;
            var r = new SplitMix64(seed * 0x9E3779B97F4A7C15UL ^ (split << 56) ^ ((ulong)i * 0xD1B54A32D192ED03UL));
            var drawn = masks != null ? new NucleusMap(size * 2) : null;
            Tile(r, label == 1, size, x.AsSpan(i * 3 * hw, 3 * hw), overlap, drawn, difficulty);
            drawn?.Downsample(size, maskClasses, masks.AsSpan(i * hw, hw), inst.AsSpan(i * hw, hw));
        });
        var d = new Dataset(x, y, 3, size, size, Classes) { Name = masks != null ? "histology-seg" : "histology" };
        return masks == null ? d : d.WithMasks(masks, maskClasses == 2 ? MaskClasses2 : MaskClasses3, inst);
    }

    /// <summary>Mask classes of <c>histology-seg</c>: background and nucleus.</summary>
    public static readonly string[] MaskClasses2 = { "background", "nucleus" };
    /// <summary>Mask classes of <c>histology-seg:classes=3</c>: background, benign nucleus, malignant (atypical) nucleus or mitosis.</summary>
    public static readonly string[] MaskClasses3 = { "background", "benign nucleus", "malignant nucleus" };

    /// <summary>
    /// The segmentation variant: the same tiles as <see cref="Create"/> (pixel for pixel, same seed), each with the
    /// exact mask of the nuclei the generator drew (a tile pixel is nucleus when at least 2 of its 4 supersamples
    /// are) and an instance map (one id per nucleus or mitotic figure, 0 for background). Two classes (background,
    /// nucleus) or three (background, benign nucleus, malignant nucleus: every nucleus and mitosis of a malignant tile).
    /// </summary>
    /// <param name="difficulty">
    /// 0 (the default) draws the tiles of <see cref="Create"/>: nuclei about 0.4 darker than the stroma in red, sharp,
    /// with little noise, which a colour threshold segments. Above 0 (below 1) the tiles get what real slides have,
    /// by that fraction: paler (vesicular) nuclei, a haematoxylin counterstain in the stroma, wider stain-colour
    /// variation, out-of-focus blur (the mask stays the drawn outline), more sensor noise and more crowded,
    /// overlapping nuclei; near 1 the nucleus-stroma contrast is about a third of the default's.
    /// </param>
    public static DataSplits CreateSegmentation(ulong seed, int trainCount = 2000, int testCount = 500, int size = 32, double overlap = 0, int classes = 2,
        double difficulty = 0)
    {
        if (classes is not (2 or 3)) throw new PerturbException($"histology-seg: classes must be 2 or 3, got {classes}", 2);
        Check(size, overlap, trainCount, testCount);
        if (!(difficulty >= 0 && difficulty <= 1)) throw new PerturbException($"histology-seg: difficulty must be in [0, 1], got {difficulty}", 2);
        return new DataSplits("histology-seg", Make(seed, 1, trainCount, size, overlap, classes, difficulty),
            Make(seed, 2, Math.Max(testCount / 2, 2), size, overlap, classes, difficulty), Make(seed, 3, testCount, size, overlap, classes, difficulty));
    }

    static void Check(int size, double overlap, int trainCount, int testCount)
    {
        if (size < 16 || size > 512) throw new PerturbException($"histology: tile size must be 16 to 512, got {size}", 2);
        if (!(overlap >= 0 && overlap <= 1)) throw new PerturbException($"histology: overlap must be in [0, 1], got {overlap}", 2);
        if (trainCount < 2 || testCount < 2) throw new PerturbException($"histology: train and test need at least 2 tiles each, got {trainCount} and {testCount}", 2);
    }

    /// <summary>
    /// Which nucleus covers each supersample of a tile (0: none), and whether each nucleus is malignant. Drawing order
    /// decides overlaps: a later nucleus takes the supersamples it covers.
    /// </summary>
    sealed class NucleusMap
    {
        readonly int _n;
        readonly int[] _id;
        readonly List<bool> _malignant = new() { false };
        public NucleusMap(int n) { _n = n; _id = new int[n * n]; }
        public int Begin(bool malignant) { _malignant.Add(malignant); return _malignant.Count - 1; }
        public void Mark(int id, int q) => _id[q] = id;

        /// <summary>Tile-resolution class mask and instance map (instances renumbered 1.. in order of appearance).</summary>
        public void Downsample(int size, int classes, Span<int> mask, Span<int> inst)
        {
            var renumber = new Dictionary<int, int>();
            Span<int> sub = stackalloc int[4];
            for (int py = 0; py < size; py++)
                for (int px = 0; px < size; px++)
                {
                    int k = 0, q0 = 2 * py * _n + 2 * px;
                    sub[0] = _id[q0]; sub[1] = _id[q0 + 1]; sub[2] = _id[q0 + _n]; sub[3] = _id[q0 + _n + 1];
                    int best = 0, bestCount = 0;
                    foreach (var v in sub)
                    {
                        if (v == 0) continue;
                        k++;
                        int c = 0; foreach (var u in sub) if (u == v) c++;
                        if (c > bestCount) { best = v; bestCount = c; }
                    }
                    int o = py * size + px;
                    if (k < 2) { mask[o] = 0; inst[o] = 0; continue; }
                    if (!renumber.TryGetValue(best, out var id)) renumber[best] = id = renumber.Count + 1;
                    inst[o] = id;
                    mask[o] = classes == 2 ? 1 : _malignant[best] ? 2 : 1;
                }
        }
    }

    // Stain optical-density vectors (R, G, B) per unit concentration: Ruifrok and Johnston (2001).
    static readonly double[] VH = { 0.650, 0.704, 0.286 };
    static readonly double[] VE = { 0.072, 0.990, 0.105 };

    /// <summary>Draws one tile into dst (3 planes of size×size).</summary>
    static void Tile(SplitMix64 r, bool malignant, int size, Span<float> dst, double overlap = 0, NucleusMap? map = null, double difficulty = 0)
    {
        // Grade toward the other class (no draw at overlap 0, so the default set is unchanged).
        double gr8 = overlap > 0 ? r.Range(0, overlap) : 0;
        // Realistic difficulty (no draw at 0 either): nucleus stain strength, stroma counterstain, blur (in tile
        // pixels), stain-vector jitter, noise and crowding.
        double dv = difficulty;
        double nucPale = dv > 0 ? Mix(1, r.Range(0.3, 0.55), dv) : 1, counter = dv > 0 ? Mix(0.04, r.Range(0.08, 0.2), dv) : 0.04;
        double blur = dv > 0 ? dv * r.Range(0.4, 1.0) : 0, jitter = 0.15 + 0.15 * dv, noise = 0.015 + 0.035 * dv, crowd = 1 + 0.5 * dv;
        static double Mix(double a, double b, double t) => a + (b - a) * t;
        const int ss = 2; // supersampling for smooth nucleus edges
        int n = size * ss, hw = size * size;
        var ch = new double[n * n]; // haematoxylin concentration
        var ce = new double[n * n]; // eosin concentration
        double scale = size / 32.0;

        // Stroma: eosin with fibre texture, pale gaps, faint haematoxylin background.
        double eBase = r.Range(0.35, 0.75), fAng = r.Range(0, Math.PI), fFreq = r.Range(0.5, 1.1) / ss / scale;
        double ph1 = r.Range(0, 6.3), ph2 = r.Range(0, 6.3), f2 = r.Range(0.15, 0.35) / ss / scale;
        double ca = Math.Cos(fAng), sa = Math.Sin(fAng);
        int gaps = r.NextInt(3);
        var gx = new double[gaps]; var gy = new double[gaps]; var gr = new double[gaps];
        for (int g = 0; g < gaps; g++) { gx[g] = r.Range(0, n); gy[g] = r.Range(0, n); gr[g] = r.Range(1.5, 4.0) * ss * scale; }
        for (int py = 0; py < n; py++)
            for (int px = 0; px < n; px++)
            {
                double u = px * ca + py * sa, v = -px * sa + py * ca;
                double tex = 0.18 * Math.Sin(u * fFreq + ph1 + 0.8 * Math.Sin(v * f2 + ph2)) + 0.08 * Math.Sin(v * f2 * 2.3 + ph1);
                double e = eBase * (1 + tex);
                for (int g = 0; g < gaps; g++)
                {
                    double dx = px - gx[g], dy = py - gy[g];
                    if (dx * dx + dy * dy < gr[g] * gr[g]) e *= 0.15;
                }
                ce[py * n + px] = e;
                ch[py * n + px] = counter;
            }

        if (!malignant)
        {
            // Regular lattice of small round nuclei, one size and stain per tile.
            double spacing = r.Range(5.5, 7.0) * scale * ss, rad = r.Range(1.2, 1.6) * scale * ss, dens = r.Range(0.85, 1.15);
            double ox = r.Range(0, spacing), oy = r.Range(0, spacing);
            for (double cy = oy - spacing; cy < n + spacing; cy += spacing)
                for (double cx = ox - spacing; cx < n + spacing; cx += spacing)
                {
                    double jit = Mix(0.12, 0.45, gr8);
                    double jx = r.Range(-jit, jit) * spacing, jy = r.Range(-jit, jit) * spacing;
                    double rr = rad * r.Range(Mix(0.93, 0.8, gr8), Mix(1.07, 1.6, gr8));
                    Nucleus(ch, ce, n, cx + jx, cy + jy, rr, rr * r.Range(1.0, Mix(1.1, 1.6, gr8)), r.Range(0, Math.PI), dens * Mix(1, 1.4, gr8) * nucPale,
                        0.25 * gr8, 0.4 * gr8, r, map, false);
                }
        }
        else
        {
            // Crowded, pleomorphic, hyperchromatic nuclei at random places.
            // Nuclei per tile area: radii grow with the tile (scale), so the count does not (one density at every size).
            int count = (int)Math.Round(r.Range(0.8, 1.2) * crowd * (32 * 32) / Mix(40.0, 60.0, gr8));
            for (int k = 0; k < count; k++)
            {
                double rad = r.Range(Mix(1.3, 1.2, gr8), Mix(2.8, 1.7, gr8)) * scale * ss;
                double aspect = r.Range(1.0, Mix(1.8, 1.15, gr8)), dens = r.Range(Mix(1.2, 0.9, gr8), Mix(1.8, 1.2, gr8)) * nucPale;
                Nucleus(ch, ce, n, r.Range(0, n), r.Range(0, n), rad, rad * aspect, r.Range(0, Math.PI), dens,
                    r.Range(0.1, 0.3) * (1 - gr8), r.Range(0.2, 0.5) * (1 - gr8), r, map, true);
            }
            if (r.NextDouble() < 0.5 * (1 - gr8))
            {
                int figs = 1 + r.NextInt(2);
                for (int k = 0; k < figs; k++) Mitosis(ch, n, r.Range(0.2, 0.8) * n, r.Range(0.2, 0.8) * n, scale * ss, r, map);
            }
        }

        // Per-tile staining. Haematoxylin strength and the stain colours are jittered; the eosin strength is then set
        // so the tile's mean optical density meets a target drawn from one range for both classes (a tile with many
        // dark nuclei gets paler stroma), which keeps mean intensity from giving the class away.
        if (blur > 0) { Blur(ch, n, blur * ss); Blur(ce, n, blur * ss); }
        var vh = new double[3]; var ve = new double[3];
        for (int c = 0; c < 3; c++) { vh[c] = VH[c] * r.Range(1 - jitter, 1 + jitter); ve[c] = VE[c] * r.Range(1 - jitter, 1 + jitter); }
        double sH = r.Range(0.8, 1.2), bright = r.Range(-0.03, 0.03), target = r.Range(0.35, 0.65);
        double hMean = ch.Average() * vh.Average(), eMean = ce.Average() * ve.Average();
        double sE = Math.Clamp((target - sH * hMean) / Math.Max(eMean, 1e-6), 0.15, 2.5);
        for (int py = 0; py < size; py++)
            for (int px = 0; px < size; px++)
            {
                double h = 0, e = 0;
                for (int dy = 0; dy < ss; dy++)
                    for (int dx = 0; dx < ss; dx++) { int q = (py * ss + dy) * n + px * ss + dx; h += ch[q]; e += ce[q]; }
                h *= sH / (ss * ss); e *= sE / (ss * ss);
                for (int c = 0; c < 3; c++)
                {
                    double v = Math.Exp(-(h * vh[c] + e * ve[c])) + bright + noise * r.Normal();
                    dst[c * hw + py * size + px] = (float)Math.Clamp(v, 0, 1);
                }
            }
    }

    /// <summary>Separable Gaussian blur of an n x n map in place (standard deviation sigma in map pixels, edges clamped).</summary>
    static void Blur(double[] m, int n, double sigma)
    {
        int rad = (int)Math.Ceiling(2.5 * sigma);
        var k = new double[2 * rad + 1];
        for (int i = -rad; i <= rad; i++) k[i + rad] = Math.Exp(-0.5 * i * i / (sigma * sigma));
        double sum = k.Sum();
        for (int i = 0; i < k.Length; i++) k[i] /= sum;
        var t = new double[n * n];
        for (int y = 0; y < n; y++)
            for (int x = 0; x < n; x++)
            {
                double a = 0;
                for (int i = -rad; i <= rad; i++) a += k[i + rad] * m[y * n + Math.Clamp(x + i, 0, n - 1)];
                t[y * n + x] = a;
            }
        for (int y = 0; y < n; y++)
            for (int x = 0; x < n; x++)
            {
                double a = 0;
                for (int i = -rad; i <= rad; i++) a += k[i + rad] * t[Math.Clamp(y + i, 0, n - 1) * n + x];
                m[y * n + x] = a;
            }
    }

    /// <summary>
    /// Adds a nucleus: an ellipse with radii (a, b) rotated by theta, outline perturbed by two harmonics of relative
    /// amplitude <paramref name="irregular"/>, haematoxylin density <paramref name="dens"/> with chromatin clumping of
    /// relative amplitude <paramref name="clump"/>. Eosin is pushed out where the nucleus sits.
    /// </summary>
    static void Nucleus(double[] ch, double[] ce, int n, double cx, double cy, double a, double b, double theta, double dens, double irregular, double clump, SplitMix64 r,
        NucleusMap? map, bool malignant)
    {
        int id = map?.Begin(malignant) ?? 0;
        double ct = Math.Cos(theta), st = Math.Sin(theta);
        double p2 = r.Range(0, 6.3), p3 = r.Range(0, 6.3), m2 = irregular * r.NextDouble(), m3 = irregular * r.NextDouble();
        double cf = r.Range(0.8, 1.6), cp = r.Range(0, 6.3);
        double ext = Math.Max(a, b) * (1 + irregular) + 1;
        int x0 = Math.Max(0, (int)(cx - ext)), x1 = Math.Min(n - 1, (int)(cx + ext)), y0 = Math.Max(0, (int)(cy - ext)), y1 = Math.Min(n - 1, (int)(cy + ext));
        for (int py = y0; py <= y1; py++)
            for (int px = x0; px <= x1; px++)
            {
                double dx = px + 0.5 - cx, dy = py + 0.5 - cy;
                double u = (dx * ct + dy * st) / b, v = (-dx * st + dy * ct) / a;
                double ang = Math.Atan2(v, u), rho = Math.Sqrt(u * u + v * v);
                double edge = 1 + m2 * Math.Sin(2 * ang + p2) + m3 * Math.Sin(3 * ang + p3);
                if (rho > edge) continue;
                double chromatin = 1 + clump * Math.Sin(px * cf + cp) * Math.Sin(py * cf * 1.3 + cp * 0.7);
                double rim = rho > 0.75 * edge ? 1.15 : 1.0; // nuclear membrane a little darker
                int q = py * n + px;
                ch[q] = Math.Max(ch[q], dens * chromatin * rim);
                ce[q] *= 0.35;
                map?.Mark(id, q);
            }
    }

    /// <summary>An atypical mitosis: a dark clump of small blobs with a few spiky arms in random directions.</summary>
    static void Mitosis(double[] ch, int n, double cx, double cy, double unit, SplitMix64 r, NucleusMap? map)
    {
        int id = map?.Begin(true) ?? 0;
        int arms = 3 + r.NextInt(3);
        for (int k = 0; k < arms; k++)
        {
            double ang = r.Range(0, 2 * Math.PI), len = r.Range(1.5, 3.5) * unit;
            for (double t = 0; t <= len; t += 0.5)
            {
                double bx = cx + Math.Cos(ang) * t, by = cy + Math.Sin(ang) * t, br = unit * r.Range(0.4, 0.9) * (1 - 0.5 * t / len);
                int x0 = Math.Max(0, (int)(bx - br)), x1 = Math.Min(n - 1, (int)(bx + br)), y0 = Math.Max(0, (int)(by - br)), y1 = Math.Min(n - 1, (int)(by + br));
                for (int py = y0; py <= y1; py++)
                    for (int px = x0; px <= x1; px++)
                    {
                        double dx = px + 0.5 - bx, dy = py + 0.5 - by;
                        if (dx * dx + dy * dy <= br * br) { ch[py * n + px] = Math.Max(ch[py * n + px], 2.4); map?.Mark(id, py * n + px); }
                    }
            }
        }
    }
}
