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

    // Tuned: each dataset's own Mamba flags, chosen on its validation split (BENCHMARKS.md, classify-ucr); they come after the
    // command line's, so a flag given there wins, and --tuned 0 drops them (the suite's defaults for every dataset).
    private static readonly (string Name, double? Rocket, double? MiniRocket, double Target, string Tuned)[] Datasets =
    {
        ("GunPoint", 1.000, 0.993, 1.000, "--d-model 128 --epochs 200 --smoothing 0.1"), ("ItalyPowerDemand", 0.970, 0.969, 0.970, "--d-model 32 --noise 0.3"),
        ("ArrowHead", 0.814, 0.863, 0.88, "--stem 3,9,27 --d-model 128"), ("BasicMotions", null, null, 1.000, ""),
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
        // --seed-start S: seeds S to S + seeds − 1 (so that one setting's seeds can run in separate processes).
        int firstSeed = args.Int("--seed-start", 0);
        var only = args.String("--datasets", string.Join(",", Datasets.Select(d => d.Name))).Split(',');
        // --validate 1: each seed trains on a stratified part of the official TRAIN set and scores the rest (--val-fraction,
        // default 0.3) instead of the TEST set, which is then not read: for choosing settings.
        bool validate = args.Int("--validate", 0) != 0;
        double validationFraction = args.Double("--val-fraction", 0.3);
        bool tuned = args.Int("--tuned", 1) != 0;
        // --gpu 1: the Mamba models train and predict on CUDA device 0 (MLContext.GpuDeviceId); the baselines stay on the CPU.
        bool gpu = args.Int("--gpu", 0) != 0;
        // --baselines 0: only the Mamba model (for validation sweeps of its settings).
        bool baselines = args.Int("--baselines", 1) != 0;
        Console.WriteLine(validate
            ? $"## classify-ucr (VALIDATION: stratified {validationFraction:P0} of each seed's TRAIN rows held out, TEST unused; {seeds} seeds)"
            : $"## classify-ucr (official splits, {seeds} seeds)");
        if (firstSeed != 0) Console.WriteLine($"Seeds {firstSeed} to {firstSeed + seeds - 1}.");
        Console.WriteLine($"Mamba settings ({(gpu ? "CUDA" : "CPU")}): {Describe(MambaOptions(options))}");
        if (tuned)
            foreach (var d in Datasets.Where(d => only.Contains(d.Name) && d.Tuned != ""))
                Console.WriteLine($"{d.Name} (tuned: {d.Tuned}): {Describe(MambaOptions(WithTuned(options, d.Tuned)))}");
        Console.WriteLine();
        Console.WriteLine("| dataset | model | accuracy mean ± std | target | ROCKET | MiniRocket | s |");
        Console.WriteLine("|---|---|---|---|---|---|---|");
        var perSeed = new List<string>();
        foreach (var (name, rocket, miniRocket, target, tunedFlags) in Datasets.Where(d => only.Contains(d.Name)))
        {
            var datasetOptions = tuned ? WithTuned(options, tunedFlags) : options;
            var officialTrain = TsFile.Read(Path.Combine(root, name, name + "_TRAIN.ts"));
            var seedList = Enumerable.Range(firstSeed, seeds).ToArray();
            var splits = seedList.Select(seed => validate
                ? StratifiedSplit(officialTrain, validationFraction, seed)
                : (officialTrain, TsFile.Read(Path.Combine(root, name, name + "_TEST.ts")))).ToArray();
            var clock = Stopwatch.StartNew();
            var mamba = Enumerable.Range(0, seeds).Select(i => UcrModels.Mamba(splits[i].Item1, splits[i].Item2, seedList[i], MambaOptions(datasetOptions), gpu)).ToArray();
            Report(name, "Mamba (MambaSequence)", mamba, target, rocket, miniRocket, clock.Elapsed.TotalSeconds);
            perSeed.Add($"{name}: " + string.Join(" ", mamba.Select(a => a.ToString("F4", System.Globalization.CultureInfo.InvariantCulture))));
            headline[$"{name}_mamba"] = Math.Round(mamba.Average(), 4);
            if (!baselines) continue;
            clock.Restart();
            var lightGbm = Enumerable.Range(0, seeds).Select(i => UcrModels.LightGbm(splits[i].Item1, splits[i].Item2, seedList[i])).ToArray();
            Report(name, "LightGbm on raw series (ML.NET)", lightGbm, target, rocket, miniRocket, clock.Elapsed.TotalSeconds);
            clock.Restart();
            var ours = Enumerable.Range(0, seeds).Select(i => UcrModels.MiniRocketFeatures(splits[i].Item1, splits[i].Item2, seedList[i])).ToArray();
            Report(name, "MiniRocket features + L-BFGS logistic regression (ML.NET)", ours, target, rocket, miniRocket, clock.Elapsed.TotalSeconds);
            var majority = splits.Select(split => UcrModels.MajorityClass(split.Item1, split.Item2)).ToArray();
            Report(name, "Majority class", majority, target, rocket, miniRocket, 0);
            headline[$"{name}_lightgbm"] = Math.Round(lightGbm.Average(), 4);
            headline[$"{name}_minirocket_features"] = Math.Round(ours.Average(), 4);
        }
        // Per-seed accuracies (seed order), for paired comparisons of settings on the same splits.
        Console.WriteLine();
        foreach (var line in perSeed) Console.WriteLine($"Mamba per seed, seeds {firstSeed}–{firstSeed + seeds - 1}: {line}");
        return headline;
    }

    /// <summary>
    /// The command line followed by a dataset's tuned flags (the command line's win: the first occurrence is read); with
    /// --quick, the quick epoch count comes before the tuned flags, so that a tuned --epochs does not lengthen a quick run.
    /// </summary>
    private static BenchmarkOptions WithTuned(BenchmarkOptions options, string flags) =>
        options with
        {
            Args = options.Args.Concat(options.Quick ? new[] { "--epochs", $"{QuickEpochs}" } : Array.Empty<string>())
                               .Concat(flags.Split(' ', StringSplitOptions.RemoveEmptyEntries)).ToArray(),
        };

    private const int QuickEpochs = 20;

    /// <summary>The Mamba settings of this suite's defaults (before any dataset's tuned flags; see BENCHMARKS.md for how they were chosen).</summary>
    internal static MambaSequenceClassificationOptions MambaOptions(BenchmarkOptions options)
    {
        var args = new ArgParser(options.Args);
        return new()
        {
            ModelDimension = args.Int("--d-model", 64), NumberOfLayers = args.Int("--layers", 2), PatchLength = args.Int("--patch", 4),
            NumberOfEpochs = args.Int("--epochs", options.Quick ? QuickEpochs : 100), BatchSize = args.Int("--batch", 16),
            LearningRate = args.Double("--lr", 2e-3), WeightDecay = args.Double("--wd", 0.05), NormalizeEachSequence = true,
            EarlyStoppingPatience = 1000, Dropout = args.Double("--dropout", 0),
            Pooling = Enum.Parse<SequencePooling>(args.String("--pooling", "MeanMax"), ignoreCase: true),
            AddFirstDifference = args.Int("--diff", 1) != 0, Bidirectional = args.Int("--bidirectional", 1) != 0,
            TrainingNoise = args.Double("--noise", 0.1), StateSize = args.Int("--state", 16), EnsembleSize = args.Int("--ensemble", 1),
            WindowFraction = args.Double("--window", 1), PredictionWindows = args.Int("--pred-windows", 5),
            LabelSmoothing = args.Double("--smoothing", 0), MixupAlpha = args.Double("--mixup", 0),
            // --stem 3,9,27: kernel sizes of the convolutional stem (default none); --stem-channels: outputs per kernel.
            StemKernelSizes = args.String("--stem", "").Split(',', StringSplitOptions.RemoveEmptyEntries).Select(k => int.Parse(k, System.Globalization.CultureInfo.InvariantCulture)).ToArray(),
            StemChannels = args.Int("--stem-channels", 8),
            // --conv-features N: MiniRocket features (rounded down to a multiple of 84) read by a linear head beside Mamba's; 0 = none.
            ConvolutionFeatureCount = args.Int("--conv-features", 0), ConvolutionHeadSeparateLoss = args.Int("--conv-separate", 0) != 0,
            // --threads N: TorchSharp threads while fitting (1 is fastest for these tiny models on a busy machine); default: process setting.
            NumberOfThreads = args.Int("--threads", 0) is > 0 and var threads ? threads : null,
        };
    }

    private static string Describe(MambaSequenceClassificationOptions o) =>
        $"d_model {o.ModelDimension}, {o.NumberOfLayers} layers, d_state {o.StateSize}, patch {o.PatchLength}, {o.NumberOfEpochs} epochs, " +
        $"batch {o.BatchSize}, lr {o.LearningRate}, wd {o.WeightDecay}, dropout {o.Dropout}, pooling {o.Pooling}, first difference {o.AddFirstDifference}, " +
        $"bidirectional {o.Bidirectional}, training noise {o.TrainingNoise}, ensemble {o.EnsembleSize}, window fraction {o.WindowFraction} ({o.PredictionWindows} at prediction), " +
        $"label smoothing {o.LabelSmoothing}, mixup α {o.MixupAlpha}, stem kernels [{string.Join(",", o.StemKernelSizes)}] × {o.StemChannels} channels, convolution features {o.ConvolutionFeatureCount} (separate loss {o.ConvolutionHeadSeparateLoss}), per-sequence normalisation {o.NormalizeEachSequence}";

    /// <summary>The seed's stratified split of <paramref name="rows"/>: about <paramref name="heldOut"/> of each class is held out.</summary>
    private static (IReadOnlyList<TsSeries> Train, IReadOnlyList<TsSeries> Validation) StratifiedSplit(IReadOnlyList<TsSeries> rows, double heldOut, int seed)
    {
        var rng = new Random(seed);
        var train = new List<TsSeries>();
        var validation = new List<TsSeries>();
        foreach (var group in rows.GroupBy(r => r.Label).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            var shuffled = group.OrderBy(_ => rng.Next()).ToArray();
            int cut = (int)Math.Round(shuffled.Length * heldOut);
            validation.AddRange(shuffled[..cut]);
            train.AddRange(shuffled[cut..]);
        }
        return (train, validation);
    }

    private static void Report(string dataset, string model, double[] acc, double target, double? rocket, double? miniRocket, double seconds)
    {
        double mean = acc.Average(), std = Math.Sqrt(acc.Select(a => (a - mean) * (a - mean)).Sum() / Math.Max(1, acc.Length - 1));
        Console.WriteLine($"| {dataset} | {model} | {mean:F3} ± {std:F3} | {target:F3} | {rocket?.ToString("F3") ?? "—"} | {miniRocket?.ToString("F3") ?? "—"} | {seconds:F0} |");
    }
}
