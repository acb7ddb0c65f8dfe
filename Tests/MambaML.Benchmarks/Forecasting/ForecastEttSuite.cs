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

    private const int Lookback = 96;

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
        foreach (var file in args.String("--datasets", "ETTh1,ETTm1").Split(','))
        {
            var data = EttDataset.Load(Path.Combine(options.DataDirectory, "ett", file + ".csv"));
            Console.WriteLine($"## {file} (input {Lookback}, {data.ChannelCount} channels, z-scored with train statistics)");
            Console.WriteLine();
            Console.WriteLine("| horizon | model | MSE | MAE | test windows | fit s |");
            Console.WriteLine("|---|---|---|---|---|---|");
            var sums = new Dictionary<string, (double Mse, double Mae)>();
            foreach (int h in horizons)
            {
                using var scope = NewDisposeScope();
                var (pasts, futures) = EttWindows.All(data, EttSplit.Test, Lookback, h);
                var clock = Stopwatch.StartNew();
                var models = new List<(IWindowForecaster Model, double FitSeconds)> { (new RepeatLastValue(h), 0) };
                clock.Restart();
                var linear = new LinearWindowForecaster(data, Lookback, h);
                models.Add((linear, clock.Elapsed.TotalSeconds));
                clock.Restart();
                var mamba = new MambaEttForecaster(data, Lookback, h, MambaOptions(options), "Mamba (ForecastByMamba)");
                models.Add((mamba, clock.Elapsed.TotalSeconds));
                foreach (var (model, fit) in models)
                {
                    var (mse, mae) = EttWindows.Score(model.Predict(pasts), futures);
                    Console.WriteLine($"| {h} | {model.Name} | {mse:F3} | {mae:F3} | {pasts.shape[0]} | {fit:F1} |");
                    var prev = sums.GetValueOrDefault(model.Name);
                    sums[model.Name] = (prev.Mse + mse, prev.Mae + mae);
                    if (h == 96) headline[$"{file}_96_{Key(model.Name)}_mse"] = Math.Round(mse, 4);
                }
            }
            foreach (var (name, (mse, mae)) in sums)
            {
                Console.WriteLine($"| avg | {name} | {mse / horizons.Length:F3} | {mae / horizons.Length:F3} | | |");
                headline[$"{file}_avg_{Key(name)}_mse"] = Math.Round(mse / horizons.Length, 4);
            }
            Console.WriteLine();
        }
        return headline;
    }

    /// <summary>The Mamba settings of this suite (chosen on the validation split; see BENCHMARKS.md).</summary>
    private static MambaForecastingOptions MambaOptions(BenchmarkOptions options)
    {
        var args = new ArgParser(options.Args);
        return new MambaForecastingOptions
        {
            ModelDimension = args.Int("--d-model", 64), NumberOfLayers = args.Int("--layers", 2), PatchLength = args.Int("--patch", 8),
            NumberOfEpochs = args.Int("--epochs", options.Quick ? 2 : 10), BatchSize = args.Int("--batch", 128),
            LearningRate = args.Double("--lr", 1e-3), WeightDecay = args.Double("--wd", 0.01), EarlyStoppingPatience = 3, Seed = 0,
        };
    }

    private static string Key(string modelName) => new string(modelName.TakeWhile(char.IsLetter).ToArray()).ToLowerInvariant();
}
