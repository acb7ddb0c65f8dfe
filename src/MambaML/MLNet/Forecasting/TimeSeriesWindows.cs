using System.Globalization;
using System.Numerics;
using System.Runtime.CompilerServices;
using Microsoft.Data.Analysis;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace MambaML.MLNet;

/// <summary>One forecast value placed back on the time axis.</summary>
/// <param name="WindowStart">Row index of the first input step of the window that produced it (with a series key: its index within the series).</param>
/// <param name="Step">Steps ahead, from 1 to the horizon.</param>
/// <param name="Row">Row index the value is for (with a series key: the index within the series); may lie past the end.</param>
/// <param name="Timestamp">
/// That row's timestamp; past the end, extrapolated with the last interval (of that series): in calendar months when the last two
/// timestamps are whole months apart (same day and time of the month, or both month ends), otherwise as a fixed duration. Null
/// without a timestamp column.
/// </param>
/// <param name="Series">Name of the target column (the channel); in a table of many series, which series is <paramref name="SeriesKey"/>.</param>
/// <param name="Forecast">The predicted value.</param>
/// <param name="Actual">The true value, when the predictions carry a label column.</param>
/// <param name="LowerBound">The lower prediction bound, when the forecaster predicts intervals and its bound columns are passed.</param>
/// <param name="UpperBound">The upper prediction bound, likewise.</param>
/// <param name="SeriesKey">The key of the series the value belongs to (e.g. the store), when the windows were made with a series key
/// column; else null. <paramref name="Series"/> names the target column within it.</param>
public sealed record ForecastPoint(long WindowStart, int Step, long Row, DateTime? Timestamp, string Series, float Forecast, float? Actual,
                                   float? LowerBound = null, float? UpperBound = null, string? SeriesKey = null);

/// <summary>
/// Turns a time-ordered table (an <see cref="IDataView"/> or a <see cref="DataFrame"/>) into sliding windows for
/// <c>ForecastByMamba</c>, and maps forecasts back to rows and timestamps. Windows are produced lazily by a cursor over the
/// table holding only lookback + horizon rows (per series), so the table is never loaded whole.
/// </summary>
/// <remarks>
/// <para>Window columns: <see cref="FeaturesColumnName"/> (lookback × channels past values, time-major), <see cref="LabelColumnName"/>
/// (horizon × channels following values) and <see cref="WindowStartColumnName"/> (row index of the first past value).</para>
/// <para>A table of many series (a panel: e.g. sales per store, one row per store and day) names its key column in
/// <c>seriesKeyColumn</c>. Windows then never cross from one series into another, row indices count within each series, and the
/// windows carry the key in <see cref="SeriesKeyColumnName"/>, so one model learns from all series at once (a global model).</para>
/// </remarks>
public sealed class TimeSeriesWindows
{
    /// <summary>Column of past values in the window views.</summary>
    public const string FeaturesColumnName = "Features";
    /// <summary>Column of following (true future) values in labelled window views.</summary>
    public const string LabelColumnName = "Label";
    /// <summary>Column holding each window's first row index.</summary>
    public const string WindowStartColumnName = "WindowStart";
    /// <summary>Column holding each window's series key (text), in the window views of a table with a series key column.</summary>
    public const string SeriesKeyColumnName = "SeriesKey";
    /// <summary>
    /// Column holding each window's time index (Int64): the steps from the table's earliest timestamp to the window's first step,
    /// on the data's sampling grid. In the window views of a table with a timestamp column whose times all lie on one grid of
    /// fixed steps (not, for instance, calendar months). Unlike <see cref="WindowStartColumnName"/>, which counts each series
    /// from its own first row, it places every series on one time axis: the cycle index for series that start at different times.
    /// </summary>
    public const string TimeIndexColumnName = "TimeIndex";

    private readonly IDataView _table;
    private readonly DataViewSchema.Column[] _targets;
    private readonly DataViewSchema.Column? _seriesKey;
    // Each series' timestamps, by key ("" without a series key column).
    private readonly Dictionary<string, List<DateTime>>? _timestamps;
    // The time grid every timestamp lies on (the earliest timestamp and the smallest step between two of a series), or null
    // without timestamps or when they lie on no grid of fixed steps.
    private readonly (DateTime Origin, long StepTicks)? _timeGrid;
    // Rows per series ("" for a table of one series), for bounds counted from the end: found once per table, when first needed.
    private readonly Lazy<Dictionary<string, long>> _seriesLengths;

    private TimeSeriesWindows(IDataView table, DataViewSchema.Column[] targets, DataViewSchema.Column? timestamp, DataViewSchema.Column? seriesKey,
                              int lookback, int horizon, int stride)
    {
        _table = table;
        _targets = targets;
        _seriesKey = seriesKey;
        _timestamps = timestamp is null ? null : ReadTimestamps(table, timestamp.Value, seriesKey);
        _timeGrid = _timestamps is null ? null : TimeGrid(_timestamps.Values);
        _seriesLengths = new Lazy<Dictionary<string, long>>(SeriesLengths);
        Lookback = lookback;
        Horizon = horizon;
        Stride = stride;
    }

