using Perturb.Engine.Nn;

namespace Perturb.Engine.Training;

/// <summary>An optimiser updates a model's trainable parameters from their gradients, on the device.</summary>
public abstract class Optimizer : IDisposable
{
    protected readonly Model Model;
    protected readonly List<Parameter> Params;
    public float LearningRate { get; set; }
    public float WeightDecay { get; }
    protected int StepCount;

    protected Optimizer(Model model, float lr, float weightDecay)
    {
        Model = model; LearningRate = lr; WeightDecay = weightDecay;
        Params = model.TrainableParameters().ToList();
    }

    /// <summary>Applies one update with the gradients of the last weight backward.</summary>
    public void Step()
    {
        StepCount++;
        for (int i = 0; i < Params.Count; i++)
        {
            var p = Params[i];
            if (p.Grad == null) continue;
            Update(i, p, p.Decay ? WeightDecay : 0f);
        }
        Model.MarkParametersChanged();
    }

    protected abstract void Update(int index, Parameter p, float weightDecay);
    public abstract void Dispose();

    public static Optimizer Create(string name, Model model, float lr, float weightDecay, float momentum = 0.9f) => name switch
    {
        "sgd" => new Sgd(model, lr, momentum, weightDecay),
        "adam" => new Adam(model, lr, weightDecay),
        _ => throw new PerturbException($"unknown optimizer '{name}' (choose sgd or adam)", 2),
    };
}

/// <summary>SGD with momentum and weight decay (PyTorch's rule; decay skips biases and norm parameters).</summary>
public sealed class Sgd : Optimizer
{
    public float Momentum { get; }
    public bool Nesterov { get; }
    readonly Tensor[] _v;

    public Sgd(Model model, float lr, float momentum = 0.9f, float weightDecay = 0f, bool nesterov = false) : base(model, lr, weightDecay)
    {
        Momentum = momentum; Nesterov = nesterov;
        _v = Params.Select(p => model.Backend.Allocate(p.Value.Shape)).ToArray();
    }

    protected override void Update(int i, Parameter p, float wd) =>
        Model.Backend.SgdUpdate(p.Value, p.Grad!, _v[i], LearningRate, Momentum, wd, Nesterov);

    public override void Dispose() { foreach (var t in _v) t.Dispose(); }
}

/// <summary>Adam (Kingma and Ba), PyTorch's rule with L2 weight decay.</summary>
public sealed class Adam : Optimizer
{
    public float Beta1 { get; } = 0.9f;
    public float Beta2 { get; } = 0.999f;
    public float Eps { get; } = 1e-8f;
    readonly Tensor[] _m, _v;

    public Adam(Model model, float lr, float weightDecay = 0f) : base(model, lr, weightDecay)
    {
        _m = Params.Select(p => model.Backend.Allocate(p.Value.Shape)).ToArray();
        _v = Params.Select(p => model.Backend.Allocate(p.Value.Shape)).ToArray();
    }

    protected override void Update(int i, Parameter p, float wd) =>
        Model.Backend.AdamUpdate(p.Value, p.Grad!, _m[i], _v[i], LearningRate, Beta1, Beta2, Eps, wd, StepCount);

    public override void Dispose() { foreach (var t in _m.Concat(_v)) t.Dispose(); }
}

/// <summary>Multi-step schedule: the rate is multiplied by gamma at each milestone epoch (0-based epoch index).</summary>
public sealed class MultiStepLr
{
    public float BaseLr { get; }
    public int[] Milestones { get; }
    public float Gamma { get; }
    public MultiStepLr(float baseLr, IEnumerable<int> milestones, float gamma = 0.1f)
    { BaseLr = baseLr; Milestones = milestones.OrderBy(m => m).ToArray(); Gamma = gamma; }

    public float RateAt(int epoch) => BaseLr * MathF.Pow(Gamma, Milestones.Count(m => epoch >= m));
}
