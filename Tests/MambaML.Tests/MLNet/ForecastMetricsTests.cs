using MambaML.MLNet;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace MambaML.Tests.MLNet;

/// <summary><c>mlContext.Forecasting.Evaluate</c> against plain loops.</summary>
[TestClass]
public sealed class ForecastMetricsTests
{
    private sealed class Scored
    {
        public float[] Features { get; set; } = Array.Empty<float>();
        public float[] Label { get; set; } = Array.Empty<float>();
        public float[] Forecast { get; set; } = Array.Empty<float>();
        public float[] Lower { get; set; } = Array.Empty<float>();
        public float[] Upper { get; set; } = Array.Empty<float>();
    }

    private static IDataView Load(MLContext ml, Scored[] rows, int lookback, int horizon, int channels)
    {
        var schema = SchemaDefinition.Create(typeof(Scored));
        schema[nameof(Scored.Features)].ColumnType = new VectorDataViewType(NumberDataViewType.Single, lookback * channels);
        foreach (var name in new[] { nameof(Scored.Label), nameof(Scored.Forecast), nameof(Scored.Lower), nameof(Scored.Upper) })
            schema[name].ColumnType = new VectorDataViewType(NumberDataViewType.Single, horizon * channels);
        return ml.Data.LoadFromEnumerable(rows, schema);
    }

