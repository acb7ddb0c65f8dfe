using MambaML.MLNet;
using Microsoft.ML;
using Microsoft.ML.Data;
using static TorchSharp.torch;

namespace MambaML.Benchmarks.Forecasting;

/// <summary>
/// One ETT window as an ML.NET row: the past as Features, the future as Label (time-major, channels interleaved), and the row
/// index of its first step as WindowStart (the time index a forecaster with a cycle reads, as TimeSeriesWindows provides it).
/// </summary>
internal sealed class EttWindowRow
{
    public float[] Features { get; set; } = Array.Empty<float>();
    public float[] Label { get; set; } = Array.Empty<float>();
    public long WindowStart { get; set; }
}

/// <summary>The Mamba forecaster trained and applied through the public ML.NET API, as a user would.</summary>
internal sealed class MambaEttForecaster : IWindowForecaster
{
    private readonly MLContext _ml;
    private readonly ITransformer _model;
    private readonly int _lookback, _horizon, _channels;
    private readonly float _intervalLevel;

    public string Name { get; }

    /// <param name="trainStride">Train (and validate) on every k-th window only, to fit a CPU time budget; 1 uses them all.</param>
    /// <param name="gpuDeviceId">CUDA device to train and predict on (ML.NET's MLContext.GpuDeviceId, no CPU fallback); null: CPU.</param>
    public MambaEttForecaster(EttDataset data, int lookback, int horizon, MambaForecastingOptions options, string name, int trainStride = 1, int? gpuDeviceId = null)
    {
        Name = name;
        _lookback = lookback; _horizon = horizon; _channels = data.ChannelCount;
        _ml = new MLContext(options.Seed) { GpuDeviceId = gpuDeviceId, FallbackToCpu = false };
        // Per-epoch progress (train/validation loss, ETA) comes through ML.NET's log; show it on stderr so stdout stays the table.
        _ml.Log += (_, e) => { if (e.Source.Contains("Mamba", StringComparison.Ordinal)) Console.Error.WriteLine("  " + e.Message); };
        options.Lookback = lookback; options.Horizon = horizon; options.Channels = _channels;
        options.ValidationSet = Load(data, EttSplit.Validation, trainStride);
        _intervalLevel = options.ConfidenceLowerBoundColumnName is null ? 0 : options.ConfidenceLevel;
        _model = _ml.Forecasting.ForecastByMamba(options).Fit(Load(data, EttSplit.Train, trainStride));
    }

    private IDataView Load(EttDataset data, EttSplit split, int stride)
    {
        if (stride < 1) throw new ArgumentOutOfRangeException(nameof(stride), stride, "The window stride must be at least 1.");
        int n = (data.WindowCount(split, _lookback, _horizon) + stride - 1) / stride, c = data.ChannelCount;
        var rows = new EttWindowRow[n];
        for (int i = 0; i < n; i++)
        {
            rows[i] = new EttWindowRow { Features = new float[_lookback * c], Label = new float[_horizon * c], WindowStart = data.WindowStart(split, i * stride, _lookback) };
            data.Window(split, i * stride, _lookback, _horizon, rows[i].Features, rows[i].Label);
        }
        return _ml.Data.LoadFromEnumerable(rows, Schema(c));
    }

    private SchemaDefinition Schema(int channels)
    {
        var schema = SchemaDefinition.Create(typeof(EttWindowRow));
        schema[nameof(EttWindowRow.Features)].ColumnType = new VectorDataViewType(NumberDataViewType.Single, _lookback * channels);
        schema[nameof(EttWindowRow.Label)].ColumnType = new VectorDataViewType(NumberDataViewType.Single, _horizon * channels);
        return schema;
    }

    public Tensor Predict(Tensor pasts, Tensor starts) => Predict(pasts, starts, "Forecast")[0];

    /// <summary>Whether the model was trained with prediction intervals (the options' bound columns set).</summary>
    public bool PredictsIntervals => _intervalLevel > 0;

    /// <summary>The prediction intervals' level (0 without intervals).</summary>
    public float IntervalLevel => _intervalLevel;

    internal const string IntervalLower = "Lower", IntervalUpper = "Upper";

    /// <summary>The forecasts' MSE and MAE against <paramref name="futures"/>, and, with intervals, the share of the values within
    /// them and their mean width: one pass of the model over the windows.</summary>
    public (double Mse, double Mae, double? Coverage, double? MeanWidth) Score(Tensor pasts, Tensor starts, Tensor futures)
    {
        if (!PredictsIntervals)
        {
            var (mse, mae) = EttWindows.Score(Predict(pasts, starts), futures);
            return (mse, mae, null, null);
        }
        var outputs = Predict(pasts, starts, "Forecast", IntervalLower, IntervalUpper);
        var (m, a) = EttWindows.Score(outputs[0], futures);
        using var inside = futures.ge(outputs[1]).logical_and(futures.le(outputs[2]));
        using var width = outputs[2] - outputs[1];
        return (m, a, inside.to(ScalarType.Float64).mean().item<double>(), width.to(ScalarType.Float64).mean().item<double>());
    }

    // The model's output columns over the windows, each (windows, horizon, channels), from one Transform read in one pass.
    private Tensor[] Predict(Tensor pasts, Tensor starts, params string[] columns)
    {
        long n = pasts.shape[0];
        var scored = Transform(pasts, starts);
        var values = columns.Select(_ => new List<float>()).ToArray();
        var schemaColumns = columns.Select(c => scored.Schema[c]).ToArray();
        using var cursor = scored.GetRowCursor(schemaColumns);
        var getters = schemaColumns.Select(c => cursor.GetGetter<VBuffer<float>>(c)).ToArray();
        VBuffer<float> buffer = default;
        while (cursor.MoveNext())
            for (int k = 0; k < columns.Length; k++)
            {
                getters[k](ref buffer);
                values[k].AddRange(buffer.DenseValues());
            }
        return values.Select(v => tensor(v.ToArray()).view(n, _horizon, _channels)).ToArray();
    }

    private IDataView Transform(Tensor pasts, Tensor starts)
    {
        long n = pasts.shape[0];
        var flat = pasts.reshape(n, -1).data<float>().ToArray();
        var first = starts.data<long>().ToArray();
        int w = _lookback * _channels;
        var rows = Enumerable.Range(0, (int)n).Select(i => new EttWindowRow
        {
            Features = flat.AsSpan(i * w, w).ToArray(), Label = new float[_horizon * _channels], WindowStart = first[i],
        });
        return _model.Transform(_ml.Data.LoadFromEnumerable(rows, Schema(_channels)));
    }


}
