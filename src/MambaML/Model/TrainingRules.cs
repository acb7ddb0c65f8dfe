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
