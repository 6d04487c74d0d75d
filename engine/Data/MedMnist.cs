namespace Perturb.Engine.Data;

/// <summary>
/// MedMNIST v2 <c>.npz</c> files: members train_images, train_labels, val_images, val_labels, test_images,
/// test_labels. Images are uint8 N×H×W (grey) or N×H×W×3 (RGB), converted to float NCHW in [0,1] by /255
/// (float images already in [0,1] are taken as they are). Labels are N×1 (or N) integers. Multi-label sets
/// (N×K labels, as in ChestMNIST) can be described by <see cref="Info"/> but not loaded for classification.
/// Class names come from MedMNIST's own INFO table for the known sets (file names such as
/// <c>pneumoniamnist.npz</c> or <c>pneumoniamnist_64.npz</c>), and are "0", "1", ... otherwise.
/// </summary>
public static class MedMnist
{
    public sealed record Known(string Name, string Md5, int Channels, string Task, string[] Labels);

    static readonly string[] Organs = { "bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver", "lung-left", "lung-right", "pancreas", "spleen" };

    /// <summary>
    /// The 2D MedMNIST sets at 28x28, from MedMNIST's medmnist/info.py (version 3.0.2): the MD5 of each
    /// <c>https://zenodo.org/records/10519652/files/NAME.npz</c> and its label names.
    /// </summary>
    public static readonly IReadOnlyDictionary<string, Known> Sets = new Known[]
    {
        new("pathmnist", "a8b06965200029087d5bd730944a56c1", 3, "multi-class", new[] { "adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle", "normal colon mucosa", "cancer-associated stroma", "colorectal adenocarcinoma epithelium" }),
        new("chestmnist", "02c8a6516a18b556561a56cbdd36c4a8", 1, "multi-label, binary-class", new[] { "atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule", "pneumonia", "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis", "pleural", "hernia" }),
        new("dermamnist", "0744692d530f8e62ec473284d019b0c7", 3, "multi-class", new[] { "actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma", "benign keratosis-like lesions", "dermatofibroma", "melanoma", "melanocytic nevi", "vascular lesions" }),
        new("octmnist", "c68d92d5b585d8d81f7112f81e2d0842", 1, "multi-class", new[] { "choroidal neovascularization", "diabetic macular edema", "drusen", "normal" }),
        new("pneumoniamnist", "28209eda62fecd6e6a2d98b1501bb15f", 1, "binary-class", new[] { "normal", "pneumonia" }),
        new("retinamnist", "bd4c0672f1bba3e3a89f0e4e876791e4", 3, "ordinal-regression", new[] { "0", "1", "2", "3", "4" }),
        new("breastmnist", "750601b1f35ba3300ea97c75c52ff8f6", 1, "binary-class", new[] { "malignant", "normal, benign" }),
        new("bloodmnist", "7053d0359d879ad8a5505303e11de1dc", 3, "multi-class", new[] { "basophil", "eosinophil", "erythroblast", "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)", "lymphocyte", "monocyte", "neutrophil", "platelet" }),
        new("tissuemnist", "ebe78ee8b05294063de985d821c1c34b", 1, "multi-class", new[] { "Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule", "Glomerular endothelial cells", "Interstitial endothelial cells", "Leukocytes", "Podocytes", "Proximal Tubule Segments", "Thick Ascending Limb" }),
        new("organamnist", "68e3f8846a6bd62f0c9bf841c0d9eacc", 1, "multi-class", Organs),
        new("organcmnist", "b9ceb9546e10131b32923c5bbeaea2b1", 1, "multi-class", Organs),
        new("organsmnist", "9ab87b696fb54e2a387ebe992d6ed5f1", 1, "multi-class", Organs),
    }.ToDictionary(k => k.Name);

    public static readonly string[] Splits = { "train", "val", "test" };

