using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.MLNet;

/// <summary>
/// A fitted Mamba forecaster: adds <see cref="OutputColumnName"/>, the next <see cref="Horizon"/> × <see cref="Channels"/> values
/// (time-major) predicted from the feature column's past <see cref="Lookback"/> × <see cref="Channels"/> values.
/// Save with <c>mlContext.Model.Save</c>; load with <c>mlContext.RegisterMambaML()</c> then <c>mlContext.Model.Load</c>.
/// </summary>
public sealed class MambaForecastingTransformer : MambaTransformerBase
{
    internal const string LoaderSignature = "MambaMLForecaster";
    private readonly ForecastArchitecture _arch;
    private readonly ForecastNetwork _network;
    private readonly Device _device;

    internal MambaForecastingTransformer(ForecastArchitecture arch, ForecastNetwork network, Device device)
    {
        _arch = arch;
        _network = network;
        _device = device;
        _network.eval();
        // A row's raw output is the forecast, then (with intervals) its lower and upper bounds, each horizon × channels long.
        int width = arch.Horizon * arch.Channels;
        var names = arch.IntervalQuantiles is null
            ? new[] { arch.OutputColumnName }
            : new[] { arch.OutputColumnName, arch.ConfidenceLowerBoundColumnName!, arch.ConfidenceUpperBoundColumnName! };
        OutputColumns = names.Select((name, part) => (OutputColumn)new OutputColumn<VBuffer<float>>(name, new VectorDataViewType(NumberDataViewType.Single, width),
            (float[] output, ref VBuffer<float> value) =>
            {
                var editor = VBufferEditor.Create(ref value, width);
                output.AsSpan(part * width, width).CopyTo(editor.Values);
                value = editor.Commit();
            })).ToArray();
    }

    /// <summary>Past time steps the model reads.</summary>
    public int Lookback => _arch.Lookback;
    /// <summary>Future time steps it predicts.</summary>
    public int Horizon => _arch.Horizon;
    /// <summary>Series per time step.</summary>
    public int Channels => _arch.Channels;
    /// <summary>Input column name.</summary>
    public string FeatureColumnName => _arch.FeatureColumnName;
    /// <summary>Length of the seasonal cycle the model removes and adds back (0 = none).</summary>
    public int CycleLength => _arch.CycleLength;
    /// <summary>Input column with each window's time index, read when <see cref="CycleLength"/> is set.</summary>
    public string CycleIndexColumnName => _arch.CycleIndexColumnName;
    /// <summary>Output column name.</summary>
    public string OutputColumnName => _arch.OutputColumnName;
    /// <summary>Output column of the lower prediction bounds; null without prediction intervals.</summary>
    public string? ConfidenceLowerBoundColumnName => _arch.ConfidenceLowerBoundColumnName;
    /// <summary>Output column of the upper prediction bounds; null without prediction intervals.</summary>
    public string? ConfidenceUpperBoundColumnName => _arch.ConfidenceUpperBoundColumnName;
    /// <summary>Share of future values the prediction intervals were calibrated to hold (0 without intervals).</summary>
    public float ConfidenceLevel => _arch.ConfidenceLevel;
    /// <inheritdoc/>
    public override Device Device => _device;

    private protected override IReadOnlyList<OutputColumn> OutputColumns { get; }
    private protected override int? SavedPredictionBatchSize => _arch.PredictionBatchSize;
    private protected override int CpuPredictionBatchSize => 256;
    // Each channel is its own series when channel-independent.
    internal override long ActivationsPerRow(SequenceExample example) =>
        (long)Math.Ceiling(_arch.Lookback / (double)_arch.PatchLength) * _arch.Mamba.DInner * (_arch.ChannelIndependent ? _arch.Channels : 1);

    private protected override ExampleReader CreateReader(DataViewSchema inputSchema) =>
        new(new NumericSequenceReader(inputSchema, _arch.FeatureColumnName, nameof(MambaForecastingOptions.FeatureColumnName), _arch.Channels, _arch.Lookback),
            cycleIndex: _arch.CycleLength > 0 ? new CycleIndexReader(inputSchema, _arch.CycleIndexColumnName, nameof(MambaForecastingOptions.CycleIndexColumnName)) : null);

