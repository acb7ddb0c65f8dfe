// MambaML sequence classification sample: classify time series with a Mamba model in an ML.NET pipeline
// (MapValueToKey → MambaSequence → MapKeyToValue), evaluate, save, load in a fresh MLContext and predict.
// From the repository root:
//   dotnet run --project Samples/MambaML.Samples.Classification -c Release                      embedded synthetic shapes (seconds)
//   dotnet run --project Samples/MambaML.Samples.Classification -c Release -- --data ../shared/data/ucr/GunPoint/GunPoint_TRAIN.ts
//                                                                          a UCR/UEA .ts file (its _TEST.ts is the test set)
// Options: --epochs N  --patch P  --out DIR
using System.Globalization;
using MambaML.MLNet;
using Microsoft.ML;

string? Arg(string name) => Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : null;
string? dataPath = Arg("--data");
string outputDirectory = Arg("--out") ?? "classification-output";
var mlContext = new MLContext(seed: 0);
if (dataPath is not null && !File.Exists(dataPath))
{
    // The README's --data paths point into the project's shared data folder, which is not part of the repository.
    Console.Error.WriteLine($"--data: '{dataPath}' does not exist. Pass the path of your own copy of the file (README, Samples, says where each data set comes from).");
    return 1;
}

// 1. Train and test series: steps × channels values (time-major) and a class label per row.
var (trainSeries, testSeries, source) = dataPath is null
    ? (Shapes.Generate(300, seed: 1), Shapes.Generate(150, seed: 2), "embedded synthetic shapes")
    : (TsFile.Read(dataPath), TsFile.Read(TestPathFor(dataPath)), dataPath);
int channels = trainSeries[0].Channels;
var train = mlContext.Data.LoadFromEnumerable(trainSeries.Select(SeriesRow.From));
var test = mlContext.Data.LoadFromEnumerable(testSeries.Select(SeriesRow.From));
var classes = trainSeries.Select(s => s.Label).Distinct().Order().ToArray();
Console.WriteLine($"Data: {source}: {trainSeries.Count} training and {testSeries.Count} test series, " +
                  $"{trainSeries.Min(s => s.Steps)}–{trainSeries.Max(s => s.Steps)} steps × {channels} channel(s), classes {string.Join(", ", classes)}.");

// 2. Pipeline: key-typed label, the Mamba classifier, and the predicted key back to its class name.
int longest = trainSeries.Max(s => s.Steps);
var options = new MambaSequenceClassificationOptions
{
    Channels = channels, PatchLength = int.Parse(Arg("--patch") ?? Math.Max(1, longest / 16).ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture),
    NormalizeEachSequence = true, ModelDimension = 32, NumberOfLayers = 2, StateSize = 16,
    NumberOfEpochs = int.Parse(Arg("--epochs") ?? (dataPath is null ? "8" : "60"), CultureInfo.InvariantCulture),
    BatchSize = 16, LearningRate = 3e-3, Seed = 42, EarlyStoppingPatience = 0,
    NumberOfThreads = 1,   // small models train fastest on one thread (and stay fast on a busy machine)
    ProgressCallback = p => Console.WriteLine("  " + p),
};
var pipeline = mlContext.Transforms.Conversion.MapValueToKey("Label")
    .Append(mlContext.MulticlassClassification.Trainers.MambaSequence(options))
    .Append(mlContext.Transforms.Conversion.MapKeyToValue("PredictedClass", "PredictedLabel"));
Console.WriteLine($"Training MambaSequence (patch length {options.PatchLength}):");
var model = pipeline.Fit(train);

// 3. Evaluate with ML.NET's own multiclass evaluator.
var metrics = mlContext.MulticlassClassification.Evaluate(model.Transform(test));
Console.WriteLine($"Test accuracy {metrics.MicroAccuracy:P1} (macro {metrics.MacroAccuracy:P1}), log-loss {metrics.LogLoss:F3}");
Console.WriteLine(metrics.ConfusionMatrix.GetFormattedConfusionTable());

