using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;

namespace MambaML.MLNet;

/// <summary>Options of <c>mlContext.MulticlassClassification.Trainers.MambaTextClassification</c> and
/// <c>mlContext.BinaryClassification.Trainers.MambaTextClassification</c>.</summary>
public sealed class MambaTextClassificationOptions : MambaSequenceOptionsBase
{
    /// <summary>Input text column.</summary>
    public string TextColumnName { get; set; } = "Text";
    /// <summary>Predicted label output column (a key with the label's key values for multiclass, Boolean for binary).</summary>
    public string PredictedLabelColumnName { get; set; } = "PredictedLabel";
    /// <summary>Probability output column (binary only; multiclass models ignore it).</summary>
    public string ProbabilityColumnName { get; set; } = "Probability";
    /// <summary>How text is split into tokens.</summary>
    public MambaTokenizer Tokenizer { get; set; } = MambaTokenizer.Cl100kBase;
    /// <summary>Tokens read per text; longer texts are cut (and only their first 16 × MaxTokens characters are tokenised).</summary>
    public int MaxTokens { get; set; } = 128;
    /// <summary>Most token ids kept in the compact vocabulary (the most frequent in training); the rest map to one unknown id.</summary>
    public int MaxVocabularySize { get; set; } = 20_000;
    /// <summary>
    /// Lower-case the text (invariant culture) before tokenising, so that "Great" and "great" share a token; saved with the model.
    /// Helps small data sets, where each spelling is seen a few times only.
    /// </summary>
    public bool Lowercase { get; set; } = true;
    /// <summary>Token ids seen fewer times than this in training map to the unknown id.</summary>
    public int MinTokenCount { get; set; } = 1;
    /// <summary>
    /// Longest token n-gram of a linear bag-of-n-grams head trained jointly beside the Mamba path (a wide-and-deep model): its
    /// logits (the weights of each token and n-gram in the text, divided by √(number of n-grams)) are added to the Mamba head's.
    /// 1 uses single tokens (the compact vocabulary), 2 adds token pairs, 3 adds triples (pairs and triples are hashed into
    /// <see cref="NgramHeadBuckets"/> buckets); 0 turns the head off (Mamba alone). On small data sets such as the UCI sentiment
    /// sentences a model trained from scratch is data-starved and the linear head carries much of the accuracy (BENCHMARKS.md).
    /// </summary>
    public int NgramHeadLength { get; set; } = 2;
    /// <summary>
    /// Peak learning rate of the n-gram head (same schedule as the rest); null uses <see cref="MambaTrainerOptions.LearningRate"/>.
    /// A linear model over sparse n-grams needs larger steps than the Mamba path to reach its weights in a few epochs (0.1 was
    /// chosen on validation splits of the UCI sentiment sentences; BENCHMARKS.md).
    /// </summary>
    public double? NgramHeadLearningRate { get; set; } = 0.1;
    /// <summary>
    /// Train the n-gram head on its own cross-entropy and the Mamba path on the cross-entropy of the summed logits with the
    /// n-gram logits held fixed (a residual, as in boosting), instead of training the sum jointly. On small data the Mamba path
    /// fits the training set quickly; trained jointly it then leaves the n-gram head under-trained. Prediction adds both either way.
    /// </summary>
    public bool NgramHeadSeparateLoss { get; set; } = true;
    /// <summary>Hash buckets shared by the n-grams of length 2 and more in the n-gram head (<see cref="NgramHeadLength"/>); at most 2^24.</summary>
    public int NgramHeadBuckets { get; set; } = 1 << 16;
    private const int MaxNgramHeadBuckets = 1 << 24;