    /// <summary>Past steps per window.</summary>
    public int Lookback { get; }
    /// <summary>Future steps per window.</summary>
    public int Horizon { get; }
    /// <summary>Rows between the starts of consecutive windows (of one series).</summary>
    public int Stride { get; }
    /// <summary>Number of target series (channels), in the order of <see cref="TargetColumns"/>.</summary>
    public int Channels => _targets.Length;
    /// <summary>The target columns, one channel each.</summary>
    public IReadOnlyList<string> TargetColumns => _targets.Select(c => c.Name).ToArray();
    /// <summary>The table's series key column, or null for a table of one series.</summary>
    public string? SeriesKeyColumn => _seriesKey?.Name;
    /// <summary>Whether the window views have a <see cref="TimeIndexColumnName"/> column (timestamps on a grid of fixed steps).</summary>
    public bool HasTimeIndex => _timeGrid is not null;

    /// <summary>Windows over a time-ordered <see cref="IDataView"/>.</summary>
    /// <param name="table">Rows in time order, one per time step (with a series key: in time order within each series).</param>
    /// <param name="targetColumns">Numeric columns to forecast (one channel each).</param>
    /// <param name="lookback">Past steps per window.</param>
    /// <param name="horizon">Future steps per window.</param>
    /// <param name="stride">Rows between window starts.</param>
    /// <param name="timestampColumn">Optional DateTime, DateTimeOffset or text column used by <see cref="ToTimeSeries"/>. Its values
    /// must rise strictly from row to row (rows in time order, no duplicates; with a series key, within each series); this is checked
    /// here. Text is read in the invariant culture (month first: "10/03/2024" is 3 October; ISO 8601 such as "2024-03-10T06:00:00" is
    /// unambiguous); a time with a zone or offset (text or DateTimeOffset) is converted to UTC, one without is kept as written, so
    /// the result does not depend on the machine's time zone.</param>
    /// <param name="seriesKeyColumn">Optional text or integer column naming the series each row belongs to, for a table of many
    /// series. The series' rows may be in blocks or interleaved; each series is windowed on its own and counts its rows from 0.
    /// Memory: lookback + horizon rows per series.</param>
    public static TimeSeriesWindows Create(IDataView table, IEnumerable<string> targetColumns, int lookback, int horizon, int stride = 1,
                                           string? timestampColumn = null, string? seriesKeyColumn = null)
    {
        ArgumentNullException.ThrowIfNull(table);
        ArgumentNullException.ThrowIfNull(targetColumns);
        if (lookback < 1) throw new ArgumentOutOfRangeException(nameof(lookback), lookback, "lookback must be >= 1.");
        if (horizon < 1) throw new ArgumentOutOfRangeException(nameof(horizon), horizon, "horizon must be >= 1.");
        if (stride < 1) throw new ArgumentOutOfRangeException(nameof(stride), stride, "stride must be >= 1.");
        var targets = targetColumns.Select(name => ColumnChecks.Find(table.Schema, name, nameof(targetColumns))).ToArray();
        if (targets.Length == 0) throw new ArgumentException("Name at least one target column.", nameof(targetColumns));
        foreach (var column in targets)
            if (!Numeric.IsSupported(column.Type))
                throw new ArgumentOutOfRangeException(nameof(targetColumns), column.Name,
                    $"Target column '{column.Name}' has type {column.Type}; it must be a numeric scalar (Single, Double, or an integer type).");
        DataViewSchema.Column? timestamp = null;
        if (timestampColumn is not null)
        {
            timestamp = ColumnChecks.Find(table.Schema, timestampColumn, nameof(timestampColumn));
            if (timestamp.Value.Type is not (DateTimeDataViewType or DateTimeOffsetDataViewType or TextDataViewType))
                throw new ArgumentOutOfRangeException(nameof(timestampColumn), timestampColumn,
                    $"Timestamp column '{timestampColumn}' has type {timestamp.Value.Type}; it must be DateTime, DateTimeOffset or text.");
        }
        DataViewSchema.Column? seriesKey = null;
        if (seriesKeyColumn is not null)
        {
            var key = ColumnChecks.Find(table.Schema, seriesKeyColumn, nameof(seriesKeyColumn));
            if (targets.Any(t => t.Index == key.Index) || timestamp?.Index == key.Index)
                throw new ArgumentException($"Column '{seriesKeyColumn}' is the series key and also a target or the timestamp column; name each column once.", nameof(seriesKeyColumn));
            if (!SeriesKeys.IsSupported(key.Type))
                throw new ArgumentOutOfRangeException(nameof(seriesKeyColumn), seriesKeyColumn,
                    $"Series key column '{seriesKeyColumn}' has type {key.Type}; it must be text or an integer type" +
                    (key.Type is KeyDataViewType ? " (map ML.NET keys back with mlContext.Transforms.Conversion.MapKeyToValue)." : "."));
            seriesKey = key;
        }
        return new TimeSeriesWindows(table, targets, timestamp, seriesKey, lookback, horizon, stride);
    }

