namespace Perturb.Engine.Data;

/// <summary>How an image folder is read.</summary>
public sealed record ImageFolderOptions
{
    /// <summary>Output height and width; 0 takes the first image's size.</summary>
    public int Height { get; init; }
    public int Width { get; init; }
    /// <summary>1 or 3; 0 takes 1 when the first image is grey, else 3.</summary>
    public int Channels { get; init; }
    /// <summary>For a folder without train/ and test/ subfolders: the share of each class held out as test.</summary>
    public double TestFraction { get; init; } = 0.2;
    public ulong Seed { get; init; }
    /// <summary>How DICOM files are read (window, frame); null: each file's own window, one image per frame.</summary>
    public DicomOptions? Dicom { get; init; }
}

/// <summary>
/// Image folders: <c>root/&lt;class&gt;/*.png|jpg|jpeg|bmp|dcm</c>, or with splits <c>root/train/&lt;class&gt;/...</c>,
/// <c>root/test/&lt;class&gt;/...</c> and optionally <c>root/val/&lt;class&gt;/...</c>. Classes are the subfolder names
/// sorted ordinally (the union over the splits); files are read in ordinal order. Without split folders, a seeded
/// stratified share of each class (<see cref="ImageFolderOptions.TestFraction"/>, at least one image of a class with
/// two or more) becomes the test split. Images are decoded, converted and resized by <see cref="ImageFile"/>.
/// </summary>
public static class ImageFolder
{
    static readonly string[] SplitNames = { "train", "val", "test" };

    // Walks follow links only inside the folder and read only regular files (IO.SafeFiles): a FIFO named x.png or a
    // link loop is left out. Links are resolved against the folder the walk started from.
    static IEnumerable<string> SubDirs(string dir, string root) => IO.SafeFiles.Dirs(dir, root);

    static List<string> Images(string dir, string root) => IO.SafeFiles.Files(dir, root).Where(ImageFile.IsImage).ToList();

    /// <summary>The images of a class folder: its files in order, each DICOM file expanded to its frames.</summary>
    static List<ImageSource> Sources(string dir, string root, ImageFolderOptions o) => Images(dir, root).SelectMany(f => ImageFile.Sources(f, o.Dicom)).ToList();

    /// <summary>True when the root holds train/ and test/ folders with class folders inside.</summary>
    public static bool HasSplitFolders(string root) =>
        Directory.Exists(Path.Combine(root, "train")) && Directory.Exists(Path.Combine(root, "test"))
        && SubDirs(Path.Combine(root, "train"), root).Any();

    /// <summary>True when some subfolder holds an image file (directly, or under train/ and test/).</summary>
    public static bool IsImageFolder(string root) =>
        Directory.Exists(root) && (HasSplitFolders(root) || SubDirs(root, root).Any(d => Images(d, root).Count > 0));