    /// <summary>The known set a file name refers to ("breastmnist_64.npz" → breastmnist), or null.</summary>
    public static Known? Identify(string path)
    {
        var stem = Path.GetFileNameWithoutExtension(path).ToLowerInvariant();
        int us = stem.LastIndexOf('_');
        if (us > 0 && stem[(us + 1)..].All(char.IsDigit)) stem = stem[..us];
        return Sets.TryGetValue(stem, out var k) ? k : null;
    }

    /// <summary>Loads train and test (both required) and val (when present).</summary>
    public static DataSplits Load(string path)
    {
        using var npz = new NpzFile(path);
        var names = ClassNames(npz);
        var val = HasSplit(npz, "val") ? LoadSplit(npz, "val", names) : null;
        return new DataSplits(SetName(path), LoadSplit(npz, "train", names), val, LoadSplit(npz, "test", names));
    }

    /// <summary>Loads one split; only that split's members must be present.</summary>
    public static Dataset LoadSplit(string path, string split)
    {
        if (!Splits.Contains(split)) throw new PerturbException($"unknown split '{split}' (choose train, val or test)", 2);
        using var npz = new NpzFile(path);
        return LoadSplit(npz, split, ClassNames(npz));
    }

    static string SetName(string path) => Identify(path)?.Name ?? Path.GetFileNameWithoutExtension(path);

    static bool HasSplit(NpzFile npz, string split) => npz.Has(split + "_images") || npz.Has(split + "_labels");

    static Dataset LoadSplit(NpzFile npz, string split, string[] names)
    {
        string im = split + "_images", lb = split + "_labels";
        if (!npz.Has(im) || !npz.Has(lb))
            throw new PerturbException($"{npz.Path}: the {split} split is missing (needs members {im} and {lb}; has {string.Join(", ", npz.Names)})");
        var labelsArr = npz.Read(lb);
        var labels = Labels(labelsArr, $"{npz.Path}: member '{lb}'");
        var head = npz.ReadHeader(im);
        Limits.Check($"{npz.Path}: member '{im}' of shape {head.ShapeText}: values", head.Count, Limits.MaxTensorElements, "PERTURB_MAX_TENSOR_ELEMENTS");
        var img = npz.Read(im);
        var (n, c, h, w) = ImageShape(img.Shape, $"{npz.Path}: member '{im}'");
        if (n != labels.Length) throw new PerturbException($"{npz.Path}: {im} holds {n} images but {lb} holds {labels.Length} labels");
        foreach (var l in labels)
            if (l >= names.Length) throw new PerturbException($"{npz.Path}: {lb} has label {l}, outside the {names.Length} classes of {SetName(npz.Path)}");
        var x = ToNchw(img, n, c, h, w, $"{npz.Path}: member '{im}'");
        return new Dataset(x, labels, c, h, w, names) { Name = $"{SetName(npz.Path)}/{split}" };
    }

    internal static (int N, int C, int H, int W) ImageShape(int[] s, string where) => s.Length switch
    {
        3 => (s[0], 1, s[1], s[2]),
        4 when s[3] is 1 or 3 => (s[0], s[3], s[1], s[2]),
        _ => throw new PerturbException($"{where}: images of shape ({string.Join(", ", s)}); expected N×H×W (grey) or N×H×W×3 (RGB)"),
    };

    internal static float[] ToNchw(NpyArray a, int n, int c, int h, int w, string where)
    {
        int hw = h * w;
        var src = a.ToFloat32();
        float div;
        if (a.Type == NpyType.UInt8) div = 255f;
        else if (a.Type is NpyType.Float32 or NpyType.Float64 or NpyType.Float16)
        {
            foreach (var v in src)
                if (!(v >= 0f && v <= 1f)) throw new PerturbException($"{where}: float image values must lie in [0,1], found {v}");
            div = 1f;
        }
        else throw new PerturbException($"{where}: images of dtype {a.Type}; uint8 (0-255) or float in [0,1] are read");
        var x = new float[src.Length];
        for (int i = 0; i < n; i++)
            for (int p = 0; p < hw; p++)
                for (int ch = 0; ch < c; ch++)
                    x[(i * c + ch) * hw + p] = src[(i * hw + p) * c + ch] / div;
        return x;
    }

