using MambaML.Model;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MambaML.MLNet;

/// <summary>
/// Sequence classifier/regressor: numeric steps (cut into patches and embedded linearly) or token ids (embedded) → a
/// <see cref="MambaBackbone"/> (and optionally a second one reading backwards) over right-padded sequences with their true
/// lengths → mask-aware mean, mean + max or last-step pooling → a linear head with one output per class (multiclass) or one
/// output (binary logit, regression value). Text models may add a linear bag-of-n-grams head whose logits are summed with the
/// Mamba head's (wide and deep: the linear part learns from few examples what a from-scratch sequence model cannot).
/// </summary>
internal sealed class SequenceNetwork : nn.Module
{
    private const double NormEpsilon = 1e-5;
    private readonly SequenceArchitecture _arch;
    // Draws the dropout masks, so that a seed fixes training (the global generator is not seeded by the trainers).
    private readonly Generator _dropoutGenerator;
    // Draws the training noise (a separate stream, so that turning noise on leaves the dropout masks unchanged).
    private readonly Generator _noiseGenerator;
    // Draws the training windows' starts (a stream of its own, so that windows leave the dropout and noise draws unchanged).
    private readonly Generator _windowGenerator;
    // Draws the mixup partners and weights (a stream of its own, as above).
    private readonly Generator _mixupGenerator;
    // Draws the sequences that the convolution features' biases come from.
    private readonly Generator _featureGenerator;

    public Linear? embed;
    // Numeric: the multi-scale convolutional stem (one convolution per kernel size); null without a stem.
    public ModuleList<Conv1d>? stem;
    public Embedding? tokens;
    public MambaBackbone backbone;
    public MambaBackbone? reverse_backbone;
    public Linear head;
    public Embedding? ngramHead;
    // Numeric: MiniRocket's features and the linear head reading them (logits summed with the Mamba head's); null without.
    public ConvolutionFeatures? convolution_features;
    public Linear? convolution_head;
    // Numeric: (1, 1, channels), SequenceArchitecture.ChannelScales and ChannelOffsets; null when they are all 1 and all 0.
    public Tensor? channel_scale;
    public Tensor? channel_offset;
    // Members 2 to EnsembleSize of an ensemble (each a whole network of its own, seeded apart); null for a single model.
    public ModuleList<SequenceNetwork>? ensemble_members;

    public SequenceNetwork(SequenceArchitecture arch, long seed) : base(nameof(SequenceNetwork))
    {
        _arch = arch;
        channel_scale = ChannelScales.AsTensor(arch.ChannelScales, arch.Channels);
        channel_offset = ChannelScales.OffsetsAsTensor(arch.ChannelOffsets, arch.Channels);
        var g = new Generator((ulong)seed);
        _dropoutGenerator = new Generator((ulong)seed + 1);
        _noiseGenerator = new Generator((ulong)seed + 2);
        _windowGenerator = new Generator((ulong)seed + 3);
        _mixupGenerator = new Generator((ulong)seed + 4);
        _featureGenerator = new Generator((ulong)seed + 5);
        int d = arch.Mamba.DModel;
        int valuesPerStep = arch.Channels * (arch.AddFirstDifference ? 2 : 1);
        if (arch.Input == SequenceInputKind.Numeric && arch.StemKernelSizes.Length > 0)
            stem = nn.ModuleList(arch.StemKernelSizes.Select(k => nn.Conv1d(valuesPerStep, arch.StemChannels, k, padding: k / 2)).ToArray());
        if (arch.Input == SequenceInputKind.Numeric)
            embed = nn.Linear(arch.PatchLength * (valuesPerStep + arch.StemKernelSizes.Length * arch.StemChannels), d);
        else tokens = nn.Embedding(arch.Vocabulary!.Size, d);
        backbone = new MambaBackbone(arch.Mamba, g);
        if (arch.Bidirectional) reverse_backbone = new MambaBackbone(arch.Mamba, g);
        head = nn.Linear(arch.Pooling == SequencePooling.MeanMax ? 2 * d : d, arch.Outputs);
        if (arch.NgramHeadLength > 0) ngramHead = nn.Embedding(NgramFeatureCount(arch), arch.Outputs);
        if (arch.Input == SequenceInputKind.Numeric && arch.ConvolutionFeatureCount > 0)
        {
            convolution_features = new ConvolutionFeatures(arch.ConvolutionFeatureCount, arch.ConvolutionReferenceLength, arch.Channels);
            convolution_head = nn.Linear(convolution_features.Count, arch.Outputs);
        }
        if (arch.EnsembleSize > 1)
            ensemble_members = nn.ModuleList(Enumerable.Range(1, arch.EnsembleSize - 1)
                .Select(k => new SequenceNetwork(arch with { EnsembleSize = 1 }, MambaTrainerOptions.MemberSeed(seed, k))).ToArray());
        RegisterComponents();
        using var _ = no_grad();
        if (embed is not null) Init.UniformFanIn(embed, g);
        foreach (var convolution in stem ?? Enumerable.Empty<Conv1d>()) Init.UniformFanIn(convolution, g);
        if (tokens is not null) tokens.weight!.normal_(0, 0.02, g);
        Init.UniformFanIn(head, g);
        ngramHead?.weight!.zero_();   // starts as no opinion; the Mamba head alone gives the first logits
        convolution_head?.weight!.zero_();
        convolution_head?.bias!.zero_();
    }

