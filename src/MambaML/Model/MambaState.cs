using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.Model;

/// <summary>The recurrent state of one Mamba mixer: the last inputs of its convolution and its SSM state.</summary>
/// <param name="Conv">The last d_conv − 1 convolution inputs, (batch, d_inner, d_conv − 1), oldest first.</param>
/// <param name="Ssm">The SSM state h, (batch, d_inner, d_state), fp32.</param>
public sealed record MambaLayerState(Tensor Conv, Tensor Ssm) : IDisposable
{
    /// <summary>A zero state (the state before any input).</summary>
    public static MambaLayerState Zeros(MambaConfig config, long batch, Device? device = null, ScalarType dtype = ScalarType.Float32) =>
        new(zeros(batch, config.DInner, config.DConv - 1, dtype: dtype, device: device),
            zeros(batch, config.DInner, config.DState, dtype: dtype == ScalarType.Float64 ? dtype : ScalarType.Float32, device: device));

    /// <summary>Keeps the tensors alive past the current dispose scope.</summary>
    public MambaLayerState MoveToOuterDisposeScope() { Conv.MoveToOuterDisposeScope(); Ssm.MoveToOuterDisposeScope(); return this; }

    /// <summary>The same state without autograd history.</summary>
    public MambaLayerState Detach() => new(Conv.detach(), Ssm.detach());

    /// <summary>Throws <see cref="ArgumentException"/> (naming <c>state</c>) unless this state is one mixer's state of
    /// <paramref name="config"/> for <paramref name="batch"/> sequences, as <see cref="Zeros"/> makes it.</summary>
    internal void RequireFits(MambaConfig config, long batch)
    {
        if (!Conv.shape.SequenceEqual(ConvShape(config, batch)) || !Ssm.shape.SequenceEqual(SsmShape(config, batch)))
            throw new ArgumentException(
                $"The state does not fit this mixer and input: it needs conv ({string.Join(", ", ConvShape(config, batch))}) and " +
                $"ssm ({string.Join(", ", SsmShape(config, batch))}); it has conv ({string.Join(", ", Conv.shape)}) and ssm ({string.Join(", ", Ssm.shape)}).",
                "state");
    }

    /// <summary>(batch, d_inner, d_conv − 1): the shape of <see cref="Conv"/>.</summary>
    internal static long[] ConvShape(MambaConfig config, long batch) => new[] { batch, config.DInner, config.DConv - 1L };

    /// <summary>(batch, d_inner, d_state): the shape of <see cref="Ssm"/>.</summary>
    internal static long[] SsmShape(MambaConfig config, long batch) => new[] { batch, config.DInner, (long)config.DState };

    /// <inheritdoc/>
    public void Dispose() { Conv.Dispose(); Ssm.Dispose(); }
}

/// <summary>The recurrent state of a whole backbone: one <see cref="MambaLayerState"/> per layer.</summary>
public sealed class MambaState : IDisposable
{
    /// <summary>Per-layer states, first layer first.</summary>
    public IReadOnlyList<MambaLayerState> Layers { get; }

    /// <summary>Wraps per-layer states.</summary>
    public MambaState(IReadOnlyList<MambaLayerState> layers) => Layers = layers;

    /// <summary>
    /// Throws <see cref="ArgumentException"/> (naming <c>state</c>) unless this state has one layer per layer of
    /// <paramref name="config"/>, each of <paramref name="batch"/> sequences: conv (batch, d_inner, d_conv − 1) and ssm
    /// (batch, d_inner, d_state), as <see cref="Zeros"/> makes.
    /// </summary>
    internal void RequireFits(MambaConfig config, long batch)
    {
        var conv = MambaLayerState.ConvShape(config, batch);
        var ssm = MambaLayerState.SsmShape(config, batch);
        if (Layers.Count != config.NLayer || Layers.Any(l => !l.Conv.shape.SequenceEqual(conv) || !l.Ssm.shape.SequenceEqual(ssm)))
            throw new ArgumentException(
                $"The state does not fit this model and input: it needs {config.NLayer} layers, each with conv ({string.Join(", ", conv)}) and " +
                $"ssm ({string.Join(", ", ssm)}); it has {Layers.Count} layers" +
                (Layers.Count > 0 ? $", the first with conv ({string.Join(", ", Layers[0].Conv.shape)}) and ssm ({string.Join(", ", Layers[0].Ssm.shape)})." : "."),
                "state");
    }

    /// <summary>A zero state for every layer.</summary>
    public static MambaState Zeros(MambaConfig config, long batch, Device? device = null, ScalarType dtype = ScalarType.Float32) =>
        new(Enumerable.Range(0, config.NLayer).Select(_ => MambaLayerState.Zeros(config, batch, device, dtype)).ToArray());

    /// <summary>Keeps the tensors alive past the current dispose scope.</summary>
    public MambaState MoveToOuterDisposeScope() { foreach (var l in Layers) l.MoveToOuterDisposeScope(); return this; }

    /// <summary>The same state without autograd history.</summary>
    public MambaState Detach() => new(Layers.Select(l => l.Detach()).ToArray());

    /// <inheritdoc/>
    public void Dispose() { foreach (var l in Layers) l.Dispose(); }
}
