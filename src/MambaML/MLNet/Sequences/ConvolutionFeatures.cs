using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.MLNet;

/// <summary>
/// MiniRocket's features of a numeric sequence (Dempster, Schmidt and Webb, 2021): the 84 length-9 kernels with six weights of
/// −1 and three of 2, each at a few dilations spread exponentially up to the reference length, convolved over the sum of a
/// few channels (all of a univariate series; for several channels MiniRocket's random combination of 1 to 9 of them per
/// pair); each (kernel, dilation) pair gives several features, each the proportion of positive values (PPV) of the
/// convolution minus one bias. The biases are quantiles of the convolution of one training sequence, and each feature is then
/// standardised by its mean and standard deviation over the training sequences (<see cref="Fit"/>), so the features are fixed
/// once fitted; nothing here is trained by gradient. Half of the pairs count only the steps where the kernel lies inside the
/// sequence, as MiniRocket alternates padding.
/// </summary>
internal sealed class ConvolutionFeatures : nn.Module
{
    private const int KernelLength = 9, KernelCount = 84, MaxDilationsPerKernel = 32, MaxChannelsPerPair = 9;
    private const long MaxComparisonsAtOnce = 1 << 24;
    private readonly int[] _dilations;
    private readonly int[] _featuresPerDilation;   // per kernel, at each dilation

    // (84, 1, 9): the kernels, in the order of itertools.combinations(range(9), 3) for the positions of the 2s.
    public readonly Tensor kernels;
    // (features): the bias of each feature, dilation-major, then kernel, then the pair's features.
    public readonly Tensor biases;
    // (features): the training mean and standard deviation (1 where it is 0) of each proportion.
    public readonly Tensor mean, scale;
    // (dilations, 84, channels): 1 for the channels each pair sums, 0 for the others.
    public readonly Tensor channel_masks;

    /// <param name="featureCount">Features wanted; rounded down to a multiple of 84 (at least 84).</param>
    /// <param name="referenceLength">The sequence length the dilations are spread over (the longest training sequence).</param>
    /// <param name="channels">Values per step.</param>
    public ConvolutionFeatures(int featureCount, int referenceLength, int channels) : base(nameof(ConvolutionFeatures))
    {
        (_dilations, _featuresPerDilation) = Dilations(Math.Max(1, featureCount / KernelCount), referenceLength);
        Count = KernelCount * _featuresPerDilation.Sum();
        kernels = KernelWeights();
        biases = zeros(Count);
        register_buffer(nameof(kernels), kernels);
        mean = zeros(Count);
        scale = ones(Count);
        channel_masks = ones(_dilations.Length, KernelCount, channels);
        register_buffer(nameof(channel_masks), channel_masks);
        register_buffer(nameof(biases), biases);
        register_buffer(nameof(mean), mean);
        register_buffer(nameof(scale), scale);
    }

    /// <summary>Features per sequence (a multiple of 84).</summary>
    public int Count { get; }

    /// <summary>
    /// The dilations and the features per kernel at each: MiniRocket's rule, ⌊2^e⌋ for up to 32 exponents e evenly spaced
    /// from 0 to log₂((length − 1) / 8), duplicates merged and their features added, spread so they total
    /// <paramref name="featuresPerKernel"/>.
    /// </summary>
    internal static (int[] Dilations, int[] FeaturesPerDilation) Dilations(int featuresPerKernel, int referenceLength)
    {
        int exponents = Math.Min(featuresPerKernel, MaxDilationsPerKernel);
        double multiplier = (double)featuresPerKernel / exponents;
        double maxExponent = Math.Max(0, Math.Log2((referenceLength - 1) / (double)(KernelLength - 1)));
        var groups = Enumerable.Range(0, exponents)
            .Select(i => (int)Math.Floor(Math.Pow(2, exponents == 1 ? 0 : maxExponent * i / (exponents - 1))))
            .GroupBy(d => d).OrderBy(g => g.Key).ToArray();
        var dilations = groups.Select(g => g.Key).ToArray();
        var features = groups.Select(g => (int)(g.Count() * multiplier)).ToArray();
        for (int i = 0, left = featuresPerKernel - features.Sum(); left > 0; i = (i + 1) % features.Length, left--) features[i]++;
        return (dilations, features);
    }