    /// <summary>Windows over a time-ordered <see cref="DataFrame"/>; see <see cref="Create(IDataView, IEnumerable{string}, int, int, int, string?, string?)"/>.
    /// Target, timestamp and series key columns must hold no nulls (a DataFrame gives an integer null as 0 and a DateTime null as 0001-01-01).</summary>
    public static TimeSeriesWindows Create(DataFrame table, IEnumerable<string> targetColumns, int lookback, int horizon, int stride = 1,
                                           string? timestampColumn = null, string? seriesKeyColumn = null)
    {
        ArgumentNullException.ThrowIfNull(table);
        ArgumentNullException.ThrowIfNull(targetColumns);
        var names = targetColumns.ToArray();
        var checkedColumns = names.Select(n => (Name: (string?)n, Parameter: nameof(targetColumns)))
            .Append((Name: timestampColumn, Parameter: nameof(timestampColumn))).Append((Name: seriesKeyColumn, Parameter: nameof(seriesKeyColumn)));
        foreach (var (name, parameter) in checkedColumns)
        {
            if (name is null) continue;
            int index = table.Columns.IndexOf(name);
            if (index < 0 || table.Columns[index].NullCount == 0) continue;   // a missing column is named by the IDataView checks
            var column = table.Columns[index];
            long row = 0;
            while (column[row] is not null) row++;
            throw new ArgumentException(
                $"Column '{name}' of the DataFrame has {column.NullCount} null value(s), the first at row {row}. Fill or drop them first " +
                "(e.g. DataFrame.DropNulls, or column.FillNulls).", parameter);
        }
        return Create((IDataView)table, names, lookback, horizon, stride, timestampColumn, seriesKeyColumn);
    }

    /// <summary>
    /// Labelled windows (features, label, window start) whose forecast rows lie in [<paramref name="firstTargetRow"/>,
    /// <paramref name="endTargetRow"/>): their inputs may start up to lookback rows earlier, as in the standard train/validation/test
    /// protocol. Without arguments: every window of the table. A negative row counts back from the end (−24: 24 rows before it),
    /// so <c>GetWindows(0, -24)</c> and <c>GetWindows(-24)</c> hold out the last 24 rows. With a series key, rows count within each
    /// series, from its start or, when negative, from its own end: series of different lengths each keep their last rows out
    /// (with one bound from each end, a series too short to hold the range gets no windows).
    /// </summary>
    /// <param name="firstTargetRow">First row a window may forecast; negative: counted from the end.</param>
    /// <param name="endTargetRow">Row after the last one a window may forecast (null: the end); negative: counted from the end.</param>
    public IDataView GetWindows(long firstTargetRow = 0, long? endTargetRow = null)
    {
        // Bounds on the same side can be compared now. With one from each end, a series too short to hold the range gets no windows.
        if (endTargetRow is { } end && end < firstTargetRow && (end < 0) == (firstTargetRow < 0))
            throw new ArgumentOutOfRangeException(nameof(endTargetRow), endTargetRow, "endTargetRow must be >= firstTargetRow.");
        if (endTargetRow == 0 && firstTargetRow < 0)
            throw new ArgumentOutOfRangeException(nameof(endTargetRow), endTargetRow, "endTargetRow 0 is row 0, before any row counted from the end: pass null to end at the end.");
        return new WindowView(this, latestOnly: false, firstTargetRow, endTargetRow);
    }

    /// <summary>
    /// The newest window (features and window start, no label): the input for forecasting past the table's end. With a series key,
    /// one per series, in the order the series first appear.
    /// </summary>
    /// <param name="skipShortSeries">Leave out series with fewer than lookback rows (a panel's new series) instead of failing with
    /// an error that names the first; which were left out shows in the <see cref="SeriesKeyColumnName"/> values missing from the view.</param>
    public IDataView GetLatestWindow(bool skipShortSeries = false) => new WindowView(this, latestOnly: true, 0, null, skipShortSeries);

