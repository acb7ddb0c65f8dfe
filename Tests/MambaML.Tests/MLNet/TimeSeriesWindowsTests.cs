using MambaML.MLNet;
using Microsoft.Data.Analysis;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace MambaML.Tests.MLNet;

[TestClass]
public sealed class TimeSeriesWindowsTests
{
    private sealed class Row
    {
        public string Date { get; set; } = "";
        public double X { get; set; }
        public int Y { get; set; }
    }

    private static IDataView Table(MLContext ml, int rows) => ml.Data.LoadFromEnumerable(Enumerable.Range(0, rows).Select(t => new Row
    {
        Date = new DateTime(2021, 3, 1).AddHours(t).ToString("yyyy-MM-dd HH:mm:ss"), X = t, Y = 1000 + t,
    }).ToList());

    private static long CursorCount(IDataView data)
    {
        long n = 0;
        using var cursor = data.GetRowCursor(Array.Empty<DataViewSchema.Column>());
        while (cursor.MoveNext()) n++;
        return n;
    }

    [TestMethod]
    public void Windows_HoldPastAndFutureValues_TimeMajor()
    {
        var ml = new MLContext();
        var windows = TimeSeriesWindows.Create(Table(ml, 20), new[] { "X", "Y" }, lookback: 3, horizon: 2, stride: 4);
        var view = windows.GetWindows();
        var features = Synthetic.ReadVectors(view, "Features");
        var labels = Synthetic.ReadVectors(view, "Label");
        // Starts 0, 4, 8, 12 (a window needs 5 rows; 15 is the last possible start, and 16 would need rows up to 20).
        Assert.AreEqual(4, features.Length);
        Assert.AreEqual(4L, view.GetRowCount());
        Assert.AreEqual(4L, CursorCount(view));
        CollectionAssert.AreEqual(new float[] { 4, 1004, 5, 1005, 6, 1006 }, features[1]);
        CollectionAssert.AreEqual(new float[] { 7, 1007, 8, 1008 }, labels[1]);
        Assert.AreEqual(2, windows.Channels);
    }

    [TestMethod]
    public void TargetRowRange_LetsInputsStartLookbackRowsEarlier()
    {
        var ml = new MLContext();
        var windows = TimeSeriesWindows.Create(Table(ml, 50), new[] { "X" }, lookback: 5, horizon: 3);
        var test = windows.GetWindows(firstTargetRow: 40);
        var features = Synthetic.ReadVectors(test, "Features");
        var labels = Synthetic.ReadVectors(test, "Label");
        Assert.AreEqual(35f, features[0][0]);
        Assert.AreEqual(40f, labels[0][0]);
        Assert.AreEqual(49f, labels[^1][^1]);   // the last window ends at the table's end
        Assert.AreEqual(test.GetRowCount(), (long)features.Length);
        var train = windows.GetWindows(0, endTargetRow: 30);
        var trainLabels = Synthetic.ReadVectors(train, "Label");
        Assert.AreEqual(29f, trainLabels[^1][^1]);
        Assert.AreEqual(train.GetRowCount(), (long)trainLabels.Length);
        Assert.AreEqual(train.GetRowCount(), CursorCount(train));
    }

    [TestMethod]
    public void LatestWindow_AndTimestamps_MapForecastsPastTheEnd()
    {
        var ml = new MLContext();
        var windows = TimeSeriesWindows.Create(Table(ml, 30), new[] { "X" }, lookback: 6, horizon: 2, timestampColumn: "Date");
        var latest = windows.GetLatestWindow();
        CollectionAssert.AreEqual(new float[] { 24, 25, 26, 27, 28, 29 }, Synthetic.ReadVectors(latest, "Features").Single());

        var options = Synthetic.ForecastOptions(lookback: 6, horizon: 2, epochs: 1);
        options.PatchLength = 3;
        using var model = ml.Forecasting.ForecastByMamba(options).Fit(windows.GetWindows());
        var points = windows.ToTimeSeries(model.Transform(latest));
        Assert.AreEqual(2, points.Count);
        Assert.AreEqual(30L, points[0].Row);
        Assert.AreEqual(new DateTime(2021, 3, 1).AddHours(30), points[0].Timestamp);
        Assert.AreEqual(new DateTime(2021, 3, 1).AddHours(31), points[1].Timestamp);
        Assert.IsNull(points[0].Actual);
        Assert.AreEqual("X", points[0].Series);

        var backtest = windows.ToTimeSeries(model.Transform(windows.GetWindows(firstTargetRow: 20)));
        var first = backtest.First();
        Assert.AreEqual(20L, first.Row);
        Assert.AreEqual(20f, first.Actual);
        Assert.AreEqual(new DateTime(2021, 3, 1).AddHours(20), first.Timestamp);
    }

