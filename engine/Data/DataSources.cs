namespace Perturb.Engine.Data;

/// <summary>
/// Resolves a --data argument (see <see cref="Help"/>) to splits. Generated sets come from the data seed, so train
/// and eval see the same split. A file or folder is recognised by what it holds; settings follow the last ':'.
/// </summary>
public static class DataSources
{
    /// <summary>The --data help text, for the CLI to show.</summary>
    public const string Help =
        "data set: 'histology' (the default for attack work: a SYNTHETIC H&E histology set made from --data-seed, " +
        "2 classes benign/malignant, 3x32x32; 'histology:train=N,test=M,size=S,overlap=F' where overlap in [0,1] makes the classes look more alike); " +
        "'histology-seg' (the same tiles with the exact nucleus mask and an instance map of each: segmentation, " +
        "mask classes background/nucleus, or 'classes=3' for background/benign nucleus/malignant nucleus; settings as for histology, and " +
        "'difficulty=F' in [0,1) for paler nuclei, counterstain, blur, noise and crowding as real slides have); " +
        "'synthetic' (generated shapes, 4 classes, 1x28x28; 'synthetic:train=N,test=M,channels=C,size=S,classes=K'); " +
        "a MedMNIST .npz file (e.g. pneumoniamnist.npz; get one with 'perturb data fetch'); " +
        "a folder of MNIST/Fashion-MNIST IDX files (train-images-idx3-ubyte[.gz], t10k-...); " +
        "a segmentation folder ROOT/images/*.png with ROOT/masks/*.png of the same names (class = 8-bit mask value, or the colour's index in ROOT/palette.json; masks resized nearest-neighbour), " +
        "or a segmentation .npz (train_images/train_masks, test_images/test_masks); " +
        "or a folder of class folders of .png/.jpg/.bmp/.dcm images (DICOM through GDCM, one image per frame) (ROOT/CLASS/*.png, or ROOT/train|val|test/CLASS/*.png), " +
        "with optional settings 'ROOT:size=S|HxW,channels=1|3,test=F' (default: the first image's size and channels; " +
        "test=0.2 holds out 20% of each class, by --data-seed, when there are no train/test folders; " +
        "resized with antialiased bilinear filtering)";

    public static DataSplits Load(string spec, ulong dataSeed = 0, DicomOptions? dicom = null) => Resolve(spec, dataSeed, dicom).LoadAll();

    /// <summary>Loads one split only; a missing other split is no error.</summary>
    public static Dataset LoadSplit(string spec, string split, ulong dataSeed = 0, DicomOptions? dicom = null)
    {
        if (split is not ("train" or "val" or "test")) throw new PerturbException($"unknown split '{split}' (choose train, val or test)", 2);
        return Resolve(spec, dataSeed, dicom).LoadOne(split);
    }

    /// <summary>What the data set holds, for <c>perturb data info</c>. MedMNIST files are described without loading images.</summary>
    public static DataInfo Describe(string spec, ulong dataSeed = 0) => Resolve(spec, dataSeed).Describe();

    sealed record Source(Func<DataSplits> LoadAll, Func<string, Dataset> LoadOne, Func<DataInfo> Describe);

    static Source Generated(Func<DataSplits> make, string kind, string spec) =>
        new(make, s => make().Get(s), () => DataInfo.Of(make(), kind, spec));

    static Source Resolve(string spec, ulong dataSeed, DicomOptions? dicom = null)
    {
        if (string.IsNullOrWhiteSpace(spec)) throw new PerturbException("--data is empty (see --help for the choices)", 2);
        if (IsNamed(spec, "synthetic"))
        {
            var o = new SpecOptions(spec, ParseOptions(spec, "synthetic"), "train", "test", "channels", "size", "classes");
            CheckGenerated(spec, o.Int("train", 2000), o.Int("test", 500), o.Int("channels", 1), o.Int("size", 28));
            Limits.Check($"--data {spec}: classes", o.Int("classes", 4), Limits.MaxClasses, "PERTURB_MAX_CLASSES");
            return Generated(() => SyntheticShapes.Create(dataSeed, o.Int("train", 2000), o.Int("test", 500), o.Int("channels", 1), o.Int("size", 28), o.Int("classes", 4)), "synthetic shapes (generated)", spec);
        }
        if (IsNamed(spec, "histology-seg"))
        {
            var o = new SpecOptions(spec, ParseOptions(spec, "histology-seg"), "train", "test", "size", "overlap", "classes", "difficulty");
            return Generated(() => SyntheticHistology.CreateSegmentation(dataSeed, o.Int("train", 2000), o.Int("test", 500), o.Int("size", 32), o.Double("overlap", 0), o.Int("classes", 2),
                o.Double("difficulty", 0)),
                "synthetic H&E histology with nucleus masks (generated)", spec);
        }
        if (IsNamed(spec, "histology"))
        {
            var o = new SpecOptions(spec, ParseOptions(spec, "histology"), "train", "test", "size", "overlap");
            CheckGenerated(spec, o.Int("train", 2000), o.Int("test", 500), 3, o.Int("size", 32));
            return Generated(() => SyntheticHistology.Create(dataSeed, o.Int("train", 2000), o.Int("test", 500), o.Int("size", 32), o.Double("overlap", 0)),
                "synthetic H&E histology (generated)", spec);
        }
        var (path, opts) = SplitPath(spec);
        if (File.Exists(path))
        {
            if (!path.EndsWith(".npz", StringComparison.OrdinalIgnoreCase))
                throw new PerturbException(ImageFile.IsImage(path)
                    ? $"{path}: one image is not a data set: --data takes a folder of class folders (ROOT/CLASS/{Path.GetFileName(path)}); 'perturb predict --input' classifies single files"
                    : $"{path}: not a data set file (expected a MedMNIST .npz, a folder of IDX files or a folder of class folders)");
            new SpecOptions(spec, opts);
            if (MaskData.IsMaskNpz(path))
                return Generated(() => MaskData.LoadNpz(path), "segmentation .npz (images and masks)", path);
            return new(() => MedMnist.Load(path), s => MedMnist.LoadSplit(path, s), () => MedMnist.Info(path));
        }
        if (MaskData.IsMaskFolder(path))
        {
            var o = new SpecOptions(spec, opts, "size", "channels", "test");
            var (h, w) = o.Size("size");
            return Generated(() => MaskData.LoadFolder(path, h, w, o.Int("channels", 0), o.Double("test", 0.2), dataSeed), "segmentation folder (images/ and masks/)", path);
        }
        if (Idx.IsIdxFolder(path))
        {
            new SpecOptions(spec, opts);
            return new(() => Idx.Load(path), s => Idx.LoadSplit(path, s), () => Idx.Info(path));
        }
        if (ImageFolder.IsImageFolder(path))
        {
            var o = new SpecOptions(spec, opts, "size", "channels", "test");
            var (h, w) = o.Size("size");
            var fo = new ImageFolderOptions { Height = h, Width = w, Channels = o.Int("channels", 0), TestFraction = o.Double("test", 0.2), Seed = dataSeed, Dicom = dicom };
            return new(() => ImageFolder.Load(path, fo), s => ImageFolder.LoadSplit(path, s, fo),
                () => DataInfo.Of(ImageFolder.Load(path, fo), "image folder", path));
        }
        if (Directory.Exists(path))
            throw new PerturbException($"{path}: holds no data set: expected MNIST IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-...) or class folders of .png/.jpg/.jpeg/.bmp/.dcm images");
        throw new PerturbException($"{spec}: no such data set, file or folder (try 'histology', 'synthetic', a .npz file or a folder)");
    }

