using MambaML.Model;
using MambaML.Scan;
using Microsoft.ML;

namespace MambaML.MLNet;

/// <summary>How the learning rate moves during training.</summary>
public enum LearningRateSchedule
{
    /// <summary>The same learning rate for every step.</summary>
    Constant,
    /// <summary>Linear warm-up over <see cref="MambaTrainerOptions.WarmupFraction"/> of the steps, then cosine decay to zero.</summary>
    WarmupCosine,
}

/// <summary>Model size and training settings shared by every MambaML trainer.</summary>
public abstract class MambaTrainerOptions
{
    private protected MambaTrainerOptions() { }

    /// <summary>Width of the Mamba residual stream (d_model).</summary>
    public int ModelDimension { get; set; } = 32;
    /// <summary>Number of Mamba blocks.</summary>
    public int NumberOfLayers { get; set; } = 2;
    /// <summary>SSM state size per channel (d_state).</summary>
    public int StateSize { get; set; } = 16;
    /// <summary>Width of the causal convolution (d_conv).</summary>
    public int ConvolutionWidth { get; set; } = 4;
    /// <summary>Inner width = <see cref="ExpansionFactor"/> × <see cref="ModelDimension"/>.</summary>
    public int ExpansionFactor { get; set; } = 2;
    /// <summary>Selective-scan implementation; <see cref="SelectiveScanBackend.Auto"/> picks the fastest available for the device.</summary>
    public SelectiveScanBackend ScanBackend { get; set; } = SelectiveScanBackend.Auto;

    /// <summary>Passes over the training data.</summary>
    public int NumberOfEpochs { get; set; } = 10;
    /// <summary>Examples per optimisation step.</summary>
    public int BatchSize { get; set; } = 32;
    /// <summary>Peak learning rate of AdamW.</summary>
    public double LearningRate { get; set; } = 1e-3;
    /// <summary>How the learning rate changes over the steps.</summary>
    public LearningRateSchedule LearningRateSchedule { get; set; } = LearningRateSchedule.WarmupCosine;
    /// <summary>Fraction of all steps spent warming up (for <see cref="LearningRateSchedule.WarmupCosine"/>).</summary>
    public double WarmupFraction { get; set; } = 0.05;
    /// <summary>AdamW weight decay; not applied to A_log, D, norms and biases.</summary>
    public double WeightDecay { get; set; } = 0.01;
    /// <summary>Gradients are rescaled so that their global norm is at most this; 0 disables clipping.</summary>
    public double GradientClipNorm { get; set; } = 1.0;
    /// <summary>Examples held in the shuffle buffer: training reads the data through cursors and never holds more than this.</summary>
    public int ShuffleBufferSize { get; set; } = 10_000;

    /// <summary>Optional validation data (same columns as the training data); its loss is reported each epoch and drives early stopping.</summary>
    public IDataView? ValidationSet { get; set; }
    /// <summary>Stop after this many epochs without a better validation loss and keep the best weights; 0 disables early stopping.</summary>
    public int EarlyStoppingPatience { get; set; } = 5;

    /// <summary>
    /// Seed for initialisation and shuffling; null takes the MLContext's seed, or 0 when it has none. Same seed, same model on
    /// CPU, at the same <see cref="NumberOfThreads"/>: libtorch splits some sums by thread, so a forecaster trained on another
    /// thread count can differ in the last bits (up to 2.4e-7 in its forecasts, as measured); CUDA training is not
    /// bit-reproducible (atomic additions in the scan's backward).
    /// </summary>
    public int? Seed { get; set; }
    /// <summary>
    /// Trains this many networks, each initialised from its own seed derived from <see cref="Seed"/>, and averages their
    /// predictions (class probabilities for multiclass, logits for binary, values for regression and forecasts): averaging
    /// removes much of the variance between training runs. Costs this many times the training and prediction time and model
    /// size; 1 = a single network. Sequence trainers train the members side by side on the same shuffled batches, each with
    /// its own dropout and noise draws (the loss is the mean of their losses, so early stopping judges them together). The
    /// forecaster trains them one after another, each as if alone: its own shuffling order, fitted start
    /// (<see cref="MambaForecastingOptions.FitLinearSkip"/>) and early stopping, so <see cref="ProgressCallback"/> reports
    /// each member's epochs in turn.
    /// </summary>
    public int EnsembleSize { get; set; } = 1;
    /// <summary>
    /// CPU threads TorchSharp and the fused CPU scan use while fitting (libtorch's count for the fitting thread, restored
    /// afterwards); null leaves the thread count alone. Small models train faster on one thread, and on a busy machine more
    /// threads than free cores slow training down sharply.
    /// </summary>
    public int? NumberOfThreads { get; set; }