    [TestMethod]
    public void TimestampsPastTheEnd_StepByCalendarMonths_ForMonthlySeries()
    {
        // A fixed duration drifted: after 1960-11-01 and 1960-12-01 (30 days apart) came 1960-12-31, then 1961-01-30.
        void Expect(DateTime previous, DateTime last, long steps, DateTime expected) =>
            Assert.AreEqual(expected, TimeSeriesWindows.Extrapolate(previous, last, steps), $"{previous:O}, {last:O}, {steps} steps");
        Expect(new(1960, 11, 1), new(1960, 12, 1), 1, new(1961, 1, 1));
        Expect(new(1960, 11, 1), new(1960, 12, 1), 3, new(1961, 3, 1));
        Expect(new(2023, 1, 31), new(2023, 2, 28), 1, new(2023, 3, 31));          // month ends
        Expect(new(2023, 1, 31), new(2023, 2, 28), 2, new(2023, 4, 30));
        Expect(new(2024, 1, 31), new(2024, 2, 29), 11, new(2025, 1, 31));
        Expect(new(2024, 1, 31), new(2024, 2, 29), 12, new(2025, 2, 28));
        Expect(new(2020, 1, 15, 9, 30, 0), new(2020, 4, 15, 9, 30, 0), 2, new(2020, 10, 15, 9, 30, 0));   // quarterly
        Expect(new(2019, 6, 30, 12, 0, 0), new(2020, 6, 30, 12, 0, 0), 1, new(2021, 6, 30, 12, 0, 0));   // yearly
        // Not whole months: a fixed duration, as before.
        Expect(new(2021, 1, 31), new(2021, 2, 1), 2, new(2021, 2, 3));            // daily across a month's end
        Expect(new(2021, 2, 28), new(2021, 3, 1), 1, new(2021, 3, 2));
        Expect(new(2021, 3, 1, 4, 0, 0), new(2021, 3, 1, 5, 0, 0), 5, new(2021, 3, 1, 10, 0, 0));   // hourly
        Expect(new(2021, 1, 1), new(2021, 2, 1, 6, 0, 0), 1, new(2021, 3, 4, 12, 0, 0));           // another time of day
    }

    [TestMethod]
    public void DataFrame_WithDateTimeColumn_Works()
    {
        var frame = new DataFrame(
            new PrimitiveDataFrameColumn<DateTime>("Time", Enumerable.Range(0, 12).Select(i => new DateTime(2022, 1, 1).AddDays(i))),
            new SingleDataFrameColumn("Load", Enumerable.Range(0, 12).Select(i => (float)i * 2)));
        var windows = TimeSeriesWindows.Create(frame, new[] { "Load" }, lookback: 4, horizon: 1, timestampColumn: "Time");
        var features = Synthetic.ReadVectors(windows.GetWindows(), "Features");
        Assert.AreEqual(8, features.Length);
        CollectionAssert.AreEqual(new float[] { 2, 4, 6, 8 }, features[1]);
    }

    public sealed class TextTimeRow
    {
        public string Time { get; set; } = "";
        public float X { get; set; }
    }

    [TestMethod]
    public void Timestamps_MustRiseRowByRow_AndTextIsReadTheSameInEveryTimeZone()
    {
        var ml = new MLContext();
        IDataView Table(params string[] times) => ml.Data.LoadFromEnumerable(times.Select((t, i) => new TextTimeRow { Time = t, X = i }).ToArray());
        // Before: an out-of-order or repeated timestamp was accepted, and forecasts past the end got times running backwards or all equal.
        foreach (var (times, expected) in new[]
                 {
                     (new[] { "2024-01-01T00:00", "2024-01-01T02:00", "2024-01-01T01:00", "2024-01-01T03:00" }, "row 2 (2024-01-01T01:00:00.0000000) is before row 1"),
                     (new[] { "2024-01-01T00:00", "2024-01-01T01:00", "2024-01-01T02:00", "2024-01-01T02:00" }, "row 3 (2024-01-01T02:00:00.0000000) is the same as row 2"),
                 })
        {
            var e = Assert.ThrowsExactly<ArgumentException>(() => TimeSeriesWindows.Create(Table(times), new[] { "X" }, 2, 1, timestampColumn: "Time"));
            StringAssert.Contains(e.Message, expected);
            StringAssert.Contains(e.Message, "sort the table by time");
        }
        // A time with a zone becomes UTC (before: the machine's local time); one without is kept as written.
        var zoned = TimeSeriesWindows.Create(Table("2024-03-10T06:00:00Z", "2024-03-10T09:00:00+02:00", "2024-03-10T08:00:00Z"), new[] { "X" }, 2, 1, timestampColumn: "Time");
        var points = zoned.ToTimeSeries(WithForecast(ml, zoned.GetWindows()));
        Assert.AreEqual(new DateTime(2024, 3, 10, 8, 0, 0, DateTimeKind.Utc), points.Single().Timestamp);
        Assert.AreEqual(DateTimeKind.Utc, points.Single().Timestamp!.Value.Kind);
        var plain = TimeSeriesWindows.Create(Table("2024-03-10 06:00", "2024-03-10 07:00", "2024-03-10 08:00"), new[] { "X" }, 2, 1, timestampColumn: "Time");
        var plainPoint = plain.ToTimeSeries(WithForecast(ml, plain.GetWindows())).Single();
        Assert.AreEqual(new DateTime(2024, 3, 10, 8, 0, 0), plainPoint.Timestamp);
        Assert.AreEqual(DateTimeKind.Unspecified, plainPoint.Timestamp!.Value.Kind);
    }

