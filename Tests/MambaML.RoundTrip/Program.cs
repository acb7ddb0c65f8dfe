using MambaML.MLNet;
using Microsoft.ML;
using Microsoft.ML.Data;

// Usage: MambaML.RoundTrip fit DIR | load DIR | load-unregistered DIR
// fit: trains each task's pipeline on deterministic synthetic data, saves DIR/<task>.zip and DIR/<task>.fit.bin (predictions).
// load: loads each zip in this fresh process and writes DIR/<task>.load.bin; the test compares the files byte for byte.
// load-unregistered: loads without RegisterMambaML and prints the error (exit code 3).
if (args.Length != 2) { Console.Error.WriteLine("usage: fit|load|load-unregistered DIR"); return 2; }
string mode = args[0], dir = args[1];
Directory.CreateDirectory(dir);

foreach (var task in RoundTripTasks.All)
{
    string zip = Path.Combine(dir, task.Name + ".zip");
    switch (mode)
    {
        case "fit":
        {
            var ml = new MLContext(seed: 1);
            var data = task.Data(ml);
            var model = task.Pipeline(ml).Fit(data);
            ml.Model.Save(model, data.Schema, zip);
            File.WriteAllBytes(Path.Combine(dir, task.Name + ".fit.bin"), task.Predict(ml, model, data));
            break;
        }
        case "load":
        {
            var ml = new MLContext(seed: 1).RegisterMambaML();
            var model = ml.Model.Load(zip, out _);
            File.WriteAllBytes(Path.Combine(dir, task.Name + ".load.bin"), task.Predict(ml, model, task.Data(ml)));
            break;
        }
        case "load-unregistered":
            try { new MLContext().Model.Load(zip, out _); }
            catch (Exception e) { Console.WriteLine(e); return 3; }
            Console.WriteLine("loaded without registration");
            return 0;
        default:
            Console.Error.WriteLine($"unknown mode '{mode}'");
            return 2;
    }
    Console.WriteLine($"{mode} {task.Name}: ok");
}
return 0;

/// <summary>One task of the round trip: data, pipeline, and predictions (PredictionEngine and Transform) as bytes.</summary>
internal sealed record RoundTripTask(string Name, Func<MLContext, IDataView> Data, Func<MLContext, IEstimator<ITransformer>> Pipeline,
                                     Func<MLContext, ITransformer, IDataView, byte[]> Predict);

