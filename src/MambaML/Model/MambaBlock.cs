using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.Model;

/// <summary>A pre-norm residual block: x + mixer(RMSNorm(x)) (with <see cref="MambaConfig.Dropout"/> on the mixer's output while training).</summary>
public sealed class MambaBlock : nn.Module
{
    /// <summary>The norm before the mixer.</summary>
    public RMSNorm norm;
    /// <summary>The Mamba mixer.</summary>
    public MambaMixer mixer;
    private readonly double _dropout;
    /// <summary>Where the dropout masks come from: the backbone gives all its blocks one stream (a block alone has its own).</summary>
    internal DropoutDraws Draws { get; set; }

    /// <summary>Creates a block; parameters are drawn from <paramref name="generator"/>.</summary>
    public MambaBlock(MambaConfig config, Generator generator) : base(nameof(MambaBlock))
    {
        norm = new RMSNorm(config.DModel, config.NormEpsilon);
        mixer = new MambaMixer(config, generator);
        _dropout = config.Dropout;
        Draws = new DropoutDraws((ulong)generator.initial_seed());
        RegisterComponents();
        this.KeepOutOfDisposeScopes();
    }

    /// <summary>Runs a whole sequence; see <see cref="MambaMixer.Forward"/>.</summary>
    public (Tensor Output, MambaLayerState? State) Forward(Tensor hidden, MambaLayerState? state = null, Tensor? lengths = null, bool returnState = false)
    {
        mixer.RequireSequenceInput(hidden, state, lengths);
        return ForwardChecked(hidden, state, lengths, returnState);
    }

    /// <summary>
    /// <see cref="Forward"/> for inputs the caller has checked (the backbone checks once for all its layers). The backbone
    /// passes a half-precision model's residual stream in float32: the mixer reads it normed in the model's dtype, and the
    /// output stays in the residual's.
    /// </summary>
    internal (Tensor Output, MambaLayerState? State) ForwardChecked(Tensor hidden, MambaLayerState? state, Tensor? lengths, bool returnState)
    {
        using var normed = MixerInput(hidden);
        var (mixed, next) = mixer.ForwardChecked(normed, state, lengths, returnState);
        using (mixed)
        {
            if (!training || _dropout == 0) return (AddToResidual(hidden, mixed), next);
            using var dropped = Draws.Apply(mixed, _dropout);
            return (AddToResidual(hidden, dropped), next);
        }
    }

    /// <summary>Advances one step; see <see cref="MambaMixer.Step"/>.</summary>
    public (Tensor Output, MambaLayerState State) Step(Tensor hidden, MambaLayerState state)
    {
        mixer.RequireStepInput(hidden, state);
        return StepChecked(hidden, state);
    }

    /// <summary><see cref="Step"/> for inputs the caller has checked (the backbone checks once for all its layers), with the
    /// residual as in <see cref="ForwardChecked"/>.</summary>
    internal (Tensor Output, MambaLayerState State) StepChecked(Tensor hidden, MambaLayerState state)
    {
        using var normed = MixerInput(hidden);
        var (mixed, next) = mixer.StepChecked(normed, state);
        using (mixed) return (AddToResidual(hidden, mixed), next);
    }

    // RMSNorm of the residual, in the norm weight's (the model's) dtype.
    private Tensor MixerInput(Tensor residual)
    {
        var normed = norm.forward(residual);
        if (normed.dtype == norm.weight.dtype) return normed;
        using (normed) return normed.to(norm.weight.dtype);
    }

    private static Tensor AddToResidual(Tensor residual, Tensor mixed)
    {
        if (mixed.dtype == residual.dtype) return residual + mixed;
        using var wide = mixed.to(residual.dtype);
        return residual + wide;
    }
}