    /// <summary>
    /// Places each forecast of <paramref name="predictions"/> (the transformed output of a window view) on its row and timestamp.
    /// </summary>
    /// <param name="predictions">Rows with <see cref="WindowStartColumnName"/> (and <see cref="SeriesKeyColumnName"/> with a series key) and the forecast column.</param>
    /// <param name="forecastColumnName">The forecaster's output column.</param>
    /// <param name="lowerBoundColumnName">The forecaster's lower prediction-bound column, to fill <see cref="ForecastPoint.LowerBound"/>; null to leave it out.</param>
    /// <param name="upperBoundColumnName">The upper prediction-bound column, likewise.</param>
    public IReadOnlyList<ForecastPoint> ToTimeSeries(IDataView predictions, string forecastColumnName = "Forecast",
                                                     string? lowerBoundColumnName = null, string? upperBoundColumnName = null)
    {
        ArgumentNullException.ThrowIfNull(predictions);
        var start = ColumnChecks.Find(predictions.Schema, WindowStartColumnName, "predictions");
        var key = _seriesKey is null ? (DataViewSchema.Column?)null : ColumnChecks.Find(predictions.Schema, SeriesKeyColumnName, "predictions");
        // The forecast, then the lower and upper bounds when asked for: each horizon × channels long.
        var parameters = new (string? Column, string Parameter)[]
        {
            (forecastColumnName, nameof(forecastColumnName)), (lowerBoundColumnName, nameof(lowerBoundColumnName)), (upperBoundColumnName, nameof(upperBoundColumnName)),
        };
        var vectors = parameters.Select(p => p.Column is null ? (DataViewSchema.Column?)null : ColumnChecks.Find(predictions.Schema, p.Column, p.Parameter)).ToArray();
        var label = predictions.Schema.GetColumnOrNull(LabelColumnName);
        var result = new List<ForecastPoint>();
        using var cursor = predictions.GetRowCursor(new[] { start, label, key }.Concat(vectors).OfType<DataViewSchema.Column>());
        var getStart = cursor.GetGetter<long>(start);
        var getKey = key is { } kc ? cursor.GetGetter<ReadOnlyMemory<char>>(kc) : null;
        var getters = vectors.Select(c => c is { } column ? cursor.GetGetter<VBuffer<float>>(column) : null).ToArray();
        var getLabel = label is { } lc ? cursor.GetGetter<VBuffer<float>>(lc) : null;
        long s = 0;
        ReadOnlyMemory<char> keyText = default;
        VBuffer<float> a = default;
        var buffers = new VBuffer<float>[parameters.Length];
        while (cursor.MoveNext())
        {
            getStart(ref s);
            getKey?.Invoke(ref keyText);
            string? series = getKey is null ? null : keyText.ToString();
            var timestamps = TimestampsOf(series);
            getLabel?.Invoke(ref a);
            var values = new float[]?[parameters.Length];
            for (int k = 0; k < parameters.Length; k++)
            {
                if (getters[k] is not { } get) continue;
                get(ref buffers[k]);
                values[k] = buffers[k].DenseValues().ToArray();
                if (values[k]!.Length != Horizon * Channels)
                    throw new ArgumentException($"Column '{parameters[k].Column}' has {values[k]!.Length} values; Horizon ({Horizon}) × Channels ({Channels}) = {Horizon * Channels} expected.",
                                                parameters[k].Parameter);
            }
            var av = getLabel is null ? null : a.DenseValues().ToArray();
            for (int step = 0; step < Horizon; step++)
                for (int c = 0; c < Channels; c++)
                {
                    long row = s + Lookback + step;
                    int at = step * Channels + c;
                    result.Add(new ForecastPoint(s, step + 1, row, timestamps is null ? null : TimestampOf(timestamps, row, series), _targets[c].Name,
                                                 values[0]![at], av?[at], values[1]?[at], values[2]?[at], series));
                }
        }
        return result;
    }

    // The timestamps of the series with key `series` (null: the table's only series), or null without a timestamp column.
    private List<DateTime>? TimestampsOf(string? series)
    {
        if (_timestamps is null) return null;
        if (_timestamps.TryGetValue(series ?? "", out var list)) return list;
        throw new ArgumentException($"The predictions hold series '{series}', which the table of these windows (key column '{_seriesKey?.Name}') does not have. " +
                                    "Place forecasts with the TimeSeriesWindows that made their windows.", "predictions");
    }

    private static DateTime TimestampOf(List<DateTime> timestamps, long row, string? series)
    {
        if (row < timestamps.Count) return timestamps[(int)row];
        if (timestamps.Count < 2)
            throw new InvalidOperationException($"Row {row}{(series is null ? "" : $" of series '{series}'")} lies past the end and the " +
                                                $"{(series is null ? "table" : "series")} has fewer than 2 timestamps to extrapolate from.");
        return Extrapolate(timestamps[^2], timestamps[^1], row - (timestamps.Count - 1));
    }

    /// <summary>
    /// The timestamp <paramref name="steps"/> intervals after <paramref name="last"/>, the interval being <paramref name="last"/> −
    /// <paramref name="previous"/>: a whole number of calendar months when the two are that far apart on the same day and time of
    /// the month, or are both month ends (a monthly or quarterly series, whose months differ in length), else a fixed duration.
    /// </summary>
    internal static DateTime Extrapolate(DateTime previous, DateTime last, long steps)
    {
        int months = (last.Year - previous.Year) * 12 + last.Month - previous.Month;
        if (months >= 1 && last.TimeOfDay == previous.TimeOfDay && steps <= int.MaxValue / months)
        {
            static bool IsMonthEnd(DateTime t) => t.Day == DateTime.DaysInMonth(t.Year, t.Month);
            var ahead = last.AddMonths(months * (int)steps);
            if (IsMonthEnd(previous) && IsMonthEnd(last))
                return ahead.AddDays(DateTime.DaysInMonth(ahead.Year, ahead.Month) - ahead.Day);
            if (previous.AddMonths(months) == last) return ahead;
        }
        return last + (last - previous) * steps;
    }

