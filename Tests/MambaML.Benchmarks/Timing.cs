using System.Diagnostics;
using MambaML.Scan.Cuda;

namespace MambaML.Benchmarks;

/// <summary>Wall-clock timing with warm-up and repetitions; reports the median.</summary>
internal static class Timing
{
    /// <summary>
    /// Runs <paramref name="action"/> <paramref name="warmup"/> times untimed, then <paramref name="repetitions"/> times timed.
    /// <paramref name="synchronize"/> (e.g. a CUDA synchronise) runs inside each timed interval, after the action.
    /// </summary>
    /// <returns>The median time in milliseconds, and all samples.</returns>
    public static (double MedianMs, double[] SamplesMs) Measure(Action action, int warmup, int repetitions, Action? synchronize = null)
    {
        for (int i = 0; i < warmup; i++) { action(); synchronize?.Invoke(); }
        var samples = new double[repetitions];
        for (int i = 0; i < repetitions; i++)
        {
            synchronize?.Invoke();
            long start = Stopwatch.GetTimestamp();
            action();
            synchronize?.Invoke();
            samples[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }
        return (Median(samples), samples);
    }

    /// <summary>
    /// GPU time of <paramref name="action"/> on device 0, from CUDA events recorded on the default stream around each
    /// repetition. The repetitions are queued back to back and synchronised once, so the host's time to enqueue the work
    /// overlaps the GPU's and the numbers are the device's time per repetition, not a host round trip (METHOD.md's advice).
    /// </summary>
    public static (double MedianMs, double[] SamplesMs) MeasureGpu(Action action, int warmup, int repetitions)
    {
        var driver = CudaKernels.Driver.Driver ?? throw new InvalidOperationException(CudaKernels.Driver.Error);
        driver.MakeCurrent(CudaKernels.Context(0));
        for (int i = 0; i < warmup; i++) action();
        var events = Enumerable.Range(0, repetitions + 1).Select(_ => driver.CreateEvent()).ToArray();
        try
        {
            driver.RecordEvent(events[0]);
            for (int i = 0; i < repetitions; i++)
            {
                action();
                driver.RecordEvent(events[i + 1]);
            }
            var samples = Enumerable.Range(0, repetitions).Select(i => (double)driver.ElapsedMs(events[i], events[i + 1])).ToArray();
            return (Median(samples), samples);
        }
        finally
        {
            foreach (var e in events) driver.DestroyEvent(e);
        }
    }

    private static double Median(double[] samples)
    {
        var sorted = samples.OrderBy(x => x).ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : 0.5 * (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]);
    }
}
