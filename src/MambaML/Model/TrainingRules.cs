using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.Model;

/// <summary>What every MambaML trainer does alike: which parameters take weight decay, and the warm-up + cosine schedule.</summary>
internal static class TrainingRules
{
    /// <summary>
    /// Whether a parameter takes AdamW's weight decay: matrices (projections, convolutions, embeddings) do; vectors (norms,
    /// biases, D, Δ's bias) do not, nor does A_log, whose decay would pull every state's A towards −1 (mamba_ssm marks it
    /// <c>_no_weight_decay</c>).
    /// </summary>
    public static bool TakesWeightDecay(string name, Tensor parameter) =>
        parameter.dim() >= 2 && !name.EndsWith("A_log", StringComparison.Ordinal);

    /// <summary>
    /// The learning rate at step <paramref name="step"/> (from 0) of <paramref name="totalSteps"/>: linear warm-up over
    /// <paramref name="warmupSteps"/> to <paramref name="peak"/>, then cosine decay towards <paramref name="finalFraction"/> × peak,
    /// reached one step after the last.
    /// </summary>
    public static double WarmupCosine(long step, long totalSteps, long warmupSteps, double peak, double finalFraction = 0)
    {
        if (step < warmupSteps) return peak * (step + 1) / warmupSteps;
        double progress = totalSteps <= warmupSteps ? 1 : (double)(step - warmupSteps) / (totalSteps - warmupSteps);
        double floor = peak * finalFraction;
        return floor + (peak - floor) * 0.5 * (1 + Math.Cos(Math.PI * Math.Min(1, progress)));
    }
}

/// <summary>
/// Dropout masks. On the CPU they come from a generator of their own, seeded, so that a seed fixes training and libtorch's global
/// generator is left alone. On CUDA they come from libtorch's CUDA generator, which this class does not seed: TorchSharp 0.107
/// cannot make a CUDA generator (its <c>THSGenerator_new</c> makes a CPU one whatever the device, and drawing on CUDA from it
/// crashed the process), so a CUDA run repeats itself in a fresh process but not within one.
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
