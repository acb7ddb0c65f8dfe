using MambaML.Model;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.MLNet;

/// <summary>
/// Trains a Mamba forecaster: from windows of past values (feature column) and the values that followed (label column) it learns
/// to predict the next <see cref="MambaForecastingOptions.Horizon"/> steps. Create it with
/// <c>mlContext.Forecasting.ForecastByMamba(...)</c>; build windows with <see cref="TimeSeriesWindows"/>.
/// </summary>
public sealed class MambaForecastingEstimator : IEstimator<MambaForecastingTransformer>
{
    private readonly IHostEnvironment _env;
    private readonly MambaForecastingOptions _options;

    internal MambaForecastingEstimator(IHostEnvironment env, MambaForecastingOptions options)
    {
        _env = env ?? throw new ArgumentNullException(nameof(env));
        _options = options ?? throw new ArgumentNullException(nameof(options));
        _options.Validate();
    }

    /// <summary>Trains on <paramref name="input"/> and returns the fitted transformer.</summary>
    public MambaForecastingTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        _options.Validate();   // again: the options object may have changed since this estimator was made
        DefaultDtype.RequireFloat32(nameof(MambaForecastingEstimator));
        MambaRegistration.Register(_env);
        var o = _options;
        var arch = new ForecastArchitecture
        {
            Lookback = o.Lookback, Horizon = o.Horizon, Channels = o.Channels, ChannelIndependent = o.ChannelIndependent,
            InstanceNormalization = o.InstanceNormalization, LinearSkip = o.LinearSkip, PatchLength = o.PatchLength,
            EnsembleSize = o.EnsembleSize, CycleLength = o.CycleLength, CycleIndexColumnName = o.CycleIndexColumnName, Mamba = o.BuildConfig(), FeatureColumnName = o.FeatureColumnName,
            OutputColumnName = o.OutputColumnName, PredictionBatchSize = o.PredictionBatchSize,
        };
        var train = CreateReader(input.Schema);
        var valid = ValidationSetReader.Create(o.ValidationSet, CreateReader);
        var device = DevicePolicy.Choose(_env);
        int seed = o.Seed ?? MLNetInternals.Seed(_env) ?? 0;
        var (scales, offsets) = ChannelScales.Of(train.ReadAll(input, o.CancellationToken).Select(e => e.Values), o.Channels);
        // RevIN removes each window's level itself; without it the offsets are stored even when all 0, which marks the model as
        // one that reads windows in its channels' units (those saved before format 4 read them as they were).
        arch = arch with { ChannelScales = scales, ChannelOffsets = o.InstanceNormalization ? null : offsets ?? new double[o.Channels] };