    /// <summary>A generated set is made whole in memory: its values are checked against <see cref="Limits.MaxTensorElements"/> first (synthetic:train=100000000 is refused, not attempted).</summary>
    static void CheckGenerated(string spec, int train, int test, int channels, int size) =>
        Limits.Check($"--data {spec}: {train}+{test} images of {channels}x{size}x{size}: values", Limits.Product(new long[] { (long)train + test, channels, size, size }), Limits.MaxTensorElements, "PERTURB_MAX_TENSOR_ELEMENTS");

    static bool IsNamed(string spec, string name) => spec == name || spec.StartsWith(name + ":");

    /// <summary>"path" or "path:k=v,...": the whole spec when it exists, else split at the last ':' before a k=v list.</summary>
    static (string Path, Dictionary<string, string> Options) SplitPath(string spec)
    {
        if (File.Exists(spec) || Directory.Exists(spec)) return (spec, new());
        int colon = spec.LastIndexOf(':');
        if (colon > 0 && spec.IndexOf('=', colon) > colon)
        {
            var path = spec[..colon];
            if (File.Exists(path) || Directory.Exists(path)) return (path, ParseOptions(spec, path));
        }
        return (spec, new());
    }

    static Dictionary<string, string> ParseOptions(string spec, string prefix)
    {
        var d = new Dictionary<string, string>();
        if (spec.Length <= prefix.Length + 1) return d;
        foreach (var part in spec[(prefix.Length + 1)..].Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = part.IndexOf('=');
            if (eq <= 0) throw new PerturbException($"--data {spec}: expected key=value, got '{part}'", 2);
            d[part[..eq].Trim()] = part[(eq + 1)..].Trim();
        }
        return d;
    }

    /// <summary>The key=value settings of a spec, checked against the known keys (bad usage, exit 2, otherwise).</summary>
    sealed class SpecOptions
    {
        readonly string _spec;
        readonly Dictionary<string, string> _kv;

        public SpecOptions(string spec, Dictionary<string, string> kv, params string[] known)
        {
            _spec = spec; _kv = kv;
            foreach (var k in kv.Keys)
                if (!known.Contains(k))
                    throw new PerturbException(known.Length == 0 ? $"--data {spec}: this kind of data set takes no settings (got '{k}')" : $"--data {spec}: unknown setting '{k}' (known: {string.Join(", ", known)})", 2);
        }

        PerturbException Bad(string k, string what) => new($"--data {_spec}: '{k}' must be {what}, got '{_kv[k]}'", 2);

        public int Int(string k, int d) => !_kv.TryGetValue(k, out var v) ? d : int.TryParse(v, out var i) && i > 0 ? i : throw Bad(k, "a positive integer");

        public double Double(string k, double d) =>
            !_kv.TryGetValue(k, out var v) ? d
            : double.TryParse(v, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var x) && x >= 0 && x < 1 ? x : throw Bad(k, "a number in [0, 1)");

        /// <summary>"S" or "HxW"; (0, 0) when absent.</summary>
        public (int H, int W) Size(string k)
        {
            if (!_kv.TryGetValue(k, out var v)) return (0, 0);
            var p = v.ToLowerInvariant().Split('x');
            if (p.Length is 1 or 2 && p.All(s => int.TryParse(s, out var i) && i > 0 && i <= 4096))
                return (int.Parse(p[0]), int.Parse(p[^1]));
            throw Bad(k, "S or HxW with sizes 1 to 4096");
        }
    }
}
