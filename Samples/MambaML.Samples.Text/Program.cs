// MambaML text classification sample: sentiment of short reviews with a Mamba model on cl100k_base tokens, in an ML.NET pipeline
// (MapValueToKey → MambaTextClassification → MapKeyToValue); evaluate, save, load in a fresh MLContext and predict.
// From the repository root:
//   dotnet run --project Samples/MambaML.Samples.Text -c Release                                 embedded reviews (seconds)
//   dotnet run --project Samples/MambaML.Samples.Text -c Release -- --data ../shared/data/text/sentiment-labelled-sentences/yelp_labelled.txt
//                                                                      "sentence<TAB>0|1" lines
// Options: --epochs N  --tokenizer Cl100kBase|Bytes  --out DIR
using System.Globalization;
using MambaML.MLNet;
using Microsoft.ML;
using Microsoft.ML.Data;

string? Arg(string name) => Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : null;
string? dataPath = Arg("--data");
string outputDirectory = Arg("--out") ?? "text-output";
var mlContext = new MLContext(seed: 0);
if (dataPath is not null && !File.Exists(dataPath))
{
    // The README's --data paths point into the project's shared data folder, which is not part of the repository.
    Console.Error.WriteLine($"--data: '{dataPath}' does not exist. Pass the path of your own copy of the file (README, Samples, says where each data set comes from).");
    return 1;
}

// 1. Sentences with a sentiment label, split 80/20.
IDataView all = dataPath is null
    ? mlContext.Data.LoadFromEnumerable(Reviews.Embedded())
    : mlContext.Data.LoadFromTextFile<Review>(dataPath, separatorChar: '\t', hasHeader: false, allowQuoting: false);
var split = mlContext.Data.TrainTestSplit(all, testFraction: 0.2, seed: 1);
Console.WriteLine($"Data: {dataPath ?? "embedded reviews"}: {split.TrainSet.GetColumn<string>("Text").Count()} training and " +
                  $"{split.TestSet.GetColumn<string>("Text").Count()} test sentences.");

// 2. Pipeline: key-typed label, the Mamba text classifier, and the predicted key back to the label text.
var options = new MambaTextClassificationOptions
{
    Tokenizer = Enum.Parse<MambaTokenizer>(Arg("--tokenizer") ?? "Cl100kBase"), MaxTokens = 64,
    ModelDimension = 32, NumberOfLayers = 2, StateSize = 16, NumberOfEpochs = int.Parse(Arg("--epochs") ?? "10", CultureInfo.InvariantCulture),
    BatchSize = 16, LearningRate = 2e-3, WeightDecay = 0.05, Seed = 42,
    NumberOfThreads = 1,   // small models train fastest on one thread (and stay fast on a busy machine)
    ProgressCallback = p => Console.WriteLine("  " + p),
};
var pipeline = mlContext.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
    .Append(mlContext.MulticlassClassification.Trainers.MambaTextClassification(options))
    .Append(mlContext.Transforms.Conversion.MapKeyToValue("PredictedSentiment", "PredictedLabel"));
Console.WriteLine($"Training MambaTextClassification ({options.Tokenizer} tokens):");
var model = pipeline.Fit(split.TrainSet);

// 3. Evaluate with ML.NET's multiclass evaluator.
var metrics = mlContext.MulticlassClassification.Evaluate(model.Transform(split.TestSet));
Console.WriteLine($"Test accuracy {metrics.MicroAccuracy:P1}, log-loss {metrics.LogLoss:F3}");

// 4. Save, load in a fresh MLContext, predict new sentences. An empty one gets the class the model leans to without any
// tokens (its biases), often with high confidence: check inputs for empty text before trusting a prediction.
Directory.CreateDirectory(outputDirectory);
string modelPath = Path.Combine(outputDirectory, "mamba-text-classifier.zip");
mlContext.Model.Save(model, split.TrainSet.Schema, modelPath);
(model as IDisposable)?.Dispose();
var fresh = new MLContext().RegisterMambaML();
var loaded = fresh.Model.Load(modelPath, out _);
var reloaded = fresh.MulticlassClassification.Evaluate(loaded.Transform(split.TestSet));
Console.WriteLine($"Saved {modelPath} ({new FileInfo(modelPath).Length / 1024} KiB, vocabulary included); reloaded test accuracy {reloaded.MicroAccuracy:P1}" +
                  (reloaded.MicroAccuracy == metrics.MicroAccuracy ? " (identical)" : " (DIFFERENT)"));
using var engine = fresh.Model.CreatePredictionEngine<Review, SentimentPrediction>(loaded);
foreach (var text in new[] { "The food was delicious and the staff were lovely.", "Terrible service, cold food, never again.", "" })
{
    var prediction = engine.Predict(new Review { Text = text });
    Console.WriteLine($"  \"{text}\" → {(prediction.PredictedSentiment == "1" ? "positive" : "negative")} (p = {prediction.Score.Max():F3})");
}
return 0;

/// <summary>A sentence and its sentiment ("1" positive, "0" negative), as in the UCI sentiment-labelled-sentences files.</summary>
public sealed class Review
{
    /// <summary>The sentence.</summary>
    [LoadColumn(0)] public string Text { get; set; } = "";
    /// <summary>"1" positive, "0" negative.</summary>
    [LoadColumn(1)] public string Sentiment { get; set; } = "";
}

/// <summary>The classifier's outputs after MapKeyToValue.</summary>
public sealed class SentimentPrediction
{
    /// <summary>Predicted sentiment label.</summary>
    public string PredictedSentiment { get; set; } = "";
    /// <summary>Probability per class.</summary>
    public float[] Score { get; set; } = Array.Empty<float>();
}

/// <summary>The embedded data set: short restaurant reviews composed from positive and negative phrases.</summary>
internal static class Reviews
{
    private static readonly string[] Good = { "loved this place", "the food was delicious", "friendly staff", "great value", "amazing pizza", "will come back", "the service was fast", "best burger in town" };
    private static readonly string[] Bad = { "the food was cold", "rude waiter", "way overpriced", "never again", "the service was slow", "bland and greasy", "dirty tables", "worst meal ever" };
    private static readonly string[] Neutral = { "we went on a friday", "it was busy", "we ordered the special", "parking is nearby", "" };

    public static IEnumerable<Review> Embedded()
    {
        var rng = new Random(3);
        for (int i = 0; i < 600; i++)
        {
            bool positive = i % 2 == 0;
            var phrases = new List<string> { Neutral[rng.Next(Neutral.Length)] };
            var pool = positive ? Good : Bad;
            for (int k = rng.Next(1, 3); k > 0; k--) phrases.Insert(rng.Next(phrases.Count + 1), pool[rng.Next(pool.Length)]);
            yield return new Review { Text = string.Join(", ", phrases.Where(p => p.Length > 0)) + ".", Sentiment = positive ? "1" : "0" };
        }
    }
}
