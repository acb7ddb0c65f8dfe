using MambaML.MLNet;
using Microsoft.ML;
using Microsoft.ML.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.Tests.MLNet;

/// <summary>The forecaster's seasonal cycle (<see cref="MambaForecastingOptions.CycleLength"/>): fit, forecast, ML.NET use, errors.</summary>
[TestClass]
public sealed class ForecastCycleTests
{
    public sealed class IndexedWindow
    {
        [VectorType(16)] public float[] Features { get; set; } = Array.Empty<float>();
        [VectorType(4)] public float[] Label { get; set; } = Array.Empty<float>();
        public long WindowStart { get; set; }
    }

    public sealed class UnindexedWindow
    {
        [VectorType(16)] public float[] Features { get; set; } = Array.Empty<float>();
        [VectorType(4)] public float[] Label { get; set; } = Array.Empty<float>();
    }

    public sealed class FractionalIndexWindow
    {
        [VectorType(16)] public float[] Features { get; set; } = Array.Empty<float>();
        [VectorType(4)] public float[] Label { get; set; } = Array.Empty<float>();
        public float WindowStart { get; set; }
    }

    private static ForecastArchitecture Architecture(int cycleLength, int lookback = 11, int horizon = 5, int channels = 3) => new()
    {
        Lookback = lookback, Horizon = horizon, Channels = channels, ChannelIndependent = true, InstanceNormalization = true,
        LinearSkip = true, PatchLength = 4, CycleLength = cycleLength, Mamba = new MambaML.Model.MambaConfig { DModel = 8, NLayer = 1, DState = 4 },
    };

    // Cycle position of step t after a window starting at index (non-negative, also for negative indices).
    private static int Position(long index, int t, int cycleLength) => (int)(((index + t) % cycleLength + cycleLength) % cycleLength);

    [TestMethod]
    public void FitCycle_IsTheMeanOfTheWindowsAtEachPosition_UncoveredPositionsZero()
    {
        const int cycleLength = 29, lookback = 11, channels = 3;
        using var network = new ForecastNetwork(Architecture(cycleLength), seed: 1);
        var rng = new Random(3);
        // Two batches of odd sizes; indices (some negative) cover only part of the 29 positions.
        var batches = new[] { 5, 8 }.Select(n => (
            Values: Enumerable.Range(0, n * lookback * channels).Select(_ => (float)(rng.NextDouble() * 6 - 3)).ToArray(),
            Indices: Enumerable.Range(0, n).Select(_ => (long)rng.Next(-40, -25)).ToArray())).ToArray();
        using (no_grad()) network.cycle!.fill_(float.NaN);   // poisoned: every position must be written
        network.FitCycle(batches.Select(b => (tensor(b.Values).view(b.Indices.Length, lookback, channels), tensor(b.Indices))));

        var sums = new double[cycleLength, channels];
        var counts = new int[cycleLength];
        foreach (var (values, indices) in batches)
            for (int i = 0; i < indices.Length; i++)
                for (int t = 0; t < lookback; t++)
                {
                    int p = Position(indices[i], t, cycleLength);
                    counts[p]++;
                    for (int c = 0; c < channels; c++) sums[p, c] += values[(i * lookback + t) * channels + c];
                }
        Assert.IsTrue(counts.Any(n => n == 0) && counts.Any(n => n > 0), "the test should leave some positions uncovered");
        var fitted = network.cycle!.data<float>().ToArray();
        for (int p = 0; p < cycleLength; p++)
            for (int c = 0; c < channels; c++)
                Assert.AreEqual(counts[p] == 0 ? 0 : sums[p, c] / counts[p], fitted[p * channels + c], 1e-5, $"position {p}, channel {c}");
    }

    [TestMethod]
    public void Predict_IsTheForecastOfTheWindowLessItsCycle_PlusTheCycleOverTheHorizon()
    {
        const int cycleLength = 7, lookback = 11, horizon = 5, channels = 3, batch = 6;
        // Same seed: the cycle takes no random draws, so both networks have the same weights apart from it.
        using var withCycle = new ForecastNetwork(Architecture(cycleLength), seed: 2);
        using var plain = new ForecastNetwork(Architecture(0), seed: 2);
        withCycle.eval(); plain.eval();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var generator = new Generator(5);
        withCycle.cycle!.copy_(randn(new long[] { cycleLength, channels }, generator: generator));
        var window = randn(new long[] { batch, lookback, channels }, generator: generator);
        long[] indices = { 0, 3, -5, 100, 6, 13 };
        var cycle = withCycle.cycle.data<float>().ToArray();
        var lessCycle = window.clone();
        var added = zeros(batch, horizon, channels);
        for (int b = 0; b < batch; b++)
            for (int c = 0; c < channels; c++)
            {
                for (int t = 0; t < lookback; t++) lessCycle[b, t, c] -= cycle[Position(indices[b], t, cycleLength) * channels + c];
                for (int t = 0; t < horizon; t++) added[b, t, c] = cycle[Position(indices[b], lookback + t, cycleLength) * channels + c];
            }
        var expected = plain.Predict(lessCycle) + added;
        var actual = withCycle.Predict(window, tensor(indices));
        Assert.IsTrue(allclose(expected, actual, rtol: 1e-5, atol: 1e-5), $"max difference {(expected - actual).abs().max().item<float>()}");
        Assert.IsFalse(allclose(actual, plain.Predict(window), rtol: 1e-3, atol: 1e-3), "the cycle changed nothing");
        Assert.ThrowsExactly<ArgumentNullException>(() => withCycle.Predict(window));
    }