    // Window rows with a Forecast column equal to the label, standing in for a model's output.
    private static IDataView WithForecast(MLContext ml, IDataView windows) =>
        ml.Transforms.CopyColumns("Forecast", "Label").Fit(windows).Transform(windows);

    [TestMethod]
    public void DataFrameNulls_InTargetOrTimestampColumns_AreNamed()
    {
        // A DataFrame gives an integer null as 0 and a DateTime null as 0001-01-01 to ML.NET, so they are caught here.
        var ints = new DataFrame(new Int32DataFrameColumn("I", new int?[] { 20, 21, null, 23, 24, 25 }));
        var e = Assert.ThrowsExactly<ArgumentException>(() => TimeSeriesWindows.Create(ints, new[] { "I" }, 3, 1));
        StringAssert.Contains(e.Message, "Column 'I' of the DataFrame has 1 null value(s), the first at row 2");
        var times = new DataFrame(
            new PrimitiveDataFrameColumn<DateTime>("Time", new DateTime?[] { new DateTime(2024, 1, 1), null, new DateTime(2024, 1, 3), new DateTime(2024, 1, 4) }),
            new SingleDataFrameColumn("Load", new float?[] { 1, 2, 3, 4 }));
        e = Assert.ThrowsExactly<ArgumentException>(() => TimeSeriesWindows.Create(times, new[] { "Load" }, 2, 1, timestampColumn: "Time"));
        StringAssert.Contains(e.Message, "Column 'Time' of the DataFrame has 1 null value(s), the first at row 1");
    }

    [TestMethod]
    public void BadArguments_AreNamed()
    {
        var ml = new MLContext();
        var table = Table(ml, 10);
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => TimeSeriesWindows.Create(table, new[] { "Date" }, 3, 1));
        StringAssert.Contains(e.Message, "numeric");
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => TimeSeriesWindows.Create(table, new[] { "Z" }, 3, 1));
        StringAssert.Contains(e.Message, "'Z'");
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => TimeSeriesWindows.Create(table, new[] { "X" }, 0, 1));
        var tooShort = TimeSeriesWindows.Create(table, new[] { "X" }, lookback: 20, horizon: 1);
        Assert.AreEqual(0L, CursorCount(tooShort.GetWindows()));
        Assert.ThrowsExactly<InvalidOperationException>(() => CursorCount(tooShort.GetLatestWindow()));
        var empty = Assert.ThrowsExactly<ArgumentException>(() => new MLContext().Forecasting.ForecastByMamba(Synthetic.ForecastOptions(lookback: 20, horizon: 1)).Fit(tooShort.GetWindows()));
        StringAssert.Contains(empty.Message, "at least Lookback + Horizon table rows");
    }

    [TestMethod]
    public void NonFiniteTableValues_AreNamedByTableRowAndColumn()
    {
        var ml = new MLContext();
        var rows = Enumerable.Range(0, 20).Select(t => new Row { X = t, Y = t }).ToArray();
        rows[12].X = double.NaN;
        rows[15].X = 1e300;   // beyond float's range
        var windows = TimeSeriesWindows.Create(ml.Data.LoadFromEnumerable(rows), new[] { "Y", "X" }, lookback: 4, horizon: 2);
        Assert.AreEqual(7, Synthetic.ReadVectors(windows.GetWindows(0, 12), "Features").Length, "windows before row 12 read fine");
        var nan = Assert.ThrowsExactly<InvalidOperationException>(() => Synthetic.ReadVectors(windows.GetWindows(), "Label"));
        StringAssert.Contains(nan.Message, "Row 12 of table column 'X' holds NaN");
        var infinite = Assert.ThrowsExactly<InvalidOperationException>(() => Synthetic.ReadVectors(windows.GetWindows(17), "Features"));
        StringAssert.Contains(infinite.Message, "Row 15 of table column 'X' holds");
        Assert.IsTrue(float.IsPositiveInfinity(float.Parse(infinite.Message.Split(" holds ")[1].Split(' ')[0])), infinite.Message);
    }
}
