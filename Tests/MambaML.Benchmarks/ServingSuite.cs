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
        var models = new[] { SyntheticTasks.Forecaster(), SyntheticTasks.SequenceClassifier(), SyntheticTasks.TextClassifier() };
        foreach (var model in parts.Contains("engine") ? models : Array.Empty<ISyntheticTask>())
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
        foreach (var model in parts.Contains("transform") ? models : Array.Empty<ISyntheticTask>())
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
    private static double TransformRate(MLContext ml, ISyntheticTask model, Action<MambaTrainerOptions> configure)
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
                SyntheticTasks.Dispose(loaded);
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
    private static (double Rate, double MedianUs, double P99Us) Measure(MLContext ml, ISyntheticTask model, string path, Variant variant, int threads, double seconds)
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
            foreach (var m in models) SyntheticTasks.Dispose(m);
        }
    }

}