internal static class RoundTripTasks
{
    public static readonly RoundTripTask[] All =
    {
        new("forecasting", ForecastData, ForecastPipeline, PredictForecasts),
        new("multiclass-sequence", ShapeData, ml => ml.Transforms.Conversion.MapValueToKey("Label", "Shape")
            .Append(ml.MulticlassClassification.Trainers.MambaSequence(SequenceOptions(new MambaSequenceClassificationOptions())))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedShape", "PredictedLabel")), PredictScores<ShapeInput, MulticlassOutput>),
        new("binary-sequence", ShapeData, ml => ml.BinaryClassification.Trainers.MambaSequence(
            SequenceOptions(new MambaSequenceClassificationOptions { LabelColumnName = "IsSine" })), PredictScores<ShapeInput, ScalarOutput>),
        new("regression-sequence", ShapeData, ml => ml.Regression.Trainers.MambaSequence(
            SequenceOptions(new MambaSequenceRegressionOptions { LabelColumnName = "Length" })), PredictScores<ShapeInput, ScalarOutput>),
        new("text", TextData, ml => ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.MulticlassClassification.Trainers.MambaTextClassification(SequenceOptions(new MambaTextClassificationOptions { MaxTokens = 16 })))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedShape", "PredictedLabel")), PredictScores<TextInput, MulticlassOutput>),
    };

    private static T SequenceOptions<T>(T options) where T : MambaTrainerOptions
    {
        options.ModelDimension = 8;
        options.NumberOfLayers = 1;
        options.StateSize = 4;
        options.NumberOfEpochs = 2;
        options.Seed = 5;
        options.NumberOfThreads = 1;
        options.PredictionBatchSize = 8;
        return options;
    }

    public sealed class ShapeInput
    {
        public float[] Features { get; set; } = Array.Empty<float>();
        public string Shape { get; set; } = "";
        public bool IsSine { get; set; }
        public float Length { get; set; }
    }

    public sealed class TextInput
    {
        public string Text { get; set; } = "";
        public string Sentiment { get; set; } = "";
    }

    public sealed class MulticlassOutput
    {
        public float[] Score { get; set; } = Array.Empty<float>();
        public string PredictedShape { get; set; } = "";
    }

    public sealed class ScalarOutput { public float Score { get; set; } }

    private static IDataView ShapeData(MLContext ml) => ml.Data.LoadFromEnumerable(Enumerable.Range(0, 30).Select(i =>
    {
        int length = 5 + i % 11;
        var values = Enumerable.Range(0, length).Select(t => i % 2 == 0 ? MathF.Sin(t + i) : (t + i) % 4 < 2 ? 1f : -1f).ToArray();
        return new ShapeInput { Features = values, Shape = i % 2 == 0 ? "sine" : "square", IsSine = i % 2 == 0, Length = length };
    }).ToList());

    private static IDataView TextData(MLContext ml) => ml.Data.LoadFromEnumerable(Enumerable.Range(0, 30).Select(i => new TextInput
    {
        Text = i % 5 == 4 ? "" : (i % 2 == 0 ? "great food, lovely staff " : "awful, slow and rude ") + i,
        Sentiment = i % 2 == 0 ? "positive" : "negative",
    }).ToList());

    /// <summary>Scores through a PredictionEngine row by row, then through Transform, as bytes.</summary>
    private static byte[] PredictScores<TInput, TOutput>(MLContext ml, ITransformer model, IDataView data) where TInput : class, new() where TOutput : class, new()
    {
        var output = new List<float>();
        var scoreProperty = typeof(TOutput).GetProperty("Score")!;
        void Add(object? score)
        {
            if (score is float[] vector) output.AddRange(vector);
            else output.Add((float)score!);
        }
        using (var engine = ml.Model.CreatePredictionEngine<TInput, TOutput>(model, new PredictionEngineOptions { OwnsTransformer = false }))
            foreach (var row in ml.Data.CreateEnumerable<TInput>(data, reuseRowObject: false))
                Add(scoreProperty.GetValue(engine.Predict(row)));
        foreach (var row in ml.Data.CreateEnumerable<TOutput>(model.Transform(data), reuseRowObject: false))
            Add(scoreProperty.GetValue(row));
        return output.SelectMany(BitConverter.GetBytes).ToArray();
    }

    private sealed class SeriesRow { public float Value { get; set; } }

    public sealed class ForecastInput { [VectorType(24)] public float[] Features { get; set; } = Array.Empty<float>(); }
    public sealed class ForecastOutput { public float[] Forecast { get; set; } = Array.Empty<float>(); }

    private static IDataView ForecastData(MLContext ml)
    {
        var rows = Enumerable.Range(0, 120).Select(t => new SeriesRow { Value = (float)(Math.Sin(t / 3.0) + 0.01 * t) });
        return TimeSeriesWindows.Create(ml.Data.LoadFromEnumerable(rows), new[] { "Value" }, lookback: 24, horizon: 6).GetWindows();
    }

    private static IEstimator<ITransformer> ForecastPipeline(MLContext ml) =>
        ml.Transforms.CopyColumns("Past", "Features")
            .Append(ml.Transforms.NormalizeMinMax("Past", fixZero: false))
            .Append(ml.Forecasting.ForecastByMamba(new MambaForecastingOptions
            {
                FeatureColumnName = "Past", Lookback = 24, Horizon = 6, PatchLength = 4, ModelDimension = 16, NumberOfLayers = 1,
                StateSize = 8, NumberOfEpochs = 2, BatchSize = 16, Seed = 3, NumberOfThreads = 1,
            }));

    private static byte[] PredictForecasts(MLContext ml, ITransformer model, IDataView data)
    {
        var output = new List<float>();
        using (var engine = ml.Model.CreatePredictionEngine<ForecastInput, ForecastOutput>(model, new PredictionEngineOptions { OwnsTransformer = false }))
            foreach (var features in Vectors(data, "Features")) output.AddRange(engine.Predict(new ForecastInput { Features = features }).Forecast);
        foreach (var forecast in Vectors(model.Transform(data), "Forecast")) output.AddRange(forecast);
        return output.SelectMany(BitConverter.GetBytes).ToArray();
    }

    private static IEnumerable<float[]> Vectors(IDataView data, string column)
    {
        using var cursor = data.GetRowCursor(new[] { data.Schema[column] });
        var get = cursor.GetGetter<VBuffer<float>>(data.Schema[column]);
        VBuffer<float> v = default;
        while (cursor.MoveNext()) { get(ref v); yield return v.DenseValues().ToArray(); }
    }
}
