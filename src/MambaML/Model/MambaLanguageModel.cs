using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MambaML.Model;

/// <summary>
/// Token embedding → <see cref="MambaBackbone"/> → logits over the vocabulary, with the output head tied to the embedding
/// (as mamba_ssm's <c>MambaLMHeadModel</c>).
/// </summary>
public sealed class MambaLanguageModel : nn.Module
{
    /// <summary>Token embedding, (vocabulary, d_model).</summary>
    public Embedding embedding;
    /// <summary>The Mamba stack.</summary>
    public MambaBackbone backbone;

    private CudaDecodeStep? _fused;

    /// <summary>Vocabulary size.</summary>
    public long VocabularySize { get; }

    /// <summary>Creates a model whose parameters are a function of <paramref name="seed"/> alone.</summary>
    public MambaLanguageModel(MambaConfig config, long vocabularySize, long seed) : base(nameof(MambaLanguageModel))
    {
        if (vocabularySize < 1) throw new ArgumentOutOfRangeException(nameof(vocabularySize), vocabularySize, "Vocabulary size must be >= 1.");
        VocabularySize = vocabularySize;
        var g = new Generator((ulong)seed);
        embedding = nn.Embedding(vocabularySize, config.DModel);
        using (no_grad()) embedding.weight!.normal_(0, 0.02, g);   // nn.init.normal_ ignores the generator in TorchSharp 0.107
        backbone = new MambaBackbone(config, g);
        RegisterComponents();
        this.KeepOutOfDisposeScopes();
    }

    /// <summary>Logits for every position: tokens (batch, L) int64 → (batch, L, vocabulary).</summary>
    public Tensor Forward(Tensor tokens, Tensor? lengths = null) => Forward(tokens, state: null, lengths).Logits;

    /// <summary>
    /// Logits for every position, continuing from <paramref name="state"/> and, when asked, the state after each sequence's
    /// last real token: a long prompt can be read in chunks, or a stream token block by token block, and then continued with
    /// <see cref="Step"/> (as mamba_ssm's <c>inference_params</c> carry the cache between calls).
    /// </summary>
    /// <param name="tokens">(batch, L) int64 on the model's device.</param>
    /// <param name="state">The state to continue from (one returned by an earlier call or a step), or null to start afresh;
    /// it is not changed.</param>
    /// <param name="lengths">Optional int64 (batch) lengths of right-padded sequences; logits at padded steps are zero.</param>
    /// <param name="returnState">Also return the state after each sequence's last real token.</param>
    /// <param name="lastTokens">Logits of only the last this many positions (mamba_ssm's <c>num_last_tokens</c>), all when 0:
    /// a chunked prompt needs only the last one, and the full (batch, L, vocabulary) logits of a long chunk are large. Not with
    /// <paramref name="lengths"/>, whose shorter sequences end before the padded length does.</param>
    public (Tensor Logits, MambaState? State) Forward(Tensor tokens, MambaState? state, Tensor? lengths = null, bool returnState = false, int lastTokens = 0)
    {
        RequireTokenIds(tokens, nameof(tokens));
        if (tokens.dim() != 2)   // else an error about the backbone's hidden states
            throw new ArgumentException($"tokens must be (batch, L) token ids; got shape ({string.Join(", ", tokens.shape)})." +
                                        (tokens.dim() == 1 ? " For a batch of one, pass tokens.unsqueeze(0)." : ""), nameof(tokens));
        if (lastTokens < 0) throw new ArgumentOutOfRangeException(nameof(lastTokens), lastTokens, "lastTokens must be >= 0 (0: every position).");
        if (lastTokens > 0 && lengths is not null)
            throw new ArgumentException("lastTokens keeps the last positions of the padded length, which are padding for shorter sequences: " +
                                        "with lengths, pass lastTokens = 0 and read each sequence's logits at its own length − 1.", nameof(lastTokens));
        using var scope = NewDisposeScope();
        var embedded = embedding.forward(tokens);
        if (training && backbone.Config.Dropout > 0) embedded = backbone.Draws.Apply(embedded, backbone.Config.Dropout);
        var (hidden, next) = backbone.Forward(embedded, state, lengths, returnState);
        if (lastTokens > 0 && lastTokens < hidden.shape[1]) hidden = hidden.narrow(1, hidden.shape[1] - lastTokens, lastTokens);
        return (nn.functional.linear(hidden, embedding.weight!).MoveToOuterDisposeScope(), next?.MoveToOuterDisposeScope());
    }