    private protected override float[][] Predict(IReadOnlyList<SequenceExample> batch)
    {
        var windows = ForecastBatches.Windows(batch, _arch, _device);
        var forecasts = SplitRows(_network.Predict(windows, ForecastBatches.CycleIndices(batch, _arch, _device)), batch.Count);
        for (int i = 0; i < forecasts.Length; i++)
            if (!forecasts[i].All(float.IsFinite))
                throw new InvalidOperationException(
                    $"A forecast is not finite: its input window's values (largest magnitude {batch[i].Values.Max(Math.Abs):G3}) are too large for " +
                    "float arithmetic. Scale the series down before windowing (e.g. divide by a constant, or z-score it on the training rows).");
        if (_arch.IntervalQuantiles is not { } quantiles) return forecasts;
        // Half-width of value (step, channel) = its quantile × the window's deviation in that channel.
        var deviations = SplitRows(_network.WindowDeviation(windows), batch.Count);
        int channels = _arch.Channels;
        return forecasts.Select((f, i) =>
        {
            var row = new float[3 * f.Length];
            for (int k = 0; k < f.Length; k++)
            {
                float half = quantiles[k] * deviations[i][k % channels];
                (row[k], row[f.Length + k], row[2 * f.Length + k]) = (f[k], f[k] - half, f[k] + half);
            }
            return row;
        }).ToArray();
    }

    private protected override void SaveModel(ModelSaveContext ctx) => ModelFile.Save(ctx, LoaderSignature, _arch, _network);

    private protected override void DisposeNetwork() => _network.Dispose();

    // Called by ML.NET (through the loader registered by RegisterMambaML) with its ModelLoadContext.
    private static MambaForecastingTransformer Create(IHostEnvironment env, object ctx)
    {
        var (arch, network, device) = LoadNetwork<ForecastArchitecture, ForecastNetwork>(env, ctx, LoaderSignature, a => new ForecastNetwork(a, seed: 0));
        bool intervals = arch.IntervalQuantiles is not null;
        if (intervals != (arch.ConfidenceLowerBoundColumnName is not null) || intervals != (arch.ConfidenceUpperBoundColumnName is not null) ||
            arch.IntervalQuantiles is { } quantiles && (quantiles.Length != arch.Horizon * arch.Channels || !quantiles.All(q => q >= 0 && float.IsFinite(q)) ||
                                                        arch.ConfidenceLevel is not (> 0 and < 1)))
        {
            network.Dispose();
            throw new InvalidDataException($"The {LoaderSignature} model's prediction intervals do not fit it: it needs both bound columns named and " +
                                           $"Horizon × Channels = {arch.Horizon * arch.Channels} quantiles, each finite and >= 0, at a level in (0, 1), " +
                                           "or none of these. The file is damaged.");
        }
        return new MambaForecastingTransformer(arch, network, device);
    }
}

/// <summary>Turns examples into the forecaster's tensors.</summary>
internal static class ForecastBatches
{
    /// <summary>(batch, lookback, channels) input windows on <paramref name="device"/>.</summary>
    public static Tensor Windows(IReadOnlyList<SequenceExample> batch, ForecastArchitecture arch, Device device)
    {
        int width = arch.Lookback * arch.Channels;
        var flat = new float[batch.Count * width];
        for (int i = 0; i < batch.Count; i++) batch[i].Values.CopyTo(flat, i * width);
        return InputTensors.FromValues(flat, new long[] { batch.Count, arch.Lookback, arch.Channels }, device);
    }

    /// <summary>(batch) int64 cycle indices on <paramref name="device"/>; null when the model has no cycle.</summary>
    public static Tensor? CycleIndices(IReadOnlyList<SequenceExample> batch, ForecastArchitecture arch, Device device) =>
        arch.CycleLength > 0 ? tensor(batch.Select(example => example.CycleIndex).ToArray()).to(device) : null;

    /// <summary>(batch, horizon, channels) targets on <paramref name="device"/>.</summary>
    public static Tensor Targets(IReadOnlyList<SequenceExample> batch, ForecastArchitecture arch, Device device)
    {
        int width = arch.Horizon * arch.Channels;
        var flat = new float[batch.Count * width];
        for (int i = 0; i < batch.Count; i++) batch[i].Target.CopyTo(flat, i * width);
        return tensor(flat, new long[] { batch.Count, arch.Horizon, arch.Channels }).to(device);
    }
}
