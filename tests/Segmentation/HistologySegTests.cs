using Perturb.Engine;
using Perturb.Engine.Data;

namespace Perturb.Tests.Segmentation;

public class HistologySegTests
{
    [Fact]
    public void SameTilesAsHistologyWithExactMasks()
    {
        var cls = SyntheticHistology.Create(5, 12, 4, 32);
        var seg = SyntheticHistology.CreateSegmentation(5, 12, 4, 32);
        Assert.Equal(cls.Train.X, seg.Train.X); // drawing the masks changes no pixel
        Assert.Equal(cls.Test.X, seg.Test.X);
        var d = seg.Train;
        Assert.True(d.HasMasks);
        Assert.Equal(new[] { "background", "nucleus" }, d.MaskClassNames);
        Assert.Equal(d.Count * 32 * 32, d.Masks!.Length);
        Assert.Equal(seg.Train.Masks, SyntheticHistology.CreateSegmentation(5, 12, 4, 32).Train.Masks);
        for (int i = 0; i < d.Count; i++)
        {
            var m = d.Mask(i).ToArray();
            var inst = d.Instances!.AsSpan(i * 1024, 1024).ToArray();
            int fg = m.Count(v => v == 1);
            Assert.InRange(fg, 20, 800);
            // Instances cover exactly the nucleus pixels, numbered 1..count without gaps.
            for (int j = 0; j < m.Length; j++) Assert.Equal(m[j] != 0, inst[j] != 0);
            var ids = inst.Where(v => v > 0).Distinct().OrderBy(v => v).ToArray();
            Assert.Equal(Enumerable.Range(1, ids.Length), ids);
            // Nuclei are haematoxylin, which absorbs red (eosin hardly does): much darker in red than the rest of the tile.
            var x = d.Sample(i);
            double rf = 0, rb = 0;
            for (int j = 0; j < 1024; j++) { if (m[j] == 1) rf += x[j]; else rb += x[j]; }
            Assert.True(rf / fg < rb / (1024 - fg) - 0.15, $"tile {i}: nucleus red {rf / fg:F3} vs background {rb / (1024 - fg):F3}");
        }
        // Malignant tiles (odd) are crowded: more nucleus pixels and more instances than benign ones, on average.
        double Frac(int parity) => Enumerable.Range(0, d.Count).Where(i => i % 2 == parity).Average(i => d.Mask(i).ToArray().Count(v => v > 0));
        Assert.True(Frac(1) > Frac(0), $"malignant {Frac(1)} vs benign {Frac(0)} nucleus pixels");
    }

    /// <summary>Mean red of nucleus pixels minus mean red of the rest, and the mean nucleus-pixel fraction, over a split.</summary>
    static (double Contrast, double Fraction) RedContrast(Dataset d)
    {
        double c = 0, f = 0;
        for (int i = 0; i < d.Count; i++)
        {
            var m = d.Mask(i).ToArray(); var x = d.Sample(i);
            int fg = m.Count(v => v > 0);
            double rf = 0, rb = 0;
            for (int j = 0; j < m.Length; j++) { if (m[j] > 0) rf += x[j]; else rb += x[j]; }
            c += rb / (m.Length - fg) - rf / Math.Max(fg, 1); f += fg / (double)m.Length;
        }
        return (c / d.Count, f / d.Count);
    }

    [Fact]
    public void DifficultyLowersTheNucleusContrastAndCrowdsTheTiles()
    {
        var easy = SyntheticHistology.CreateSegmentation(5, 40, 4, 32).Train;
        var hard = SyntheticHistology.CreateSegmentation(5, 40, 4, 32, difficulty: 0.9).Train;
        var (ce, fe) = RedContrast(easy); var (ch, fh) = RedContrast(hard);
        Assert.True(ch < 0.5 * ce, $"red contrast {ch:F3} at difficulty 0.9 against {ce:F3} at 0");
        Assert.True(ch > 0.03, $"difficulty 0.9 leaves nuclei visible (red contrast {ch:F3})");
        Assert.True(fh > fe, $"nucleus fraction {fh:F3} at difficulty 0.9 against {fe:F3}");
        Assert.All(hard.X, v => Assert.InRange(v, 0f, 1f));
        // Difficulty 0 is the default set, pixel for pixel; the same seed repeats; out of range is a usage error.
        Assert.Equal(easy.X, SyntheticHistology.CreateSegmentation(5, 40, 4, 32, difficulty: 0).Train.X);
        Assert.Equal(hard.X, SyntheticHistology.CreateSegmentation(5, 40, 4, 32, difficulty: 0.9).Train.X);
        Assert.Equal(2, Assert.Throws<PerturbException>(() => SyntheticHistology.CreateSegmentation(5, 4, 4, 32, difficulty: 1.5)).ExitCode);
        Assert.Contains("difficulty", Assert.Throws<PerturbException>(() => DataSources.Load("histology-seg:train=4,test=4,difficulty=2", 0)).Message);
    }

    [Fact]
    public void ThreeClassesFollowTheTileClass()
    {
        var d = SyntheticHistology.CreateSegmentation(3, 10, 2, 32, classes: 3).Train;
        Assert.Equal(3, d.NumMaskClasses);
        for (int i = 0; i < d.Count; i++)
        {
            var present = d.Mask(i).ToArray().Where(v => v > 0).Distinct().ToArray();
            Assert.Equal(new[] { d.Labels[i] == 0 ? 1 : 2 }, present);
        }
        Assert.Throws<PerturbException>(() => SyntheticHistology.CreateSegmentation(3, 10, 2, 32, classes: 4));
    }

    [Fact]
    public void DataSpecAndTakeKeepMasks()
    {
        var s = DataSources.Load("histology-seg:train=6,test=4,size=16,classes=3", 2);
        Assert.Equal("histology-seg", s.Name);
        Assert.Equal(3, s.Test.NumMaskClasses);
        var t = s.Train.Take(2);
        Assert.Equal(s.Train.Masks!.AsSpan(0, 2 * 256).ToArray(), t.Masks);
        Assert.Equal(2 * 256, t.Instances!.Length);
        var e = Assert.Throws<PerturbException>(() => DataSources.Load("histology-seg:classes=5"));
        Assert.Contains("classes", e.Message);
        Assert.Throws<PerturbException>(() => DataSources.Load("histology-seg:colour=1"));
    }

    [Fact]
    public void WithMasksRejectsBadMasks()
    {
        var d = new Dataset(new float[2 * 4], new[] { 0, 0 }, 1, 2, 2, new[] { "a" });
        var e = Assert.Throws<PerturbException>(() => d.WithMasks(new int[7], new[] { "bg", "fg" }));
        Assert.Contains("need 8 values", e.Message);
        e = Assert.Throws<PerturbException>(() => d.WithMasks(new[] { 0, 1, 0, 0, 0, 0, 2, 0 }, new[] { "bg", "fg" }));
        Assert.Contains("sample 1", e.Message);
        Assert.Contains("value 2", e.Message);
        var ok = d.WithMasks(new[] { 0, 1, 255, 0, 0, 0, 1, 0 }, new[] { "bg", "fg" }, ignore: 255);
        Assert.Equal(255, ok.IgnoreLabel);
    }
}