        // Ensemble members train one after another, each as a single network with its own seed (initialisation and shuffling)
        // and early stopping. The first member keeps the seed: it is the single model of that seed. The fitted start (cycle,
        // linear skip) does not depend on the seed, so it is fitted once, on the first member, and copied to the others.
        using var scope = NewDisposeScope();   // the fit's own: a scope the caller has open must not own the model's tensors
        var members = new List<ForecastNetwork>();
        try
        {
            for (int k = 0; k < o.EnsembleSize; k++)
            {
                var network = new ForecastNetwork(arch with { EnsembleSize = 1 }, MambaTrainerOptions.MemberSeed(seed, k));
                members.Add(network);
                network.to(device);
            }
            var first = members[0];
            if (o.CycleLength > 0)
                first.FitCycle(train.ReadAll(input, o.CancellationToken).Chunk(o.BatchSize).Select(batch =>
                    (ForecastBatches.Windows(batch, arch, device), ForecastBatches.CycleIndices(batch, arch, device)!)));
            if (o.FitLinearSkip)
                first.FitLinearSkip(train.ReadAll(input, o.CancellationToken).Chunk(o.BatchSize).Select(batch =>
                    (ForecastBatches.Windows(batch, arch, device), ForecastBatches.Targets(batch, arch, device), ForecastBatches.CycleIndices(batch, arch, device))));
            foreach (var member in members.Skip(1)) member.CopyFittedStart(first, o.FitLinearSkip);
            for (int k = 0; k < o.EnsembleSize; k++)
            {
                var network = members[k];
                string name = o.EnsembleSize == 1 ? nameof(MambaForecastingEstimator) : $"{nameof(MambaForecastingEstimator)} member {k + 1}/{o.EnsembleSize}";
                new TrainingLoop(_env, o, name, k + 1, o.EnsembleSize).Run(network, input, train, valid,
                    batch => network.Loss(ForecastBatches.Windows(batch, arch, device), ForecastBatches.Targets(batch, arch, device), ForecastBatches.CycleIndices(batch, arch, device)),
                    (int)MambaTrainerOptions.MemberSeed(seed, k), validateStart: o.FitLinearSkip);
            }
            var forecaster = ForecastNetwork.Ensemble(members);
            if (o.PredictsIntervals) arch = WithIntervals(arch, forecaster, input, train, valid, device);
            return new MambaForecastingTransformer(arch, forecaster.KeepOutOfDisposeScopes(), device);
        }
        catch
        {
            foreach (var member in members) member.Dispose();
            throw;
        }
    }

    // The architecture with the prediction intervals' quantiles, calibrated on the validation set if there is one (split
    // conformal), else on the training windows.
    private ForecastArchitecture WithIntervals(ForecastArchitecture arch, ForecastNetwork forecaster, IDataView input, ExampleReader train,
                                               (IDataView Data, ExampleReader Reader)? valid, Device device)
    {
        var o = _options;
        var (data, reader, source) = valid is { } v ? (v.Data, v.Reader, "validation set") : (input, train, "training data");
        var windows = reader.ReadAll(data, o.CancellationToken);
        if (valid is not null) windows = ValidationSetReader.Read(windows);
        var (quantiles, count, tooFew) = PredictionIntervals.Calibrate(forecaster, arch, windows, TrainingLoop.CountRows(data, reader), source, o.ConfidenceLevel,
                                                               device, o.BatchSize, o.CancellationToken);
        TrainingLoop.Log(_env, nameof(MambaForecastingEstimator),
            $"prediction intervals at {o.ConfidenceLevel:P1} calibrated on {count} windows of the {source}" +
            (valid is null ? " (no ValidationSet: errors on the training windows are smaller than on new data, so the intervals are too narrow)" : "") +
            (tooFew ? $"; {count} windows are too few for that level (it needs at least {Math.Ceiling(o.ConfidenceLevel / (1 - (double)o.ConfidenceLevel))}), so the bounds take the largest error and may hold less." : "."));
        return arch with
        {
            ConfidenceLowerBoundColumnName = o.ConfidenceLowerBoundColumnName, ConfidenceUpperBoundColumnName = o.ConfidenceUpperBoundColumnName,
            ConfidenceLevel = o.ConfidenceLevel, IntervalQuantiles = quantiles,
        };
    }

    /// <summary>Checks the input columns and declares the <see cref="MambaForecastingOptions.OutputColumnName"/> vector (and the
    /// prediction bounds', when asked for).</summary>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        EstimatorSchema.RequireSingleVector(inputSchema, _options.FeatureColumnName, nameof(MambaForecastingOptions.FeatureColumnName));
        EstimatorSchema.RequireSingleVector(inputSchema, _options.LabelColumnName, nameof(MambaForecastingOptions.LabelColumnName));
        if (_options.CycleLength > 0) EstimatorSchema.RequireNumericScalar(inputSchema, _options.CycleIndexColumnName, nameof(MambaForecastingOptions.CycleIndexColumnName));
        var vector = new VectorDataViewType(NumberDataViewType.Single, _options.Horizon * _options.Channels);
        return EstimatorSchema.Append(inputSchema, b =>
        {
            b.AddColumn(_options.OutputColumnName, vector);
            if (!_options.PredictsIntervals) return;
            b.AddColumn(_options.ConfidenceLowerBoundColumnName!, vector);
            b.AddColumn(_options.ConfidenceUpperBoundColumnName!, vector);
        });
    }

    private ExampleReader CreateReader(DataViewSchema schema) => new(
        new NumericSequenceReader(schema, _options.FeatureColumnName, nameof(MambaForecastingOptions.FeatureColumnName), _options.Channels, _options.Lookback),
        new VectorTargetReader(schema, _options.LabelColumnName, nameof(MambaForecastingOptions.LabelColumnName), _options.Horizon * _options.Channels,
            $"Horizon ({_options.Horizon}) × Channels ({_options.Channels})"),
        _options.CycleLength > 0 ? new CycleIndexReader(schema, _options.CycleIndexColumnName, nameof(MambaForecastingOptions.CycleIndexColumnName)) : null);
}
