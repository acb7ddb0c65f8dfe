using MambaML.MLNet;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace MambaML.Benchmarks;

/// <summary>A benchmark task on synthetic data: trains, saves, and makes per-thread predictors over a loaded copy.</summary>
internal interface ISyntheticTask
{
    /// <summary>Short name: forecaster, sequence or text.</summary>
    string Name { get; }
    /// <summary>Its training rows.</summary>
    int RowCount { get; }
    /// <summary>The model's vector output column.</summary>
    string OutputColumn { get; }
    /// <summary>Trains with the options <paramref name="configure"/> leaves (one epoch unless it says otherwise).</summary>
    ITransformer Fit(MLContext ml, Action<MambaTrainerOptions> configure);
    /// <summary>Trains as <see cref="Fit"/> does and saves to <paramref name="path"/>.</summary>
    void TrainAndSave(MLContext ml, string path, Action<MambaTrainerOptions> configure);
    /// <summary>The model's rows repeated to <paramref name="count"/>.</summary>
    IDataView Rows(MLContext ml, int count);
    /// <summary>A function predicting the i-th of a fixed set of inputs, with its own PredictionEngine over <paramref name="model"/>.</summary>
    Action<int> Predictor(MLContext ml, ITransformer model);
}

/// <summary>The forecasting, sequence-classification and text-classification tasks of the serving and training benchmarks.</summary>
internal static class SyntheticTasks
{
    /// <summary>
    /// A model of one input row type, trained by the estimator <paramref name="estimator"/> makes (from options it passes
    /// through the configuring action) on <paramref name="rows"/>, which it then predicts in turn.
    /// </summary>
    private sealed class Task<TRow, TOutput>(string name, string outputColumn, TRow[] rows,
                                            Func<MLContext, Action<MambaTrainerOptions>, IEstimator<ITransformer>> estimator) : ISyntheticTask
        where TRow : class where TOutput : class, new()
    {
        public string Name => name;
        public int RowCount => rows.Length;
        public string OutputColumn => outputColumn;

        public IDataView Rows(MLContext ml, int count) => ml.Data.LoadFromEnumerable(Enumerable.Range(0, count).Select(i => rows[i % rows.Length]));

        public ITransformer Fit(MLContext ml, Action<MambaTrainerOptions> configure) => estimator(ml, configure).Fit(ml.Data.LoadFromEnumerable(rows));

        public void TrainAndSave(MLContext ml, string path, Action<MambaTrainerOptions> configure)
        {
            var model = Fit(ml, configure);
            try { ml.Model.Save(model, ml.Data.LoadFromEnumerable(rows).Schema, path); }
            finally { Dispose(model); }
        }

        public Action<int> Predictor(MLContext ml, ITransformer model)
        {
            var engine = ml.Model.CreatePredictionEngine<TRow, TOutput>(model, new PredictionEngineOptions { OwnsTransformer = false });
            return i => engine.Predict(rows[i % rows.Length]);
        }
    }

    private const int Lookback = 96, Horizon = 24;

    private sealed class WindowRow
    {
        [VectorType(Lookback)] public float[] Features { get; set; } = Array.Empty<float>();
        [VectorType(Horizon)] public float[] Label { get; set; } = Array.Empty<float>();
    }

    private sealed class ForecastRow
    {
        public float[] Forecast { get; set; } = Array.Empty<float>();
    }

    private sealed class SequenceRow
    {
        public float[] Features { get; set; } = Array.Empty<float>();
        public string Shape { get; set; } = "";
    }

    private sealed class ReviewRow
    {
        public string Text { get; set; } = "";
        public string Sentiment { get; set; } = "";
    }

    private sealed class ScoreRow
    {
        public float[] Score { get; set; } = Array.Empty<float>();
    }

    /// <summary>Disposes every MambaML transformer of <paramref name="model"/> (a chain or a single one).</summary>
    public static void Dispose(ITransformer model)
    {
        foreach (var part in model as IEnumerable<ITransformer> ?? new[] { model }) (part as IDisposable)?.Dispose();
    }

    /// <summary>A univariate forecaster of <paramref name="count"/> windows, 96 steps in, 24 out, the default model size.</summary>
    public static ISyntheticTask Forecaster(int count = 256)
    {
        var rng = new Random(1);
        var series = Enumerable.Range(0, count + Lookback + Horizon)
            .Select(t => (float)(Math.Sin(2 * Math.PI * t / 24) + 0.3 * Math.Sin(2 * Math.PI * t / 168) + 0.1 * rng.NextDouble())).ToArray();
        var rows = Enumerable.Range(0, count).Select(i => new WindowRow
        {
            Features = series.AsSpan(i, Lookback).ToArray(),
            Label = series.AsSpan(i + Lookback, Horizon).ToArray(),
        }).ToArray();
        return new Task<WindowRow, ForecastRow>("forecaster", "Forecast", rows, (ml, configure) =>
        {
            var options = new MambaForecastingOptions { Lookback = Lookback, Horizon = Horizon, NumberOfEpochs = 1, NumberOfThreads = 1, Seed = 1 };
            configure(options);
            return ml.Forecasting.ForecastByMamba(options);
        });
    }

    /// <summary>A three-class classifier of <paramref name="count"/> 128-step numeric sequences, the default model size.</summary>
    public static ISyntheticTask SequenceClassifier(int count = 120)
    {
        var rng = new Random(2);
        string[] names = { "sine", "square", "ramp" };
        var rows = Enumerable.Range(0, count).Select(i =>
        {
            double frequency = 0.02 + 0.08 * rng.NextDouble(), phase = rng.NextDouble();
            var values = Enumerable.Range(0, 128).Select(t =>
            {
                double cycle = (frequency * t + phase) % 1.0;
                return (float)((i % 3) switch { 0 => Math.Sin(2 * Math.PI * cycle), 1 => cycle < 0.5 ? 1 : -1, _ => 2 * cycle - 1 });
            }).ToArray();
            return new SequenceRow { Features = values, Shape = names[i % 3] };
        }).ToArray();
        return new Task<SequenceRow, ScoreRow>("sequence", "Score", rows, (ml, configure) =>
        {
            var options = new MambaSequenceClassificationOptions { NumberOfEpochs = 1, NumberOfThreads = 1, Seed = 1 };
            configure(options);
            return ml.Transforms.Conversion.MapValueToKey("Label", "Shape").Append(ml.MulticlassClassification.Trainers.MambaSequence(options));
        });
    }

    /// <summary>A two-class text classifier (cl100k tokens) of <paramref name="count"/> 8–30-word sentences, the default model size.</summary>
    public static ISyntheticTask TextClassifier(int count = 200)
    {
        var words = ("the food was really good great bad awful service slow friendly staff place very lovely terrible tasty bland " +
                     "and but not at all we will come back never again").Split(' ');
        var rng = new Random(3);
        var rows = Enumerable.Range(0, count).Select(i => new ReviewRow
        {
            Text = string.Join(' ', Enumerable.Range(0, rng.Next(8, 31)).Select(_ => words[rng.Next(words.Length)])),
            Sentiment = i % 2 == 0 ? "positive" : "negative",
        }).ToArray();
        return new Task<ReviewRow, ScoreRow>("text", "Score", rows, (ml, configure) =>
        {
            var options = new MambaTextClassificationOptions { NumberOfEpochs = 1, NumberOfThreads = 1, Seed = 1 };
            configure(options);
            return ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment").Append(ml.MulticlassClassification.Trainers.MambaTextClassification(options));
        });
    }
}