    /// <summary>Quantile of feature j (0-based): the fractional part of (j + 1)·φ, a low-discrepancy sequence in (0, 1).</summary>
    internal static double Quantile(int feature) => (feature + 1) * ((Math.Sqrt(5) + 1) / 2) % 1;

    private static Tensor KernelWeights()
    {
        var weights = new float[KernelCount * KernelLength];
        int k = 0;
        for (int a = 0; a < KernelLength; a++)
            for (int b = a + 1; b < KernelLength; b++)
                for (int c = b + 1; c < KernelLength; c++, k++)
                    for (int t = 0; t < KernelLength; t++)
                        weights[k * KernelLength + t] = t == a || t == b || t == c ? 2 : -1;
        return tensor(weights, new long[] { KernelCount, 1, KernelLength });
    }

    /// <summary>
    /// Fits the channel combinations, the biases, then the standardisation. With several channels, each (dilation, kernel) pair
    /// sums ⌊2^u⌋ distinct channels drawn by <paramref name="generator"/>, u uniform in [0, log₂(min(channels, 9) + 1)), as
    /// MiniRocket does. For each pair, one training sequence drawn by the generator is convolved (zero-padded to its own
    /// length) and the pair's biases are the quantiles (<see cref="Quantile"/>) of the result. Then each feature's mean and
    /// standard deviation over all the sequences.
    /// </summary>
    /// <param name="sequences">Each training sequence, (steps, channels), as the network reads it (normalised if it normalises).</param>
    /// <param name="generator">Draws the sequences.</param>
    /// <param name="cancellation">Checked between dilations and between parts of the training set.</param>
    public void Fit(IReadOnlyList<Tensor> sequences, Generator generator, CancellationToken cancellation = default)
    {
        FitChannelMasks(generator);
        FitBiases(sequences, generator, cancellation);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var proportions = cat(sequences.Chunk(256).Select(chunk =>
        {
            cancellation.ThrowIfCancellationRequested();
            return Proportions(nn.utils.rnn.pad_sequence(chunk, batch_first: true), tensor(chunk.Select(s => s.shape[0]).ToArray()));
        }).ToList(), 0);
        var std = proportions.std(0, unbiased: false);
        mean.copy_(proportions.mean(new long[] { 0 }));
        scale.copy_(where(std > 0, std, ones_like(std)));
    }

    // Univariate series draw nothing, so their biases come from the same draws whatever the channel rule.
    private void FitChannelMasks(Generator generator)
    {
        long channels = channel_masks.shape[2];
        if (channels == 1) return;
        using var scope = NewDisposeScope();
        double maxExponent = Math.Log2(Math.Min(channels, MaxChannelsPerPair) + 1);
        var masks = zeros(channel_masks.shape);
        for (int i = 0; i < _dilations.Length; i++)
            for (int k = 0; k < KernelCount; k++)
            {
                double u = rand(1, dtype: ScalarType.Float64, generator: generator).item<double>();
                long count = Math.Min(channels, (long)Math.Pow(2, u * maxExponent));
                masks[i, k].index_fill_(0, randperm(channels, generator: generator).narrow(0, 0, count), 1);
            }
        channel_masks.copy_(masks.to(channel_masks.device));
    }

