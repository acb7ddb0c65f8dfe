using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.Model;

/// <summary>
/// Dropout masks. On the CPU they come from a generator of their own, seeded, so that a seed fixes training and libtorch's global
/// generator is left alone. On CUDA they come from libtorch's CUDA generator, which this class does not seed: TorchSharp 0.107
/// cannot make a CUDA generator (its <c>THSGenerator_new</c> makes a CPU one whatever the device, and drawing on CUDA from it
/// crashed the process): two trainings in one process draw different masks (in a fresh process they should repeat; not checked).
/// </summary>
internal sealed class DropoutDraws(ulong seed)
{
    private ulong _seed = seed;
    private Generator? _generator;

    /// <summary>Starts the CPU stream again from <paramref name="seed"/>.</summary>
    public void Reseed(ulong seed)
    {
        _generator?.Dispose();
        _generator = null;
        _seed = seed;
    }

    /// <summary>Inverted dropout: each value zeroed with probability <paramref name="p"/>, the others scaled by 1 / (1 − p).</summary>
    public Tensor Apply(Tensor values, double p)
    {
        if (values.device.type != DeviceType.CPU) return nn.functional.dropout(values, p, training: true);
        _generator ??= new Generator(_seed);
        using var draws = rand(values.shape, ScalarType.Float32, generator: _generator);
        using var keep = draws.ge(p).to(values.dtype);
        using var kept = values * keep;
        return kept / (1 - p);
    }
}