    // From the timestamps when they were read, the table's row count for one series when it knows it, else a pass over the keys.
    private Dictionary<string, long> SeriesLengths()
    {
        if (_timestamps is { } timestamps) return timestamps.ToDictionary(t => t.Key, t => (long)t.Value.Count);
        if (_seriesKey is null && _table.GetRowCount() is { } rows) return new() { [""] = rows };
        var counts = new SeriesKeys.Lookup<StrongBox<long>>(_ => new StrongBox<long>());
        using var cursor = _table.GetRowCursor(_seriesKey is { } key ? new[] { key } : Array.Empty<DataViewSchema.Column>());
        var readKey = SeriesKeys.Reader(cursor, _seriesKey);
        while (cursor.MoveNext()) counts.Get(readKey()).Value.Value++;
        return counts.InOrder.ToDictionary(c => c.Key, c => c.Value.Value);
    }

    // The earliest timestamp and the smallest step between consecutive ones of a series, when every timestamp lies a whole
    // number of such steps from that origin; else null.
    private static (DateTime Origin, long StepTicks)? TimeGrid(IEnumerable<List<DateTime>> series)
    {
        var lists = series.Where(list => list.Count > 0).ToList();
        if (lists.Count == 0) return null;
        var origin = lists.Min(list => list[0]);
        long step = lists.SelectMany(list => list.Zip(list.Skip(1), (a, b) => (b - a).Ticks)).DefaultIfEmpty(0).Min();
        if (step <= 0) return null;
        foreach (var list in lists)
            foreach (var time in list)
                if ((time - origin).Ticks % step != 0) return null;
        return (origin, step);
    }

    // Every row's timestamp, by series, checked to rise strictly within each: ToTimeSeries extrapolates past the end with the last
    // interval, and windows assume one row per time step in order.
    private static Dictionary<string, List<DateTime>> ReadTimestamps(IDataView table, DataViewSchema.Column column, DataViewSchema.Column? seriesKey)
    {
        var series = new SeriesKeys.Lookup<List<DateTime>>(_ => new List<DateTime>());
        using var cursor = table.GetRowCursor(seriesKey is { } k ? new[] { column, k } : new[] { column });
        var getKey = SeriesKeys.Reader(cursor, seriesKey);
        ValueGetter<DateTime> get;
        if (column.Type is DateTimeDataViewType) get = cursor.GetGetter<DateTime>(column);
        else if (column.Type is DateTimeOffsetDataViewType)
        {
            var getOffset = cursor.GetGetter<DateTimeOffset>(column);
            DateTimeOffset time = default;
            get = (ref DateTime value) => { getOffset(ref time); value = time.UtcDateTime; };
        }
        else
        {
            var getText = cursor.GetGetter<ReadOnlyMemory<char>>(column);
            ReadOnlyMemory<char> text = default;
            get = (ref DateTime value) =>
            {
                getText(ref text);
                if (!DateTime.TryParse(text.Span, CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal, out value))
                    throw new FormatException($"Row {cursor.Position} of timestamp column '{column.Name}' holds '{text}', which is not a date and time.");
            };
        }
        DateTime current = default;
        while (cursor.MoveNext())
        {
            var (key, list) = series.Get(getKey());
            get(ref current);
            if (list.Count > 0 && current <= list[^1])
                throw new ArgumentException(
                    $"Timestamp column '{column.Name}': row {cursor.Position} ({current:O}) is {(current == list[^1] ? "the same as" : "before")} " +
                    $"{(seriesKey is null ? $"row {cursor.Position - 1}" : $"the previous row of series '{key}'")} ({list[^1]:O}). The rows must be in time order with one row per " +
                    $"time step{(seriesKey is null ? "" : " within each series")}: sort the table by time and remove duplicates.", "timestampColumn");
            list.Add(current);
        }
        return series.ToDictionary();
    }

    /// <summary>Windows as an <see cref="IDataView"/>, computed by a cursor with a ring buffer of lookback + horizon rows per series.</summary>
    private sealed class WindowView : IDataView
    {
        private readonly TimeSeriesWindows _owner;
        private readonly bool _latestOnly;
        private readonly bool _skipShortSeries;
        private readonly long _firstTargetRow;
        private readonly long? _endTargetRow;

