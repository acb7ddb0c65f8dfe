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
    }

    /// <summary>Logits for every position: tokens (batch, L) int64 → (batch, L, vocabulary).</summary>
    public Tensor Forward(Tensor tokens, Tensor? lengths = null)
    {
        using var scope = NewDisposeScope();
        var (hidden, _) = backbone.Forward(embedding.forward(tokens), lengths: lengths);
        return nn.functional.linear(hidden, embedding.weight!).MoveToOuterDisposeScope();
    }

    /// <summary>One recurrent step: tokens (batch) int64 → logits (batch, vocabulary) and the next state.</summary>
    public (Tensor Logits, MambaState State) Step(Tensor tokens, MambaState state)
    {
        using var scope = NewDisposeScope();
        var (hidden, next) = backbone.Step(embedding.forward(tokens), state);
        return (nn.functional.linear(hidden, embedding.weight!).MoveToOuterDisposeScope(), next.MoveToOuterDisposeScope());
    }
}
