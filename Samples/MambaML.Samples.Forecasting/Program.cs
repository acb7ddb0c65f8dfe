// MambaML forecasting sample: fit a Mamba forecaster, evaluate it against a repeat-last-value baseline, save it, load it in a
// fresh MLContext, predict, and plot forecast vs. actual.
// From the repository root:
//   ./build.sh demo                                         embedded synthetic hourly series (seconds on 2 cores)
//   ./build.sh demo --data ../shared/data/ett/ETTh1.csv     real data: every numeric column, ETT split 12/4/4 months
// Options: --targets OT,HUFL  --lookback 96  --horizon 24  --epochs 8  --out DIR  --gpu (train on CUDA device 0)
using MambaML.MLNet;
using MambaML.Samples.Forecasting;
using Microsoft.ML;
using Microsoft.ML.Data;

var settings = Settings.Parse(args);
if (settings.DataPath is not null && !File.Exists(settings.DataPath))
{
    // The README's --data paths point into the project's shared data folder, which is not part of the repository.
    Console.Error.WriteLine($"--data: '{settings.DataPath}' does not exist. Pass the path of your own copy of the file (README, Samples, says where each data set comes from).");
    return 1;
}
var mlContext = new MLContext(seed: 0);
if (settings.Gpu) { mlContext.GpuDeviceId = 0; mlContext.FallbackToCpu = false; }

// 1. A time-ordered table: a CSV (first column = timestamp) or the embedded series.
var (table, timestampColumn, numericColumns) = settings.DataPath is null
    ? SyntheticSeries.Load(mlContext)
    : CsvTable.Load(mlContext, settings.DataPath);
string[] targets = settings.Targets ?? numericColumns;
long rows = table.GetRowCount() ?? table.GetColumn<float>(targets[0]).LongCount();
// ETT's split (12/4/4 months of hourly rows) for ETT files, 70/10/20 otherwise.
bool isEtt = settings.DataPath is not null && Path.GetFileName(settings.DataPath).StartsWith("ETTh", StringComparison.OrdinalIgnoreCase);
long trainEnd = isEtt ? 12 * 30 * 24 : (long)(rows * 0.7);
long validEnd = isEtt ? 16 * 30 * 24 : (long)(rows * 0.8);
long testEnd = isEtt ? 20 * 30 * 24 : rows;
Console.WriteLine($"Data: {settings.DataPath ?? "embedded synthetic series"}, {rows} rows, targets {string.Join(",", targets)}; " +
                  $"train rows [0, {trainEnd}), validation [{trainEnd}, {validEnd}), test [{validEnd}, {testEnd}).");
if (validEnd - trainEnd < settings.Horizon || testEnd - validEnd < settings.Horizon || trainEnd < settings.Lookback + settings.Horizon)
{
    Console.Error.WriteLine($"The series is too short for lookback {settings.Lookback} and horizon {settings.Horizon}: each split needs whole windows. " +
                            "Pass a smaller --lookback and --horizon (e.g. --lookback 24 --horizon 12 for 144 monthly rows).");
    return 1;
}

// 2. z-score every target with statistics of the training rows only (a stock ML.NET transform).
var scaler = mlContext.Transforms.NormalizeMeanVariance(targets.Select(t => new InputOutputColumnPair(t)).ToArray(), fixZero: false)
    .Fit(mlContext.Data.TakeRows(table, trainEnd));
var scaled = scaler.Transform(table);

// 3. Sliding windows: lookback past rows → horizon future rows. Validation/test windows may look back into the previous split.
var windows = TimeSeriesWindows.Create(scaled, targets, settings.Lookback, settings.Horizon, timestampColumn: timestampColumn);
var train = windows.GetWindows(0, trainEnd);
var valid = windows.GetWindows(trainEnd, validEnd);
var test = windows.GetWindows(validEnd, testEnd);

// 4. Fit.
var options = new MambaForecastingOptions
{
    Lookback = settings.Lookback, Horizon = settings.Horizon, Channels = targets.Length, ChannelIndependent = true,
    PatchLength = 8, ModelDimension = 32, NumberOfLayers = 2, StateSize = 16,
    NumberOfEpochs = settings.Epochs, BatchSize = 32, LearningRate = 2e-3, WeightDecay = 0.01,
    ValidationSet = valid, EarlyStoppingPatience = 3, Seed = 42,
    // 90% prediction intervals, calibrated on the validation windows (split conformal).
    ConfidenceLowerBoundColumnName = "Lower", ConfidenceUpperBoundColumnName = "Upper", ConfidenceLevel = 0.9f,
    NumberOfThreads = 1,   // small models train fastest on one thread (and stay fast on a busy machine)
    ProgressCallback = p => Console.WriteLine("  " + p),
};
Console.WriteLine($"Training ForecastByMamba (lookback {options.Lookback}, horizon {options.Horizon}, {targets.Length} channel(s)):");
var model = mlContext.Forecasting.ForecastByMamba(options).Fit(train);

