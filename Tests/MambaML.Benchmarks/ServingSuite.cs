using System.Diagnostics;
using MambaML.MLNet;
using Microsoft.ML;
using Microsoft.ML.Data;
using static TorchSharp.torch;

namespace MambaML.Benchmarks;

/// <summary>
/// Serving throughput on the CPU (or, with <c>--gpu N</c>, on CUDA device N): single-row <c>PredictionEngine</c> calls from several threads, each thread with its own
/// engine (as ML.NET's PredictionEnginePool gives), for a forecaster, a numeric sequence classifier and a text classifier at
/// the default model size, trained briefly on synthetic data (speed does not depend on the weights). Three ways to serve, in
/// the same process: one model shared by all threads; one loaded copy of the model per thread; and one shared model whose
/// calls are serialised by a lock, which is how MambaML served a shared model before its predictions could run concurrently.
/// Every thread runs libtorch on one thread, as the README advises for serving. With <c>--gpu</c> the models train and serve
/// on the GPU (the MLContext's GpuDeviceId, no CPU fallback), so the same tables measure CUDA serving.
/// Then <c>Transform</c> throughput over 1,024 rows against <c>PredictionBatchSize</c>, for the default size and a large one
/// (d_model 128, 4 layers), the models trained with the same seed and differing only in that setting.
/// </summary>
internal sealed class ServingSuite : IBenchmarkSuite
{
    public string Name => "serving";
    public string Description => "PredictionEngine throughput on T threads: one shared model vs a copy per thread vs serialised " +
                                 "(--threads 1,2,4 --seconds S); Transform rows/s against PredictionBatchSize (--batches 16,32,64,128,256); --parts engine,transform; --gpu N";

    private enum Variant { Shared, CopyPerThread, Serialised }

    public IReadOnlyDictionary<string, object> Run(BenchmarkOptions options)
    {
        var args = new ArgParser(options.Args);
        var threadCounts = args.String("--threads", DefaultThreads()).Split(',').Select(int.Parse).ToArray();
        double seconds = args.Double("--seconds", options.Quick ? 1 : 4);
        var parts = args.String("--parts", "engine,transform").Split(',');
        var batchSizes = args.String("--batches", options.Quick ? "32,256" : "16,32,64,128,256").Split(',').Select(int.Parse).ToArray();
        int gpu = args.Int("--gpu", -1);
        set_num_threads(1);
        var ml = new MLContext(seed: 1);
        if (gpu >= 0) (ml.GpuDeviceId, ml.FallbackToCpu) = (gpu, false);
        ml.RegisterMambaML();

        string device = gpu >= 0 ? $"CUDA device {gpu} ({cuda.device_count()} visible)" : "CPU";
        Console.WriteLine($"## serving on the {device}: {Environment.ProcessorCount} cores, {seconds} s per cell, one libtorch thread per serving thread");
        Console.WriteLine();
        Console.WriteLine("| model | threads | variant | predictions/s | vs a copy per thread | median µs | p99 µs |");
        Console.WriteLine("|---|---|---|---|---|---|---|");
        var headline = new Dictionary<string, object> { ["cores"] = Environment.ProcessorCount, ["device"] = gpu >= 0 ? "CUDA" : "CPU" };
        var models = new[] { Forecaster(), SequenceClassifier(), TextClassifier() };
        foreach (var model in parts.Contains("engine") ? models : Array.Empty<IServedModel>())
        {
            string path = Path.Combine(Path.GetTempPath(), $"mambaml-serving-{Environment.ProcessId}-{model.Name}.zip");
            try
            {
                model.TrainAndSave(ml, path, _ => { });
                Measure(ml, model, path, Variant.Shared, 1, Math.Min(1, seconds));   // warm-up: JIT, allocator, caches
                foreach (int threads in threadCounts)
                {
                    var rates = new Dictionary<Variant, double>();
                    foreach (var variant in new[] { Variant.CopyPerThread, Variant.Shared, Variant.Serialised })
                    {
                        var (rate, median, p99) = Measure(ml, model, path, variant, threads, seconds);
                        rates[variant] = rate;
                        Console.WriteLine($"| {model.Name} | {threads} | {Describe(variant)} | {rate:F0} | {rate / rates[Variant.CopyPerThread]:F2} | {median:F0} | {p99:F0} |");
                    }
                    headline[$"{model.Name}_t{threads}_shared_vs_copies"] = Math.Round(rates[Variant.Shared] / rates[Variant.CopyPerThread], 3);
                    headline[$"{model.Name}_t{threads}_shared_vs_serialised"] = Math.Round(rates[Variant.Shared] / rates[Variant.Serialised], 3);
                }
            }
            finally
            {
                File.Delete(path);
            }
        }

        Console.WriteLine();
        Console.WriteLine("| model | size | PredictionBatchSize | Transform rows/s | vs the largest batch |");
        Console.WriteLine("|---|---|---|---|---|");
        foreach (var model in parts.Contains("transform") ? models : Array.Empty<IServedModel>())
            foreach (var (size, dModel, layers) in new[] { ("default", 32, 2), ("large", 128, 4) })
            {
                var rates = batchSizes.Select(b => TransformRate(ml, model, o => (o.ModelDimension, o.NumberOfLayers, o.PredictionBatchSize) = (dModel, layers, b))).ToArray();
                for (int i = 0; i < batchSizes.Length; i++)
                {
                    Console.WriteLine($"| {model.Name} | {size} | {batchSizes[i]} | {rates[i]:F0} | {rates[i] / rates[^1]:F2} |");
                    headline[$"{model.Name}_{size}_transform_b{batchSizes[i]}_vs_b{batchSizes[^1]}"] = Math.Round(rates[i] / rates[^1], 3);
                }
            }
        return headline;
    }

