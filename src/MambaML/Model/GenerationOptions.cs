using static TorchSharp.torch;

namespace MambaML.Model;

/// <summary>
/// How <see cref="MambaLanguageModel.Generate(Tensor, int, GenerationOptions, DecodeBackend)"/> chooses each token: the
/// arguments of mamba_ssm's <c>generate</c> (utils/generation.py), with its defaults, so the default is greedy decoding.
/// Each step applies the repetition penalty, then (unless <see cref="TopK"/> is 1) the temperature, keeps the
/// <see cref="TopK"/> most likely tokens, keeps of those the smallest set whose probability reaches <see cref="TopP"/>, and
/// draws from what is left.
/// </summary>
public sealed record GenerationOptions
{
    /// <summary>Greedy decoding: the most likely token at every step.</summary>
    public static GenerationOptions Greedy { get; } = new();

    /// <summary>Divides the logits before sampling (&gt; 0): below 1 sharpens the distribution, above 1 flattens it. Not
    /// used when <see cref="TopK"/> is 1.</summary>
    public double Temperature { get; init; } = 1.0;

    /// <summary>Sample among the k most likely tokens; 1 (the default) is greedy decoding, 0 means every token.</summary>
    public int TopK { get; init; } = 1;

    /// <summary>Nucleus sampling: keep the most likely tokens until their probability reaches p, in (0, 1); 0 or 1 keeps them all.</summary>
    public double TopP { get; init; }

    /// <summary>CTRL's repetition penalty (&gt; 0): the logit of every token already in the prompt or the output is divided
    /// by it where positive and multiplied by it where negative, so values above 1 discourage repeats; 1 (the default) is off.</summary>
    public double RepetitionPenalty { get; init; } = 1.0;

    /// <summary>When set, a sequence that produces this token is finished: its later positions repeat it, and generation stops
    /// early once every sequence is finished (the result then has fewer than the requested columns).</summary>
    public long? EndOfSequenceTokenId { get; init; }

    /// <summary>Seed of the sampling generator: the same seed, model, prompt and device give the same tokens. The random
    /// numbers come from the CPU whatever the model's device, so the CPU and CUDA share them, but the probabilities they are
    /// compared with differ in the last bits, which can part the tokens near a boundary. Null (the default) draws a new seed
    /// for every call. Greedy decoding uses no randomness.</summary>
    public long? Seed { get; init; }

    /// <summary>Whether tokens are drawn at random (rather than taken greedily).</summary>
    internal bool Samples => TopK != 1;

    /// <summary>Plain greedy decoding: the most likely token every step, nothing else (what the fused CUDA loop does alone).</summary>
    internal bool IsPlainGreedy => !Samples && RepetitionPenalty == 1 && EndOfSequenceTokenId is null;

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first setting out of its range.</summary>
    internal void Validate(long vocabularySize)
    {
        if (!(Temperature > 0 && double.IsFinite(Temperature)))
            throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, "GenerationOptions.Temperature must be > 0 and finite (TopK = 1 gives greedy decoding).");
        if (TopK < 0)
            throw new ArgumentOutOfRangeException(nameof(TopK), TopK, "GenerationOptions.TopK must be >= 0 (0: every token; 1: greedy).");
        if (!(TopP is >= 0 and <= 1))
            throw new ArgumentOutOfRangeException(nameof(TopP), TopP, "GenerationOptions.TopP must be in [0, 1] (0 or 1: off).");
        if (!(RepetitionPenalty > 0 && double.IsFinite(RepetitionPenalty)))
            throw new ArgumentOutOfRangeException(nameof(RepetitionPenalty), RepetitionPenalty, "GenerationOptions.RepetitionPenalty must be > 0 and finite (1: off).");
        if (EndOfSequenceTokenId is { } eos && (eos < 0 || eos >= vocabularySize))
            throw new ArgumentOutOfRangeException(nameof(EndOfSequenceTokenId), eos, $"GenerationOptions.EndOfSequenceTokenId must be a token id in [0, {vocabularySize}).");
    }
}

/// <summary>
/// Chooses tokens from logits as <see cref="GenerationOptions"/> say, on the logits' device, remembering which tokens each
/// sequence has seen (for the repetition penalty) and which sequences are finished.
/// </summary>
/// <remarks>
/// Samples by the exponential race: with E ~ Exp(1) per token, argmax p / E is token i with probability p_i. The noise comes
/// from a seeded CPU generator (TorchSharp 0.107 makes only CPU generators) a chunk of up to 64 steps at a time, so on CUDA a
/// step copies nothing back: the host waits for the GPU only when a chunk is copied over (once per chunk). Drawing is a
/// serial loop in libtorch: about 0.8 ms per step for a 50,280-token vocabulary (top-p or all tokens), far less for top-k.
/// </remarks>
internal sealed class TokenSampler : IDisposable
{
    // Noise values held on the device at once (a chunk of steps); a chunk has at least one step and at most NoiseSteps.
    private const long NoiseBudget = 1L << 24;
    private const int NoiseSteps = 64;
    private readonly GenerationOptions _options;
    private readonly Generator? _generator;
    private Tensor? _noise;   // (steps, batch, candidates) Exp(1) on the device; _noiseStep is the next unused step
    private int _noiseStep, _stepsLeft;
    private readonly Tensor? _seen;       // (batch, vocabulary) bool: tokens in the prompt or chosen so far
    private readonly Tensor? _finished;   // (batch) bool: sequences that have produced the end-of-sequence token

