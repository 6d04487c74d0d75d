using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Perturb.Engine;
using Perturb.Engine.Attacks;
using Perturb.Engine.Data;
using Perturb.Engine.Defenses;
using Perturb.Engine.IO;
using Perturb.Engine.Nn;
using Perturb.Engine.Poison;
using Perturb.Engine.Training;

namespace Perturb.Cli;

/// <summary><c>perturb poison badnets|label-flip|generative</c>: poison a training set, train, and measure against a clean twin.</summary>
public static class PoisonCommand
{
    /// <summary>
    /// The options every poison command has, and its experiment's settings as options built from their descriptors
    /// (the training ones, --epochs, --batch-size, --lr, --seed, from <see cref="PoisonTraining"/>), less those the
    /// command spells its own way (<paramref name="own"/>: label-flip's list of rates, badnets' trigger file).
    /// </summary>
    sealed class Shared<T>(params string[] own) where T : PoisonTraining, new()
    {
        public readonly Option<string> Arch = new("--arch") { Description = $"architecture preset: {string.Join(", ", Presets.Names)}", DefaultValueFactory = _ => "lenet" };
        public readonly Option<string> Data = CommonOptions.Data();
        public readonly Option<ulong> DataSeed = CommonOptions.DataSeed();
        public readonly SettingOptions Settings = new(Setting.Of(typeof(T)).Where(s => !own.Contains(s.Name)));
        public readonly Option<string> Device = CommonOptions.Device();
        public readonly Option<string?> Json = CommonOptions.Json();

        public void AddTo(Command c) { foreach (var o in new Option[] { Arch, Data, DataSeed }.Concat(Settings.Options).Concat(new Option[] { Device, Json })) c.Options.Add(o); }

        /// <summary>The experiment's settings from the command line (the rest at their defaults).</summary>
        public T Values(ParseResult pr) => Setting.Create<T>(Settings.Values(pr), "poison");

        public Func<Model> Maker(ParseResult pr, IBackend be, Dataset tr, T o)
        {
            string arch = pr.GetValue(Arch)!; ulong s = o.Seed;
            return () => { var m = Presets.Create(arch, be, tr.Channels, tr.Height, tr.Width, tr.NumClasses, s); m.ClassNames = tr.ClassNames; return m; };
        }
    }

    public static Command Build(CliIO io)
    {
        var cmd = new Command("poison", "poison a training set (BadNets backdoor, label flipping, generative poisoning), train, and compare with a clean model trained with the same seed");
        cmd.Subcommands.Add(BadNets(io));
        cmd.Subcommands.Add(LabelFlip(io));
        cmd.Subcommands.Add(Generative(io));
        return cmd;
    }

    static Command Generative(CliIO io)
    {
        var sh = new Shared<GenerativePoisonOptions>();
        var cmd = new Command("generative", "generative poisoning (after Yang et al. 2017): an auto-encoder makes poisons that raise the victim's loss; reports the victim's accuracy drop");
        sh.AddTo(cmd);
        cmd.SetAction(pr =>
        {
            var g = sh.Values(pr);
            var o = g.Training;
            var splits = DataSources.Load(pr.GetValue(sh.Data)!, pr.GetValue(sh.DataSeed));
            using var be = CliUtil.OpenDevice(pr.GetValue(sh.Device)!, io);
            var r = GenerativePoisoning.Run(sh.Maker(pr, be, splits.Train, g), splits, g, o, io.Err.WriteLine);
            io.Out.WriteLine($"generative poison ({r.PoisonCount} samples, eps {g.Eps:G3}): victim accuracy {r.PoisonedAccuracy:P2}, clean victim {r.CleanAccuracy:P2}, " +
                $"random ±eps control {r.ControlAccuracy:P2}; drop {r.AccuracyDrop * 100:F2} points, {r.DropVersusControl * 100:F2} against the control");
            var jp = pr.GetValue(sh.Json);
            if (jp != null)
                CliUtil.WriteJson(jp, r.ToJson(g, Head(pr.GetValue(sh.Arch), splits, be, o)));
            return 0;
        });
        return cmd;
    }

