using MambaML.Model;

namespace MambaML.MLNet;

/// <summary>What a <see cref="MambaSequenceTransformer"/> predicts.</summary>
public enum MambaSequenceTask
{
    /// <summary>Boolean label; outputs Score (logit), Probability and PredictedLabel (Boolean), as ML.NET's binary classifiers.</summary>
    BinaryClassification,
    /// <summary>Key-typed label; outputs Score (one probability per class) and PredictedLabel (key with the label's KeyValues).</summary>
    MulticlassClassification,
    /// <summary>Single label; outputs Score.</summary>
    Regression,
}

/// <summary>How the hidden states of a sequence become one vector for the output head.</summary>
public enum SequencePooling
{
    /// <summary>Mean over the real (unpadded) steps.</summary>
    Mean,
    /// <summary>The hidden state at the last real step (Mamba's state has seen the whole sequence).</summary>
    Last,
    /// <summary>Mean and maximum over the real steps, concatenated (the head reads 2 × d_model features).</summary>
    MeanMax,
}

/// <summary>Whether the model reads numbers (values per time step) or token ids (text).</summary>
internal enum SequenceInputKind { Numeric, Tokens }

/// <summary>The saved description of a sequence model: task, input, model design and size, labels, columns.</summary>
internal sealed record SequenceArchitecture
{
    public MambaSequenceTask Task { get; init; }
    public SequenceInputKind Input { get; init; }
    public required MambaConfig Mamba { get; init; }
    public SequencePooling Pooling { get; init; }
    /// <summary>Training-time dropout on the embedded inputs and the pooled features.</summary>
    public double Dropout { get; init; }
    /// <summary>Numeric: values per step.</summary>
    public int Channels { get; init; } = 1;
    /// <summary>Numeric: each channel's units (<see cref="MLNet.ChannelScales"/>), which values are divided by before anything
    /// else reads them. Null when every channel's is 1, as for z-scored data and for models saved before format 3.</summary>
    public double[]? ChannelScales { get; init; }
    /// <summary>Numeric: each channel's offset (<see cref="MLNet.ChannelScales"/>), subtracted before the division by its units (as the forecaster's without instance normalisation).
    /// Null when every channel's is 0, as for z-scored data and for models saved before format 4.</summary>
    public double[]? ChannelOffsets { get; init; }
    /// <summary>Numeric: steps per token.</summary>
    public int PatchLength { get; init; } = 1;
    /// <summary>Numeric: z-normalise each sequence by its own statistics.</summary>
    public bool NormalizeEachSequence { get; init; }
    /// <summary>Numeric: each channel's first difference is read as an extra channel.</summary>
    public bool AddFirstDifference { get; init; }
    /// <summary>A second backbone reads each sequence backwards; its states, re-reversed, are added to the forward states.</summary>
    public bool Bidirectional { get; init; }
    /// <summary>Networks trained side by side whose predictions are averaged (1 = a single network).</summary>
    public int EnsembleSize { get; init; } = 1;
    /// <summary>Numeric, training only: standard deviation of the Gaussian noise added to the (normalised) values.</summary>
    public double TrainingNoise { get; init; }
    /// <summary>Numeric: fraction of each sequence's steps in a window (random while training; 1 = whole sequences).</summary>
    public double WindowFraction { get; init; } = 1;
    /// <summary>Numeric: evenly spaced windows whose outputs are averaged at prediction when <see cref="WindowFraction"/> &lt; 1.</summary>
    public int PredictionWindows { get; init; } = 1;
    /// <summary>Numeric: kernel sizes of the convolutional stem (empty = none).</summary>
    public int[] StemKernelSizes { get; init; } = Array.Empty<int>();
    /// <summary>Numeric: output channels of each stem convolution.</summary>
    public int StemChannels { get; init; }
    /// <summary>Classification, training only: the label-smoothing ε of the cross-entropy targets.</summary>
    public double LabelSmoothing { get; init; }
    /// <summary>Numeric classification, training only: α of the Beta(α, α) mixup weights; 0 = no mixup.</summary>
    public double MixupAlpha { get; init; }
    /// <summary>Numeric: MiniRocket convolution features read by a linear head beside the Mamba head (0 = none).</summary>
    public int ConvolutionFeatureCount { get; init; }
    /// <summary>Numeric: train the convolution-feature head on its own loss and the Mamba path on the loss of the sum with the head's outputs held fixed.</summary>
    public bool ConvolutionHeadSeparateLoss { get; init; }
    /// <summary>Numeric: the length the convolution features' dilations are spread over (the longest training sequence).</summary>
    public int ConvolutionReferenceLength { get; init; }
    /// <summary>Text: the tokenizer, its token-id remap and the longest token sequence read.</summary>
    public TextVocabulary? Vocabulary { get; init; }
    /// <summary>Text: longest token n-gram of the linear bag-of-n-grams head beside the Mamba head; 0 = no such head.</summary>
    public int NgramHeadLength { get; init; }
    /// <summary>Text: hash buckets shared by the n-grams of length 2 and more in the n-gram head.</summary>
    public int NgramHeadBuckets { get; init; }
    /// <summary>Text: train the n-gram head on its own loss and the Mamba path on the loss of the sum with the n-gram logits held fixed.</summary>
    public bool NgramHeadSeparateLoss { get; init; }
    /// <summary>Multiclass: class count and names (the label's key values); binary and regression: 1 output.</summary>
    public int Outputs { get; init; } = 1;
    public string[]? ClassNames { get; init; }
    /// <summary>Multiclass: the raw type of the label's key values when they are numbers or Booleans (class names are then
    /// their invariant-culture text); null for text.</summary>
    public string? ClassNameType { get; init; }
    /// <summary>Regression: the network predicts (label − LabelMean) / LabelScale.</summary>
    public float LabelMean { get; init; }
    public float LabelScale { get; init; } = 1;

    public string FeatureColumnName { get; init; } = "Features";
    public string ScoreColumnName { get; init; } = "Score";
    public string ProbabilityColumnName { get; init; } = "Probability";
    public string PredictedLabelColumnName { get; init; } = "PredictedLabel";
    public int? PredictionBatchSize { get; init; }
}

/// <summary>
/// Text input of a sequence model: which tokenizer, and the compact vocabulary: token ids seen in training (most frequent first,
/// at most the configured size) are renumbered from 2; 0 pads, 1 stands for every other token.
/// </summary>
internal sealed record TextVocabulary
{
    public const long Padding = 0, Unknown = 1;
    public MambaTokenizer Tokenizer { get; init; }
    public int MaxTokens { get; init; }
    /// <summary>Texts are lower-cased (invariant culture) before tokenising.</summary>
    public bool Lowercase { get; init; }
    /// <summary>Original token id of compact id 2 + i.</summary>
    public int[] TokenIds { get; init; } = Array.Empty<int>();

    /// <summary>Embedding rows: padding, unknown, then the kept ids.</summary>
    public int Size => TokenIds.Length + 2;
}
