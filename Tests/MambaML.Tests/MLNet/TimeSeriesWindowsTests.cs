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
    public void NegativeTargetRows_CountFromTheEnd_AsTheRowsTheyName()
    {
        var ml = new MLContext();
        // A table whose length the IDataView does not know (a streamed enumerable) and one whose length it does.
        IEnumerable<Row> Stream() { foreach (var row in Enumerable.Range(0, 50).Select(t => new Row { X = t, Y = 1000 + t })) yield return row; }
        foreach (var table in new[] { ml.Data.LoadFromEnumerable(Stream()), Table(ml, 50) })
        {
            var windows = TimeSeriesWindows.Create(table, new[] { "X" }, lookback: 5, horizon: 3, stride: 2);
            foreach (var (first, end, asRows) in new (long, long?, (long, long?))[]
                     {
                         (-10, null, (40, null)), (0, -10, (0, 40)), (-20, -10, (30, 40)), (3, -7, (3, 43)), (-100, -45, (0, 5)), (-3, null, (47, null)),
                     })
            {
                var fromEnd = ReadWindows(windows.GetWindows(first, end));
                var fromStart = ReadWindows(windows.GetWindows(asRows.Item1, asRows.Item2));
                string at = $"GetWindows({first}, {end?.ToString() ?? "null"})";
                CollectionAssert.AreEqual(fromStart.Select(w => w.Start).ToArray(), fromEnd.Select(w => w.Start).ToArray(), at);
                if (table.GetRowCount() is not null) Assert.AreEqual(windows.GetWindows(first, end).GetRowCount(), (long)fromEnd.Count, at);
            }
        }
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => TimeSeriesWindows.Create(Table(ml, 50), new[] { "X" }, 5, 3).GetWindows(-5, -10));
        // End 0 after a start counted from the end is a slip for null (it would give no windows at all).
        var zero = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => TimeSeriesWindows.Create(Table(ml, 50), new[] { "X" }, 5, 3).GetWindows(-10, 0));
        StringAssert.Contains(zero.Message, "pass null to end at the end");
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

    public sealed class OffsetTimeRow
    {
        public DateTimeOffset Time { get; set; }
        public float X { get; set; }
    }

    [TestMethod]
    public void DateTimeOffsetTimestamps_BecomeUtc_AndMustRise()
    {
        var ml = new MLContext();
        var start = new DateTimeOffset(2024, 3, 10, 6, 0, 0, TimeSpan.FromHours(2));
        var rows = Enumerable.Range(0, 4).Select(i => new OffsetTimeRow { Time = start.AddHours(i), X = i }).ToArray();
        var windows = TimeSeriesWindows.Create(ml.Data.LoadFromEnumerable(rows), new[] { "X" }, 2, 1, timestampColumn: "Time");
        var points = windows.ToTimeSeries(WithForecast(ml, windows.GetWindows()));
        Assert.AreEqual(new DateTime(2024, 3, 10, 6, 0, 0, DateTimeKind.Utc), points[0].Timestamp);   // 08:00+02:00
        Assert.AreEqual(DateTimeKind.Utc, points[0].Timestamp!.Value.Kind);
        rows[3].Time = start.AddHours(1).ToOffset(TimeSpan.Zero);   // the same instant as row 1, written in UTC
        var e = Assert.ThrowsExactly<ArgumentException>(() => TimeSeriesWindows.Create(ml.Data.LoadFromEnumerable(rows), new[] { "X" }, 2, 1, timestampColumn: "Time"));
        StringAssert.Contains(e.Message, "row 3 (2024-03-10T05:00:00.0000000Z) is before row 2");
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

    public sealed class PanelRow
    {
        public string Store { get; set; } = "";
        public int Region { get; set; }
        public string Time { get; set; } = "";
        public float Sales { get; set; }
        public float Price { get; set; }
    }

    private sealed record Window(string? Key, long Start, float[] Features, float[]? Label);

    private static List<Window> ReadWindows(IDataView view)
    {
        var result = new List<Window>();
        var key = view.Schema.GetColumnOrNull(TimeSeriesWindows.SeriesKeyColumnName);
        var label = view.Schema.GetColumnOrNull(TimeSeriesWindows.LabelColumnName);
        using var cursor = view.GetRowCursor(view.Schema);
        var getFeatures = cursor.GetGetter<VBuffer<float>>(view.Schema["Features"]);
        var getStart = cursor.GetGetter<long>(view.Schema["WindowStart"]);
        var getLabel = label is { } l ? cursor.GetGetter<VBuffer<float>>(l) : null;
        var getKey = key is { } k ? cursor.GetGetter<ReadOnlyMemory<char>>(k) : null;
        VBuffer<float> f = default, y = default;
        long start = 0;
        ReadOnlyMemory<char> text = default;
        while (cursor.MoveNext())
        {
            getFeatures(ref f);
            getStart(ref start);
            getLabel?.Invoke(ref y);
            getKey?.Invoke(ref text);
            result.Add(new Window(getKey is null ? null : text.ToString(), start, f.DenseValues().ToArray(), getLabel is null ? null : y.DenseValues().ToArray()));
        }
        return result;
    }

    [TestMethod]
    public void Panel_WindowsOfEachSeries_AreThoseOfThatSeriesAlone_HoweverTheRowsInterleave()
    {
        var ml = new MLContext();
        for (int seed = 0; seed < 8; seed++)
        {
            var random = new Random(seed);
            int seriesCount = random.Next(1, 6);
            var series = Enumerable.Range(0, seriesCount).Select(s => Enumerable.Range(0, random.Next(0, 41)).Select(_ => new PanelRow
            {
                Store = $"store {s}", Region = 100 - s, Sales = random.Next(-1000, 1000), Price = random.Next(1000),
            }).ToArray()).ToArray();
            // A random interleaving that keeps each series' own order (or blocks, one series after another, for odd seeds).
            var next = new int[seriesCount];
            var rows = new List<PanelRow>();
            for (int s = 0; rows.Count < series.Sum(x => x.Length);)
            {
                s = seed % 2 == 1 ? (next[s] < series[s].Length ? s : s + 1) : random.Next(seriesCount);
                if (next[s] < series[s].Length) rows.Add(series[s][next[s]++]);
            }
            int lookback = random.Next(1, 6), horizon = random.Next(1, 4), stride = random.Next(1, 4);
            // Bounds from the start, or (negative) from each series' end.
            long first = random.Next(2) == 0 ? random.Next(0, 12) : -random.Next(1, 30);
            long? end = random.Next(3) switch { 0 => null, 1 => Math.Max(first, 0) + random.Next(0, 30), _ => -random.Next(0, first < 0 ? (int)-first + 1 : 20) };
            string keyColumn = seed % 3 == 0 ? "Region" : "Store";
            var targets = new[] { "Sales", "Price" };
            var panel = TimeSeriesWindows.Create(ml.Data.LoadFromEnumerable(rows), targets, lookback, horizon, stride, seriesKeyColumn: keyColumn);
            var view = panel.GetWindows(first, end);
            Assert.IsNull(view.GetRowCount(), "a panel's window count is unknown before a pass");
            var windows = ReadWindows(view);
            var expected = new List<Window>();
            for (int s = 0; s < seriesCount; s++)
            {
                string key = keyColumn == "Region" ? (100 - s).ToString() : $"store {s}";
                var alone = TimeSeriesWindows.Create(ml.Data.LoadFromEnumerable(series[s]), targets, lookback, horizon, stride).GetWindows(first, end);
                var got = windows.Where(w => w.Key == key).ToList();
                var want = ReadWindows(alone);
                Assert.AreEqual(want.Count, got.Count, $"seed {seed}, series {key}");
                for (int i = 0; i < want.Count; i++)
                {
                    Assert.AreEqual(want[i].Start, got[i].Start, $"seed {seed}, series {key}, window {i}");
                    CollectionAssert.AreEqual(want[i].Features, got[i].Features, $"seed {seed}, series {key}, window {i}");
                    CollectionAssert.AreEqual(want[i].Label, got[i].Label, $"seed {seed}, series {key}, window {i}");
                }
                expected.AddRange(want);
            }
            Assert.AreEqual(expected.Count, windows.Count, $"seed {seed}: no window from two series");
            Assert.AreEqual(keyColumn, panel.SeriesKeyColumn);
        }
    }

    [TestMethod]
    public void Panel_LatestWindows_OnePerSeries_ForecastsPlacedOnEachSeriesTimes()
    {
        var ml = new MLContext();
        // Store "b" starts two days later and is recorded daily; store "a" hourly. Rows interleave.
        var rows = new List<PanelRow>();
        for (int t = 0; t < 40; t++)
        {
            rows.Add(new PanelRow { Store = "a", Time = new DateTime(2024, 5, 1).AddHours(t).ToString("s"), Sales = t });
            if (t < 30) rows.Add(new PanelRow { Store = "b", Time = new DateTime(2024, 5, 3).AddDays(t).ToString("s"), Sales = 1000 + t });
        }
        var windows = TimeSeriesWindows.Create(ml.Data.LoadFromEnumerable(rows), new[] { "Sales" }, lookback: 4, horizon: 2, timestampColumn: "Time", seriesKeyColumn: "Store");
        var latest = ReadWindows(windows.GetLatestWindow());
        Assert.AreEqual(2, latest.Count);
        Assert.AreEqual(("a", 36L), (latest[0].Key, latest[0].Start));
        CollectionAssert.AreEqual(new float[] { 36, 37, 38, 39 }, latest[0].Features);
        Assert.AreEqual(("b", 26L), (latest[1].Key, latest[1].Start));
        CollectionAssert.AreEqual(new float[] { 1026, 1027, 1028, 1029 }, latest[1].Features);

        var options = Synthetic.ForecastOptions(lookback: 4, horizon: 2, epochs: 1);
        options.PatchLength = 2;
        using var model = ml.Forecasting.ForecastByMamba(options).Fit(windows.GetWindows());
        var points = windows.ToTimeSeries(model.Transform(windows.GetLatestWindow()));
        Assert.AreEqual(4, points.Count);
        Assert.AreEqual(("a", 40L, new DateTime(2024, 5, 1).AddHours(40)), (points[0].SeriesKey, points[0].Row, points[0].Timestamp!.Value));
        Assert.AreEqual(("a", 41L, new DateTime(2024, 5, 1).AddHours(41)), (points[1].SeriesKey, points[1].Row, points[1].Timestamp!.Value));
        Assert.AreEqual(("b", 30L, new DateTime(2024, 5, 3).AddDays(30)), (points[2].SeriesKey, points[2].Row, points[2].Timestamp!.Value));
        var backtest = windows.ToTimeSeries(model.Transform(windows.GetWindows(firstTargetRow: 28)));
        var lastOfB = backtest.Last(p => p.SeriesKey == "b");
        Assert.AreEqual((29L, 1029f, new DateTime(2024, 5, 3).AddDays(29)), (lastOfB.Row, lastOfB.Actual!.Value, lastOfB.Timestamp!.Value));
        Assert.IsTrue(backtest.All(p => p.Actual == (p.SeriesKey == "a" ? p.Row : 1000 + p.Row)), "each actual is its own series' value");
    }

    [TestMethod]
    public void Panel_BadKeysShortSeriesAndDisorder_AreNamedBySeries()
    {
        var ml = new MLContext();
        var rows = new List<PanelRow>();
        for (int t = 0; t < 10; t++) rows.Add(new PanelRow { Store = "north", Region = 1, Time = new DateTime(2024, 1, 1).AddDays(t).ToString("s"), Sales = t });
        for (int t = 0; t < 3; t++) rows.Add(new PanelRow { Store = "south", Region = 2, Time = new DateTime(2024, 1, 1).AddDays(t).ToString("s"), Sales = t });
        var table = ml.Data.LoadFromEnumerable(rows);
        var shortSeries = Assert.ThrowsExactly<InvalidOperationException>(() =>
            ReadWindows(TimeSeriesWindows.Create(table, new[] { "Sales" }, 4, 1, seriesKeyColumn: "Store").GetLatestWindow()));
        StringAssert.Contains(shortSeries.Message, "Series 'south' (column 'Store') has 3 rows; a window needs Lookback = 4");
        StringAssert.Contains(shortSeries.Message, "skipShortSeries: true");
        var skipped = ReadWindows(TimeSeriesWindows.Create(table, new[] { "Sales" }, 4, 1, seriesKeyColumn: "Store").GetLatestWindow(skipShortSeries: true));
        Assert.AreEqual(("north", 6L), (skipped.Single().Key, skipped.Single().Start), "the short series is left out, the others keep theirs");
        CollectionAssert.AreEqual(new float[] { 6, 7, 8, 9 }, skipped.Single().Features);
        Assert.AreEqual(6, ReadWindows(TimeSeriesWindows.Create(table, new[] { "Sales" }, 4, 1, seriesKeyColumn: "Store").GetWindows()).Count,
                        "a series too short for any window gives none; the others give theirs");

        var floatKey = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => TimeSeriesWindows.Create(table, new[] { "Sales" }, 4, 1, seriesKeyColumn: "Price"));
        StringAssert.Contains(floatKey.Message, "Series key column 'Price' has type Single; it must be text or an integer type");
        var keyIsTarget = Assert.ThrowsExactly<ArgumentException>(() => TimeSeriesWindows.Create(table, new[] { "Sales" }, 4, 1, seriesKeyColumn: "Sales"));
        StringAssert.Contains(keyIsTarget.Message, "name each column once");

        // Times interleave across series, which is fine; within "north" they must rise.
        rows[5].Time = rows[3].Time;
        var disorder = Assert.ThrowsExactly<ArgumentException>(() =>
            TimeSeriesWindows.Create(ml.Data.LoadFromEnumerable(rows), new[] { "Sales" }, 2, 1, timestampColumn: "Time", seriesKeyColumn: "Region"));
        StringAssert.Contains(disorder.Message, "before the previous row of series '1'");

        rows[5].Time = new DateTime(2024, 1, 1).AddDays(5).ToString("s");
        rows[11].Sales = float.NaN;
        var nan = Assert.ThrowsExactly<InvalidOperationException>(() =>
            ReadWindows(TimeSeriesWindows.Create(ml.Data.LoadFromEnumerable(rows), new[] { "Sales" }, 2, 1, seriesKeyColumn: "Store").GetWindows()));
        StringAssert.Contains(nan.Message, "Row 1 of series 'south' of table column 'Sales' holds NaN");
    }

    public sealed class DailyRow
    {
        public string Store { get; set; } = "";
        public DateTime Day { get; set; }
        public float Sales { get; set; }
    }

    // Store "a" from 1 January, "b" from 4 January, daily, rows sorted by day; the weekly peak falls on the same weekday in both.
    private static List<DailyRow> ShiftedStores(int days)
    {
        var rows = new List<DailyRow>();
        var random = new Random(1);
        for (int t = 0; t < days; t++)
            foreach (var (store, start) in new[] { ("a", 0), ("b", 3) })
                if (t >= start)
                    rows.Add(new DailyRow { Store = store, Day = new DateTime(2024, 1, 1).AddDays(t), Sales = (t % 7 == 2 ? 30 : 10) + (float)random.NextDouble() });
        return rows;
    }

    [TestMethod]
    public void TimeIndex_PlacesEverySeriesOnOneTimeAxis()
    {
        var ml = new MLContext();
        var windows = TimeSeriesWindows.Create(ml.Data.LoadFromEnumerable(ShiftedStores(40)), new[] { "Sales" }, 5, 2, timestampColumn: "Day", seriesKeyColumn: "Store");
        Assert.IsTrue(windows.HasTimeIndex);
        var view = windows.GetWindows();
        using var cursor = view.GetRowCursor(view.Schema);
        var getStart = cursor.GetGetter<long>(view.Schema["WindowStart"]);
        var getIndex = cursor.GetGetter<long>(view.Schema["TimeIndex"]);
        var getKey = cursor.GetGetter<ReadOnlyMemory<char>>(view.Schema["SeriesKey"]);
        long start = 0, index = 0;
        ReadOnlyMemory<char> key = default;
        int count = 0;
        while (cursor.MoveNext())
        {
            getStart(ref start); getIndex(ref index); getKey(ref key);
            Assert.AreEqual(start + (key.ToString() == "b" ? 3 : 0), index, $"series {key}, window at row {start}");
            count++;
        }
        Assert.AreEqual(34 + 31, count);
        // Hourly: the index is the row; monthly (months differ in length) and off-grid times lie on no grid of fixed steps.
        Assert.IsTrue(TimeSeriesWindows.Create(Table(ml, 20), new[] { "X" }, 3, 1, timestampColumn: "Date").HasTimeIndex);
        IDataView Times(params DateTime[] times) => ml.Data.LoadFromEnumerable(times.Select((t, i) => new DailyRow { Day = t, Sales = i }).ToArray());
        var monthly = TimeSeriesWindows.Create(Times(new(2024, 1, 31), new(2024, 2, 29), new(2024, 3, 31), new(2024, 4, 30)), new[] { "Sales" }, 2, 1, timestampColumn: "Day");
        Assert.IsFalse(monthly.HasTimeIndex);
        Assert.IsNull(monthly.GetWindows().Schema.GetColumnOrNull("TimeIndex"));
        Assert.IsFalse(TimeSeriesWindows.Create(Times(new(2024, 1, 1, 0, 0, 0), new(2024, 1, 1, 1, 0, 0), new(2024, 1, 1, 2, 30, 0)), new[] { "Sales" }, 1, 1, timestampColumn: "Day").HasTimeIndex);
    }

    [TestMethod]
    public void Panel_CycleByTimeIndex_ForecastsSeriesThatStartAtOtherTimes()
    {
        // With WindowStart as the cycle index, store "b" (3 days later) reads the shared weekly cycle 3 days out of phase.
        var ml = new MLContext(seed: 1);
        var windows = TimeSeriesWindows.Create(ml.Data.LoadFromEnumerable(ShiftedStores(300)), new[] { "Sales" }, 14, 7, timestampColumn: "Day", seriesKeyColumn: "Store");
        double Mae(string cycleIndex)
        {
            var options = Synthetic.ForecastOptions(lookback: 14, horizon: 7, epochs: 4);
            (options.CycleLength, options.CycleIndexColumnName, options.PatchLength) = (7, cycleIndex, 7);
            using var model = ml.Forecasting.ForecastByMamba(options).Fit(windows.GetWindows(0, -60));
            return windows.ToTimeSeries(model.Transform(windows.GetWindows(-60))).Where(p => p.SeriesKey == "b").Average(p => Math.Abs(p.Forecast - p.Actual!.Value));
        }
        double byTime = Mae(TimeSeriesWindows.TimeIndexColumnName), byRow = Mae(TimeSeriesWindows.WindowStartColumnName);
        Assert.IsTrue(byTime < 0.7 * byRow, $"store b's test MAE: cycle by TimeIndex {byTime:G4}, by WindowStart {byRow:G4}");
    }
}