    // Far above any core count that helps these models; a huge value makes OpenMP fail to allocate and end the process.
    private const int MaxThreads = 256;
    /// <summary>
    /// Rows per model call when transforming an <see cref="IDataView"/>. Null (the default) chooses by the device the model
    /// runs on when it predicts: on the CPU 256 for the forecaster and 64 for sequence and text models, whose longer token
    /// sequences ran up to twice as fast in smaller batches; on CUDA 1,024, where a call's fixed cost dominates and 1,024
    /// rows ran 3.3–8.9 times as fast as 64 (BENCHMARKS.md, serving), but fewer for large models on long sequences: a call
    /// stops taking rows before they would hold 2^26 activations, padded to the longest row (tokens × the blocks' inner
    /// width; about 3 GB at d_model 768). A set value is used as it is, on either device.
    /// </summary>
    public int? PredictionBatchSize { get; set; }
    /// <summary>Called after each epoch with its losses, elapsed time and estimated time left (also logged to <c>mlContext.Log</c>).</summary>
    public Action<MambaTrainingProgress>? ProgressCallback { get; set; }
    /// <summary>Cancels training between batches (the fit throws <see cref="OperationCanceledException"/>).</summary>
    public CancellationToken CancellationToken { get; set; }

    /// <summary>The seed of ensemble member <paramref name="member"/> (0 for the first, which keeps <paramref name="seed"/>).</summary>
    // Seeds are spaced by a prime so that the members of nearby seeds do not coincide.
    internal static long MemberSeed(long seed, int member) => seed + 7919L * member;

    internal MambaConfig BuildConfig() => UncheckedConfig().Validate();

    private MambaConfig UncheckedConfig() => new()
    {
        DModel = ModelDimension, NLayer = NumberOfLayers, DState = StateSize, DConv = ConvolutionWidth, Expand = ExpansionFactor,
        ScanBackend = ScanBackend,
    };

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first invalid setting.</summary>
    internal virtual void Validate()
    {
        Check(ModelDimension >= 1, nameof(ModelDimension), ModelDimension, ">= 1");
        Check(NumberOfLayers >= 1, nameof(NumberOfLayers), NumberOfLayers, ">= 1");
        Check(StateSize is >= 1 and <= 256, nameof(StateSize), StateSize, "in [1, 256]");
        Check(ConvolutionWidth is >= 1 and <= 16, nameof(ConvolutionWidth), ConvolutionWidth, "in [1, 16]");
        Check(ExpansionFactor >= 1, nameof(ExpansionFactor), ExpansionFactor, ">= 1");
        Check(NumberOfEpochs >= 1, nameof(NumberOfEpochs), NumberOfEpochs, ">= 1");
        Check(BatchSize >= 1, nameof(BatchSize), BatchSize, ">= 1");
        Check(LearningRate is > 0 and <= float.MaxValue, nameof(LearningRate), LearningRate, "> 0 and at most 3.4e38 (the largest float)");
        Check(WarmupFraction is >= 0 and < 1, nameof(WarmupFraction), WarmupFraction, "in [0, 1)");
        Check(WeightDecay is >= 0 and <= float.MaxValue, nameof(WeightDecay), WeightDecay, ">= 0 and at most 3.4e38 (the largest float)");
        Check(GradientClipNorm is >= 0 and <= float.MaxValue, nameof(GradientClipNorm), GradientClipNorm, ">= 0 and at most 3.4e38 (the largest float)");
        Check(ShuffleBufferSize >= 1, nameof(ShuffleBufferSize), ShuffleBufferSize, ">= 1");
        Check(EnsembleSize >= 1, nameof(EnsembleSize), EnsembleSize, ">= 1");
        Check(EarlyStoppingPatience >= 0, nameof(EarlyStoppingPatience), EarlyStoppingPatience, ">= 0");
        Check(PredictionBatchSize is null or >= 1, nameof(PredictionBatchSize), PredictionBatchSize ?? 0, ">= 1 (or null)");
        Check(NumberOfThreads is null or (>= 1 and <= MaxThreads), nameof(NumberOfThreads), NumberOfThreads ?? 0, $"in [1, {MaxThreads}] (or null)");
        CheckBackboneFitsInMemory();
    }

    /// <summary>
    /// Throws, naming the size options, when the Mamba backbones alone cannot fit this machine's memory: every member's
    /// float32 weights, plus the gradients and AdamW's two moments of at least one member while it trains (a lower bound:
    /// embeddings, heads and activations come on top). Otherwise such sizes fail deep in libtorch's or .NET's allocator.
    /// </summary>
    private void CheckBackboneFitsInMemory()
    {
        if ((long)ExpansionFactor * ModelDimension > int.MaxValue) return;   // BuildConfig names ExpansionFactor for this
        var config = UncheckedConfig();
        double parameters = config.ParameterCount, bytes = 4.0 * parameters * (EnsembleSize + 3.0);
        double available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (bytes <= available) return;
        string option = EnsembleSize > 1 && 16.0 * parameters <= available ? nameof(EnsembleSize)
                      : NumberOfLayers > 1 && 16.0 * config.ParametersPerLayer <= available ? nameof(NumberOfLayers)
                      : nameof(ModelDimension);
        throw new ArgumentOutOfRangeException(option,
            $"{GetType().Name}: the Mamba backbone has {parameters:N0} parameters per network; with EnsembleSize {EnsembleSize} training needs at " +
            $"least {bytes / (1L << 30):N1} GiB (float32 weights of every network, and gradients and AdamW's moments of one), more than the " +
            $"{available / (1L << 30):N1} GiB this process can use. Lower ModelDimension (now {ModelDimension}), NumberOfLayers (now {NumberOfLayers}), " +
            $"ExpansionFactor (now {ExpansionFactor}), StateSize (now {StateSize}) or EnsembleSize (now {EnsembleSize}).");
    }

