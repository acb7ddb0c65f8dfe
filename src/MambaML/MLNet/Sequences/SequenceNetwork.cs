using MambaML.Model;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MambaML.MLNet;

/// <summary>
/// Sequence classifier/regressor: numeric steps (cut into patches and embedded linearly) or token ids (embedded) → a
/// <see cref="MambaBackbone"/> over right-padded sequences with their true lengths → mask-aware mean (or last-step) pooling →
/// a linear head with one output per class (multiclass) or one output (binary logit, regression value). Text models may add a
/// linear bag-of-n-grams head whose logits are summed with the Mamba head's (wide and deep: the linear part learns from few
/// examples what a from-scratch sequence model cannot, and both train jointly).
/// </summary>
internal sealed class SequenceNetwork : nn.Module
{
    private const double NormEpsilon = 1e-5;
    private readonly SequenceArchitecture _arch;
    // Draws the dropout masks, so that a seed fixes training (the global generator is not seeded by the trainers).
    private readonly Generator _dropoutGenerator;

    public Linear? embed;
    public Embedding? tokens;
    public MambaBackbone backbone;
    public Linear head;
    public Embedding? ngramHead;

    public SequenceNetwork(SequenceArchitecture arch, long seed) : base(nameof(SequenceNetwork))
    {
        _arch = arch;
        var g = new Generator((ulong)seed);
        _dropoutGenerator = new Generator((ulong)seed + 1);
        int d = arch.Mamba.DModel;
        if (arch.Input == SequenceInputKind.Numeric) embed = nn.Linear(arch.PatchLength * arch.Channels, d);
        else tokens = nn.Embedding(arch.Vocabulary!.Size, d);
        backbone = new MambaBackbone(arch.Mamba, g);
        head = nn.Linear(d, arch.Outputs);
        if (arch.NgramHeadLength > 0) ngramHead = nn.Embedding(NgramFeatureCount(arch), arch.Outputs);
        RegisterComponents();
        using var _ = no_grad();
        if (embed is not null) Init.UniformFanIn(embed, g);
        if (tokens is not null) tokens.weight!.normal_(0, 0.02, g);
        Init.UniformFanIn(head, g);
        ngramHead?.weight!.zero_();   // starts as no opinion; the Mamba head alone gives the first logits
    }

    /// <summary>Rows of the n-gram head: every compact token id (padding and unknown included), then the n-gram hash buckets.</summary>
    internal static long NgramFeatureCount(SequenceArchitecture arch) =>
        arch.Vocabulary!.Size + (arch.NgramHeadLength >= 2 ? arch.NgramHeadBuckets : 0);

    /// <summary>Raw outputs (logits or normalised regression values), (batch, outputs): the Mamba head's plus the n-gram head's.</summary>
    /// <param name="input">Numeric: (batch, steps, channels) float, zero-padded; text: (batch, tokens) int64, padded with 0.</param>
    /// <param name="lengths">(batch) int64 real lengths in steps or tokens.</param>
    public Tensor Forward(Tensor input, Tensor lengths)
    {
        using var scope = NewDisposeScope();
        var (mamba, ngram) = ForwardParts(input, lengths);
        return (ngram is null ? mamba : mamba + ngram).MoveToOuterDisposeScope();
    }

    /// <summary>The Mamba head's outputs and, when the model has one, the n-gram head's logits, each (batch, outputs).</summary>
    public (Tensor Mamba, Tensor? Ngram) ForwardParts(Tensor input, Tensor lengths)
    {
        using var scope = NewDisposeScope();
        Tensor x, tokenLengths;
        if (_arch.Input == SequenceInputKind.Numeric)
        {
            var values = _arch.NormalizeEachSequence ? Normalize(input, lengths) : input;
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
        }

        x = Dropout(x);
        long length = x.shape[1];
        bool padded = tokenLengths.min().item<long>() < length;
        var (hidden, _) = backbone.Forward(x, lengths: padded ? tokenLengths : null);   // padded steps come out as zeros
        Tensor pooled = _arch.Pooling == SequencePooling.Mean
            ? hidden.sum(1) / tokenLengths.unsqueeze(1).to(hidden.dtype)
            : hidden.gather(1, (tokenLengths - 1).view(-1, 1, 1).expand(-1, 1, hidden.shape[2])).squeeze(1);
        var output = head.forward(Dropout(pooled)).MoveToOuterDisposeScope();
        return (output, ngramHead is null ? null : NgramLogits(input, tokenLengths).MoveToOuterDisposeScope());
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

    // z-normalise each sequence and channel over its real steps; padded steps stay zero.
    private static Tensor Normalize(Tensor values, Tensor lengths)
    {
        var mask = (arange(values.shape[1], device: values.device).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1).to(values.dtype);
        var count = lengths.view(-1, 1, 1).to(values.dtype);
        var mean = (values * mask).sum(1, keepdim: true) / count;
        var centered = (values - mean) * mask;
        var std = (centered.square().sum(1, keepdim: true) / count + NormEpsilon).sqrt();
        return centered / std;
    }
}
