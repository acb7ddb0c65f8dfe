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
        int[] horizons = options.Quick ? new[] { 96 } : new[] { 96, 192, 336, 720 };
        foreach (var file in new[] { "ETTh1", "ETTm1" })
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

    private static string Key(string modelName) => new string(modelName.TakeWhile(char.IsLetter).ToArray()).ToLowerInvariant();
}