    /// <summary>One recurrent step: tokens (batch) int64 → logits (batch, vocabulary) and the next state.</summary>
    /// <param name="tokens">(batch) int64 on the model's device.</param>
    /// <param name="state">The state before this step (<see cref="MambaBackbone.ZeroState"/>, or one returned by a forward
    /// pass or an earlier step); it is not changed.</param>
    /// <param name="backend">With <see cref="DecodeBackend.Auto"/>, a float32 or bfloat16 model on CUDA takes the fused
    /// kernels when gradients are off (<c>no_grad</c>, or no parameter requires them), and the differentiable reference
    /// otherwise; if the kernels cannot be compiled or loaded, one warning is printed and the reference runs.
    /// The reference path refuses token ids outside the vocabulary; the fused path never waits for the GPU to read them, so
    /// it gives NaN logits for such a row instead.</param>
    public (Tensor Logits, MambaState State) Step(Tensor tokens, MambaState state, DecodeBackend backend = DecodeBackend.Auto)
    {
        if (UseFused(backend)) return _fused!.Step(tokens, state);
        if (tokens.dim() != 1) throw new ArgumentException($"tokens must be a (batch) int64 vector, one token per sequence; got shape ({string.Join(", ", tokens.shape)}).", nameof(tokens));
        RequireTokenIds(tokens, nameof(tokens));
        using var scope = NewDisposeScope();
        var (hidden, next) = backbone.Step(embedding.forward(tokens), state);
        return (nn.functional.linear(hidden, embedding.weight!).MoveToOuterDisposeScope(), next.MoveToOuterDisposeScope());
    }

    /// <summary>Greedy generation: reads <paramref name="prompt"/> in one parallel pass, then picks the most likely next token
    /// <paramref name="count"/> times, feeding each back in.</summary>
    /// <param name="prompt">(batch, L ≥ 1) int64 on the model's device.</param>
    /// <param name="count">How many tokens to generate (≥ 1).</param>
    /// <param name="backend">How the steps after the prompt run (as for <see cref="Step"/>; gradients are always off here).
    /// The fused path chooses tokens on the GPU and never waits for it, so it ends before the GPU is done.</param>
    /// <returns>(batch, count) int64: the generated tokens, the prompt not included. Ties go to the smallest token id.</returns>
    public Tensor Generate(Tensor prompt, int count, DecodeBackend backend = DecodeBackend.Auto) =>
        Generate(prompt, count, GenerationOptions.Greedy, backend);