    /// <summary>Throws if an input column option is null or empty, naming it (at construction, as ML.NET's trainers do).</summary>
    private protected void RequireInputColumns(params (string Option, string? Name)[] inputs)
    {
        foreach (var (option, name) in inputs)
            if (string.IsNullOrEmpty(name))
                throw new ArgumentException($"{GetType().Name}.{option} is empty; set it to the name of an input column.", option);
    }

    /// <summary>Throws if an output column name is empty or two outputs share a name (one would hide the other).</summary>
    private protected static void RequireDistinctOutputs(params (string Option, string Name)[] outputs)
    {
        foreach (var (option, name) in outputs)
            if (string.IsNullOrEmpty(name)) throw new ArgumentException($"{option} must not be empty.", option);
        foreach (var clash in outputs.GroupBy(o => o.Name).Where(g => g.Count() > 1))
            throw new ArgumentException($"{string.Join(" and ", clash.Select(o => o.Option))} are all '{clash.Key}': each output column needs its own name.",
                                        clash.First().Option);
    }

    /// <summary>Throws if <paramref name="ok"/> is false, naming the option, its value and the rule.</summary>
    private protected void Check(bool ok, string name, object value, string rule)
    {
        if (!ok) throw new ArgumentOutOfRangeException(name, value, $"{GetType().Name}.{name} must be {rule}; got {value}.");
    }
}

/// <summary>One epoch's report from a MambaML trainer.</summary>
/// <param name="Epoch">The epoch just finished, from 1.</param>
/// <param name="NumberOfEpochs">The most epochs this fit will run.</param>
/// <param name="TrainingLoss">Mean training objective over the epoch's batches: the loss the optimiser minimises (with a
/// separately trained n-gram or convolution head, that head's own loss plus the whole model's).</param>
/// <param name="ValidationLoss">Mean loss of the model's predictions on the validation set, when one was given (what early
/// stopping compares). Both losses are the task's own: cross-entropy for classification; for regression, the squared error of
/// labels standardised with the training labels' mean and standard deviation (times their variance, it is the mean squared error
/// that <c>Regression.Evaluate</c> reports); for forecasting, the squared error in each channel's units (a power of ten near
/// its training deviation; 1 for z-scored data).</param>
/// <param name="IsBest">Whether this epoch has the best validation loss so far (always true without a validation set).</param>
/// <param name="LearningRate">Learning rate at the end of the epoch.</param>
/// <param name="Elapsed">Time since this network's training started.</param>
/// <param name="EstimatedRemaining">Estimated time for the remaining epochs, of this network and of the ensemble members still to
/// train after it (at most; early stopping may end them sooner).</param>
/// <param name="Member">Which ensemble member this is, from 1, for trainers that train members one after another (the
/// forecaster); 1 otherwise.</param>
/// <param name="NumberOfMembers">Members trained one after another in this fit; 1 for a single network, and for trainers that
/// train an ensemble's members side by side.</param>
public sealed record MambaTrainingProgress(int Epoch, int NumberOfEpochs, double TrainingLoss, double? ValidationLoss, bool IsBest,
                                           double LearningRate, TimeSpan Elapsed, TimeSpan EstimatedRemaining, int Member = 1, int NumberOfMembers = 1)
{
    /// <summary>One line: epoch, losses, learning rate, elapsed time and ETA.</summary>
    public override string ToString() =>
        $"epoch {Epoch}/{NumberOfEpochs}: train loss {TrainingLoss:G5}" +
        (ValidationLoss is { } v ? $", validation loss {v:G5}{(IsBest ? " (best)" : "")}" : "") +
        $", lr {LearningRate:G3}, elapsed {Duration(Elapsed, tenths: true)}, ETA {Duration(EstimatedRemaining, tenths: false)}";

    // hh:mm:ss with whole days in front ("1.06:00:00"): TimeSpan's hh wraps at 24 hours.
    private static string Duration(TimeSpan span, bool tenths) =>
        (span.Days > 0 ? $"{span.Days}." : "") + span.ToString(tenths ? @"hh\:mm\:ss\.f" : @"hh\:mm\:ss");
}
