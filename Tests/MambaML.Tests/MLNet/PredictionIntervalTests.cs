using MambaML.MLNet;
using Microsoft.ML;

namespace MambaML.Tests.MLNet;

/// <summary>
/// The forecaster's prediction intervals: half-widths equal to the window's deviation times the conformal quantile of the
/// validation errors in those units, computed here from the model's own forecasts; coverage near the level on fresh windows
/// of the same process; save/load, ToTimeSeries, and option errors.
/// </summary>
[TestClass]
public sealed class PredictionIntervalTests
{
    private static MambaForecastingOptions Options(IDataView validation, int channels = 1)
    {
        var options = Synthetic.ForecastOptions(channels: channels, epochs: 3);
        options.ValidationSet = validation;
        options.ConfidenceLowerBoundColumnName = "Lower";
        options.ConfidenceUpperBoundColumnName = "Upper";
        options.ConfidenceLevel = 0.9f;
        return options;
    }

    [TestMethod]
    public void HalfWidths_AreTheWindowDeviationTimesTheConformalQuantile_PerStepAndChannel()
    {
        var ml = new MLContext(seed: 1);
        var validation = Synthetic.Windows(ml, rows: 120, channels: 2, seed: 2);
        using var model = ml.Forecasting.ForecastByMamba(Options(validation, channels: 2)).Fit(Synthetic.Windows(ml, rows: 300, channels: 2));
        var scored = model.Transform(validation);
        var forecasts = Synthetic.ReadVectors(scored, "Forecast");
        var lower = Synthetic.ReadVectors(scored, "Lower");
        var upper = Synthetic.ReadVectors(scored, "Upper");
        var labels = Synthetic.ReadVectors(validation, "Label");
        var pasts = Synthetic.ReadVectors(validation, "Features");
        // Each window's population deviation per channel (time-major, 2 channels), floored smoothly at 0.1: the data has unit scale.
        double Deviation(int i, int c)
        {
            var values = Enumerable.Range(0, pasts[i].Length / 2).Select(t => (double)pasts[i][t * 2 + c]).ToArray();
            double mean = values.Average();
            return Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / values.Length + 0.1 * 0.1);
        }
        int n = forecasts.Length, width = forecasts[0].Length, rank = (int)Math.Ceiling((n + 1) * 0.9);
        for (int k = 0; k < width; k++)
        {
            var scores = Enumerable.Range(0, n).Select(i => Math.Abs(forecasts[i][k] - labels[i][k]) / Deviation(i, k % 2)).Order().ToArray();
            double quantile = scores[rank - 1];
            Assert.IsTrue(quantile > 0, $"value {k}: zero quantile");
            for (int i = 0; i < n; i++)
            {
                double expected = quantile * Deviation(i, k % 2);
                Assert.AreEqual(expected, upper[i][k] - forecasts[i][k], 1e-4 * (1 + expected), $"value {k}, window {i}: upper half-width");
                Assert.AreEqual(expected, forecasts[i][k] - lower[i][k], 1e-4 * (1 + expected), $"value {k}, window {i}: lower half-width");
            }
        }
        Assert.AreEqual(0.9f, model.ConfidenceLevel);
        Assert.AreEqual("Lower", model.ConfidenceLowerBoundColumnName);
        Synthetic.CheckSavedAndLoaded(ml, model, validation.Schema, loaded =>
        {
            var again = loaded.Transform(validation);
            CollectionAssert.AreEqual(lower.SelectMany(v => v).ToArray(), Synthetic.ReadVectors(again, "Lower").SelectMany(v => v).ToArray());
            CollectionAssert.AreEqual(upper.SelectMany(v => v).ToArray(), Synthetic.ReadVectors(again, "Upper").SelectMany(v => v).ToArray());
        });
    }

    [TestMethod]
    public void Coverage_OnFreshWindows_IsNearTheLevel()
    {
        var ml = new MLContext(seed: 1);
        using var model = ml.Forecasting.ForecastByMamba(Options(Synthetic.Windows(ml, rows: 400, seed: 2))).Fit(Synthetic.Windows(ml, rows: 300));
        var test = Synthetic.Windows(ml, rows: 1000, seed: 3);
        var scored = model.Transform(test);
        var lower = Synthetic.ReadVectors(scored, "Lower").SelectMany(v => v).ToArray();
        var upper = Synthetic.ReadVectors(scored, "Upper").SelectMany(v => v).ToArray();
        var actual = Synthetic.ReadVectors(test, "Label").SelectMany(v => v).ToArray();
        double coverage = Enumerable.Range(0, actual.Length).Count(i => lower[i] <= actual[i] && actual[i] <= upper[i]) / (double)actual.Length;
        Assert.IsTrue(coverage is > 0.85 and < 0.95, $"coverage {coverage:F3} of {actual.Length} values at level 0.9");
    }

    /// <summary>A flat stretch among the calibration windows (a stuck sensor) does not widen every interval: the window's
    /// deviation the errors are divided by is floored at a tenth of the channel's scale.</summary>
    [TestMethod]
    public void FlatCalibrationWindows_DoNotWidenEveryInterval()
    {
        var ml = new MLContext(seed: 1);
        var train = Synthetic.Windows(ml, rows: 300);
        var test = Synthetic.Windows(ml, rows: 1000, seed: 3);
        var actual = Synthetic.ReadVectors(test, "Label").SelectMany(v => v).ToArray();
        (double Coverage, double Width) Measure(Synthetic.SeriesRow[] validation)
        {
            var windows = TimeSeriesWindows.Create(ml.Data.LoadFromEnumerable(validation), new[] { "A" }, 16, 4).GetWindows();
            using var model = ml.Forecasting.ForecastByMamba(Options(windows)).Fit(train);
            var scored = model.Transform(test);
            var lower = Synthetic.ReadVectors(scored, "Lower").SelectMany(v => v).ToArray();
            var upper = Synthetic.ReadVectors(scored, "Upper").SelectMany(v => v).ToArray();
            return (Enumerable.Range(0, actual.Length).Count(i => lower[i] <= actual[i] && actual[i] <= upper[i]) / (double)actual.Length,
                    Enumerable.Range(0, actual.Length).Average(i => upper[i] - lower[i]));
        }
        var series = Synthetic.Series(400, 2);
        var plain = Measure(series);
        var stuck = Measure(series.Select((r, t) => t < 60 ? new Synthetic.SeriesRow { Time = r.Time, A = 0.25f, B = r.B } : r).ToArray());
        Assert.IsTrue(stuck.Coverage < 0.95 && stuck.Width < 1.3 * plain.Width,
            $"coverage {plain.Coverage:F3} → {stuck.Coverage:F3}, mean width {plain.Width:F3} → {stuck.Width:F3} with 60 flat validation rows");
    }

    [TestMethod]
    public void ConformalRank_IsCeilingOfNPlusOneTimesTheLevel_AtMostN()
    {
        Assert.AreEqual(8, PredictionIntervals.ConformalRank(9, 0.8f), "(9 + 1) × 0.8 = 8 exactly, though 0.8f is 0.800000012 as a double");
        Assert.AreEqual(19, PredictionIntervals.ConformalRank(19, 0.95f));
        Assert.AreEqual(90, PredictionIntervals.ConformalRank(99, 0.9f));
        Assert.AreEqual(91, PredictionIntervals.ConformalRank(100, 0.9f));
        Assert.AreEqual(4, PredictionIntervals.ConformalRank(4, 0.9f), "too few windows: the largest");
    }

    [TestMethod]
    public void ToTimeSeries_CarriesTheBounds()
    {
        var ml = new MLContext(seed: 1);
        var table = ml.Data.LoadFromEnumerable(Synthetic.Series(300));
        var windows = TimeSeriesWindows.Create(table, new[] { "A" }, 16, 4);
        using var model = ml.Forecasting.ForecastByMamba(Options(windows.GetWindows(200, 300))).Fit(windows.GetWindows(0, 200));
        var points = windows.ToTimeSeries(model.Transform(windows.GetLatestWindow()), "Forecast", "Lower", "Upper");
        Assert.AreEqual(4, points.Count);
        Assert.IsTrue(points.All(p => p.LowerBound < p.Forecast && p.Forecast < p.UpperBound), string.Join("\n", points));
        Assert.IsTrue(windows.ToTimeSeries(model.Transform(windows.GetLatestWindow())).All(p => p.LowerBound is null && p.UpperBound is null));
    }

    [TestMethod]
    public void OptionErrors_NameTheSetting()
    {
        var ml = new MLContext(seed: 1);
        var options = Synthetic.ForecastOptions();
        options.ConfidenceLowerBoundColumnName = "Lower";
        var e = Assert.ThrowsExactly<ArgumentException>(() => ml.Forecasting.ForecastByMamba(options));
        StringAssert.Contains(e.Message, "ConfidenceUpperBoundColumnName");
        options.ConfidenceUpperBoundColumnName = "Forecast";
        e = Assert.ThrowsExactly<ArgumentException>(() => ml.Forecasting.ForecastByMamba(options));
        StringAssert.Contains(e.Message, "'Forecast'");
        options.ConfidenceUpperBoundColumnName = "Upper";
        foreach (float level in new[] { 0f, 1f, float.NaN })
        {
            options.ConfidenceLevel = level;
            Assert.AreEqual(nameof(MambaForecastingOptions.ConfidenceLevel),
                Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Forecasting.ForecastByMamba(options)).ParamName);
        }
    }
}