        public WindowView(TimeSeriesWindows owner, bool latestOnly, long firstTargetRow, long? endTargetRow, bool skipShortSeries = false)
        {
            _owner = owner;
            _latestOnly = latestOnly;
            _skipShortSeries = skipShortSeries;
            _firstTargetRow = firstTargetRow;
            _endTargetRow = endTargetRow;
            var builder = new DataViewSchema.Builder();
            builder.AddColumn(FeaturesColumnName, new VectorDataViewType(NumberDataViewType.Single, owner.Lookback * owner.Channels));
            if (!latestOnly) builder.AddColumn(LabelColumnName, new VectorDataViewType(NumberDataViewType.Single, owner.Horizon * owner.Channels));
            builder.AddColumn(WindowStartColumnName, NumberDataViewType.Int64);
            if (owner._seriesKey is not null) builder.AddColumn(SeriesKeyColumnName, TextDataViewType.Instance);
            if (owner._timeGrid is not null) builder.AddColumn(TimeIndexColumnName, NumberDataViewType.Int64);
            Schema = builder.ToSchema();
        }

        public bool CanShuffle => false;
        public DataViewSchema Schema { get; }
        private int Span => _owner.Lookback + (_latestOnly ? 0 : _owner.Horizon);
        // Whether a bound counts back from the end, so that each series' length is needed to place it.
        private bool FromEnd => _firstTargetRow < 0 || _endTargetRow < 0;

        /// <summary>The target rows [First, End) of a series of <paramref name="length"/> rows (needed only <see cref="FromEnd"/>).</summary>
        public TargetRange RangeOf(long? length)
        {
            long Place(long row) => row >= 0 ? row : Math.Max(0, length!.Value + row);
            return new TargetRange(Place(_firstTargetRow), _endTargetRow is { } end ? Place(end) : null, _owner.Lookback, Span, _owner.Stride);
        }

        public long? GetRowCount()
        {
            // With a series key the count depends on every series' length, which only a pass over the table tells.
            if (_owner._seriesKey is not null || _owner._table.GetRowCount() is not { } rows) return null;
            if (_latestOnly) return rows >= _owner.Lookback ? 1 : 0;
            var range = RangeOf(rows);
            long lastStart = Math.Min(rows, range.End ?? long.MaxValue) - Span;
            return lastStart < range.FirstStart ? 0 : (lastStart - range.FirstStart) / _owner.Stride + 1;
        }

        public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null) =>
            new WindowCursor(this, _owner, _latestOnly);

        public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
            new[] { GetRowCursor(columnsNeeded, rand) };

        /// <summary>Target rows [<paramref name="First"/>, <paramref name="End"/>) of one series, placed; which windows they take.</summary>
        public readonly record struct TargetRange(long First, long? End, int Lookback, int Span, int Stride)
        {
            public long FirstStart => Math.Max(0, First - Lookback);

            /// <summary>Whether a window may start at series row <paramref name="start"/> (given the rows exist).</summary>
            public bool Accepts(long start) =>
                start >= FirstStart && (start - FirstStart) % Stride == 0 && (End is not { } end || start + Span <= end);

            /// <summary>Whether no window from <paramref name="start"/> on can be accepted.</summary>
            public bool PastEnd(long start) => End is { } end && start + Span > end;
        }

        /// <summary>
        /// One series' last <see cref="Span"/> rows (a ring of span × channels values; row r at (r mod span) × channels, one flat
        /// array, since an array per row took ten times the values' memory), how many rows it has had, and its target rows.
        /// </summary>
        private sealed class SeriesRows(int span, int channels, TargetRange range)
        {
            public readonly int Span = span;
            public readonly float[] Ring = new float[span * channels];
            public readonly TargetRange Range = range;
            public long RowsRead;

            public Span<float> Row(long row, int channels) => Ring.AsSpan((int)(row % Span) * channels, channels);
        }

        private sealed class WindowCursor : DataViewRowCursor
        {
            private readonly WindowView _view;
            private readonly TimeSeriesWindows _owner;
            private readonly bool _latestOnly;
            private readonly DataViewRowCursor _source;
            private readonly Func<float>[] _read;
            private readonly Func<ReadOnlySpan<char>> _readKey;
            private readonly SeriesKeys.Lookup<SeriesRows> _series;
            private long _position = -1;
            // The current window: its series and first row within it.
            private (string Key, SeriesRows Rows) _current;
            private long _start;
            // The series with a latest window, in order of first appearance, once the table has been read.
            private List<(string Key, SeriesRows Value)>? _latest;
            private int _latestEmitted;
            private bool _done;

            public WindowCursor(WindowView view, TimeSeriesWindows owner, bool latestOnly)
            {
                _view = view;
                _owner = owner;
                _latestOnly = latestOnly;
                _source = owner._table.GetRowCursor(owner._seriesKey is { } key ? owner._targets.Append(key) : owner._targets);
                _read = owner._targets.Select(c => Numeric.Getter<float>(_source, c)).ToArray();
                _readKey = SeriesKeys.Reader(_source, owner._seriesKey);
                var lengths = view.FromEnd && !latestOnly ? owner._seriesLengths.Value : null;
                _series = new SeriesKeys.Lookup<SeriesRows>(key => new SeriesRows(view.Span, owner.Channels, view.RangeOf(lengths?[key])));
            }

