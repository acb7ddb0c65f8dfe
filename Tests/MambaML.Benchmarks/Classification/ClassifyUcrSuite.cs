using System.Diagnostics;
using MambaML.MLNet;

namespace MambaML.Benchmarks.Classification;

/// <summary>
/// Time-series classification on UCR/UEA datasets with their official train/test splits: accuracy mean ± std over seeds for
/// the Mamba sequence classifier and the ML.NET baseline, run in the same process; ROCKET/MiniRocket published rows beside.
/// </summary>
internal sealed class ClassifyUcrSuite : IBenchmarkSuite
{
    public string Name => "classify-ucr";
    public string Description => "GunPoint, ItalyPowerDemand, ArrowHead, BasicMotions: accuracy over 5 seeds (needs ../shared/data/ucr)";

    private static readonly (string Name, double? Rocket, double? MiniRocket, double Target)[] Datasets =
    {
        ("GunPoint", 1.000, 0.993, 1.000), ("ItalyPowerDemand", 0.970, 0.969, 0.970), ("ArrowHead", 0.814, 0.863, 0.88), ("BasicMotions", null, null, 1.000),
    };

    public IReadOnlyDictionary<string, object> Run(BenchmarkOptions options)
    {
        var headline = new Dictionary<string, object>();
        var root = options.DataDirectory is null ? null : Path.Combine(options.DataDirectory, "ucr");
        if (root is null || !Directory.Exists(root))
        {
            Console.WriteLine("classify-ucr: skipped — the shared data folder (../shared/data/ucr) is absent.");
            headline["skipped"] = "no data";
            return headline;
        }
        var args = new ArgParser(options.Args);
        int seeds = args.Int("--seeds", options.Quick ? 2 : 5);
        var only = args.String("--datasets", string.Join(",", Datasets.Select(d => d.Name))).Split(',');
        Console.WriteLine($"## classify-ucr (official splits, {seeds} seeds)");
        Console.WriteLine();
        Console.WriteLine("| dataset | model | accuracy mean ± std | target | ROCKET | MiniRocket | s |");
        Console.WriteLine("|---|---|---|---|---|---|---|");
        foreach (var (name, rocket, miniRocket, target) in Datasets.Where(d => only.Contains(d.Name)))
        {
            var train = TsFile.Read(Path.Combine(root, name, name + "_TRAIN.ts"));
            var test = TsFile.Read(Path.Combine(root, name, name + "_TEST.ts"));
            var clock = Stopwatch.StartNew();
            var mamba = Enumerable.Range(0, seeds).Select(s => UcrModels.Mamba(train, test, s, MambaOptions(options))).ToArray();
            Report(name, "Mamba (MambaSequence)", mamba, target, rocket, miniRocket, clock.Elapsed.TotalSeconds);
            clock.Restart();
            var lightGbm = Enumerable.Range(0, seeds).Select(s => UcrModels.LightGbm(train, test, s)).ToArray();
            Report(name, "LightGbm on raw series (ML.NET)", lightGbm, target, rocket, miniRocket, clock.Elapsed.TotalSeconds);
            var majority = UcrModels.MajorityClass(train, test);
            Report(name, "Majority class", new[] { majority }, target, rocket, miniRocket, 0);
            headline[$"{name}_mamba"] = Math.Round(mamba.Average(), 4);
            headline[$"{name}_lightgbm"] = Math.Round(lightGbm.Average(), 4);
        }
        return headline;
    }

    /// <summary>The Mamba settings of this suite (one setting for every dataset; see BENCHMARKS.md for how it was chosen).</summary>
    internal static MambaSequenceClassificationOptions MambaOptions(BenchmarkOptions options)
    {
        var args = new ArgParser(options.Args);
        return new()
        {
            ModelDimension = args.Int("--d-model", 64), NumberOfLayers = args.Int("--layers", 2), PatchLength = args.Int("--patch", 4),
            NumberOfEpochs = args.Int("--epochs", options.Quick ? 20 : 100), BatchSize = args.Int("--batch", 16),
            LearningRate = args.Double("--lr", 2e-3), WeightDecay = args.Double("--wd", 0.05), NormalizeEachSequence = true,
            EarlyStoppingPatience = 1000, Dropout = args.Double("--dropout", 0),
        };
    }

    private static void Report(string dataset, string model, double[] acc, double target, double? rocket, double? miniRocket, double seconds)
    {
        double mean = acc.Average(), std = Math.Sqrt(acc.Select(a => (a - mean) * (a - mean)).Sum() / Math.Max(1, acc.Length - 1));
        Console.WriteLine($"| {dataset} | {model} | {mean:F3} ± {std:F3} | {target:F3} | {rocket?.ToString("F3") ?? "—"} | {miniRocket?.ToString("F3") ?? "—"} | {seconds:F0} |");
    }
}
