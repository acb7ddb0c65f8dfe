using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;

namespace MambaML.MLNet;

/// <summary>
/// Trains a Mamba model on numeric sequences (a Single vector column of steps × channels values, fixed or variable length) for
/// binary classification, multiclass classification or regression. Create it with
/// <c>mlContext.BinaryClassification.Trainers.MambaSequence</c>, <c>mlContext.MulticlassClassification.Trainers.MambaSequence</c>
/// or <c>mlContext.Regression.Trainers.MambaSequence</c>.
/// </summary>
public sealed class MambaSequenceEstimator : IEstimator<MambaSequenceTransformer>
{
    private readonly IHostEnvironment _env;
    private readonly MambaSequenceTask _task;
    private readonly MambaNumericSequenceOptions _options;

    internal MambaSequenceEstimator(IHostEnvironment env, MambaSequenceTask task, MambaNumericSequenceOptions options)
    {
        _env = env ?? throw new ArgumentNullException(nameof(env));
        _options = options ?? throw new ArgumentNullException(nameof(options));
        _task = task;
        ValidateOptions();
    }

    private void ValidateOptions()
    {
        _options.Validate();
        if (_task == MambaSequenceTask.BinaryClassification) ((MambaSequenceClassificationOptions)_options).ValidateBinaryOutputs();
    }

    private string TrainerName => $"MambaSequence({_task})";

    /// <summary>Trains on <paramref name="input"/> and returns the fitted transformer.</summary>
    public MambaSequenceTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        ValidateOptions();   // again: the options object may have changed since this estimator was made
        DefaultDtype.RequireFloat32(TrainerName);
        MambaRegistration.Register(_env);
        var label = LabelReaders.For(_task, input.Schema, _options.LabelColumnName, nameof(_options.LabelColumnName));
        var statistics = LabelStatistics.Compute(input, label, _options.CancellationToken);
        statistics.CheckTrainable(TrainerName, _options.LabelColumnName, _task != MambaSequenceTask.Regression);
        var arch = Architecture(label, statistics);
        var train = new ExampleReader(SequenceReaders.Create(input.Schema, arch, null), label);
        var (scales, offsets) = ChannelScales.Of(train.ReadAll(input, _options.CancellationToken).Select(e => e.Values), arch.Channels);
        arch = arch with { ChannelScales = scales, ChannelOffsets = offsets };
        if (arch.ConvolutionFeatureCount > 0) arch = arch with { ConvolutionReferenceLength = train.ReadAll(input, _options.CancellationToken).Max(e => e.Steps) };
        var valid = ValidationSetReader.Create(_options.ValidationSet, schema =>
            new ExampleReader(SequenceReaders.Create(schema, arch, null),
                LabelReaders.ForValidation(_task, schema, _options.LabelColumnName, nameof(_options.LabelColumnName), label)));
        return SequenceFitting.Fit(_env, _options, arch, input, train, valid, TrainerName);
    }

    /// <summary>Checks the input columns and declares the output columns of the task.</summary>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        EstimatorSchema.RequireSingleVector(inputSchema, _options.FeatureColumnName, nameof(_options.FeatureColumnName));
        var label = EstimatorSchema.Find(inputSchema, _options.LabelColumnName, nameof(_options.LabelColumnName));
        bool ok = _task switch
        {
            MambaSequenceTask.MulticlassClassification => label.IsKey && label.ItemType.RawType == typeof(uint),
            MambaSequenceTask.BinaryClassification => label.ItemType == BooleanDataViewType.Instance,
            _ => label.ItemType == NumberDataViewType.Single && !label.IsKey,
        };
        if (!ok || label.Kind != SchemaShape.Column.VectorKind.Scalar)
            throw new ArgumentOutOfRangeException(nameof(_options.LabelColumnName), _options.LabelColumnName,
                $"Label column '{_options.LabelColumnName}' is {EstimatorSchema.Describe(label)}; {_task} needs " + _task switch
                {
                    MambaSequenceTask.MulticlassClassification => "a key of UInt32 (add mlContext.Transforms.Conversion.MapValueToKey before the trainer).",
                    MambaSequenceTask.BinaryClassification => "a scalar Boolean.",
                    _ => "a scalar Single.",
                });
        var placeholder = Architecture(null, null) with { ClassNameType = SequenceOutputs.KeyValueTypeName(label) };
        return EstimatorSchema.Append(inputSchema, b => { foreach (var column in SequenceOutputs.Create(placeholder)) column.AddTo(b); });
    }


    // label and statistics are null when only the output schema is wanted.
    private SequenceArchitecture Architecture(TargetReader? label, LabelStatistics? statistics)
    {
        var classification = _options as MambaSequenceClassificationOptions;
        int classes = label is KeyLabelReader key ? key.ClassCount : 2;
        return new SequenceArchitecture
        {
            Task = _task,
            Input = SequenceInputKind.Numeric,
            Mamba = _options.BuildConfig(),
            Pooling = _options.Pooling,
            Dropout = _options.Dropout,
            Channels = _options.Channels,
            PatchLength = _options.PatchLength,
            NormalizeEachSequence = _options.NormalizeEachSequence,
            AddFirstDifference = _options.AddFirstDifference,
            Bidirectional = _options.Bidirectional,
            EnsembleSize = _options.EnsembleSize,
            TrainingNoise = _options.TrainingNoise,
            WindowFraction = _options.WindowFraction,
            PredictionWindows = _options.PredictionWindows,
            StemKernelSizes = _options.StemKernelSizes.ToArray(),
            StemChannels = _options.StemChannels,
            ConvolutionFeatureCount = _options.ConvolutionFeatureCount,
            ConvolutionHeadSeparateLoss = _options.ConvolutionHeadSeparateLoss,
            LabelSmoothing = classification?.LabelSmoothing ?? 0,
            MixupAlpha = classification?.MixupAlpha ?? 0,
            Outputs = _task == MambaSequenceTask.MulticlassClassification ? classes : 1,
            ClassNames = _task != MambaSequenceTask.MulticlassClassification ? null
                : label is KeyLabelReader k ? k.ClassNames() : Enumerable.Repeat("", classes).ToArray(),
            ClassNameType = label is KeyLabelReader typed ? typed.ClassNameType() : null,
            LabelMean = _task == MambaSequenceTask.Regression && statistics is not null ? (float)statistics.Mean : 0,
            LabelScale = _task == MambaSequenceTask.Regression && statistics is { StandardDeviation: > 0 } s ? (float)s.StandardDeviation : 1,
            FeatureColumnName = _options.FeatureColumnName,
            ScoreColumnName = _options.ScoreColumnName,
            PredictedLabelColumnName = classification?.PredictedLabelColumnName ?? "PredictedLabel",
            ProbabilityColumnName = classification?.ProbabilityColumnName ?? "Probability",
            PredictionBatchSize = _options.PredictionBatchSize,
        };
    }
}