            public override DataViewSchema Schema => _view.Schema;
            public override long Position => _position;
            public override long Batch => 0;
            public override bool IsColumnActive(DataViewSchema.Column column) => true;

            public override ValueGetter<DataViewRowId> GetIdGetter() =>
                (ref DataViewRowId id) => id = new DataViewRowId((ulong)_position, 0);

            public override bool MoveNext()
            {
                if (_done) return false;
                if (_latestOnly) return MoveToLatest();
                while (ReadRow() is { } series)
                {
                    long read = series.Rows.RowsRead;
                    int span = series.Rows.Span;
                    if (read < span) continue;
                    long start = read - span;
                    if (series.Rows.Range.PastEnd(start))
                    {
                        // One series: no later row can start an accepted window. Several: other series may still have windows.
                        if (_owner._seriesKey is null) break;
                        continue;
                    }
                    if (!series.Rows.Range.Accepts(start)) continue;
                    _current = series;
                    _start = start;
                    _position++;
                    return true;
                }
                _done = true;
                return false;
            }

            // The newest window of each series in turn, once the whole table has been read.
            private bool MoveToLatest()
            {
                if (_latest is null)
                {
                    while (ReadRow() is not null) { }
                    if (_series.Count == 0 && !_view._skipShortSeries)
                        throw new InvalidOperationException($"The table has 0 rows; a window needs Lookback = {_owner.Lookback}.");
                    if (!_view._skipShortSeries)
                        foreach (var (key, rows) in _series.InOrder)
                            if (rows.RowsRead < _owner.Lookback)
                                throw new InvalidOperationException(_owner._seriesKey is null
                                    ? $"The table has {rows.RowsRead} rows; a window needs Lookback = {_owner.Lookback}."
                                    : $"Series '{key}' (column '{_owner._seriesKey.Value.Name}') has {rows.RowsRead} rows; a window needs Lookback = {_owner.Lookback}. " +
                                      "Forecast it with a shorter lookback, filter out series that are too short, or pass skipShortSeries: true.");
                    _latest = _series.InOrder.Where(s => s.Value.RowsRead >= _owner.Lookback).ToList();
                }
                if (_latestEmitted == _latest.Count)
                {
                    _done = true;
                    return false;
                }
                _current = _latest[_latestEmitted++];
                _start = _current.Rows.RowsRead - _owner.Lookback;
                _position++;
                return true;
            }

            // Reads the next table row into its series' ring; null at the table's end.
            private (string Key, SeriesRows Rows)? ReadRow()
            {
                if (!_source.MoveNext()) return null;
                var series = _series.Get(_readKey());
                var rows = series.Value;
                var slot = rows.Row(rows.RowsRead, _read.Length);
                for (int c = 0; c < _read.Length; c++) slot[c] = _read[c]();
                rows.RowsRead++;
                return series;
            }

            // Values of the current series' rows [_start + from, _start + from + count) into a time-major vector. A value that is
            // not finite is named by its row and column here: downstream it could only be named by window.
            private void Fill(ref VBuffer<float> value, int from, int count)
            {
                int channels = _owner.Channels;
                var editor = VBufferEditor.Create(ref value, count * channels);
                for (int k = 0; k < count; k++)
                {
                    long row = _start + from + k;
                    var values = _current.Rows.Row(row, channels);
                    for (int c = 0; c < channels; c++)
                        if (!float.IsFinite(values[c]))
                            throw new InvalidOperationException(
                                $"Row {row}{(_owner._seriesKey is null ? "" : $" of series '{_current.Key}'")} of table column '{_owner._targets[c].Name}' holds " +
                                $"{values[c]} (a value beyond float's range reads as infinity). Windows need finite values at evenly spaced steps: " +
                                "impute it (e.g. carry the previous value forward) rather than drop the row.");
                    values.CopyTo(editor.Values.Slice(k * channels, channels));
                }
                value = editor.Commit();
            }

            // Steps from the table's earliest timestamp to the current window's first step.
            private long TimeIndex()
            {
                var (origin, step) = _owner._timeGrid!.Value;
                return (_owner._timestamps![_current.Key][(int)_start] - origin).Ticks / step;
            }

            public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
            {
                Delegate getter = column.Name switch
                {
                    FeaturesColumnName => (ValueGetter<VBuffer<float>>)((ref VBuffer<float> v) => Fill(ref v, 0, _owner.Lookback)),
                    LabelColumnName => (ValueGetter<VBuffer<float>>)((ref VBuffer<float> v) => Fill(ref v, _owner.Lookback, _owner.Horizon)),
                    SeriesKeyColumnName => (ValueGetter<ReadOnlyMemory<char>>)((ref ReadOnlyMemory<char> v) => v = _current.Key.AsMemory()),
                    TimeIndexColumnName => (ValueGetter<long>)((ref long v) => v = TimeIndex()),
                    _ => (ValueGetter<long>)((ref long v) => v = _start),
                };
                return getter as ValueGetter<TValue>
                       ?? throw new InvalidOperationException($"Column '{column.Name}' has type {column.Type}; it cannot be read as {typeof(TValue).Name}.");
            }

