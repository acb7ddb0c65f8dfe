using MambaML.MLNet;
using System.Diagnostics;
using static TorchSharp.torch;

namespace MambaML.Benchmarks.Forecasting;

/// <summary>
/// Long-horizon forecasting on ETTh1 and ETTm1 by the standard protocol (input 96; horizons 96/192/336/720; 7 channels;
/// MSE/MAE on z-scored test data, every test window), with baselines run in the same process and published rows beside.
/// </summary>
internal sealed class ForecastEttSuite : IBenchmarkSuite
{
    public string Name => "forecast-ett";
    public string Description => "ETTh1/ETTm1 long-horizon forecasting vs baselines (needs ../shared/data/ett)";

    /// <summary>The input length of the standard protocol.</summary>
    internal const int Lookback = 96;

    public IReadOnlyDictionary<string, object> Run(BenchmarkOptions options)
    {
        var headline = new Dictionary<string, object>();
        if (options.DataDirectory is null || !File.Exists(Path.Combine(options.DataDirectory, "ett", "ETTh1.csv")))
        {
            Console.WriteLine("forecast-ett: skipped — the shared data folder (../shared/data/ett) is absent.");
            headline["skipped"] = "no data";
            return headline;
        }
        var args = new ArgParser(options.Args);
        int[] horizons = args.String("--horizons", options.Quick ? "96" : "96,192,336,720").Split(',').Select(int.Parse).ToArray();
        int trainStride = args.Int("--train-stride", 1);
        // --validate 1: score every window of the validation split instead of the test split (for tuning; test rows unused).
        // --validate 2: score both, validation table first, from the same fitted models (one fit where CPU time is short).
        // Mamba early-stops on the validation split, so its validation scores are slightly optimistic.
        var scored = args.Int("--validate", 0) switch
        {
            0 => new[] { EttSplit.Test },
            1 => new[] { EttSplit.Validation },
            _ => new[] { EttSplit.Validation, EttSplit.Test },
        };
        int? gpu = args.Int("--gpu", -1) is >= 0 and var device ? device : null;   // --gpu N: train Mamba on CUDA device N
        foreach (var file in args.String("--datasets", "ETTh1,ETTm1").Split(','))
        {
            var data = EttDataset.Load(Path.Combine(options.DataDirectory, "ett", file + ".csv"));
            Console.WriteLine($"## {file} (input {Lookback}, {data.ChannelCount} channels, z-scored with train statistics"
                + (trainStride > 1 ? $"; Mamba trained and validated on every {trainStride}th window" : "")
                + (scored.SequenceEqual(new[] { EttSplit.Test }) ? ")" : $"; scored on the {string.Join(" and ", scored.Select(split => split.ToString().ToUpperInvariant()))} split{(scored.Length > 1 ? "s" : "")})"));
            Console.WriteLine();
            foreach (var row in Evaluate(data, Lookback, horizons, () => MambaOptions(options, data.StepsPerDay), trainStride, scored, gpu))
            {
                var prefix = row.Split == EttSplit.Test ? file : $"{file}_validation";
                if (row.Horizon == 96) headline[$"{prefix}_96_{Key(row.Model)}_mse"] = Math.Round(row.Mse, 4);
                if (row.Horizon is null) headline[$"{prefix}_avg_{Key(row.Model)}_mse"] = Math.Round(row.Mse, 4);
            }
        }
        return headline;
    }

    /// <summary>One row of a table: a model at one horizon, or its average over the horizons (Horizon null), on one split.</summary>
    internal sealed record Result(int? Horizon, string Model, double Mse, double Mae, EttSplit Split = EttSplit.Test)
    {
        public long Windows { get; init; }
        public double FitSeconds { get; init; }
    }

