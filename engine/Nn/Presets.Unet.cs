namespace Perturb.Engine.Nn;

public static partial class Presets
{
    /// <summary>The settings the U-Net presets take after a colon: <c>unet:depth=D,width=W</c>.</summary>
    public const string UnetHelp = "unet (depth 3, base width 16; 'unet:depth=D,width=W') and unet-small (depth 2, width 8, for CI) segment: output [classes, H, W]";

    /// <summary>Whether a preset name (with optional settings) is one of the U-Nets.</summary>
    public static bool IsUnet(string name) => name is "unet" or "unet-small" || name.StartsWith("unet:") || name.StartsWith("unet-small:");

    /// <summary>Whether a model is a segmentation model: its output per sample is [classes, H, W].</summary>
    public static bool IsSegmentation(Model m) => m.OutputShape.Length == 3;

    /// <summary>
    /// U-Net (Ronneberger et al., 2015) with padded convolutions, so the output mask has the input's size: per level
    /// two 3x3 conv + BatchNorm + ReLU, 2x2 max pool down; a bottleneck of two such convolutions; per level up a 2x2
    /// stride-2 ConvTranspose2d halving the width, concatenation with the level's skip, two conv + BN + ReLU; a 1x1
    /// conv to the class logits. Width doubles per level from the base width. H and W must be multiples of 2^depth.
    /// </summary>
    static Model Unet(GraphBuilder g, string spec, int c, int h, int w, int classes, IBackend be, ulong seed)
    {
        bool small = spec.StartsWith("unet-small");
        int depth = small ? 2 : 3, width = small ? 8 : 16;
        int colon = spec.IndexOf(':');
        if (colon > 0)
        {
            foreach (var part in spec[(colon + 1)..].Split(',', StringSplitOptions.RemoveEmptyEntries))
            {
                var kv = part.Split('=');
                if (kv.Length != 2 || !int.TryParse(kv[1], out var v) || v <= 0)
                    throw new PerturbException($"--arch {spec}: expected depth=D or width=W with positive integers, got '{part}'", 2);
                switch (kv[0].Trim())
                {
                    case "depth": depth = v; break;
                    case "width": width = v; break;
                    default: throw new PerturbException($"--arch {spec}: unknown setting '{kv[0]}' (known: depth, width)", 2);
                }
            }
        }
        if (depth > 6) throw new PerturbException($"--arch {spec}: depth must be 1 to 6, got {depth}", 2);
        if (width > 256) throw new PerturbException($"--arch {spec}: width must be 1 to 256, got {width}", 2);
        int f = 1 << depth;
        if (h % f != 0 || w % f != 0)
            throw new PerturbException($"{spec} with depth {depth} needs a height and width that are multiples of {f}, got {h}x{w}", 2);

        int x = 0; // the Normalize node
        int inC = c;
        var skips = new int[depth];
        int Block(string p, int from, int cin, int cout)
        {
            g.Add(p + ".conv1", new Conv2d(cin, cout, 3, padding: 1, bias: false), from);
            g.Add(p + ".bn1", new BatchNorm2d(cout));
            g.Add(p + ".relu1", new ActivationLayer(Activation.Relu));
            g.Add(p + ".conv2", new Conv2d(cout, cout, 3, padding: 1, bias: false));
            g.Add(p + ".bn2", new BatchNorm2d(cout));
            return g.Add(p + ".relu2", new ActivationLayer(Activation.Relu));
        }
        for (int l = 0; l < depth; l++)
        {
            int wl = width << l;
            skips[l] = Block($"down{l + 1}", x, inC, wl);
            x = g.Add($"pool{l + 1}", new Pool2d(true, 2), skips[l]);
            inC = wl;
        }
        x = Block("bottleneck", x, inC, width << depth);
        inC = width << depth;
        for (int l = depth - 1; l >= 0; l--)
        {
            int wl = width << l;
            int up = g.Add($"up{l + 1}.upconv", new ConvTranspose2d(inC, wl, 2, stride: 2), x);
            int cat = g.Add($"up{l + 1}.concat", new Concat(), skips[l], up);
            x = Block($"up{l + 1}", cat, 2 * wl, wl);
            inC = wl;
        }
        g.Add("head", new Conv2d(inC, classes, 1), x);
        var m = g.Build(be, seed);
        m.Info["arch"] = spec;
        m.Info["task"] = "segmentation";
        return m;
    }
}