    internal override void Validate()
    {
        base.Validate();
        RequireInputColumns((nameof(TextColumnName), TextColumnName));
        Check(MaxTokens >= 1, nameof(MaxTokens), MaxTokens, ">= 1");
        Check(MaxVocabularySize >= 1, nameof(MaxVocabularySize), MaxVocabularySize, ">= 1");
        Check(MinTokenCount >= 1, nameof(MinTokenCount), MinTokenCount, ">= 1");
        Check(NgramHeadLength is >= 0 and <= 3, nameof(NgramHeadLength), NgramHeadLength, "in [0, 3]");
        Check(NgramHeadBuckets is >= 1 and <= MaxNgramHeadBuckets, nameof(NgramHeadBuckets), NgramHeadBuckets, $"in [1, {MaxNgramHeadBuckets}]");
        RequireDistinctOutputs((nameof(ScoreColumnName), ScoreColumnName), (nameof(PredictedLabelColumnName), PredictedLabelColumnName));
        Check(NgramHeadLearningRate is null or (> 0 and <= float.MaxValue), nameof(NgramHeadLearningRate), NgramHeadLearningRate ?? 0, "> 0 and at most 3.4e38 (or null)");
    }

    /// <summary>The binary trainer's check: its three outputs need three names.</summary>
    internal void ValidateBinaryOutputs() =>
        RequireDistinctOutputs((nameof(ScoreColumnName), ScoreColumnName), (nameof(PredictedLabelColumnName), PredictedLabelColumnName),
                               (nameof(ProbabilityColumnName), ProbabilityColumnName));
}

/// <summary>
/// Trains a Mamba text classifier: the text column is tokenised (<see cref="MambaTextClassificationOptions.Tokenizer"/>), token
/// ids seen in training are remapped to a compact vocabulary, and a Mamba model with mask-aware pooling classifies the label
/// (key-typed for multiclass, Boolean for binary), optionally beside a linear bag-of-n-grams head
/// (<see cref="MambaTextClassificationOptions.NgramHeadLength"/>). The tokenizer choice and the vocabulary are saved with the model.
/// </summary>
public sealed class MambaTextClassificationEstimator : IEstimator<MambaSequenceTransformer>
{
    private readonly IHostEnvironment _env;
    private readonly MambaSequenceTask _task;
    private readonly MambaTextClassificationOptions _options;

    internal MambaTextClassificationEstimator(IHostEnvironment env, MambaSequenceTask task, MambaTextClassificationOptions options)
    {
        if (task == MambaSequenceTask.Regression) throw new ArgumentOutOfRangeException(nameof(task), task, "Text classification is binary or multiclass.");
        _env = env ?? throw new ArgumentNullException(nameof(env));
        _options = options ?? throw new ArgumentNullException(nameof(options));
        _task = task;
        ValidateOptions();
    }

    private bool Binary => _task == MambaSequenceTask.BinaryClassification;
    private string TrainerName => Binary ? "MambaTextClassification(BinaryClassification)" : "MambaTextClassification";

    private void ValidateOptions()
    {
        _options.Validate();
        if (Binary) _options.ValidateBinaryOutputs();
    }