// 4. Save, load in a fresh MLContext, predict one test series with a PredictionEngine.
Directory.CreateDirectory(outputDirectory);
string modelPath = Path.Combine(outputDirectory, "mamba-sequence-classifier.zip");
mlContext.Model.Save(model, train.Schema, modelPath);
(model as IDisposable)?.Dispose();
var fresh = new MLContext().RegisterMambaML();
var loaded = fresh.Model.Load(modelPath, out _);
var reloaded = fresh.MulticlassClassification.Evaluate(loaded.Transform(test));
Console.WriteLine($"Saved {modelPath}; reloaded model's test accuracy {reloaded.MicroAccuracy:P1}" +
                  (reloaded.MicroAccuracy == metrics.MicroAccuracy ? " (identical)" : " (DIFFERENT)"));
using var engine = fresh.Model.CreatePredictionEngine<SeriesRow, ClassPrediction>(loaded);
var first = testSeries[0];
var prediction = engine.Predict(SeriesRow.From(first));
// Score holds one probability per class in the label key's order (classes in order of first appearance in training), which
// the classifier's ClassNames give.
var classNames = ((IEnumerable<ITransformer>)loaded).OfType<MambaSequenceTransformer>().Single().ClassNames!;
Console.WriteLine($"First test series: true class {first.Label}, predicted {prediction.PredictedClass} " +
                  $"(probabilities {string.Join(", ", classNames.Zip(prediction.Score, (c, p) => $"{c} {p.ToString("F3", CultureInfo.InvariantCulture)}"))})");
return 0;

static string TestPathFor(string trainPath)
{
    var testPath = trainPath.Replace("_TRAIN", "_TEST", StringComparison.Ordinal);
    if (testPath == trainPath || !File.Exists(testPath))
        throw new FileNotFoundException($"--data: expected a *_TRAIN.ts file with a *_TEST.ts beside it; '{testPath}' was not found.");
    return testPath;
}

/// <summary>One series as an ML.NET row: a variable-length vector and a text label.</summary>
public sealed class SeriesRow
{
    /// <summary>Steps × channels values, time-major.</summary>
    public float[] Features { get; set; } = Array.Empty<float>();
    /// <summary>Class label.</summary>
    public string Label { get; set; } = "";

    /// <summary>The row for a series read from a .ts file.</summary>
    public static SeriesRow From(TsSeries series) => new() { Features = series.Values, Label = series.Label };
}

/// <summary>The classifier's outputs after MapKeyToValue.</summary>
public sealed class ClassPrediction
{
    /// <summary>Predicted class name.</summary>
    public string PredictedClass { get; set; } = "";
    /// <summary>Probability per class.</summary>
    public float[] Score { get; set; } = Array.Empty<float>();
}

/// <summary>The embedded data set: noisy sine, square and sawtooth waves of random phase, frequency and length.</summary>
internal static class Shapes
{
    public static IReadOnlyList<TsSeries> Generate(int count, int seed)
    {
        var rng = new Random(seed);
        string[] names = { "sine", "square", "sawtooth" };
        return Enumerable.Range(0, count).Select(i =>
        {
            int shape = i % 3, steps = rng.Next(40, 81);
            double frequency = 0.03 + 0.1 * rng.NextDouble(), phase = rng.NextDouble(), amplitude = 0.5 + rng.NextDouble();
            var values = Enumerable.Range(0, steps).Select(t =>
            {
                double cycle = (frequency * t + phase) % 1.0;
                double v = shape switch { 0 => Math.Sin(2 * Math.PI * cycle), 1 => cycle < 0.5 ? 1 : -1, _ => 2 * cycle - 1 };
                return (float)(amplitude * v + 0.2 * (rng.NextDouble() - 0.5));
            }).ToArray();
            return new TsSeries(values, steps, 1, names[shape]);
        }).ToList();
    }
}
