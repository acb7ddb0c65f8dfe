using Microsoft.ML;

namespace MambaML.Benchmarks;

/// <summary>
/// Training speed through <c>Fit</c>: training rows per second in an epoch, for the synthetic forecasting, sequence and text
/// tasks (those of the serving benchmark, with more rows) at the default model size and a large one (d_model 128, 4 layers),
/// on the CPU with one libtorch thread and with every core, and with <c>--gpu N</c> on CUDA device N: the same data, seed and
/// batch size (32) in every cell. The epoch timed is the last of <c>--epochs</c> (2 by default): the first carries one-off
/// costs (JIT, allocator, CUDA kernel compilation).
/// </summary>
internal sealed class TrainingSpeedSuite : IBenchmarkSuite
{
    public string Name => "training";
    public string Description => "Fit speed: rows/s of an epoch for forecaster/sequence/text, default and large, CPU on 1 thread vs every core vs CUDA (--gpu N)";

    public IReadOnlyDictionary<string, object> Run(BenchmarkOptions options)
    {
        var args = new ArgParser(options.Args);
        int gpu = args.Int("--gpu", -1), epochs = Math.Max(2, args.Int("--epochs", 2)), cores = Environment.ProcessorCount;
        int rows = options.Quick ? 256 : 2048;
        var tasks = new[] { SyntheticTasks.Forecaster(rows), SyntheticTasks.SequenceClassifier(rows / 2), SyntheticTasks.TextClassifier(rows) };
        var devices = new List<(string Name, int? Gpu, int Threads)> { ("CPU, 1 thread", null, 1), ($"CPU, {cores} threads", null, cores) };
        if (gpu >= 0) devices.Add(($"CUDA device {gpu}", gpu, 1));

        Console.WriteLine($"## training: {cores} cores, batch 32, epoch {epochs} of {epochs} timed");
        Console.WriteLine();
        Console.WriteLine("| task | size | rows | device | s per epoch | rows/s | vs CPU, 1 thread |");
        Console.WriteLine("|---|---|---|---|---|---|---|");
        var headline = new Dictionary<string, object> { ["cores"] = cores };
        foreach (var task in tasks)
            foreach (var (size, dModel, layers) in new[] { ("default", 32, 2), ("large", 128, 4) })
            {
                double? single = null;
                foreach (var (device, gpuId, threads) in devices)
                {
                    var ml = new MLContext(seed: 1) { GpuDeviceId = gpuId, FallbackToCpu = false };
                    var elapsed = new List<TimeSpan>();
                    SyntheticTasks.Dispose(task.Fit(ml, o =>
                    {
                        (o.ModelDimension, o.NumberOfLayers, o.NumberOfEpochs, o.NumberOfThreads) = (dModel, layers, epochs, threads);
                        o.ProgressCallback = p => elapsed.Add(p.Elapsed);
                    }));
                    double seconds = (elapsed[^1] - elapsed[^2]).TotalSeconds, rate = task.RowCount / seconds;
                    single ??= rate;
                    Console.WriteLine($"| {task.Name} | {size} | {task.RowCount} | {device} | {seconds:F2} | {rate:F0} | {rate / single:F2} |");
                    headline[$"{task.Name}_{size}_{(gpuId is null ? $"cpu{threads}" : "cuda")}_rows_per_s"] = Math.Round(rate);
                }
            }
        return headline;
    }
}