    /// <summary>Builds the vocabulary, trains on <paramref name="input"/> and returns the fitted transformer.</summary>
    public MambaSequenceTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        ValidateOptions();   // again: the options object may have changed since this estimator was made
        DefaultDtype.RequireFloat32(TrainerName);
        MambaRegistration.Register(_env);
        var o = _options;
        var label = LabelReaders.For(_task, input.Schema, o.LabelColumnName, nameof(o.LabelColumnName));
        var textColumn = ColumnChecks.Find(input.Schema, o.TextColumnName, nameof(o.TextColumnName));
        TextSequenceReader.RequireText(textColumn, nameof(o.TextColumnName));
        LabelStatistics.Compute(input, label, o.CancellationToken).CheckTrainable(TrainerName, o.LabelColumnName, classification: true);
        var vocabulary = TextTokens.Build(input, textColumn, o.Tokenizer, o.MaxTokens, o.MaxVocabularySize, o.MinTokenCount, o.Lowercase, o.CancellationToken);
        if (vocabulary.TokenIds.Length == 0)
            throw new ArgumentException(o.MinTokenCount > 1
                ? $"{TrainerName}: no token of column '{o.TextColumnName}' occurs MinTokenCount ({o.MinTokenCount}) times, so the vocabulary is empty and every text would read the same. Lower MinTokenCount."
                : $"{TrainerName}: every training text of column '{o.TextColumnName}' is empty, so there is nothing to learn from.", o.MinTokenCount > 1 ? nameof(o.MinTokenCount) : nameof(o.TextColumnName));
        var arch = Architecture(vocabulary, label as KeyLabelReader);
        var tokens = new TextTokens(vocabulary);
        var train = new ExampleReader(SequenceReaders.Create(input.Schema, arch, tokens), label);
        var valid = ValidationSetReader.Create(o.ValidationSet, schema =>
            new ExampleReader(SequenceReaders.Create(schema, arch, tokens),
                LabelReaders.ForValidation(_task, schema, o.LabelColumnName, nameof(o.LabelColumnName), label)));
        double ngramScale = (o.NgramHeadLearningRate ?? o.LearningRate) / o.LearningRate;
        return SequenceFitting.Fit(_env, o, arch, input, train, valid, TrainerName,
            name => name.StartsWith(nameof(SequenceNetwork.ngramHead) + ".", StringComparison.Ordinal) ? ngramScale : 1);
    }

    /// <summary>Checks the text and label columns and declares Score and PredictedLabel (and Probability, binary).</summary>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        var text = EstimatorSchema.Find(inputSchema, _options.TextColumnName, nameof(_options.TextColumnName));
        if (text.ItemType != TextDataViewType.Instance || text.Kind != SchemaShape.Column.VectorKind.Scalar)
            throw new ArgumentOutOfRangeException(nameof(_options.TextColumnName), _options.TextColumnName,
                $"Column '{_options.TextColumnName}' is {EstimatorSchema.Describe(text)}; text classification needs a scalar text column.");
        var label = EstimatorSchema.Find(inputSchema, _options.LabelColumnName, nameof(_options.LabelColumnName));
        bool ok = Binary ? label.ItemType == BooleanDataViewType.Instance : label.IsKey && label.ItemType.RawType == typeof(uint);
        if (!ok || label.Kind != SchemaShape.Column.VectorKind.Scalar)
            throw new ArgumentOutOfRangeException(nameof(_options.LabelColumnName), _options.LabelColumnName,
                $"Label column '{_options.LabelColumnName}' is {EstimatorSchema.Describe(label)}; " + (Binary
                    ? "binary text classification needs a scalar Boolean (for a key label, use mlContext.MulticlassClassification.Trainers.MambaTextClassification)."
                    : "text classification needs a key of UInt32 (add mlContext.Transforms.Conversion.MapValueToKey before the trainer)."));
        var placeholder = Architecture(new TextVocabulary(), null) with { ClassNameType = Binary ? null : SequenceOutputs.KeyValueTypeName(label) };
        return EstimatorSchema.Append(inputSchema, b => { foreach (var column in SequenceOutputs.Create(placeholder)) column.AddTo(b); });
    }

    // The label's classes are null when only the output schema is wanted (two placeholder classes for multiclass).
    private SequenceArchitecture Architecture(TextVocabulary vocabulary, KeyLabelReader? classes) => new()
    {
        Task = _task,
        Input = SequenceInputKind.Tokens,
        Mamba = _options.BuildConfig(),
        Pooling = _options.Pooling,
        Dropout = _options.Dropout,
        Bidirectional = _options.Bidirectional,
        EnsembleSize = _options.EnsembleSize,
        Vocabulary = vocabulary,
        NgramHeadLength = _options.NgramHeadLength,
        NgramHeadBuckets = _options.NgramHeadBuckets,
        NgramHeadSeparateLoss = _options.NgramHeadSeparateLoss,
        Outputs = Binary ? 1 : classes?.ClassCount ?? 2,
        ClassNames = Binary ? null : classes?.ClassNames() ?? new[] { "", "" },
        ClassNameType = classes?.ClassNameType(),
        FeatureColumnName = _options.TextColumnName,
        ScoreColumnName = _options.ScoreColumnName,
        PredictedLabelColumnName = _options.PredictedLabelColumnName,
        ProbabilityColumnName = _options.ProbabilityColumnName,
        PredictionBatchSize = _options.PredictionBatchSize,
    };
}