    /// <param name="options">How to choose.</param>
    /// <param name="prompt">The (batch, L) prompt, its token ids already checked against the vocabulary.</param>
    /// <param name="vocabularySize">Tokens in the vocabulary.</param>
    /// <param name="steps">Tokens to be chosen at most: the noise is drawn for no more steps than that.</param>
    public TokenSampler(GenerationOptions options, Tensor prompt, long vocabularySize, int steps)
    {
        _options = options;
        _stepsLeft = steps;
        if (options.Samples)
            _generator = new Generator((ulong)(options.Seed ?? Random.Shared.NextInt64()));   // a CPU generator (see the remarks)
        if (options.RepetitionPenalty != 1)
        {
            _seen = zeros(new[] { prompt.shape[0], vocabularySize }, ScalarType.Bool, prompt.device);
            _seen.scatter_(1, prompt, ones_like(prompt, ScalarType.Bool));
        }
        if (options.EndOfSequenceTokenId is not null) _finished = zeros(prompt.shape[0], ScalarType.Bool, prompt.device);
    }

    /// <summary>Whether every sequence has finished (reading this waits for the device).</summary>
    public bool AllFinished => _finished is not null && _finished.all().item<bool>();

    /// <summary>The next token of each sequence, (batch) int64, from its logits (batch, vocabulary).</summary>
    public Tensor Choose(Tensor logits)
    {
        using var scope = NewDisposeScope();
        var x = logits.to(ScalarType.Float32);
        if (_seen is not null)
        {
            var penalty = _options.RepetitionPenalty;
            x = where(_seen, where(x < 0, x * penalty, x / penalty), x);
        }
        var chosen = _options.Samples ? Sample(x) : x.argmax(-1);
        if (_seen is not null) _seen.scatter_(1, chosen.unsqueeze(1), ones(chosen.shape[0], 1, dtype: ScalarType.Bool, device: chosen.device));
        if (_finished is not null)
        {
            var eos = _options.EndOfSequenceTokenId!.Value;
            chosen = where(_finished, full_like(chosen, eos), chosen);
            _finished.logical_or_(chosen == eos);
        }
        return chosen.MoveToOuterDisposeScope();
    }

    private Tensor Sample(Tensor logits)
    {
        var x = _options.Temperature == 1 ? logits : logits / _options.Temperature;
        Tensor? indices = null;   // token ids of x's columns when x holds a sorted subset
        long vocabulary = x.shape[1];
        if (_options.TopK > 0 && _options.TopK < vocabulary)
            (x, indices) = x.topk(_options.TopK, dim: -1);
        if (_options.TopP is > 0 and < 1)
        {
            if (indices is null) (x, indices) = x.sort(dim: -1, descending: true);
            var probabilities = x.softmax(-1);
            // Drop a token once the more likely ones already reach p; the most likely token always stays.
            var before = probabilities.cumsum(-1) - probabilities;
            x = x.masked_fill(before >= _options.TopP, double.NegativeInfinity);
        }
        var draw = (x.softmax(-1) / Noise(x.shape[0], x.shape[1], x.device)).argmax(-1, keepdim: true);
        return (indices is null ? draw : indices.gather(1, draw)).squeeze(1);
    }

    // This step's (batch, candidates) Exp(1) noise: the next step of the chunk on the device, drawn with a new chunk when it
    // is used up (the candidates are the same every step of a generation).
    private Tensor Noise(long batch, long candidates, Device device)
    {
        if (_noise is null || _noiseStep == _noise.shape[0] || _noise.shape[1] != batch || _noise.shape[2] != candidates)
        {
            _noise?.Dispose();
            long steps = Math.Clamp(Math.Min(NoiseBudget / (batch * candidates), _stepsLeft), 1, NoiseSteps);
            using var drawn = empty(new[] { steps, batch, candidates }, device: CPU).exponential_(1, _generator);
            _noise = drawn.to(device).DetachFromDisposeScope();
            _noiseStep = 0;
        }
        _stepsLeft--;
        return _noise[_noiseStep++];
    }

    public void Dispose()
    {
        _noise?.Dispose();
        _generator?.Dispose();
        _seen?.Dispose();
        _finished?.Dispose();
    }
}
