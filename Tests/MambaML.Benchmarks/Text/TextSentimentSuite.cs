using System.Diagnostics;
using MambaML.MLNet;
using Microsoft.ML;

namespace MambaML.Benchmarks.Text;

/// <summary>
/// Sentence sentiment on the yelp and amazon files: fixed stratified 80/20 split per seed, accuracy mean ± std over seeds,
/// ML.NET's standard text classifier (FeaturizeText + SdcaMaximumEntropy) run beside in the same process.
/// </summary>
internal sealed class TextSentimentSuite : IBenchmarkSuite
{
    public string Name => "text-sentiment";
    public string Description => "yelp/amazon sentence sentiment vs FeaturizeText+SdcaMaximumEntropy (needs ../shared/data/text)";

    public IReadOnlyDictionary<string, object> Run(BenchmarkOptions options)
    {
        var headline = new Dictionary<string, object>();
        var root = options.DataDirectory is null ? null : Path.Combine(options.DataDirectory, "text", "sentiment-labelled-sentences");
        if (root is null || !Directory.Exists(root))
        {
            Console.WriteLine("text-sentiment: skipped — the shared data folder (../shared/data/text) is absent.");
            headline["skipped"] = "no data";
            return headline;
        }
        int seeds = options.Quick ? 2 : 5;
        var args = new ArgParser(options.Args);
        // --validate 1: score on a stratified 20% of each seed's training rows instead of the test rows (for tuning; test untouched).
        bool validate = args.Int("--validate", 0) != 0;
        Console.WriteLine($"## text-sentiment (stratified 80/20, {seeds} seeds{(validate ? "; VALIDATION accuracy on 20% of the training rows, test rows unused" : "")})");
        Console.WriteLine();
        Console.WriteLine("| dataset | model | accuracy mean ± std | s |");
        Console.WriteLine("|---|---|---|---|");
        foreach (var name in new[] { "yelp", "amazon" })
        {
            var rows = SentimentData.Read(Path.Combine(root, $"{(name == "amazon" ? "amazon_cells" : name)}_labelled.txt"));
            var clock = Stopwatch.StartNew();
            var splits = Enumerable.Range(0, seeds).Select(seed => Splits(rows, seed, validate)).ToArray();
            var mamba = Enumerable.Range(0, seeds).Select(seed => MambaAccuracy(splits[seed].Train, splits[seed].Eval, seed, MambaOptions(options))).ToArray();
            Report(name, "Mamba (MambaTextClassification)", mamba, clock.Elapsed.TotalSeconds);
            headline[$"{name}_mamba"] = Math.Round(mamba.Average(), 4);
            clock.Restart();
            var acc = Enumerable.Range(0, seeds).Select(seed => BaselineAccuracy(splits[seed].Train, splits[seed].Eval, seed)).ToArray();
            Report(name, "FeaturizeText + SdcaMaximumEntropy (ML.NET)", acc, clock.Elapsed.TotalSeconds);
            headline[$"{name}_baseline"] = Math.Round(acc.Average(), 4);
        }
        return headline;
    }

    /// <summary>
    /// The Mamba settings of this suite (one setting for both datasets, chosen with <c>--validate 1</c>; see BENCHMARKS.md).
    /// <c>--threads 0</c> keeps TorchSharp's thread count; <c>--ngram-lr 0</c> trains the n-gram head at <c>--lr</c>.
    /// </summary>
    private static MambaTextClassificationOptions MambaOptions(BenchmarkOptions options)
    {
        var args = new ArgParser(options.Args);
        return new MambaTextClassificationOptions
        {
            ModelDimension = args.Int("--d-model", 32), NumberOfLayers = args.Int("--layers", 2), NumberOfEpochs = args.Int("--epochs", options.Quick ? 5 : 15),
            BatchSize = args.Int("--batch", 32), LearningRate = args.Double("--lr", 5e-4), WeightDecay = args.Double("--wd", 0.05),
            MinTokenCount = args.Int("--min-count", 1), EarlyStoppingPatience = 1000,
            Tokenizer = Enum.Parse<MambaTokenizer>(args.String("--tokenizer", nameof(MambaTokenizer.Cl100kBase))),
            MaxTokens = args.Int("--max-tokens", 128), StateSize = args.Int("--d-state", 16),
            Pooling = Enum.Parse<SequencePooling>(args.String("--pooling", nameof(SequencePooling.Mean))), Dropout = args.Double("--dropout", 0.5),
            NumberOfThreads = args.Int("--threads", 1) is > 0 and var threads ? threads : null,
            Lowercase = args.Int("--lowercase", 1) != 0, NgramHeadLength = args.Int("--ngram", 2), NgramHeadBuckets = args.Int("--ngram-buckets", 1 << 16),
            NgramHeadSeparateLoss = args.Int("--ngram-separate", 1) != 0,
            NgramHeadLearningRate = args.Double("--ngram-lr", 0.1) is > 0 and var ngramLr ? ngramLr : null,
        };
    }

    /// <summary>The seed's fixed 80/20 split; with <paramref name="validate"/>, its training part split 80/20 again.</summary>
    private static (SentenceRow[] Train, SentenceRow[] Eval) Splits(SentenceRow[] rows, int seed, bool validate)
    {
        var (train, test) = SentimentData.Split(rows, seed);
        return validate ? SentimentData.Split(train, seed) : (train, test);
    }

    private static double MambaAccuracy(SentenceRow[] train, SentenceRow[] test, int seed, MambaTextClassificationOptions options)
    {
        var ml = new MLContext(seed);
        options.Seed = seed;
        options.TextColumnName = nameof(SentenceRow.Text);
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.MulticlassClassification.Trainers.MambaTextClassification(options));
        var model = pipeline.Fit(ml.Data.LoadFromEnumerable(train));
        try { return ml.MulticlassClassification.Evaluate(model.Transform(ml.Data.LoadFromEnumerable(test))).MicroAccuracy; }
        finally { (model as IDisposable)?.Dispose(); }
    }

    private static double BaselineAccuracy(SentenceRow[] train, SentenceRow[] test, int seed)
    {
        var ml = new MLContext(seed);
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(ml.Transforms.Text.FeaturizeText("Features", nameof(SentenceRow.Text)))
            .Append(ml.MulticlassClassification.Trainers.SdcaMaximumEntropy());
        var model = pipeline.Fit(ml.Data.LoadFromEnumerable(train));
        return ml.MulticlassClassification.Evaluate(model.Transform(ml.Data.LoadFromEnumerable(test))).MicroAccuracy;
    }

    internal static void Report(string dataset, string model, double[] acc, double seconds)
    {
        double mean = acc.Average(), std = Math.Sqrt(acc.Select(a => (a - mean) * (a - mean)).Sum() / Math.Max(1, acc.Length - 1));
        Console.WriteLine($"| {dataset} | {model} | {mean:F3} ± {std:F3} | {seconds:F0} |");
    }
}
