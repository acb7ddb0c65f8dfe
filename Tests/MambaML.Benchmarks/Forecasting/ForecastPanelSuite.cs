using System.Diagnostics;
using MambaML.MLNet;
using Microsoft.Data.Analysis;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace MambaML.Benchmarks.Forecasting;

/// <summary>
/// A table of many series (a panel) against the same series side by side: ETT's channels as the series of one long table (one row
/// per series and time step, sorted by time, keyed by the channel's name) windowed with <see cref="TimeSeriesWindows"/>' series
/// key, and as the 7 columns of the wide table (channel-independent). Same split, settings and seed; test MSE/MAE on z-scored data,
/// every test window, with repeat-last-value beside. The two should score alike: a channel-independent model forecasts each
/// channel as its own series, which is what the panel's global model does.
/// </summary>
internal sealed class ForecastPanelSuite : IBenchmarkSuite
{
    public string Name => "forecast-panel";
    public string Description => "ETT's channels as one long table of series (series key) vs the wide table (needs ../shared/data/ett)";

    public IReadOnlyDictionary<string, object> Run(BenchmarkOptions options)
    {
        var headline = new Dictionary<string, object>();
        if (options.DataDirectory is null || !File.Exists(Path.Combine(options.DataDirectory, "ett", "ETTh1.csv")))
        {
            Console.WriteLine("forecast-panel: skipped — the shared data folder (../shared/data/ett) is absent.");
            headline["skipped"] = "no data";
            return headline;
        }
        var args = new ArgParser(options.Args);
        int horizon = args.Int("--horizon", 96), lookback = ForecastEttSuite.Lookback;
        var layouts = args.String("--layouts", "wide,long").Split(',');
        // --scale-buffer 0: the long table's shuffle buffer keeps the default size instead of holding as many series-windows.
        bool scaleBuffer = args.Int("--scale-buffer", 1) != 0;
        foreach (var file in args.String("--datasets", "ETTh1").Split(','))
        {
            var data = EttDataset.Load(Path.Combine(options.DataDirectory, "ett", file + ".csv"));
            int m = data.RowsPerMonth;
            var ml = new MLContext(seed: 0);
            var wide = TimeSeriesWindows.Create(WideTable(data), data.Channels, lookback, horizon);
            var panel = TimeSeriesWindows.Create(LongTable(data), new[] { "Value" }, lookback, horizon, seriesKeyColumn: "Series");
            Console.WriteLine($"## {file}, input {lookback}, horizon {horizon}: {data.ChannelCount} series, train rows [0, {12 * m}), " +
                              $"validation [{12 * m}, {16 * m}), test [{16 * m}, {20 * m}) of each");
            Console.WriteLine();
            Console.WriteLine("| layout | model | MSE | MAE | test values | fit s |");
            Console.WriteLine("|---|---|---|---|---|---|");
            double? repeatLastMse = null;   // the same for both layouts: printed once
            foreach (var (layout, windows, channels) in new[] { ("wide", wide, data.ChannelCount), ("long", panel, 1) })
            {
                if (!layouts.Contains(layout)) continue;
                var mamba = ForecastEttSuite.MambaOptions(options, data.StepsPerDay);
                mamba.Lookback = lookback; mamba.Horizon = horizon; mamba.Channels = channels;
                // A batch, and the shuffle buffer, of the long table's windows hold as many series-windows as the wide table's.
                mamba.BatchSize *= data.ChannelCount / channels;
                if (scaleBuffer) mamba.ShuffleBufferSize *= data.ChannelCount / channels;
                mamba.ValidationSet = windows.GetWindows(12 * m, 16 * m);
                var clock = Stopwatch.StartNew();
                using var model = ml.Forecasting.ForecastByMamba(mamba).Fit(windows.GetWindows(0, 12 * m));
                double fit = clock.Elapsed.TotalSeconds;
                var scores = ml.Forecasting.Evaluate(model.Transform(windows.GetWindows(16 * m, 20 * m)), channels, featureColumnName: TimeSeriesWindows.FeaturesColumnName);
                if (repeatLastMse is null)
                    Console.WriteLine($"| either | repeat last value | {scores.RepeatLastMeanSquaredError:F4} | {scores.RepeatLastMeanAbsoluteError:F4} | {scores.Values} | 0 |");
                repeatLastMse = scores.RepeatLastMeanSquaredError;
                Console.WriteLine($"| {(channels == 1 ? "long, series key" : layout)} | Mamba (ForecastByMamba), shuffle buffer {mamba.ShuffleBufferSize:N0} | " +
                                  $"{scores.MeanSquaredError:F4} | {scores.MeanAbsoluteError:F4} | {scores.Values} | {fit:F1} |");
                headline[$"{file}_{horizon}_{layout}_mse"] = Math.Round(scores.MeanSquaredError, 4);
            }
            if (repeatLastMse is { } last) headline[$"{file}_{horizon}_repeatlast_mse"] = Math.Round(last, 4);
            Console.WriteLine();
        }
        return headline;
    }

    private static DataFrame WideTable(EttDataset data) =>
        new DataFrame(data.Channels.Select((name, c) =>
            (DataFrameColumn)new SingleDataFrameColumn(name, Enumerable.Range(0, data.Rows).Select(r => data.Values[r, c]))));

    // One row per (time step, series), sorted by time: the layout of a long table exported from a database.
    private static DataFrame LongTable(EttDataset data)
    {
        var series = new StringDataFrameColumn("Series");
        var value = new SingleDataFrameColumn("Value");
        for (int r = 0; r < data.Rows; r++)
            for (int c = 0; c < data.ChannelCount; c++)
            {
                series.Append(data.Channels[c]);
                value.Append(data.Values[r, c]);
            }
        return new DataFrame(series, value);
    }
}