    static Command BadNets(CliIO io)
    {
        var sh = new Shared<BadNetsSettings>("trigger");
        var trig = new Option<string>("--trigger") { Description = "checkerboard, square, or an image file", DefaultValueFactory = _ => "checkerboard" };
        var place = new Option<string>("--trigger-place") { Description = "br, bl, tr, tl (1 pixel from the border), or X,Y (top-left corner)", DefaultValueFactory = _ => "br" };
        var detect = new Option<bool>("--detect") { Description = "run spectral signatures and activation clustering on the poisoned model's training features" };
        var outDir = new Option<string?>("--out") { Description = "folder for example PNGs of triggered test images (written whole: into a temporary folder renamed when complete)" };
        var overwrite = AttackCommand.Overwrite();
        var cmd = new Command("badnets", "BadNets backdoor (Gu et al. 2019): a trigger on a fraction of the training images, relabelled to the target");
        sh.AddTo(cmd);
        foreach (var o in new Option[] { trig, place, detect, outDir, overwrite }) cmd.Options.Add(o);
        cmd.SetAction(pr =>
        {
            var b = sh.Values(pr);
            var od = pr.GetValue(outDir);
            if (od != null) OutputFolder.Check(od, pr.GetValue(overwrite));
            var splits = DataSources.Load(pr.GetValue(sh.Data)!, pr.GetValue(sh.DataSeed));
            var tr = splits.Train;
            var trigger = Trigger.Parse(pr.GetValue(trig)!, b.TriggerSize, pr.GetValue(place)!, b.Alpha, tr.Channels);
            trigger.Validate(tr.Channels, tr.Height, tr.Width);
            using var be = CliUtil.OpenDevice(pr.GetValue(sh.Device)!, io);
            var o = b.Training;
            double r = b.Rate; int t = b.Target;
            JsonObject? detection = null;
            var rep = PoisonExperiments.BadNets(sh.Maker(pr, be, tr, b), splits, trigger, r, t, o, io.Err.WriteLine,
                keepPoisoned: !pr.GetValue(detect) ? null : (m, p) =>
                {
                    using (m)
                    {
                        var d = BackdoorDetection.Run(m, p, t, o.Seed);
                        detection = d.ToJson();
                        io.Out.WriteLine(d.Summary);
                    }
                });
            io.Out.WriteLine($"badnets ({trigger.Kind.ToString().ToLowerInvariant()} {trigger.Size}px, rate {r:G3}, target {t}): clean accuracy {rep.CleanAccuracy:P2}, attack success {rep.AttackSuccessRate:P2}; " +
                $"clean model: clean accuracy {rep.BaselineCleanAccuracy:P2}, attack success {rep.BaselineAttackSuccessRate:P2}");
            if (od != null)
            {
                var te = splits.Test; var trg = Poisoning.Triggered(te, trigger, t);
                OutputFolder.Write(od, pr.GetValue(overwrite), "perturb poison badnets", dir =>
                {
                    for (int i = 0; i < Math.Min(4, trg.Count); i++)
                        ImageWriter.SavePng(Path.Combine(dir, $"triggered_{i}.png"), trg.Sample(i), te.Channels, te.Height, te.Width);
                });
            }
            var jp = pr.GetValue(sh.Json);
            if (jp != null)
            {
                var j = rep.ToJson(trigger, r, t, Head(pr.GetValue(sh.Arch), splits, be, o));
                j["trigger_place"] = pr.GetValue(place);
                if (detection != null) j["detection"] = detection;
                CliUtil.WriteJson(jp, j);
            }
            return 0;
        });
        return cmd;
    }

    static Command LabelFlip(CliIO io)
    {
        var sh = new Shared<LabelFlipSettings>("rate");
        var rate = Opt.NumberList("--rate", "fraction(s) of labels flipped, comma-separated (0 gives the clean model; default 0,0.1,0.2,0.4)", ValueRange.Fraction);
        var cmd = new Command("label-flip", "label flipping: a fraction of the training labels changed to another class at random; clean accuracy per rate");
        sh.AddTo(cmd);
        cmd.Options.Add(rate);
        cmd.SetAction(pr =>
        {
            var rates = pr.ListValue(rate) ?? new[] { 0, 0.1, 0.2, 0.4 };
            var splits = DataSources.Load(pr.GetValue(sh.Data)!, pr.GetValue(sh.DataSeed));
            using var be = CliUtil.OpenDevice(pr.GetValue(sh.Device)!, io);
            var l = sh.Values(pr);
            var o = l.Training;
            var pts = PoisonExperiments.LabelFlip(sh.Maker(pr, be, splits.Train, l), splits, rates, o, io.Err.WriteLine);
            io.Out.WriteLine("rate     flipped  clean accuracy  AUC");
            foreach (var p in pts.Points) io.Out.WriteLine($"{p.Rate,-8:G3} {p.Flipped,7}  {p.CleanAccuracy,14:P2}  {p.Auc:F3}");
            var jp = pr.GetValue(sh.Json);
            if (jp != null)
                CliUtil.WriteJson(jp, pts.ToJson(Head(pr.GetValue(sh.Arch), splits, be, o)));
            return 0;
        });
        return cmd;
    }

    /// <summary>What every poison result starts with: the run's architecture, data, device, seed and epochs.</summary>
    static JsonObject Head(string? arch, DataSplits splits, IBackend be, TrainOptions o) => new()
    {
        ["arch"] = arch, ["data"] = splits.Name, ["device"] = be.Name, ["seed"] = o.Seed, ["epochs"] = o.Epochs,
    };
}