    /// <summary>N or N×1 integer labels; N×K with K &gt; 1 is multi-label and an error here.</summary>
    static int[] Labels(NpyArray a, string where)
    {
        if (!a.IsInteger) throw new PerturbException($"{where}: labels of dtype {a.Type}; integer labels are expected");
        if (a.Shape.Length == 2 && a.Shape[1] > 1)
            throw new PerturbException($"{where}: labels of shape ({a.Shape[0]}, {a.Shape[1]}) are multi-label; multi-label data sets (ChestMNIST) are not supported for classification yet (perturb data info describes them)");
        if (a.Shape.Length is not (1 or 2)) throw new PerturbException($"{where}: labels of shape ({string.Join(", ", a.Shape)}); expected (N,) or (N, 1)");
        var r = new int[a.Shape[0]];
        for (int i = 0; i < r.Length; i++)
        {
            double v = a[i];
            if (v < 0 || v > int.MaxValue) throw new PerturbException($"{where}: label {v} at index {i} is negative or too large");
            r[i] = (int)v;
        }
        return r;
    }

    /// <summary>The known set's names, else "0".."K-1" with K one more than the largest label of any split present.</summary>
    static string[] ClassNames(NpzFile npz)
    {
        var known = Identify(npz.Path);
        if (known != null) return known.Labels;
        long max = 0;
        foreach (var s in Splits)
        {
            if (!npz.Has(s + "_labels")) continue;
            var a = npz.Read(s + "_labels");
            int k = a.Shape.Length == 2 ? a.Shape[1] : 1;
            if (k > 1) return Enumerable.Range(0, k).Select(i => i.ToString()).ToArray();
            for (long i = 0; i < a.Count; i++) max = Math.Max(max, (long)a[i]);
        }
        // One class name per possible label: a label of 100,000,000 must not build 100 million names.
        Limits.Check($"{npz.Path}: the largest label is {max}; classes", max + 1, Limits.MaxClasses, "PERTURB_MAX_CLASSES");
        return Enumerable.Range(0, (int)Math.Max(max + 1, 2)).Select(i => i.ToString()).ToArray();
    }

    /// <summary>
    /// Describes the file without building a data set: image shapes come from the headers, class counts from the labels.
    /// Works for multi-label sets (counts are positives per label). A missing split is reported, not an error.
    /// </summary>
    public static DataInfo Info(string path)
    {
        using var npz = new NpzFile(path);
        var names = ClassNames(npz);
        bool multi = false;
        var splits = new List<SplitInfo>();
        foreach (var s in Splits)
        {
            string im = s + "_images", lb = s + "_labels";
            if (!npz.Has(im) || !npz.Has(lb)) { splits.Add(SplitInfo.Absent(s, $"members {im} and {lb} are not both present")); continue; }
            var (n, c, h, w) = ImageShape(npz.ReadHeader(im).Shape, $"{path}: member '{im}'");
            var la = npz.Read(lb);
            var counts = new long[names.Length];
            if (la.Shape.Length == 2 && la.Shape[1] > 1)
            {
                multi = true;
                int k = la.Shape[1];
                if (k != names.Length) throw new PerturbException($"{path}: {lb} has {k} labels per sample, {SetName(path)} has {names.Length}");
                for (long i = 0; i < la.Count; i++) if (la[i] != 0) counts[i % k]++;
            }
            else
                foreach (var l in Labels(la, $"{path}: member '{lb}'"))
                {
                    if (l >= names.Length) throw new PerturbException($"{path}: {lb} has label {l}, outside the {names.Length} classes");
                    counts[l]++;
                }
            if (la.Shape[0] != n) throw new PerturbException($"{path}: {im} holds {n} images but {lb} holds {la.Shape[0]} labels");
            splits.Add(new SplitInfo(s, n, c, h, w, counts));
        }
        return new DataInfo(SetName(path), multi ? "medmnist npz (multi-label)" : "medmnist npz", path, names, multi, splits);
    }
}
