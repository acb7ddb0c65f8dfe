using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MambaML.Model;

/// <summary>
/// A stack of Mamba blocks and a final RMS norm, mapping (batch, L, d_model) inputs to hidden states of the same shape.
/// Task heads (forecasting, classification, language modelling) sit on top. In a bfloat16 or float16 model the residual
/// stream between the blocks stays in float32, as mamba_ssm's <c>residual_in_fp32</c> (its default) keeps it: rounding it
/// to half precision after every block made the error grow with depth. Inputs and outputs are in the model's dtype.
/// </summary>
public sealed class MambaBackbone : nn.Module
{
    /// <summary>The configuration this backbone was built with.</summary>
    public MambaConfig Config { get; }
    /// <summary>The blocks, first to last.</summary>
    public ModuleList<MambaBlock> layers;
    /// <summary>The final norm.</summary>
    public RMSNorm norm_f;
    /// <summary>The dropout masks' stream (<see cref="MambaConfig.Dropout"/>).</summary>
    internal DropoutDraws Draws { get; }

    /// <summary>Creates a backbone whose parameters are a function of <paramref name="seed"/> alone.</summary>
    public MambaBackbone(MambaConfig config, long seed) : this(config, new Generator((ulong)seed)) { }

    /// <summary>Creates a backbone drawing its parameters from <paramref name="generator"/>.</summary>
    public MambaBackbone(MambaConfig config, Generator generator) : base(nameof(MambaBackbone))
    {
        Config = config.Validate();
        layers = nn.ModuleList(Enumerable.Range(0, config.NLayer).Select(_ => new MambaBlock(config, generator)).ToArray());
        norm_f = new RMSNorm(config.DModel, config.NormEpsilon);
        // One dropout stream for all the blocks (and a language model's embedding), seeded without drawing from the generator,
        // so that the parameters stay what they were before dropout existed.
        Draws = new DropoutDraws((ulong)generator.initial_seed() ^ 0x9E3779B97F4A7C15UL);
        foreach (var block in layers) block.Draws = Draws;
        RegisterComponents();
        this.KeepOutOfDisposeScopes();
    }

    /// <summary>Runs whole sequences.</summary>
    /// <param name="hidden">(batch, L, d_model).</param>
    /// <param name="state">Optional state to continue from.</param>
    /// <param name="lengths">Optional int64 (batch) lengths of right-padded sequences; outputs at padded steps are zero.</param>
    /// <param name="returnState">Also return each sequence's state after its last real step.</param>
    public (Tensor Output, MambaState? State) Forward(Tensor hidden, MambaState? state = null, Tensor? lengths = null, bool returnState = false)
    {
        using var scope = NewDisposeScope();
        ModelInputs.RequireSequence(Config, norm_f.weight.dtype, hidden, lengths);
        state?.RequireFits(Config, hidden.shape[0]);
        var layerStates = returnState ? new MambaLayerState[layers.Count] : null;
        var x = ThroughBlocks(hidden, (i, residual) =>
        {
            var (next, s) = layers[i].ForwardChecked(residual, state?.Layers[i], lengths, returnState);
            if (layerStates is not null) layerStates[i] = s!;
            return next;
        });
        if (lengths is not null)
            x = x * MambaMixer.LengthMask(lengths, hidden.shape[1], hidden.device).unsqueeze(-1).to(x.dtype);
        MambaState? final = layerStates is null ? null : new MambaState(layerStates).MoveToOuterDisposeScope();
        return (x.MoveToOuterDisposeScope(), final);
    }

    /// <summary>Advances one time step for every sequence in the batch: O(1) in the sequence length.</summary>
    /// <param name="hidden">(batch, d_model).</param>
    /// <param name="state">The state before this step (see <see cref="MambaState.Zeros"/>).</param>
    /// <returns>(batch, d_model) hidden state and the new recurrent state; <paramref name="state"/> is unchanged.</returns>
    public (Tensor Output, MambaState State) Step(Tensor hidden, MambaState state)
    {
        ModelInputs.RequireStep(Config, norm_f.weight.dtype, hidden);
        state.RequireFits(Config, hidden.shape[0]);
        using var scope = NewDisposeScope();
        var layerStates = new MambaLayerState[layers.Count];
        var x = ThroughBlocks(hidden, (i, residual) =>
        {
            (var next, layerStates[i]) = layers[i].StepChecked(residual, state.Layers[i]);
            return next;
        });
        return (x.MoveToOuterDisposeScope(), new MambaState(layerStates).MoveToOuterDisposeScope());
    }

    // The blocks in turn (block(i, residual) runs block i), then the final norm, back in the input's dtype. The residual stream
    // is the input itself in float32 and float64 models, and the input in float32 in half-precision ones. Each block's residual
    // is freed once the next block has read it (never the caller's input): otherwise the dispose scope kept every block's
    // output to the end of the pass, and 24 blocks of a 768-wide model scoring 1,024 texts of 512 tokens held 38 GB.
    // Autograd keeps its own reference to what backward needs, so training is unaffected.
    private Tensor ThroughBlocks(Tensor hidden, Func<int, Tensor, Tensor> block)
    {
        var x = hidden.dtype is ScalarType.BFloat16 or ScalarType.Float16 ? hidden.to(ScalarType.Float32) : hidden;
        for (int i = 0; i < layers.Count; i++) x = Replace(x, block(i, x));
        return Replace(x, norm_f.forward(x).to(hidden.dtype));

        Tensor Replace(Tensor residual, Tensor next)
        {
            if (!ReferenceEquals(residual, hidden)) residual.Dispose();
            return next;
        }
    }

    /// <summary>A zero recurrent state for <paramref name="batch"/> sequences on this backbone's device.</summary>
    public MambaState ZeroState(long batch) =>
        MambaState.Zeros(Config, batch, norm_f.weight.device, norm_f.weight.dtype);
}