    /// <summary>Generation as mamba_ssm's <c>generate</c>: reads <paramref name="prompt"/> in one parallel pass, then chooses
    /// up to <paramref name="count"/> tokens one step at a time as <paramref name="options"/> say (greedy, or sampled with
    /// temperature, top-k and top-p; a repetition penalty; stopping at an end-of-sequence token), feeding each back in.</summary>
    /// <param name="prompt">(batch, L ≥ 1) int64 on the model's device.</param>
    /// <param name="count">How many tokens to generate at most (≥ 1).</param>
    /// <param name="options">How tokens are chosen; <see cref="GenerationOptions.Greedy"/> is the other overload.</param>
    /// <param name="backend">How the steps after the prompt run (as for <see cref="Step"/>; gradients are always off here).
    /// Plain greedy decoding on the fused path never waits for the GPU. Sampling, the penalty and the end-of-sequence check run
    /// TorchSharp operations on each step's logits; the host waits for the GPU every step for the end-of-sequence check (and
    /// for the reference step, which reads the token ids), and when sampling once per chunk of up to 64 steps' noise.</param>
    /// <returns>(batch, n) int64, n ≤ <paramref name="count"/> (fewer only when every sequence has produced
    /// <see cref="GenerationOptions.EndOfSequenceTokenId"/>): the generated tokens, the prompt not included. Ties in greedy
    /// choices go to the smallest token id.</returns>
    public Tensor Generate(Tensor prompt, int count, GenerationOptions options, DecodeBackend backend = DecodeBackend.Auto)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (prompt.dtype != ScalarType.Int64 || prompt.dim() != 2 || prompt.shape[1] < 1)
            throw new ArgumentException("prompt must be a (batch, L >= 1) int64 tensor.", nameof(prompt));
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), count, "count must be >= 1.");
        options.Validate(VocabularySize);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        // Generation never drops: a model still in training mode (as a new or loaded one is) reads the prompt as in evaluation.
        bool wasTraining = training;
        if (wasTraining) eval();
        try
        {
            return GenerateFromPrompt(prompt, count, options, backend);   // moved out of this call's scope there
        }
        finally
        {
            if (wasTraining) train();
        }
    }

    private Tensor GenerateFromPrompt(Tensor prompt, int count, GenerationOptions options, DecodeBackend backend)
    {
        var (promptLogits, state) = Forward(prompt, state: null, returnState: true, lastTokens: 1);   // checks the token ids first
        using var sampler = new TokenSampler(options, prompt, VocabularySize, count);
        var token = sampler.Choose(promptLogits.select(1, 0)).contiguous();
        var generated = empty(new[] { prompt.shape[0], (long)count }, ScalarType.Int64, prompt.device);
        generated.select(1, 0).copy_(token);
        bool fused = UseFused(backend);
        if (fused && options.IsPlainGreedy)
        {
            _fused!.Generate(token, state!, generated, from: 1);
            return generated.MoveToOuterDisposeScope();
        }
        int produced = 1;
        for (; produced < count && !sampler.AllFinished; produced++)
        {
            using var stepScope = NewDisposeScope();
            var (logits, next) = Step(token, state!, fused ? DecodeBackend.CudaFused : DecodeBackend.Reference);
            var chosen = sampler.Choose(logits);
            generated.select(1, produced).copy_(chosen);
            // Only the latest token and state live on: a long generation would otherwise hold every step's state.
            token.Dispose();
            state!.Dispose();
            token = chosen.MoveToOuterDisposeScope();
            state = next.MoveToOuterDisposeScope();
        }
        return (produced == count ? generated : generated.narrow(1, 0, produced).clone()).MoveToOuterDisposeScope();
    }

    private bool UseFused(DecodeBackend backend)
    {
        if (backend == DecodeBackend.Reference) return false;
        if (!Enum.IsDefined(backend)) throw new ArgumentOutOfRangeException(nameof(backend), backend, "Not a DecodeBackend value.");
        if (backend == DecodeBackend.Auto && is_grad_enabled() && parameters().Any(p => p.requires_grad)) return false;
        _fused ??= new CudaDecodeStep(this);
        if (_fused.CanRun(out var reason)) return true;
        if (backend == DecodeBackend.CudaFused) throw new NotSupportedException($"The fused CUDA decode step cannot run: {reason}");
        return false;
    }

    // Token ids outside the vocabulary would otherwise meet libtorch's "index out of range in self".
    private void RequireTokenIds(Tensor tokens, string name)
    {
        if (tokens.dtype != ScalarType.Int64) throw new ArgumentException($"{name} must be an int64 tensor of token ids; got {tokens.dtype}.", name);
        if (tokens.numel() > 0 && (tokens.min().item<long>() < 0 || tokens.max().item<long>() >= VocabularySize))
            throw new ArgumentException($"{name} holds token ids outside [0, {VocabularySize}) (the vocabulary): from {tokens.min().item<long>()} to {tokens.max().item<long>()}.", name);
    }
}
