using Perturb.Engine.Attacks;
using Perturb.Engine.Training;

namespace Perturb.Engine.Poison;

/// <summary>
/// The training every poisoning experiment does (each model, poisoned or its clean twin, from the same architecture
/// and seed), each setting described once by <see cref="SettingAttribute"/>: sweep keys of a poisoning attack object
/// come from these descriptors, as do those of the experiment deriving from it.
/// </summary>
public abstract record PoisonTraining
{
    [Setting("epochs", "training epochs of each model", Min = 1)]
    public int Epochs { get; init; } = 5;
    [Setting("batch_size", "training batch size", Min = 1)]
    public int BatchSize { get; init; } = 64;
    [Setting("lr", "learning rate (Adam)", Min = 0, MinOpen = true)]
    public float LearningRate { get; init; } = 1e-3f;
    [Setting("seed", "seed of the models, the training order and the poison")]
    public ulong Seed { get; init; }

    /// <summary>The training options of each model.</summary>
    public TrainOptions Training => new() { Epochs = Epochs, BatchSize = BatchSize, LearningRate = LearningRate, Seed = Seed };
}

/// <summary>BadNets as a sweep runs it: a checkerboard or square trigger in the bottom-right corner.</summary>
public sealed record BadNetsSettings : PoisonTraining
{
    [Setting("rate", "fraction of the training set poisoned", Min = 0, MinOpen = true, Max = 1)]
    public double Rate { get; init; } = 0.1;
    [Setting("target", "the backdoor's target label", Min = 0)]
    public int Target { get; init; }
    [Setting("trigger", "checkerboard or square (an image trigger needs a file: perturb poison badnets --trigger FILE)")]
    public TriggerKind Trigger { get; init; } = TriggerKind.Checkerboard;
    [Setting("trigger_size", "trigger side in pixels", Min = 1)]
    public int TriggerSize { get; init; } = 4;
    [Setting("alpha", "blend weight of the trigger (1: opaque)", Min = 0, MinOpen = true, Max = 1)]
    public float Alpha { get; init; } = 1f;

    public void Check()
    {
        if (Trigger == TriggerKind.Image) throw new PerturbException("badnets: trigger 'image' needs a file; a sweep takes checkerboard or square", 2);
    }

    /// <summary>The trigger for images of <paramref name="channels"/> channels (bottom-right, one pixel from the border).</summary>
    public Trigger MakeTrigger(int channels) => Poison.Trigger.Parse(Values.EnumName(Trigger), TriggerSize, "br", Alpha, channels);
}

/// <summary>Label flipping at one rate.</summary>
public sealed record LabelFlipSettings : PoisonTraining
{
    [Setting("rate", "fraction of the training labels flipped to another class (0: the clean model)", Min = 0, Max = 1)]
    public double Rate { get; init; } = 0.1;
}
