using System.Diagnostics;

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
        var sorted = samples.OrderBy(x => x).ToArray();
        double median = sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : 0.5 * (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]);
        return (median, samples);
    }
}
