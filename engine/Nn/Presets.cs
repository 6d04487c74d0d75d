namespace Perturb.Engine.Nn;

/// <summary>
/// Built-in architectures, for any input channels, size and class count. Each starts with a Normalize layer
/// (mean and std default to 0.5, the MedMNIST recipe), so inputs stay in [0,1] pixels.
/// A class count of 2 with <c>singleOutput</c> makes a one-logit (sigmoid, BCE) binary model.
/// </summary>
public static partial class Presets
{
    public static readonly string[] Names = { "lenet", "cnn-small", "resnet18", "unet", "unet-small" };

    public static Model Create(string name, IBackend be, int channels, int height, int width, int classes, ulong seed,
        float mean = 0.5f, float std = 0.5f, bool singleOutput = false)
    {
        if (classes < 2) throw new PerturbException($"a classifier needs at least 2 classes, got {classes}");
        if (channels <= 0 || height <= 0 || width <= 0) throw new PerturbException($"invalid input shape {channels}x{height}x{width}");
        int outputs = singleOutput && classes == 2 ? 1 : classes;
        var g = new GraphBuilder(channels, height, width);
        g.Add("norm", new Normalize(new[] { mean }, new[] { std }), GraphBuilder.Input);
        if (IsUnet(name)) return Unet(g, name, channels, height, width, classes, be, seed);
        switch (name)
        {
            case "lenet": LeNet(g, channels, height, width, outputs); break;
            case "cnn-small": CnnSmall(g, channels, outputs); break;
            case "resnet18": ResNet18(g, channels, outputs); break;
            default: throw new PerturbException($"unknown architecture '{name}' (choose {string.Join(", ", Names)})", 2);
        }
        var m = g.Build(be, seed);
        m.Info["arch"] = name;
        return m;
    }

    /// <summary>LeNet-5 (conv 6@5x5 pad 2, pool, conv 16@5x5, pool, fc 120, fc 84, fc classes), ReLU and max pooling.</summary>
    static void LeNet(GraphBuilder g, int c, int h, int w, int classes)
    {
        int h1 = h / 2, w1 = w / 2, h2 = (h1 - 4) / 2, w2 = (w1 - 4) / 2;
        if (h2 < 1 || w2 < 1) throw new PerturbException($"lenet needs inputs of at least 10x10, got {h}x{w}");
        g.Add("conv1", new Conv2d(c, 6, 5, padding: 2)); g.Add("relu1", new ActivationLayer(Activation.Relu));
        g.Add("pool1", new Pool2d(true, 2));
        g.Add("conv2", new Conv2d(6, 16, 5)); g.Add("relu2", new ActivationLayer(Activation.Relu));
        g.Add("pool2", new Pool2d(true, 2));
        g.Add("flatten", new Flatten());
        g.Add("fc1", new Linear(16 * h2 * w2, 120)); g.Add("relu3", new ActivationLayer(Activation.Relu));
        g.Add("fc2", new Linear(120, 84)); g.Add("relu4", new ActivationLayer(Activation.Relu));
        g.Add("fc3", new Linear(84, classes));
    }

    /// <summary>Three conv-BN-ReLU stages (32, 64, 128 channels) with max pooling, global average pool, dropout, linear.</summary>
    static void CnnSmall(GraphBuilder g, int c, int classes)
    {
        int[] widths = { 32, 64, 128 };
        int inC = c;
        for (int i = 0; i < widths.Length; i++)
        {
            g.Add($"conv{i + 1}", new Conv2d(inC, widths[i], 3, padding: 1, bias: false));
            g.Add($"bn{i + 1}", new BatchNorm2d(widths[i]));
            g.Add($"relu{i + 1}", new ActivationLayer(Activation.Relu));
            if (i < widths.Length - 1) g.Add($"pool{i + 1}", new Pool2d(true, 2));
            inC = widths[i];
        }
        g.Add("gap", new GlobalAvgPool());
        g.Add("flatten", new Flatten());
        g.Add("dropout", new Dropout(0.2f));
        g.Add("fc", new Linear(inC, classes));
    }

    /// <summary>
    /// ResNet-18, the MedMNIST variant: 3x3 stem with stride 1 and no max pool, four stages of two basic blocks
    /// (64, 128, 256, 512 channels; stride 2 and a 1x1 projection at the start of stages 2 to 4), global average pool, linear.
    /// </summary>
    static void ResNet18(GraphBuilder g, int c, int classes)
    {
        g.Add("conv1", new Conv2d(c, 64, 3, padding: 1, bias: false));
        g.Add("bn1", new BatchNorm2d(64));
        int x = g.Add("relu", new ActivationLayer(Activation.Relu));
        int inC = 64;
        int[] widths = { 64, 128, 256, 512 };
        for (int s = 0; s < 4; s++)
        {
            for (int b = 0; b < 2; b++)
            {
                int stride = s > 0 && b == 0 ? 2 : 1, outC = widths[s];
                string p = $"layer{s + 1}.{b}";
                g.Add(p + ".conv1", new Conv2d(inC, outC, 3, stride, 1, bias: false), x);
                g.Add(p + ".bn1", new BatchNorm2d(outC));
                g.Add(p + ".relu1", new ActivationLayer(Activation.Relu));
                g.Add(p + ".conv2", new Conv2d(outC, outC, 3, 1, 1, bias: false));
                int main = g.Add(p + ".bn2", new BatchNorm2d(outC));
                int skip = x;
                if (stride != 1 || inC != outC)
                {
                    g.Add(p + ".downsample.0", new Conv2d(inC, outC, 1, stride, bias: false), x);
                    skip = g.Add(p + ".downsample.1", new BatchNorm2d(outC));
                }
                g.Add(p + ".add", new AddLayer(), main, skip);
                x = g.Add(p + ".relu2", new ActivationLayer(Activation.Relu));
                inC = outC;
            }
        }
        g.Add("gap", new GlobalAvgPool(), x);
        g.Add("flatten", new Flatten());
        g.Add("fc", new Linear(512, classes));
    }
}