    static string SetName(string root)
    {
        var n = Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(root)));
        return string.IsNullOrEmpty(n) ? "images" : n;
    }

    /// <summary>Per split, the (file, class index) list; and the class names.</summary>
    static (Dictionary<string, List<(ImageSource File, int Label)>> Splits, string[] Classes) Scan(string root, ImageFolderOptions o)
    {
        if (!Directory.Exists(root)) throw new PerturbException($"{root}: no such folder");
        var splits = new Dictionary<string, List<(ImageSource, int)>>();
        if (HasSplitFolders(root))
        {
            var present = SplitNames.Where(s => Directory.Exists(Path.Combine(root, s))).ToList();
            var classes = present.SelectMany(s => SubDirs(Path.Combine(root, s), root).Select(d => Path.GetFileName(d)!)).Distinct().OrderBy(n => n, StringComparer.Ordinal).ToArray();
            Limits.Check($"{root}: class folders", classes.Length, Limits.MaxClasses, "PERTURB_MAX_CLASSES");
            foreach (var s in present)
            {
                var list = new List<(ImageSource, int)>();
                foreach (var d in SubDirs(Path.Combine(root, s), root))
                    foreach (var f in Sources(d, root, o)) list.Add((f, Array.IndexOf(classes, Path.GetFileName(d))));
                if (list.Count == 0) throw new PerturbException($"{Path.Combine(root, s)}: no images (.png, .jpg, .jpeg, .bmp, .dcm) in its class folders");
                splits[s] = list;
            }
            return (splits, classes);
        }
        var dirs = SubDirs(root, root).Where(d => Images(d, root).Count > 0).ToList();
        if (dirs.Count == 0)
            throw new PerturbException($"{root}: no class folders with images (expected {root}/<class>/*.png|jpg|jpeg|bmp|dcm)");
        if (dirs.Count < 2) throw new PerturbException($"{root}: only one class folder with images ({Path.GetFileName(dirs[0])}); a classifier needs at least 2");
        Limits.Check($"{root}: class folders", dirs.Count, Limits.MaxClasses, "PERTURB_MAX_CLASSES");
        var names = dirs.Select(d => Path.GetFileName(d)).ToArray();
        var train = new List<(ImageSource, int)>();
        var test = new List<(ImageSource, int)>();
        if (!(o.TestFraction >= 0 && o.TestFraction < 1)) throw new PerturbException($"{root}: test fraction must be in [0, 1), got {o.TestFraction}", 2);
        for (int c = 0; c < dirs.Count; c++)
        {
            var files = Sources(dirs[c], root, o);
            var perm = new SplitMix64(o.Seed * 1000003UL + (ulong)c).Permutation(files.Count);
            int nTest = files.Count < 2 ? 0 : Math.Max(1, (int)Math.Round(files.Count * o.TestFraction));
            if (o.TestFraction == 0) nTest = 0;
            var testSet = new HashSet<int>(perm.Take(nTest));
            for (int i = 0; i < files.Count; i++) (testSet.Contains(i) ? test : train).Add((files[i], c));
        }
        if (test.Count == 0) throw new PerturbException($"{root}: no images left for the test split (test fraction {o.TestFraction})", 2);
        splits["train"] = train;
        splits["test"] = test;
        return (splits, names);
    }

    /// <summary>Loads every split present (train and test always; val when a val/ folder exists).</summary>
    public static DataSplits Load(string root, ImageFolderOptions? o = null)
    {
        o ??= new ImageFolderOptions();
        var (splits, classes) = Scan(root, o);
        var r = Resolve(splits.Values.First()[0].File, o);
        Dataset Make(string s) => Build(splits[s], classes, r, $"{SetName(root)}/{s}");
        return new DataSplits(SetName(root), Make("train"), splits.ContainsKey("val") ? Make("val") : null, Make("test"));
    }

    public static Dataset LoadSplit(string root, string split, ImageFolderOptions? o = null)
    {
        o ??= new ImageFolderOptions();
        var (splits, classes) = Scan(root, o);
        if (!splits.TryGetValue(split, out var list))
            throw new PerturbException(split is "train" or "val" or "test" ? $"{root}: the {split} split is missing (no {split}/ folder)" : $"unknown split '{split}' (choose train, val or test)", split is "train" or "val" or "test" ? 1 : 2);
        return Build(list, classes, Resolve(splits.Values.First()[0].File, o), $"{SetName(root)}/{split}");
    }

    /// <summary>Fills in the defaults (size and channels of the given first image).</summary>
    static ImageFolderOptions Resolve(ImageSource first, ImageFolderOptions o)
    {
        if (o.Channels is not (0 or 1 or 3)) throw new PerturbException($"channels must be 1 or 3, got {o.Channels}", 2);
        if (o.Height < 0 || o.Width < 0) throw new PerturbException($"image size must be positive, got {o.Height}x{o.Width}", 2);
        if (o.Channels != 0 && o.Height > 0 && o.Width > 0) return o;
        var img = ImageFile.Decode(first, o.Dicom);
        return o with
        {
            Channels = o.Channels != 0 ? o.Channels : img.Channels,
            Height = o.Height > 0 ? o.Height : img.Height,
            Width = o.Width > 0 ? o.Width : img.Width,
        };
    }

    static Dataset Build(List<(ImageSource File, int Label)> list, string[] classes, ImageFolderOptions o, string name)
    {
        int n = list.Count, size = o.Channels * o.Height * o.Width;
        var x = new float[(long)n * size];
        var y = new int[n];
        var errors = new PerturbException?[n];
        Parallel.For(0, n, i =>
        {
            try
            {
                ImageFile.Load(list[i].File, o.Channels, o.Height, o.Width, o.Dicom).CopyTo(x, (long)i * size);
                y[i] = list[i].Label;
            }
            catch (PerturbException e) { errors[i] = e; }
        });
        var err = errors.FirstOrDefault(e => e != null); // the first bad file in order, whatever the thread timing
        if (err != null) throw err;
        return new Dataset(x, y, o.Channels, o.Height, o.Width, classes) { Name = name, Sources = list.Select(e => e.File).ToArray(), Dicom = o.Dicom };
    }
}
