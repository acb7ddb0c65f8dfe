namespace MambaML.MLNet;

/// <summary>
/// The units each channel of numeric input is measured in: the power of ten nearest (in log scale) to the channel's standard
/// deviation over the training data. Reading a series in these units makes one in small units (say an amplitude of 1e-4,
/// which an absolute epsilon of 1e-5 drowns) or large ones (1e6, or 1e20 whose square overflows a float) train as it would at
/// unit scale, and keeps a channel in large units from outweighing the others. A power of ten rather than the deviation
/// itself, so that z-scored data keeps unit scale and trains bit for bit as without it. Sequence models, and forecasters
/// without instance normalisation, also subtract each channel's offset (its mean in whole units) first: without it, shapes
/// around 100 trained to chance accuracy.
/// </summary>
internal static class ChannelScales
{
    // Float32's normal range ends near 1.2e-38 and 3.4e38: a scale at either end still reads every float in a few units.
    private const double MinScale = 1e-37, MaxScale = 1e37;

    /// <summary>
    /// Per channel, the power of ten nearest its deviation over <paramref name="values"/> (each time-major, channel c of step
    /// t at t × channels + c); 1 for a constant channel; null when every channel's is 1. And per channel an offset: the
    /// channel's mean rounded to a whole number of those units (so that z-scored data, whose mean is within half a unit of 0,
    /// keeps offset 0 and trains bit for bit as without it); null when every channel's is 0.
    /// </summary>
    public static (double[]? Scales, double[]? Offsets) Of(IEnumerable<float[]> values, int channels)
    {
        var sum = new double[channels];
        var squares = new double[channels];
        long steps = 0;
        foreach (var sequence in values)
        {
            for (int i = 0; i < sequence.Length; i++)
            {
                double v = sequence[i];
                sum[i % channels] += v;
                squares[i % channels] += v * v;
            }
            steps += sequence.Length / channels;
        }
        var scales = new double[channels];
        var offsets = new double[channels];
        for (int c = 0; c < channels; c++)
        {
            double mean = steps == 0 ? 0 : sum[c] / steps;
            double std = steps == 0 ? 0 : Math.Sqrt(Math.Max(0, squares[c] / steps - mean * mean));
            scales[c] = std > 0 && double.IsFinite(std) ? Math.Clamp(Math.Pow(10, Math.Round(Math.Log10(std))), MinScale, MaxScale) : 1;
            double units = Math.Round(mean / scales[c]);
            offsets[c] = double.IsFinite(units) && float.IsFinite((float)(units * scales[c])) ? units * scales[c] : 0;
        }
        return (scales.All(s => s == 1) ? null : scales, offsets.All(o => o == 0) ? null : offsets);
    }

    /// <summary>
    /// <paramref name="scales"/> (from a model description) as a (1, 1, channels) float tensor, or null for null; throws
    /// <see cref="InvalidDataException"/> unless they are one positive, finite float per channel.
    /// </summary>
    public static TorchSharp.torch.Tensor? AsTensor(double[]? scales, int channels) =>
        AsTensor(scales, channels, nameof(ForecastArchitecture.ChannelScales), s => s > 0, "positive, finite");

    /// <summary>
    /// <paramref name="offsets"/> (from a model description) as a (1, 1, channels) float tensor, or null for null; throws
    /// <see cref="InvalidDataException"/> unless they are one finite float per channel.
    /// </summary>
    public static TorchSharp.torch.Tensor? OffsetsAsTensor(double[]? offsets, int channels) =>
        AsTensor(offsets, channels, nameof(SequenceArchitecture.ChannelOffsets), _ => true, "finite");

    private static TorchSharp.torch.Tensor? AsTensor(double[]? values, int channels, string name, Func<double, bool> valid, string rule)
    {
        if (values is null) return null;
        if (values.Length != channels || values.Any(v => !valid(v) || !float.IsFinite((float)v)))
            throw new InvalidDataException($"{name} must hold one {rule} value per channel ({channels}); got [{string.Join(", ", values)}].");
        return TorchSharp.torch.tensor(values.Select(v => (float)v).ToArray()).view(1, 1, channels);
    }
}