    /// <summary>
    /// Fits repeat-last-value, the linear baseline (plain and with the daily cycle) and Mamba (fresh options from <paramref name="mambaOptions"/> per horizon) on
    /// the train split, scores each on every window of each split in <paramref name="scored"/> (the test split unless tuning),
    /// prints one Markdown table per split and returns their rows, averages last. Mamba runs on CUDA device
    /// <paramref name="gpuDeviceId"/> when given.
    /// </summary>
    internal static List<Result> Evaluate(EttDataset data, int lookback, int[] horizons, Func<MambaForecastingOptions> mambaOptions, int trainStride = 1,
                                          EttSplit[]? scored = null, int? gpuDeviceId = null)
    {
        scored ??= new[] { EttSplit.Test };
        // One split: rows are printed as each horizon finishes (a long run shows its finished horizons); two: one table each at the end.
        bool streaming = scored.Length == 1;
        if (streaming) PrintHeader(scored[0]);
        var results = new List<Result>();
        var intervals = new List<string>();   // table rows of Mamba's prediction intervals, when it predicts them
        foreach (int h in horizons)
        {
            using var scope = NewDisposeScope();
            var models = new List<(IWindowForecaster Model, double FitSeconds)> { (new RepeatLastValue(h), 0) };
            var clock = Stopwatch.StartNew();
            models.Add((new LinearWindowForecaster(data, lookback, h), clock.Elapsed.TotalSeconds));
            clock.Restart();
            models.Add((new LinearWindowForecaster(data, lookback, h, cycleLength: data.StepsPerDay), clock.Elapsed.TotalSeconds));
            clock.Restart();
            models.Add((new MambaEttForecaster(data, lookback, h, mambaOptions(), "Mamba (ForecastByMamba)", trainStride, gpuDeviceId), clock.Elapsed.TotalSeconds));
            foreach (var split in scored)
            {
                var (pasts, futures, starts) = EttWindows.All(data, split, lookback, h);
                foreach (var (model, fit) in models)
                {
                    double mse, mae;
                    double? coverage = null, width = null;
                    if (model is MambaEttForecaster mamba) (mse, mae, coverage, width) = mamba.Score(pasts, starts, futures);
                    else (mse, mae) = EttWindows.Score(model.Predict(pasts, starts), futures);
                    var row = new Result(h, model.Name, mse, mae, split) { Windows = pasts.shape[0], FitSeconds = fit };
                    results.Add(row);
                    if (streaming) PrintRow(row);
                    if (coverage is not null)
                        intervals.Add($"| {h} | {split.ToString().ToLowerInvariant()} | {((MambaEttForecaster)model).IntervalLevel:P1} | {coverage:F4} | {width:F4} | {futures.numel()} |");
                }
            }
        }
        foreach (var split in scored)
        {
            var rows = results.Where(r => r.Split == split).ToList();
            if (!streaming)
            {
                Console.WriteLine($"{split}:");
                PrintHeader(split);
                foreach (var r in rows) PrintRow(r);
            }
            foreach (var group in rows.GroupBy(r => r.Model))
            {
                double mse = group.Average(r => r.Mse), mae = group.Average(r => r.Mae);
                Console.WriteLine($"| avg | {group.Key} | {mse:F4} | {mae:F4} | | |");
                results.Add(new Result(null, group.Key, mse, mae, split));
            }
            Console.WriteLine();
        }
        if (intervals.Count > 0)
        {
            Console.WriteLine("Mamba's prediction intervals (split conformal, normalised by each window's deviation, calibrated on the validation split):");
            Console.WriteLine();
            Console.WriteLine("| horizon | split | level | coverage | mean width | values |");
            Console.WriteLine("|---|---|---|---|---|---|");
            foreach (var line in intervals) Console.WriteLine(line);
            Console.WriteLine();
        }
        return results;
    }

    private static void PrintHeader(EttSplit split)
    {
        Console.WriteLine($"| horizon | model | MSE | MAE | {split.ToString().ToLowerInvariant()} windows | fit s |");
        Console.WriteLine("|---|---|---|---|---|---|");
    }

    private static void PrintRow(Result r) => Console.WriteLine($"| {r.Horizon} | {r.Model} | {r.Mse:F4} | {r.Mae:F4} | {r.Windows} | {r.FitSeconds:F1} |");

    /// <summary>
    /// The Mamba settings of this suite (chosen on the validation split; see BENCHMARKS.md); <paramref name="stepsPerDay"/> is
    /// the data's daily cycle, which <c>--cycle 1</c> gives the model (0: none).
    /// </summary>
    internal static MambaForecastingOptions MambaOptions(BenchmarkOptions options, int stepsPerDay)
    {
        var args = new ArgParser(options.Args);
        var mamba = new MambaForecastingOptions
        {
            ModelDimension = args.Int("--d-model", 64), NumberOfLayers = args.Int("--layers", 2), PatchLength = args.Int("--patch", 8),
            NumberOfEpochs = args.Int("--epochs", options.Quick ? 2 : 10), BatchSize = args.Int("--batch", 128),
            LearningRate = args.Double("--lr", 1e-3), WeightDecay = args.Double("--wd", 0.01), EarlyStoppingPatience = 3, Seed = 0,
            NumberOfThreads = args.Int("--threads", 0) is > 0 and var threads ? threads : null,
            FitLinearSkip = args.Int("--fit-skip", 1) != 0, EnsembleSize = args.Int("--ensemble", 1),
            CycleLength = args.Int("--cycle", 1) != 0 ? stepsPerDay : 0,   // --cycle 0: no daily cycle (the rows before it was added)
        };
        // --interval LEVEL: prediction intervals at that level, calibrated on the validation split; coverage printed per horizon.
        if (args.Double("--interval", 0) is > 0 and var level)
            (mamba.ConfidenceLowerBoundColumnName, mamba.ConfidenceUpperBoundColumnName, mamba.ConfidenceLevel) =
                (MambaEttForecaster.IntervalLower, MambaEttForecaster.IntervalUpper, (float)level);
        return mamba;
    }

    // JSON key of a model: its name before any parenthesis, letters only, lower case ("Linear + daily cycle (…)" → "lineardailycycle").
    private static string Key(string modelName) => new string(modelName.Split(" (")[0].Where(char.IsLetter).ToArray()).ToLowerInvariant();
}