    [TestMethod]
    public void Cycle_ThroughMLNet_ReadsWindowStart_AFullCycleLaterIsTheSame_SavesAndLoads()
    {
        var ml = new MLContext(seed: 1);
        var windows = Synthetic.Windows(ml, rows: 150);   // TimeSeriesWindows: Features, Label, WindowStart
        var options = Synthetic.ForecastOptions(epochs: 2);
        options.CycleLength = 12;
        options.FitLinearSkip = true;
        using var model = ml.Forecasting.ForecastByMamba(options).Fit(windows);
        Assert.AreEqual(12, model.CycleLength);
        Assert.AreEqual(TimeSeriesWindows.WindowStartColumnName, model.CycleIndexColumnName);

        var rows = ml.Data.CreateEnumerable<IndexedWindow>(windows, reuseRowObject: false).Take(40).ToArray();
        float[] Forecasts(ITransformer m, long shift) => Synthetic.ReadVectors(m.Transform(ml.Data.LoadFromEnumerable(
            rows.Select(r => new IndexedWindow { Features = r.Features, Label = r.Label, WindowStart = r.WindowStart + shift }))), "Forecast").SelectMany(f => f).ToArray();
        var forecast = Forecasts(model, 0);
        CollectionAssert.AreEqual(forecast, Forecasts(model, 12), "a whole cycle later, the same positions");
        CollectionAssert.AreEqual(forecast, Forecasts(model, -24), "two cycles earlier, the same positions");
        CollectionAssert.AreNotEqual(forecast, Forecasts(model, 3), "the window's position in the cycle changed nothing");

        // Forecasting past the table's end: the latest window carries its WindowStart too.
        var table = TimeSeriesWindows.Create(ml.Data.LoadFromEnumerable(Synthetic.Series(150)), new[] { "A" }, lookback: 16, horizon: 4);
        var next = table.ToTimeSeries(model.Transform(table.GetLatestWindow()));
        CollectionAssert.AreEqual(new long[] { 150, 151, 152, 153 }, next.Select(p => p.Row).ToArray());
        Assert.IsTrue(next.All(p => float.IsFinite(p.Forecast)), "non-finite forecast past the end");

        Synthetic.CheckSavedAndLoaded(ml, model, windows.Schema, loaded => CollectionAssert.AreEqual(forecast, Forecasts(loaded, 0)));
    }

    [TestMethod]
    public void Cycle_MissingOrFractionalIndex_NegativeLength_NameTheProblem()
    {
        var ml = new MLContext(seed: 1);
        var options = Synthetic.ForecastOptions(epochs: 1);
        options.CycleLength = 12;
        var noIndex = ml.Data.LoadFromEnumerable(new[] { new UnindexedWindow { Features = new float[16], Label = new float[4] } });
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Forecasting.ForecastByMamba(options).Fit(noIndex));
        StringAssert.Contains(e.Message, "CycleIndexColumnName");
        StringAssert.Contains(e.Message, "WindowStart");

        var fractional = ml.Data.LoadFromEnumerable(Enumerable.Range(0, 20).Select(i => new FractionalIndexWindow
        {
            Features = Enumerable.Range(0, 16).Select(t => (float)Math.Sin(i + t)).ToArray(), Label = new float[4], WindowStart = i + 0.5f,
        }));
        var error = Assert.ThrowsExactly<InvalidOperationException>(() => ml.Forecasting.ForecastByMamba(options).Fit(fractional));
        StringAssert.Contains(error.Message, "WindowStart");
        StringAssert.Contains(error.Message, "whole number");

        options.CycleLength = -1;
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Forecasting.ForecastByMamba(options));
        StringAssert.Contains(e.Message, "CycleLength");
    }

    public sealed class LevelRow
    {
        public float A { get; set; }
    }

    [TestMethod]
    [DataRow(false)]
    [DataRow(true)]
    public void Cycle_WithoutInstanceNormalization_ForecastsASeriesAtAnyLevelAsAtZero(bool fitLinearSkip)
    {
        // Before: the cycle started at the windows' raw means, level included, and the channel offset (the level) was removed as
        // well, so the network saw inputs a whole level below zero; at level 500 the test MAE was 479 against 21 at level 0.
        var ml = new MLContext(seed: 0);
        (float[] Forecast, double Mae) Run(float level)
        {
            var rows = Enumerable.Range(0, 300).Select(t => new LevelRow { A = 100 * MathF.Sin(2 * MathF.PI * t / 24) + 5 * MathF.Sin(t * 0.37f) + level }).ToList();
            var windows = TimeSeriesWindows.Create(ml.Data.LoadFromEnumerable(rows), new[] { "A" }, lookback: 24, horizon: 6);
            var options = Synthetic.ForecastOptions(lookback: 24, horizon: 6, epochs: 3);
            (options.InstanceNormalization, options.CycleLength, options.FitLinearSkip) = (false, 24, fitLinearSkip);
            using var model = ml.Forecasting.ForecastByMamba(options).Fit(windows.GetWindows(0, 250));
            var points = windows.ToTimeSeries(model.Transform(windows.GetWindows(250)));
            return (points.Select(p => p.Forecast - level).ToArray(), points.Average(p => Math.Abs(p.Forecast - p.Actual!.Value)));
        }
        var (atZero, maeAtZero) = Run(0);
        foreach (float level in new[] { 500f, 50_000f })
        {
            var (shifted, mae) = Run(level);
            double largest = atZero.Zip(shifted, (a, b) => Math.Abs(a - b)).Max();
            Assert.IsTrue(largest < 0.5, $"level {level}: forecasts less the level differ from level 0's by up to {largest:G3} (MAE {mae:G3} against {maeAtZero:G3})");
        }
        Assert.IsTrue(maeAtZero < 10, $"MAE {maeAtZero:G3} on a cycle of amplitude 100");
    }
}