            protected override void Dispose(bool disposing)
            {
                if (disposing) _source.Dispose();
                base.Dispose(disposing);
            }
        }
    }
}

/// <summary>Reads a series key column and keeps one value per series, found by key without allocating per row.</summary>
internal static class SeriesKeys
{
    /// <summary>Whether <paramref name="type"/> can key series: text or an integer type.</summary>
    public static bool IsSupported(DataViewType type) =>
        type is TextDataViewType ||
        type is NumberDataViewType && (type.RawType == typeof(int) || type.RawType == typeof(long) || type.RawType == typeof(short) ||
                                       type.RawType == typeof(sbyte) || type.RawType == typeof(byte) || type.RawType == typeof(ushort) ||
                                       type.RawType == typeof(uint));

    /// <summary>The current row's key as text (integers in invariant digits); always empty without a key column.</summary>
    public static Func<ReadOnlySpan<char>> Reader(DataViewRow row, DataViewSchema.Column? column)
    {
        if (column is not { } key) return () => ReadOnlySpan<char>.Empty;
        if (key.Type is TextDataViewType)
        {
            var getText = row.GetGetter<ReadOnlyMemory<char>>(key);
            ReadOnlyMemory<char> text = default;
            return () => { getText(ref text); return text.Span; };
        }
        var getNumber = Numeric.Getter<long>(row, key);
        var digits = new char[20];
        return () =>
        {
            getNumber().TryFormat(digits, out int length, provider: CultureInfo.InvariantCulture);
            return digits.AsSpan(0, length);
        };
    }

    /// <summary>One value per key, made on the key's first appearance, in that order.</summary>
    public sealed class Lookup<T>
    {
        private readonly Func<string, T> _create;
        private readonly Dictionary<string, T> _byKey = new();
        private readonly Dictionary<string, T>.AlternateLookup<ReadOnlySpan<char>> _bySpan;
        private readonly List<(string Key, T Value)> _inOrder = new();

        public Lookup(Func<string, T> create)
        {
            _create = create;
            _bySpan = _byKey.GetAlternateLookup<ReadOnlySpan<char>>();
        }

        public int Count => _inOrder.Count;
        public IReadOnlyList<(string Key, T Value)> InOrder => _inOrder;

        public (string Key, T Value) Get(ReadOnlySpan<char> key)
        {
            if (_bySpan.TryGetValue(key, out string? name, out var value)) return (name, value);
            name = key.ToString();
            value = _create(name);
            _byKey.Add(name, value);
            _inOrder.Add((name, value));
            return (name, value);
        }

        public Dictionary<string, T> ToDictionary() => new(_byKey);
    }
}

/// <summary>Reads numeric scalar columns of any ML.NET numeric type (and Boolean, as 0 or 1) as a chosen number type.</summary>
internal static class Numeric
{
    /// <summary>Whether <paramref name="type"/> is a numeric scalar this reader handles.</summary>
    public static bool IsSupported(DataViewType type) =>
        type is NumberDataViewType && type.RawType != typeof(ulong) || type is BooleanDataViewType;

    /// <summary>A function returning the column's current value converted to <typeparamref name="TResult"/> (as a C# cast would).</summary>
    public static Func<TResult> Getter<TResult>(DataViewRow row, DataViewSchema.Column column) where TResult : INumberBase<TResult>
    {
        Func<TResult> Make<T>() where T : INumberBase<T>
        {
            var get = row.GetGetter<T>(column);
            T value = default!;
            return () => { get(ref value); return TResult.CreateTruncating(value); };
        }
        Func<TResult> MakeBoolean()
        {
            var get = row.GetGetter<bool>(column);
            bool value = false;
            return () => { get(ref value); return value ? TResult.One : TResult.Zero; };
        }
        return column.Type.RawType switch
        {
            var t when t == typeof(float) => Make<float>(),
            var t when t == typeof(double) => Make<double>(),
            var t when t == typeof(int) => Make<int>(),
            var t when t == typeof(long) => Make<long>(),
            var t when t == typeof(short) => Make<short>(),
            var t when t == typeof(sbyte) => Make<sbyte>(),
            var t when t == typeof(byte) => Make<byte>(),
            var t when t == typeof(ushort) => Make<ushort>(),
            var t when t == typeof(uint) => Make<uint>(),
            var t when t == typeof(bool) => MakeBoolean(),
            _ => throw new ArgumentOutOfRangeException(nameof(column), column.Name, $"Column '{column.Name}' has type {column.Type}, which is not numeric."),
        };
    }
}
