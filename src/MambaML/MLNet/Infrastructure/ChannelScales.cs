namespace MambaML.MLNet;

/// <summary>
/// The units each channel of numeric input is measured in: the power of ten nearest (in log scale) to the channel's standard
/// deviation over the training data. Reading a series in these units makes one in small units (say an amplitude of 1e-4,
/// which an absolute epsilon of 1e-5 drowns) or large ones (1e6, or 1e20 whose square overflows a float) train as it would at
/// unit scale, and keeps a channel in large units from outweighing the others. A power of ten rather than the deviation
/// itself, so that z-scored data keeps unit scale and trains bit for bit as without it.
/// </summary>
internal static class ChannelScales
{
    /// <summary>
    /// Per channel, the power of ten nearest its deviation over <paramref name="values"/> (each time-major, channel c of step
    /// t at t × channels + c); 1 for a constant channel. Null when every channel's is 1.
    /// </summary>
    public static double[]? Of(IEnumerable<float[]> values, int channels)
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
        for (int c = 0; c < channels; c++)
        {
            double mean = steps == 0 ? 0 : sum[c] / steps;
            double std = steps == 0 ? 0 : Math.Sqrt(Math.Max(0, squares[c] / steps - mean * mean));
            scales[c] = std > 0 && double.IsFinite(std) ? Math.Clamp(Math.Pow(10, Math.Round(Math.Log10(std))), 1e-30, 1e30) : 1;
        }
        return scales.All(s => s == 1) ? null : scales;
    }

    /// <summary>
    /// <paramref name="scales"/> (from a model description) as a (1, 1, channels) float tensor, or null for null; throws
    /// <see cref="InvalidDataException"/> unless they are one positive, finite float per channel.
    /// </summary>
    public static TorchSharp.torch.Tensor? AsTensor(double[]? scales, int channels)
    {
        if (scales is null) return null;
        if (scales.Length != channels || scales.Any(s => !(s > 0) || !float.IsFinite((float)s)))
            throw new InvalidDataException($"ChannelScales must hold one positive, finite value per channel ({channels}); got [{string.Join(", ", scales)}].");
        return TorchSharp.torch.tensor(scales.Select(s => (float)s).ToArray()).view(1, 1, channels);
    }
}
