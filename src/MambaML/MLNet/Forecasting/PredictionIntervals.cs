using static TorchSharp.torch;

namespace MambaML.MLNet;

/// <summary>
/// Split conformal prediction intervals for a trained forecaster, normalised by each input window's deviation
/// (<see cref="ForecastNetwork.WindowDeviation"/>): for each horizon step and channel, the quantile q is the
/// ⌈(n + 1) · level⌉-th smallest of |error| / deviation on n calibration windows, and the interval is forecast ± q · the
/// window's deviation. On windows exchangeable with the calibration windows at least that share of values falls inside
/// (Vovk et al.; Lei et al., 2018), and the intervals widen and narrow with the series' volatility, as RevIN forecasts' errors
/// do. Ensemble forecasts are calibrated as the model predicts them, averaged.
/// </summary>
internal static class PredictionIntervals
{
    // Residuals kept for the quantiles (4 bytes each); beyond this, evenly spaced windows are used.
    private const long MaxResiduals = 1L << 25;

    /// <summary>
    /// Quantiles q (horizon × channels, time-major) of <paramref name="network"/>'s intervals at <paramref name="level"/> over
    /// <paramref name="windows"/>, which hold <paramref name="count"/> examples with targets (the <paramref name="source"/>,
    /// named in errors); how many windows they used; and whether there were too few for the level (see <see cref="ConformalRank"/>).
    /// </summary>
    public static (float[] Quantiles, int Windows, bool TooFew) Calibrate(ForecastNetwork network, ForecastArchitecture arch, IEnumerable<SequenceExample> windows,
                                                            long count, string source, float level, Device device, int batchSize, CancellationToken cancellation)
    {
        int width = arch.Horizon * arch.Channels;
        long stride = Math.Max(1, (count * width + MaxResiduals - 1) / MaxResiduals);
        var errors = new List<float>[width];
        for (int k = 0; k < width; k++) errors[k] = new List<float>((int)Math.Min(count / stride + 1, MaxResiduals / width + 1));
        using var _ = no_grad();
        network.eval();
        foreach (var batch in windows.Where((_, i) => i % stride == 0).Chunk(batchSize))
        {
            cancellation.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            var windowTensor = ForecastBatches.Windows(batch, arch, device);
            var forecast = network.Predict(windowTensor, ForecastBatches.CycleIndices(batch, arch, device));
            var absolute = ((forecast - ForecastBatches.Targets(batch, arch, device)).abs() / network.WindowDeviation(windowTensor)).cpu().reshape(-1).data<float>().ToArray();
            for (int i = 0; i < absolute.Length; i++)
            {
                if (!float.IsFinite(absolute[i]))
                    throw new InvalidOperationException($"A forecast error on the {source} is not finite, so no prediction interval can be calibrated: " +
                                                        "its values are too large for float arithmetic. Scale the series down before windowing.");
                errors[i % width].Add(absolute[i]);
            }
        }
        int n = errors[0].Count;
        if (n == 0) throw new ArgumentException($"The {source} has no windows to calibrate the prediction intervals on.");
        int rank = ConformalRank(n, level);
        var quantiles = new float[width];
        for (int k = 0; k < width; k++)
        {
            var sorted = errors[k].ToArray();
            Array.Sort(sorted);
            quantiles[k] = sorted[rank - 1];
        }
        return (quantiles, n, rank == n && (n + 1) * (decimal)level > n);
    }

    /// <summary>
    /// The rank ⌈(n + 1) · level⌉ of the conformal quantile among n sorted scores, at most n: past n (a level too high for so
    /// few windows) the largest score, a bound no longer guaranteed. In decimal: 0.8f is 0.800000012 as a double, and
    /// ⌈10 × 0.800000012⌉ would be 9.
    /// </summary>
    internal static int ConformalRank(int n, float level) => (int)Math.Min(n, Math.Ceiling((n + 1) * (decimal)level));
}