    /// <summary>
    /// Raw outputs of every ensemble member and, in evaluation mode with windows (<see cref="SequenceArchitecture.WindowFraction"/>
    /// &lt; 1), of every prediction window: (members × windows, batch, outputs), member-major; (1, batch, outputs) for a single
    /// network without windows. Averaging over the first dimension gives the prediction.
    /// </summary>
    /// <param name="input">As for <see cref="Forward"/>.</param>
    /// <param name="lengths">As for <see cref="Forward"/>.</param>
    /// <param name="mixup">As for <see cref="Forward"/>: the same mixing for every member.</param>
    public Tensor MemberOutputs(Tensor input, Tensor lengths, MixupDraw? mixup = null)
    {
        using var scope = NewDisposeScope();
        int windows = !training && _arch.WindowFraction < 1 ? _arch.PredictionWindows : 1;
        var outputs = Members().SelectMany(member => Enumerable.Range(0, windows).Select(window => member.Forward(input, lengths, window, mixup))).ToList();
        return stack(outputs, 0).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The mixup of a training batch of <paramref name="rows"/> rows (<see cref="SequenceArchitecture.MixupAlpha"/>): each row's
    /// partner, a random permutation of the batch, and its weight λ ~ Beta(α, α), drawn as X / (X + Y) from two Gamma(α) draws.
    /// Null in evaluation mode or without mixup.
    /// </summary>
    public MixupDraw? DrawMixup(long rows, Device device)
    {
        if (!training || _arch.MixupAlpha == 0) return null;
        using var scope = NewDisposeScope();
        var partner = randperm(rows, generator: _mixupGenerator);
        var gamma = _standard_gamma(full(new[] { 2, rows }, _arch.MixupAlpha, dtype: ScalarType.Float64), _mixupGenerator);
        var weight = (gamma[0] / (gamma[0] + gamma[1]).clamp_min(double.Epsilon)).to(ScalarType.Float32);
        return new MixupDraw(partner.to(device).MoveToOuterDisposeScope(), weight.to(device).MoveToOuterDisposeScope());
    }

    /// <summary>This network and the other members of its ensemble, in order.</summary>
    public IEnumerable<SequenceNetwork> Members() => ensemble_members is null ? new[] { this } : new[] { this }.Concat(ensemble_members);

    /// <summary>
    /// Fits the convolution features of this network and of every other ensemble member (each draws its own bias sequences)
    /// on the training sequences, read as the network reads them (normalised when it normalises; no augmentation).
    /// </summary>
    public void FitConvolutionFeatures(IEnumerable<SequenceExample> examples, Device device, CancellationToken cancellation)
    {
        using var scope = NewDisposeScope();
        var sequences = new List<Tensor>();
        foreach (var chunk in examples.Chunk(256))
        {
            var (input, lengths) = SequenceBatches.Inputs(chunk, _arch, device);
            var values = ReadValues(input, lengths);
            for (int i = 0; i < chunk.Length; i++) sequences.Add(values[i].narrow(0, 0, chunk[i].Steps));
        }
        foreach (var member in Members()) member.convolution_features!.Fit(sequences, member._featureGenerator, cancellation);
    }

    /// <summary>Rows of the n-gram head: every compact token id (padding and unknown included), then the n-gram hash buckets.</summary>
    internal static long NgramFeatureCount(SequenceArchitecture arch) =>
        arch.Vocabulary!.Size + (arch.NgramHeadLength >= 2 ? arch.NgramHeadBuckets : 0);

    /// <summary>Raw outputs of this network alone (logits or normalised regression values), (batch, outputs): the Mamba head's plus the linear head's (n-grams or convolution features).</summary>
    /// <param name="input">Numeric: (batch, steps, channels) float, zero-padded; text: (batch, tokens) int64, padded with 0.</param>
    /// <param name="lengths">(batch) int64 real lengths in steps or tokens.</param>
    /// <param name="window">
    /// Numeric with <see cref="SequenceArchitecture.WindowFraction"/> &lt; 1, in evaluation mode: which of the
    /// <see cref="SequenceArchitecture.PredictionWindows"/> evenly spaced windows is read. In training mode each row reads a
    /// random window instead; ignored without windows.
    /// </param>
    /// <param name="mixup">
    /// Numeric, training only: each row's (normalised, windowed) values become λ · its own + (1 − λ) · its partner's, and its
    /// length the longer of the two; null = no mixing.
    /// </param>
    public Tensor Forward(Tensor input, Tensor lengths, int window = 0, MixupDraw? mixup = null)
    {
        using var scope = NewDisposeScope();
        var (mamba, linear) = ForwardParts(input, lengths, window, mixup);
        return (linear is null ? mamba : mamba + linear).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The Mamba head's outputs and, when the model has one, the linear head's: the n-gram head's logits (text) or the
    /// convolution-feature head's (numeric), each (batch, outputs).
    /// </summary>
    /// <param name="input">As for <see cref="Forward"/>.</param>
    /// <param name="lengths">As for <see cref="Forward"/>.</param>
    /// <param name="window">As for <see cref="Forward"/>.</param>
    /// <param name="mixup">As for <see cref="Forward"/>.</param>
    public (Tensor Mamba, Tensor? Linear) ForwardParts(Tensor input, Tensor lengths, int window = 0, MixupDraw? mixup = null)
    {
        using var scope = NewDisposeScope();
        Tensor x, tokenLengths;
        Tensor? linear = null;
        if (_arch.Input == SequenceInputKind.Numeric)
        {
            var values = ReadValues(input, lengths);
            if (_arch.WindowFraction < 1)
            {
                var windowLengths = WindowLengths(lengths, _arch.WindowFraction);
                var starts = training
                    ? RandomWindowStarts(lengths, windowLengths, _windowGenerator)
                    : PredictionWindowStarts(lengths, windowLengths, window, _arch.PredictionWindows);
                values = Window(values, starts, windowLengths);
                lengths = windowLengths;
            }
            if (mixup is { } m)
            {
                values = m.Mix(values);
                lengths = lengths.maximum(lengths.index_select(0, m.Partner));
            }
            if (training && _arch.TrainingNoise > 0)
                values = values + randn(values.shape, generator: _noiseGenerator).to(values.device) * _arch.TrainingNoise * StepMask(values, lengths).to(values.dtype);
            if (convolution_features is not null)   // scaled by 1/√features so that one optimiser step moves a logit by about lr·√features
                linear = convolution_head!.forward(convolution_features.Forward(values, lengths)) / Math.Sqrt(convolution_features.Count);
            if (_arch.AddFirstDifference) values = cat(new[] { values, FirstDifference(values, lengths) }, 2);
            if (stem is not null) values = cat(new[] { values, Stem(values, lengths) }, 2);
            int p = _arch.PatchLength;
            long b = values.shape[0], steps = values.shape[1], c = values.shape[2];
            long pad = (p - steps % p) % p;
            if (pad > 0) values = nn.functional.pad(values, new long[] { 0, 0, 0, pad });
            x = embed!.forward(values.reshape(b, (steps + pad) / p, p * c));
            tokenLengths = (lengths + (p - 1)).div(p, rounding_mode: RoundingMode.floor);
        }
        else
        {
            x = tokens!.forward(input);
            tokenLengths = lengths;
            if (ngramHead is not null) linear = NgramLogits(input, tokenLengths);
        }

        x = Dropout(x);
        long length = x.shape[1];
        bool padded = tokenLengths.min().item<long>() < length;
        var (hidden, _) = backbone.Forward(x, lengths: padded ? tokenLengths : null);   // padded steps come out as zeros
        if (reverse_backbone is not null)
        {
            var reversal = ReversalIndex(tokenLengths, length).unsqueeze(-1).expand(-1, -1, x.shape[2]);
            var (reversed, _) = reverse_backbone.Forward(x.gather(1, reversal), lengths: padded ? tokenLengths : null);
            hidden = hidden + reversed.gather(1, reversal);
        }
        Tensor mean = hidden.sum(1) / tokenLengths.unsqueeze(1).to(hidden.dtype);
        Tensor pooled = _arch.Pooling switch
        {
            SequencePooling.Mean => mean,
            SequencePooling.MeanMax => cat(new[] { mean, hidden.masked_fill(StepMask(hidden, tokenLengths).logical_not(), double.NegativeInfinity).amax(1) }, 1),
            _ => hidden.gather(1, (tokenLengths - 1).view(-1, 1, 1).expand(-1, 1, hidden.shape[2])).squeeze(1),
        };
        var output = head.forward(Dropout(pooled)).MoveToOuterDisposeScope();
        return (output, linear?.MoveToOuterDisposeScope());
    }

    // (batch, steps, 1) boolean: true at the real steps of each sequence.
    private static Tensor StepMask(Tensor values, Tensor lengths) =>
        (arange(values.shape[1], device: values.device).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1);

    /// <summary>
    /// (batch, steps) int64: position t of row b reads position lengths[b] − 1 − t (its own position at padded steps); applying
    /// it twice is the identity.
    /// </summary>
    internal static Tensor ReversalIndex(Tensor lengths, long steps)
    {
        var t = arange(steps, device: lengths.device).unsqueeze(0);
        var last = (lengths - 1).unsqueeze(1);
        return where(t <= last, last - t, t);
    }

    // (batch, steps, kernels × stem channels): SiLU of each stem convolution over the zero-padded steps, zero at padded steps
    // (so a row's features do not depend on the batch it is in).
    private Tensor Stem(Tensor values, Tensor lengths)
    {
        var channelsFirst = values.transpose(1, 2);
        var features = cat(stem!.Select(convolution => nn.functional.silu(convolution.forward(channelsFirst))).ToList(), 1).transpose(1, 2);
        return features * StepMask(features, lengths).to(features.dtype);
    }

    /// <summary>(batch) int64: each row's window length, round(<paramref name="fraction"/> × length), at least 1.</summary>
    internal static Tensor WindowLengths(Tensor lengths, double fraction) =>
        (lengths.to(ScalarType.Float64) * fraction).round().clamp_min(1).to(ScalarType.Int64);

    /// <summary>(batch) int64: window starts drawn uniformly from 0 to length − window length (inclusive) of each row.</summary>
    internal static Tensor RandomWindowStarts(Tensor lengths, Tensor windowLengths, Generator generator)
    {
        var room = (lengths - windowLengths + 1).to(ScalarType.Float64);
        var draw = rand(lengths.shape, dtype: ScalarType.Float64, generator: generator).to(lengths.device);
        return (draw * room).floor().to(ScalarType.Int64).minimum(lengths - windowLengths);
    }

    /// <summary>
    /// (batch) int64: start of prediction window <paramref name="window"/> of <paramref name="windows"/>: ⌊(length − window
    /// length) · window / (windows − 1)⌋, so the first starts at step 0 and the last ends at the last real step; one window
    /// is centred (⌊(length − window length) / 2⌋).
    /// </summary>
    internal static Tensor PredictionWindowStarts(Tensor lengths, Tensor windowLengths, int window, int windows) =>
        windows == 1
            ? (lengths - windowLengths).div(2, rounding_mode: RoundingMode.floor)
            : ((lengths - windowLengths) * window).div(windows - 1, rounding_mode: RoundingMode.floor);

    /// <summary>
    /// (batch, longest window, channels): row b's steps starts[b] to starts[b] + windowLengths[b] − 1, zero after its window.
    /// </summary>
    internal static Tensor Window(Tensor values, Tensor starts, Tensor windowLengths)
    {
        long width = windowLengths.max().item<long>();
        var t = arange(width, device: values.device).unsqueeze(0);
        var index = (starts.unsqueeze(1) + t).clamp_max(values.shape[1] - 1);
        var taken = values.gather(1, index.unsqueeze(-1).expand(-1, -1, values.shape[2]));
        return taken * (t < windowLengths.unsqueeze(1)).unsqueeze(-1).to(values.dtype);
    }

    /// <summary>(batch, steps, channels): x[t] − x[t − 1] at the real steps t ≥ 1; 0 at the first step and at padded steps.</summary>
    internal static Tensor FirstDifference(Tensor values, Tensor lengths)
    {
        var previous = nn.functional.pad(values.narrow(1, 0, values.shape[1] - 1), new long[] { 0, 0, 1, 0 });
        var inside = StepMask(values, lengths) & (arange(values.shape[1], device: values.device) >= 1).view(1, -1, 1);
        return (values - previous) * inside.to(values.dtype);
    }

    /// <summary>
    /// The n-gram head's logits, (batch, outputs): the weights of every token and (hashed) n-gram of length 2 to
    /// <see cref="SequenceArchitecture.NgramHeadLength"/> inside each text, summed and divided by √(number of n-grams), which
    /// is the L2 normalisation of a bag of distinct n-grams.
    /// </summary>
    /// <param name="ids">(batch, tokens) compact token ids, right-padded.</param>
    /// <param name="lengths">(batch) real token counts.</param>
    internal Tensor NgramLogits(Tensor ids, Tensor lengths)
    {
        using var scope = NewDisposeScope();
        long length = ids.shape[1];
        var positions = arange(length, device: ids.device).unsqueeze(0);
        var sum = zeros(ids.shape[0], _arch.Outputs, device: ids.device);
        var count = zeros(ids.shape[0], 1, device: ids.device);
        for (int n = 1; n <= Math.Min(_arch.NgramHeadLength, length); n++)
        {
            var features = n == 1 ? ids : NgramBuckets(ids, n, _arch.NgramHeadBuckets) + _arch.Vocabulary!.Size;
            var inside = (positions.narrow(1, 0, length - n + 1) + n).le(lengths.unsqueeze(1)).to(ScalarType.Float32);
            sum = sum + (ngramHead!.forward(features) * inside.unsqueeze(-1)).sum(1);
            count = count + inside.sum(1, keepdim: true);
        }
        return (sum / count.clamp_min(1).sqrt()).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Hash bucket of the n-gram starting at each position of <paramref name="ids"/>, (batch, tokens − n + 1): a polynomial hash
    /// of n and the n compact ids modulo 2³¹ − 1, then modulo <paramref name="buckets"/>. Integer arithmetic, so the same on
    /// every device and run.
    /// </summary>
    internal static Tensor NgramBuckets(Tensor ids, int n, int buckets)
    {
        using var scope = NewDisposeScope();
        long length = ids.shape[1];
        var hash = full(new[] { ids.shape[0], length - n + 1 }, n, dtype: ScalarType.Int64, device: ids.device);
        for (int k = 0; k < n; k++)
            hash = (hash * NgramHashMultiplier + ids.narrow(1, k, length - n + 1)).remainder(NgramHashModulus);
        return hash.remainder(buckets).MoveToOuterDisposeScope();
    }

    internal const long NgramHashMultiplier = 1_000_003, NgramHashModulus = 2_147_483_647;

    // Inverted dropout while training (kept elements scaled by 1 / (1 − p)); the identity in evaluation or when p is 0.
    private Tensor Dropout(Tensor x)
    {
        if (!training || _arch.Dropout == 0) return x;
        var keep = rand(x.shape, generator: _dropoutGenerator).to(x.device) >= _arch.Dropout;
        return x * keep.to(x.dtype) / (1 - _arch.Dropout);
    }

    // The numeric input as the network reads it: less each channel's offset (padded steps stay zero), in each channel's units,
    // then z-normalised per sequence when asked.
    private Tensor ReadValues(Tensor input, Tensor lengths)
    {
        if (channel_offset is not null) input = (input - channel_offset) * StepMask(input, lengths).to(input.dtype);
        if (channel_scale is not null) input = input / channel_scale;
        return _arch.NormalizeEachSequence ? Normalize(input, lengths) : input;
    }

    /// <summary>z-normalises each sequence and channel of (batch, steps, channels) over its real steps; padded steps stay zero.</summary>
    internal static Tensor Normalize(Tensor values, Tensor lengths)
    {
        var mask = StepMask(values, lengths).to(values.dtype);
        var count = lengths.view(-1, 1, 1).to(values.dtype);
        var mean = (values * mask).sum(1, keepdim: true) / count;
        var centered = (values - mean) * mask;
        var std = (centered.square().sum(1, keepdim: true) / count + NormEpsilon).sqrt();
        return centered / std;
    }
}

/// <summary>
/// Mixup of one training batch: row i is mixed with row <see cref="Partner"/>[i] (int64, (batch)) with weight
/// <see cref="Weight"/>[i] on its own values and target (float, (batch)).
/// </summary>
internal readonly record struct MixupDraw(Tensor Partner, Tensor Weight)
{
    /// <summary>λ · row + (1 − λ) · partner's row, for every row of <paramref name="rows"/> (batch, ...): values or targets alike.</summary>
    public Tensor Mix(Tensor rows)
    {
        var weight = Weight.view(new long[] { -1 }.Concat(Enumerable.Repeat(1L, (int)rows.dim() - 1)).ToArray());
        return rows * weight + rows.index_select(0, Partner) * (1 - weight);
    }
}