// 5. Evaluate on the test windows (z-scored units) against repeating the last observed value.
ForecastMetrics Score(ITransformer forecaster) => mlContext.Forecasting.Evaluate(forecaster.Transform(test), targets.Length,
    lowerBoundColumnName: "Lower", upperBoundColumnName: "Upper", featureColumnName: "Features");
var metrics = Score(model);
Console.WriteLine($"Test ({metrics.Windows} windows, z-scored units; the model kept is the best epoch on validation): Mamba MSE {metrics.MeanSquaredError:F4}, " +
                  $"MAE {metrics.MeanAbsoluteError:F4} | repeat-last-value MSE {metrics.RepeatLastMeanSquaredError:F4}, MAE {metrics.RepeatLastMeanAbsoluteError:F4}");
Console.WriteLine($"MAE by step ahead: " + string.Join(" ", metrics.MeanAbsoluteErrorByStep.Select(e => e.ToString("F3"))));
Console.WriteLine($"{options.ConfidenceLevel:P0} prediction intervals held {metrics.IntervalCoverage:P1} of the {metrics.Values} test values (mean width {metrics.MeanIntervalWidth:F2}).");

// 6. Save, then load in a fresh MLContext (as another process would) and predict with a PredictionEngine.
Directory.CreateDirectory(settings.OutputDirectory);
string modelPath = Path.Combine(settings.OutputDirectory, "mamba-forecaster.zip");
mlContext.Model.Save(model, train.Schema, modelPath);
model.Dispose();
var freshContext = new MLContext().RegisterMambaML();
var loaded = freshContext.Model.Load(modelPath, out _);
var reloadedMetrics = Score(loaded);
Console.WriteLine($"Saved {modelPath} ({new FileInfo(modelPath).Length / 1024} KiB); reloaded model's test MSE {reloadedMetrics.MeanSquaredError:F4} " +
                  (reloadedMetrics.MeanSquaredError == metrics.MeanSquaredError ? "(identical)" : "(DIFFERENT)"));

// Forecast past the end of the table from its newest window.
var engine = freshContext.Model.CreatePredictionEngine<WindowInput, ForecastOutput>(loaded,
    new PredictionEngineOptions { OwnsTransformer = false, InputSchemaDefinition = WindowInput.Schema(options.Lookback * targets.Length) });
var latest = Vectors.Read(windows.GetLatestWindow(), "Features").Single();
var future = engine.Predict(new WindowInput { Features = latest }).Forecast;
var futurePoints = windows.ToTimeSeries(loaded.Transform(windows.GetLatestWindow()), "Forecast", "Lower", "Upper").Where(p => p.Series == targets[^1]).ToList();
Console.WriteLine($"Next {options.Horizon} steps of '{targets[^1]}' (z-scored) from {futurePoints.First().Timestamp:yyyy-MM-dd HH:mm}: " +
                  string.Join(" ", Enumerable.Range(0, options.Horizon).Select(h => future[h * targets.Length + targets.Length - 1].ToString("F2"))));
Console.WriteLine($"  with {options.ConfidenceLevel:P0} intervals: " + string.Join(" ", futurePoints.Select(p => $"[{p.LowerBound:F2}, {p.UpperBound:F2}]")));

// 7. Plot the last test window of the last target: history, actual future, forecast and its prediction interval.
string plotPath = Path.Combine(settings.OutputDirectory, "forecast.png");
ForecastPlot.Save(plotPath, windows.ToTimeSeries(loaded.Transform(test), "Forecast", "Lower", "Upper"), targets[^1], options.Lookback, scaled, timestampColumn);
Console.WriteLine($"Plot: {plotPath}");
(loaded as IDisposable)?.Dispose();
return 0;

/// <summary>A window as the PredictionEngine sees it (the vector size is set at run time through a schema definition).</summary>
public sealed class WindowInput
{
    /// <summary>lookback × channels past values, time-major.</summary>
    public float[] Features { get; set; } = Array.Empty<float>();

    /// <summary>Declares <see cref="Features"/> as a vector of <paramref name="size"/> values.</summary>
    public static SchemaDefinition Schema(int size)
    {
        var schema = SchemaDefinition.Create(typeof(WindowInput));
        schema[nameof(Features)].ColumnType = new VectorDataViewType(NumberDataViewType.Single, size);
        return schema;
    }
}

/// <summary>The forecaster's output.</summary>
public sealed class ForecastOutput
{
    /// <summary>horizon × channels forecast values, time-major.</summary>
    public float[] Forecast { get; set; } = Array.Empty<float>();
}