    private static Scored[] RandomRows(Random random, int count, int lookback, int horizon, int channels)
    {
        float[] Values(int n) => Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 4 - 2)).ToArray();
        return Enumerable.Range(0, count).Select(_ =>
        {
            var forecast = Values(horizon * channels);
            return new Scored
            {
                Features = Values(lookback * channels), Label = Values(horizon * channels), Forecast = forecast,
                Lower = forecast.Select(f => f - (float)random.NextDouble() * 2).ToArray(), Upper = forecast.Select(f => f + (float)random.NextDouble() * 2).ToArray(),
            };
        }).ToArray();
    }

    [TestMethod]
    public void Evaluate_MatchesPlainLoops_ByStepChannelIntervalAndRepeatLast()
    {
        var ml = new MLContext();
        foreach (var (count, lookback, horizon, channels, seed) in new[] { (17, 7, 5, 3, 1), (1, 1, 1, 1, 2), (9, 4, 11, 2, 3) })
        {
            var rows = RandomRows(new Random(seed), count, lookback, horizon, channels);
            var metrics = ml.Forecasting.Evaluate(Load(ml, rows, lookback, horizon, channels), channels, lowerBoundColumnName: "Lower",
                                                  upperBoundColumnName: "Upper", featureColumnName: "Features");
            double abs = 0, sq = 0, inside = 0, width = 0, lastAbs = 0, lastSq = 0;
            double[] stepAbs = new double[horizon], stepSq = new double[horizon], channelAbs = new double[channels], channelSq = new double[channels];
            foreach (var r in rows)
                for (int t = 0; t < horizon; t++)
                    for (int c = 0; c < channels; c++)
                    {
                        int i = t * channels + c;
                        double e = r.Forecast[i] - r.Label[i], naive = r.Features[(lookback - 1) * channels + c] - r.Label[i];
                        abs += Math.Abs(e); sq += e * e; stepAbs[t] += Math.Abs(e); stepSq[t] += e * e; channelAbs[c] += Math.Abs(e); channelSq[c] += e * e;
                        inside += r.Lower[i] <= r.Label[i] && r.Label[i] <= r.Upper[i] ? 1 : 0;
                        width += r.Upper[i] - r.Lower[i];
                        lastAbs += Math.Abs(naive); lastSq += naive * naive;
                    }
            double n = count * horizon * channels;
            string at = $"{count} windows, horizon {horizon}, {channels} channels";
            Assert.AreEqual((long)count, metrics.Windows, at);
            Assert.AreEqual((long)n, metrics.Values, at);
            Assert.AreEqual(abs / n, metrics.MeanAbsoluteError, 1e-12, at);
            Assert.AreEqual(sq / n, metrics.MeanSquaredError, 1e-12, at);
            Assert.AreEqual(Math.Sqrt(sq / n), metrics.RootMeanSquaredError, 1e-12, at);
            for (int t = 0; t < horizon; t++)
            {
                Assert.AreEqual(stepAbs[t] / (count * channels), metrics.MeanAbsoluteErrorByStep[t], 1e-12, $"{at}, step {t}");
                Assert.AreEqual(stepSq[t] / (count * channels), metrics.MeanSquaredErrorByStep[t], 1e-12, $"{at}, step {t}");
            }
            for (int c = 0; c < channels; c++)
            {
                Assert.AreEqual(channelAbs[c] / (count * horizon), metrics.MeanAbsoluteErrorByChannel[c], 1e-12, $"{at}, channel {c}");
                Assert.AreEqual(channelSq[c] / (count * horizon), metrics.MeanSquaredErrorByChannel[c], 1e-12, $"{at}, channel {c}");
            }
            Assert.AreEqual(inside / n, metrics.IntervalCoverage!.Value, 1e-12, at);
            Assert.AreEqual(width / n, metrics.MeanIntervalWidth!.Value, 1e-9, at);
            Assert.AreEqual(lastAbs / n, metrics.RepeatLastMeanAbsoluteError!.Value, 1e-12, at);
            Assert.AreEqual(lastSq / n, metrics.RepeatLastMeanSquaredError!.Value, 1e-12, at);
            Assert.AreEqual(horizon, metrics.MeanAbsoluteErrorByStep.Count);
            Assert.AreEqual(channels, metrics.MeanSquaredErrorByChannel.Count);
        }
        var plain = ml.Forecasting.Evaluate(Load(ml, RandomRows(new Random(4), 3, 2, 2, 1), 2, 2, 1), channels: 1);
        Assert.IsNull(plain.IntervalCoverage);
        Assert.IsNull(plain.RepeatLastMeanSquaredError);
    }

    [TestMethod]
    public void Evaluate_OfAForecastersTransform_ScoresItsForecastColumn()
    {
        var ml = new MLContext(seed: 1);
        var windows = Synthetic.Windows(ml, rows: 120);
        using var model = ml.Forecasting.ForecastByMamba(Synthetic.ForecastOptions(epochs: 1)).Fit(windows);
        var metrics = ml.Forecasting.Evaluate(model.Transform(windows), channels: 1);
        var forecasts = Synthetic.ReadVectors(model.Transform(windows), "Forecast").SelectMany(v => v).ToArray();
        var labels = Synthetic.ReadVectors(windows, "Label").SelectMany(v => v).ToArray();
        Assert.AreEqual(forecasts.Zip(labels, (f, y) => Math.Abs((double)f - y)).Average(), metrics.MeanAbsoluteError, 1e-7);
    }

    [TestMethod]
    public void Evaluate_BadInput_NamesTheColumnAndRow()
    {
        var ml = new MLContext();
        var rows = RandomRows(new Random(5), 4, 3, 2, 2);
        var data = Load(ml, rows, 3, 2, 2);
        var e = Assert.ThrowsExactly<ArgumentException>(() => ml.Forecasting.Evaluate(data, channels: 3));
        StringAssert.Contains(e.Message, "Column 'Label' has 4 values per row, not a positive multiple of channels = 3");
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Forecasting.Evaluate(data, channels: 2, forecastColumnName: "Prediction"));
        Assert.ThrowsExactly<ArgumentException>(() => ml.Forecasting.Evaluate(data, channels: 2, lowerBoundColumnName: "Lower"));
        rows[2].Forecast[1] = float.NaN;
        var nan = Assert.ThrowsExactly<InvalidOperationException>(() => ml.Forecasting.Evaluate(Load(ml, rows, 3, 2, 2), channels: 2));
        StringAssert.Contains(nan.Message, "Row 2 of column 'Forecast' holds NaN");
        var empty = Assert.ThrowsExactly<ArgumentException>(() => ml.Forecasting.Evaluate(Load(ml, Array.Empty<Scored>(), 3, 2, 2), channels: 2));
        StringAssert.Contains(empty.Message, "no rows");
        var variable = ml.Data.LoadFromEnumerable(new[] { new Scored { Label = new float[4], Forecast = new float[4] }, new Scored { Label = new float[4], Forecast = new float[3] } });
        var length = Assert.ThrowsExactly<ArgumentException>(() => ml.Forecasting.Evaluate(variable, channels: 2));
        StringAssert.Contains(length.Message, "Row 1 of column 'Forecast' has 3 values; 4 (horizon × channels, as in the first row's label) expected");
    }
}