    /// <summary>Rows per second of Transform over 1,024 rows (the best of three passes after one untimed), one libtorch thread.</summary>
    private static double TransformRate(MLContext ml, IServedModel model, Action<MambaTrainerOptions> configure)
    {
        string path = Path.Combine(Path.GetTempPath(), $"mambaml-serving-{Environment.ProcessId}-{model.Name}-transform.zip");
        try
        {
            model.TrainAndSave(ml, path, configure);
            var loaded = ml.Model.Load(path, out DataViewSchema _);
            try
            {
                var data = model.Rows(ml, 1024);
                double best = 0;
                for (int pass = 0; pass < 4; pass++)
                {
                    var clock = Stopwatch.StartNew();
                    var scored = loaded.Transform(data);
                    var column = scored.Schema[model.OutputColumn];
                    using var cursor = scored.GetRowCursor(new[] { column });
                    var get = cursor.GetGetter<VBuffer<float>>(column);
                    VBuffer<float> value = default;
                    long rows = 0;
                    while (cursor.MoveNext()) { get(ref value); rows++; }
                    if (pass > 0) best = Math.Max(best, rows / clock.Elapsed.TotalSeconds);
                }
                return best;
            }
            finally
            {
                DisposeModel(loaded);
            }
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static string DefaultThreads() =>
        string.Join(',', new[] { 1, 2, 4, Environment.ProcessorCount }.Where(t => t <= Math.Max(4, Environment.ProcessorCount)).Distinct().Order());

    private static string Describe(Variant variant) => variant switch
    {
        Variant.Shared => "one shared model",
        Variant.CopyPerThread => "a copy per thread",
        _ => "one model, serialised",
    };

    /// <summary>Predictions per second over all threads, and the median and 99th-percentile call latency in µs.</summary>
    private static (double Rate, double MedianUs, double P99Us) Measure(MLContext ml, IServedModel model, string path, Variant variant, int threads, double seconds)
    {
        var models = Enumerable.Range(0, variant == Variant.CopyPerThread ? threads : 1).Select(_ => ml.Model.Load(path, out DataViewSchema _)).ToArray();
        try
        {
            var gate = new object();
            var latencies = new List<double>[threads];
            using var start = new Barrier(threads + 1);
            var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
            {
                set_num_threads(1);
                var predict = model.Predictor(ml, models[variant == Variant.CopyPerThread ? t : 0]);
                for (int i = 0; i < 20; i++) predict(i);   // warm-up
                var mine = latencies[t] = new List<double>(1 << 16);
                start.SignalAndWait();
                var deadline = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency);
                for (int i = 0; Stopwatch.GetTimestamp() < deadline; i++)
                {
                    long begin = Stopwatch.GetTimestamp();
                    if (variant == Variant.Serialised)
                        lock (gate) predict(i);
                    else
                        predict(i);
                    mine.Add(Stopwatch.GetElapsedTime(begin).TotalMicroseconds);
                }
            })).ToArray();
            foreach (var worker in workers) worker.Start();
            start.SignalAndWait();
            var clock = Stopwatch.StartNew();
            foreach (var worker in workers) worker.Join();
            double elapsed = clock.Elapsed.TotalSeconds;
            var all = latencies.SelectMany(l => l).Order().ToArray();
            return (all.Length / elapsed, all[all.Length / 2], all[(int)(0.99 * (all.Length - 1))]);
        }
        finally
        {
            foreach (var m in models) DisposeModel(m);
        }
    }

    private static void DisposeModel(ITransformer model)
    {
        foreach (var part in model as IEnumerable<ITransformer> ?? new[] { model }) (part as IDisposable)?.Dispose();
    }

    /// <summary>A model to serve: trains and saves itself, then makes per-thread predictors over a loaded copy.</summary>
    private interface IServedModel
    {
        string Name { get; }
        /// <summary>The model's vector output column.</summary>
        string OutputColumn { get; }
        /// <summary>Trains for one epoch with the options <paramref name="configure"/> leaves, and saves to <paramref name="path"/>.</summary>
        void TrainAndSave(MLContext ml, string path, Action<MambaTrainerOptions> configure);
        /// <summary>The model's rows repeated to <paramref name="count"/>.</summary>
        IDataView Rows(MLContext ml, int count);
        /// <summary>A function predicting the i-th of a fixed set of inputs, with its own PredictionEngine over <paramref name="model"/>.</summary>
        Action<int> Predictor(MLContext ml, ITransformer model);
    }

    /// <summary>
    /// A model of one input row type, trained by the estimator <paramref name="estimator"/> makes (from options it passes
    /// through the configuring action) for one epoch on <paramref name="rows"/>, which it then predicts in turn.
    /// </summary>
    private sealed class ServedModel<TRow, TOutput>(string name, string outputColumn, TRow[] rows,
                                                   Func<MLContext, Action<MambaTrainerOptions>, IEstimator<ITransformer>> estimator) : IServedModel
        where TRow : class where TOutput : class, new()
    {
        public string Name => name;
        public string OutputColumn => outputColumn;

        public IDataView Rows(MLContext ml, int count) => ml.Data.LoadFromEnumerable(Enumerable.Range(0, count).Select(i => rows[i % rows.Length]));

        public void TrainAndSave(MLContext ml, string path, Action<MambaTrainerOptions> configure)
        {
            var data = ml.Data.LoadFromEnumerable(rows);
            var model = estimator(ml, configure).Fit(data);
            try { ml.Model.Save(model, data.Schema, path); }
            finally { DisposeModel(model); }
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

    /// <summary>A univariate forecaster: 96 steps in, 24 out, the default model size.</summary>
    private static IServedModel Forecaster()
    {
        var rng = new Random(1);
        const int count = 256;
        var series = Enumerable.Range(0, count + Lookback + Horizon)
            .Select(t => (float)(Math.Sin(2 * Math.PI * t / 24) + 0.3 * Math.Sin(2 * Math.PI * t / 168) + 0.1 * rng.NextDouble())).ToArray();
        var rows = Enumerable.Range(0, count).Select(i => new WindowRow
        {
            Features = series.AsSpan(i, Lookback).ToArray(),
            Label = series.AsSpan(i + Lookback, Horizon).ToArray(),
        }).ToArray();
        return new ServedModel<WindowRow, ForecastRow>("forecaster", "Forecast", rows, (ml, configure) =>
        {
            var options = new MambaForecastingOptions { Lookback = Lookback, Horizon = Horizon, NumberOfEpochs = 1, NumberOfThreads = 1, Seed = 1 };
            configure(options);
            return ml.Forecasting.ForecastByMamba(options);
        });
    }

    /// <summary>A three-class classifier of 128-step numeric sequences, the default model size.</summary>
    private static IServedModel SequenceClassifier()
    {
        var rng = new Random(2);
        string[] names = { "sine", "square", "ramp" };
        var rows = Enumerable.Range(0, 120).Select(i =>
        {
            double frequency = 0.02 + 0.08 * rng.NextDouble(), phase = rng.NextDouble();
            var values = Enumerable.Range(0, 128).Select(t =>
            {
                double cycle = (frequency * t + phase) % 1.0;
                return (float)((i % 3) switch { 0 => Math.Sin(2 * Math.PI * cycle), 1 => cycle < 0.5 ? 1 : -1, _ => 2 * cycle - 1 });
            }).ToArray();
            return new SequenceRow { Features = values, Shape = names[i % 3] };
        }).ToArray();
        return new ServedModel<SequenceRow, ScoreRow>("sequence", "Score", rows, (ml, configure) =>
        {
            var options = new MambaSequenceClassificationOptions { NumberOfEpochs = 1, NumberOfThreads = 1, Seed = 1 };
            configure(options);
            return ml.Transforms.Conversion.MapValueToKey("Label", "Shape").Append(ml.MulticlassClassification.Trainers.MambaSequence(options));
        });
    }

    /// <summary>A two-class text classifier (cl100k tokens) of 8–30-word sentences, the default model size.</summary>
    private static IServedModel TextClassifier()
    {
        var words = ("the food was really good great bad awful service slow friendly staff place very lovely terrible tasty bland " +
                     "and but not at all we will come back never again").Split(' ');
        var rng = new Random(3);
        var rows = Enumerable.Range(0, 200).Select(i => new ReviewRow
        {
            Text = string.Join(' ', Enumerable.Range(0, rng.Next(8, 31)).Select(_ => words[rng.Next(words.Length)])),
            Sentiment = i % 2 == 0 ? "positive" : "negative",
        }).ToArray();
        return new ServedModel<ReviewRow, ScoreRow>("text", "Score", rows, (ml, configure) =>
        {
            var options = new MambaTextClassificationOptions { NumberOfEpochs = 1, NumberOfThreads = 1, Seed = 1 };
            configure(options);
            return ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment").Append(ml.MulticlassClassification.Trainers.MambaTextClassification(options));
        });
    }
}