    private void FitBiases(IReadOnlyList<Tensor> sequences, Generator generator, CancellationToken cancellation)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var fitted = new float[Count];
        int feature = 0;
        for (int i = 0; i < _dilations.Length; i++)
        {
            cancellation.ThrowIfCancellationRequested();
            var drawn = randint(sequences.Count, new long[] { KernelCount }, generator: generator, dtype: ScalarType.Int64).data<long>().ToArray();
            for (int k = 0; k < KernelCount; k++)
            {
                var series = (sequences[(int)drawn[k]].to(kernels.device) * channel_masks[i, k]).sum(1).view(1, 1, -1);
                var convolved = nn.functional.conv1d(series, kernels.narrow(0, k, 1), padding: (KernelLength - 1) / 2 * _dilations[i], dilation: _dilations[i]).flatten();
                int n = _featuresPerDilation[i];
                var q = tensor(Enumerable.Range(feature, n).Select(j => Quantile(j)).ToArray(), dtype: convolved.dtype, device: convolved.device);
                quantile(convolved, q).cpu().data<float>().CopyTo(fitted, feature);
                feature += n;
            }
        }
        biases.copy_(tensor(fitted).to(biases.device));
    }

    /// <summary>The standardised features of a batch, (batch, <see cref="Count"/>): (<see cref="Proportions"/> − mean) / scale.</summary>
    /// <param name="values">(batch, steps, channels), zero after each row's length.</param>
    /// <param name="lengths">(batch) int64 real lengths.</param>
    public Tensor Forward(Tensor values, Tensor lengths)
    {
        using var scope = NewDisposeScope();
        return ((Proportions(values, lengths) - mean) / scale).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The raw features of a batch, (batch, <see cref="Count"/>): for each feature the proportion of the counted steps where the
    /// pair's convolution exceeds the bias. Counted steps: every real step, or (for the pairs MiniRocket leaves unpadded) the
    /// real steps where the dilated kernel lies inside the sequence, all real steps again when there are none.
    /// </summary>
    /// <param name="values">(batch, steps, channels), zero after each row's length.</param>
    /// <param name="lengths">(batch) int64 real lengths.</param>
    public Tensor Proportions(Tensor values, Tensor lengths)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        lengths = lengths.to(values.device);
        // Each dilation compares every step with every bias of its pairs, (rows, 84, n, steps) at once, and libtorch's sum
        // of those comparisons may take 8 bytes per element: a few rows at a time keep that to tens of megabytes.
        long rows = Math.Max(1, MaxComparisonsAtOnce / ((long)KernelCount * _featuresPerDilation.Max() * Math.Max(1, values.shape[1])));
        if (values.shape[0] > rows)
            return cat(values.split(rows).Zip(lengths.split(rows), ProportionsOfRows).ToList(), 0).MoveToOuterDisposeScope();
        return ProportionsOfRows(values, lengths).MoveToOuterDisposeScope();
    }

    private Tensor ProportionsOfRows(Tensor values, Tensor lengths)
    {
        using var scope = NewDisposeScope();
        long steps = values.shape[1];
        var t = arange(steps, device: values.device).view(1, 1, -1);
        var length = lengths.view(-1, 1, 1);
        var parts = new List<Tensor>();
        int feature = 0;
        for (int i = 0; i < _dilations.Length; i++)
        {
            // One dilation's (batch, 84, n, steps) comparisons at a time: kept for all dilations they took gigabytes.
            using var dilationScope = NewDisposeScope();
            int padding = (KernelLength - 1) / 2 * _dilations[i], n = _featuresPerDilation[i];
            // A univariate series is read once by all 84 kernels; otherwise each kernel reads its own pair's channel sum.
            bool univariate = values.shape[2] == 1;
            var series = (univariate ? values : values.matmul(channel_masks[i].T)).transpose(1, 2);
            var convolved = nn.functional.conv1d(series, kernels, padding: padding, dilation: _dilations[i], groups: univariate ? 1 : KernelCount);   // (batch, 84, steps)
            // Kernel k at dilation i is unpadded when (i + k) is odd (MiniRocket's alternation).
            var unpadded = (arange(KernelCount, device: values.device) + i).remainder(2).eq(1).view(1, -1, 1);
            var inside = (t >= padding) & (t < length - padding);
            var counted = (t < length) & (unpadded.logical_not() | inside | (length <= 2 * padding));
            var pairBiases = biases.narrow(0, feature, KernelCount * n).view(1, KernelCount, n, 1);
            // Uncounted steps become −∞, so they never exceed a bias.
            var positive = (convolved.masked_fill(counted.logical_not(), double.NegativeInfinity).unsqueeze(2) > pairBiases).sum(3).to(values.dtype);   // (batch, 84, n)
            parts.Add((positive / counted.sum(2, keepdim: true).to(values.dtype)).flatten(1).MoveToOuterDisposeScope());
            feature += KernelCount * n;
        }
        return cat(parts, 1).MoveToOuterDisposeScope();
    }
}
