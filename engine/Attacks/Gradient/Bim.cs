namespace Perturb.Engine.Attacks.Gradient;

/// <summary>
/// Basic iterative method, I-FGSM (Kurakin et al.): PGD without a random start and with one run, starting at x.
/// Default 10 steps of eps/4 each (torchattacks' 2/255 at eps 8/255). Early stop per sample as PGD.
/// </summary>
[OmitSettings("random_start", "restarts")]
public sealed class Bim : Pgd
{
    public override string Name => "bim";
    public Bim() { RandomStart = false; Restarts = 1; RelStepSize = 0.25f; }
}
