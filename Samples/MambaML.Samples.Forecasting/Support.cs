using System.Globalization;
using MambaML.MLNet;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace MambaML.Samples.Forecasting;

/// <summary>Command-line settings.</summary>
internal sealed record Settings(string? DataPath, string[]? Targets, int Lookback, int Horizon, int Epochs, string OutputDirectory, bool Gpu)
{
    public static Settings Parse(string[] args)
    {
        string? Value(string name)
        {
            int i = Array.IndexOf(args, name);
            if (i < 0) return null;
            if (i + 1 >= args.Length) throw new ArgumentException($"{name} needs a value.");
            return args[i + 1];
        }
        int Int(string name, int fallback) => Value(name) is { } v ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;
        string? data = Value("--data");
        return new Settings(data, Value("--targets")?.Split(','), Int("--lookback", 96), Int("--horizon", 24),
                            Int("--epochs", data is null ? 6 : 8), Value("--out") ?? "forecasting-output",
                            args.Contains("--gpu"));
    }
}

/// <summary>The embedded data set: three months of an hourly series with daily and weekly cycles, a trend and noise.</summary>
internal static class SyntheticSeries
{
    private sealed class Row
    {
        public DateTime Time { get; set; }
        public float Load { get; set; }
        public float Temperature { get; set; }
    }

    public static (IDataView Table, string Timestamp, string[] Targets) Load(MLContext ml)
    {
        var rng = new Random(7);
        var start = new DateTime(2024, 1, 1);
        var rows = Enumerable.Range(0, 2000).Select(t =>
        {
            double daily = Math.Sin(2 * Math.PI * t / 24), weekly = Math.Sin(2 * Math.PI * t / 168);
            double temperature = 12 + 6 * Math.Sin(2 * Math.PI * (t - 6) / 24) + 0.002 * t + rng.NextDouble();
            return new Row
            {
                Time = start.AddHours(t),
                Temperature = (float)temperature,
                Load = (float)(50 + 12 * daily + 6 * weekly + 0.4 * temperature + 2 * (rng.NextDouble() - 0.5)),
            };
        }).ToList();
        return (ml.Data.LoadFromEnumerable(rows), nameof(Row.Time), new[] { nameof(Row.Temperature), nameof(Row.Load) });
    }
}

/// <summary>Loads a CSV whose first column is a timestamp and whose other columns are numbers (fields may be quoted).</summary>
internal static class CsvTable
{
    public static (IDataView Table, string Timestamp, string[] Targets) Load(MLContext ml, string path)
    {
        var header = File.ReadLines(path).First().Split(',').Select(name => name.Trim().Trim('"')).ToArray();
        var columns = header.Select((name, i) => new TextLoader.Column(name, i == 0 ? DataKind.String : DataKind.Single, i)).ToArray();
        var table = ml.Data.LoadFromTextFile(path, columns, separatorChar: ',', hasHeader: true, allowQuoting: true);
        // Cache: windows read the table several times.
        return (ml.Data.Cache(table), header[0], header[1..]);
    }
}

/// <summary>A vector column's rows as arrays.</summary>
internal static class Vectors
{
    public static IEnumerable<float[]> Read(IDataView data, string column)
    {
        using var cursor = data.GetRowCursor(new[] { data.Schema[column] });
        var get = cursor.GetGetter<VBuffer<float>>(data.Schema[column]);
        VBuffer<float> v = default;
        while (cursor.MoveNext()) { get(ref v); yield return v.DenseValues().ToArray(); }
    }
}

/// <summary>Forecast (with its prediction interval) vs. actual for the last test window, with its history, as a PNG.</summary>
internal static class ForecastPlot
{
    public static void Save(string path, IReadOnlyList<ForecastPoint> points, string series, int lookback, IDataView table, string timestampColumn)
    {
        var ofSeries = points.Where(p => p.Series == series).ToList();
        long lastStart = ofSeries.Max(p => p.WindowStart);
        var window = ofSeries.Where(p => p.WindowStart == lastStart).OrderBy(p => p.Step).ToList();
        var history = History(table, series, timestampColumn, lastStart, lookback);

        var plot = new ScottPlot.Plot();
        var times = window.Select(p => p.Timestamp!.Value.ToOADate()).ToArray();
        var band = plot.Add.FillY(times, window.Select(p => (double)p.LowerBound!.Value).ToArray(), window.Select(p => (double)p.UpperBound!.Value).ToArray());
        band.LegendText = "prediction interval";
        band.FillColor = ScottPlot.Colors.Red.WithAlpha(0.15);
        band.LineWidth = 0;
        var past = plot.Add.Scatter(history.Select(h => h.Time.ToOADate()).ToArray(), history.Select(h => (double)h.Value).ToArray());
        past.LegendText = "history";
        var actual = plot.Add.Scatter(times, window.Select(p => (double)p.Actual!.Value).ToArray());
        actual.LegendText = "actual";
        var forecast = plot.Add.Scatter(times, window.Select(p => (double)p.Forecast).ToArray());
        forecast.LegendText = "Mamba forecast";
        forecast.LineWidth = 2;
        plot.Axes.DateTimeTicksBottom();
        plot.Title($"{series}: forecast vs. actual (z-scored), last test window");
        plot.ShowLegend(ScottPlot.Alignment.UpperLeft);
        plot.SavePng(path, 1000, 450);
    }

    private static List<(DateTime Time, float Value)> History(IDataView table, string series, string timestampColumn, long start, int lookback)
    {
        var result = new List<(DateTime, float)>();
        var time = table.Schema[timestampColumn];
        var value = table.Schema[series];
        using var cursor = table.GetRowCursor(new[] { time, value });
        var getValue = cursor.GetGetter<float>(value);
        Func<DateTime> getTime = time.Type is DateTimeDataViewType ? Get<DateTime>(cursor, time) : Parse(cursor, time);
        long row = -1;
        float v = 0;
        while (cursor.MoveNext() && ++row < start + lookback)
        {
            if (row < start) continue;
            getValue(ref v);
            result.Add((getTime(), v));
        }
        return result;
    }

    private static Func<T> Get<T>(DataViewRow row, DataViewSchema.Column column)
    {
        var get = row.GetGetter<T>(column);
        T value = default!;
        return () => { get(ref value); return value; };
    }

    private static Func<DateTime> Parse(DataViewRow row, DataViewSchema.Column column)
    {
        var text = Get<ReadOnlyMemory<char>>(row, column);
        return () => DateTime.Parse(text().ToString(), CultureInfo.InvariantCulture);
    }
}
