using MambaML.MLNet;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace MambaML.Tests.MLNet;

/// <summary>Small synthetic data sets for the ML.NET tests.</summary>
internal static class Synthetic
{
    /// <summary>A time-ordered table: two seasonal series with noise, and an hourly timestamp.</summary>
    public sealed class SeriesRow
    {
        public DateTime Time { get; set; }
        public float A { get; set; }
        public float B { get; set; }
    }

    public static SeriesRow[] Series(int rows, int seed = 1)
    {
        var rng = new Random(seed);
        var start = new DateTime(2020, 1, 1);
        return Enumerable.Range(0, rows).Select(t => new SeriesRow
        {
            Time = start.AddHours(t),
            A = (float)(Math.Sin(2 * Math.PI * t / 12) + 0.1 * rng.NextDouble()),
            B = (float)(0.5 * Math.Cos(2 * Math.PI * t / 8) + 0.01 * t + 0.1 * rng.NextDouble()),
        }).ToArray();
    }

    /// <summary>Small, quick forecaster options.</summary>
    public static MambaForecastingOptions ForecastOptions(int lookback = 16, int horizon = 4, int channels = 1, int epochs = 3) => new()
    {
        Lookback = lookback, Horizon = horizon, Channels = channels, PatchLength = 4,
        ModelDimension = 16, NumberOfLayers = 1, StateSize = 8, NumberOfEpochs = epochs, BatchSize = 16, LearningRate = 3e-3,
        Seed = 7, NumberOfThreads = 1,
    };

    /// <summary>Labelled windows of series A (and B when <paramref name="channels"/> is 2).</summary>
    public static IDataView Windows(MLContext ml, int rows = 200, int lookback = 16, int horizon = 4, int channels = 1, int seed = 1)
    {
        var table = ml.Data.LoadFromEnumerable(Series(rows, seed));
        var targets = channels == 1 ? new[] { "A" } : new[] { "A", "B" };
        return TimeSeriesWindows.Create(table, targets, lookback, horizon).GetWindows();
    }

    /// <summary>
    /// Saves <paramref name="model"/> with mlContext.Model.Save to a temporary file, loads it in a fresh MLContext (after
    /// RegisterMambaML), as another process would, runs <paramref name="check"/> on the loaded model, then disposes it and
    /// deletes the file.
    /// </summary>
    public static void CheckSavedAndLoaded(MLContext ml, ITransformer model, DataViewSchema inputSchema, Action<ITransformer> check)
    {
        var path = Path.Combine(Path.GetTempPath(), $"mambaml-{Guid.NewGuid():N}.zip");
        try
        {
            ml.Model.Save(model, inputSchema, path);
            var loaded = new MLContext().RegisterMambaML().Model.Load(path, out _);
            try { check(loaded); }
            finally { (loaded as IDisposable)?.Dispose(); }
        }
        finally { File.Delete(path); }
    }

    public static float[][] ReadVectors(IDataView data, string column)
    {
        var result = new List<float[]>();
        using var cursor = data.GetRowCursor(new[] { data.Schema[column] });
        var get = cursor.GetGetter<VBuffer<float>>(data.Schema[column]);
        VBuffer<float> v = default;
        while (cursor.MoveNext()) { get(ref v); result.Add(v.DenseValues().ToArray()); }
        return result.ToArray();
    }

    /// <summary>A labelled sequence: shape class (sine, square, ramp), its frequency, and a Boolean "is sine".</summary>
    public sealed class ShapeRow
    {
        public float[] Features { get; set; } = Array.Empty<float>();
        public string Shape { get; set; } = "";
        public bool IsSine { get; set; }
        public float Frequency { get; set; }
    }

    /// <summary>Shapes of random phase and frequency; variable length in [minLength, maxLength] (time-major, <paramref name="channels"/> per step).</summary>
    public static ShapeRow[] Shapes(int count, int minLength = 24, int maxLength = 24, int channels = 1, int seed = 1)
    {
        var rng = new Random(seed);
        string[] names = { "sine", "square", "ramp" };
        return Enumerable.Range(0, count).Select(i =>
        {
            int shape = i % 3, length = rng.Next(minLength, maxLength + 1);
            double frequency = 0.05 + 0.15 * rng.NextDouble(), phase = rng.NextDouble();
            var values = new float[length * channels];
            for (int t = 0; t < length; t++)
            {
                double cycle = (frequency * t + phase) % 1.0;
                double v = shape switch { 0 => Math.Sin(2 * Math.PI * cycle), 1 => cycle < 0.5 ? 1 : -1, _ => 2 * cycle - 1 };
                for (int c = 0; c < channels; c++) values[t * channels + c] = (float)(v * (c + 1) + 0.05 * (rng.NextDouble() - 0.5));
            }
            return new ShapeRow { Features = values, Shape = names[shape], IsSine = shape == 0, Frequency = (float)frequency };
        }).ToArray();
    }

    /// <summary>Small, quick sequence options.</summary>
    public static T SequenceOptions<T>(int epochs = 8) where T : MambaSequenceOptionsBase, new() => new()
    {
        ModelDimension = 16, NumberOfLayers = 1, StateSize = 8, NumberOfEpochs = epochs, BatchSize = 16, LearningRate = 5e-3, Seed = 11, NumberOfThreads = 1,
    };
}
