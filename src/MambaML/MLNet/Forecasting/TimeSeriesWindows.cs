using System.Globalization;
using System.Numerics;
using Microsoft.Data.Analysis;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace MambaML.MLNet;

/// <summary>One forecast value placed back on the time axis.</summary>
/// <param name="WindowStart">Row index of the first input step of the window that produced it.</param>
/// <param name="Step">Steps ahead, from 1 to the horizon.</param>
/// <param name="Row">Row index in the table the value is for (may lie past the table's end).</param>
/// <param name="Timestamp">
/// That row's timestamp; past the end, extrapolated with the last interval: in calendar months when the last two timestamps are
/// whole months apart (same day and time of the month, or both month ends), otherwise as a fixed duration. Null without a
/// timestamp column.
/// </param>
/// <param name="Series">Name of the target column.</param>
/// <param name="Forecast">The predicted value.</param>
/// <param name="Actual">The true value, when the predictions carry a label column.</param>
/// <param name="LowerBound">The lower prediction bound, when the forecaster predicts intervals and its bound columns are passed.</param>
/// <param name="UpperBound">The upper prediction bound, likewise.</param>
public sealed record ForecastPoint(long WindowStart, int Step, long Row, DateTime? Timestamp, string Series, float Forecast, float? Actual,
                                   float? LowerBound = null, float? UpperBound = null);

/// <summary>
/// Turns a time-ordered table (an <see cref="IDataView"/> or a <see cref="DataFrame"/>) into sliding windows for
/// <c>ForecastByMamba</c>, and maps forecasts back to rows and timestamps. Windows are produced lazily by a cursor over the
/// table holding only lookback + horizon rows, so the table is never loaded whole.
/// </summary>
/// <remarks>
/// Window columns: <see cref="FeaturesColumnName"/> (lookback × channels past values, time-major), <see cref="LabelColumnName"/>
/// (horizon × channels following values) and <see cref="WindowStartColumnName"/> (row index of the first past value).
/// </remarks>
public sealed class TimeSeriesWindows
{
    /// <summary>Column of past values in the window views.</summary>
    public const string FeaturesColumnName = "Features";
    /// <summary>Column of following (true future) values in labelled window views.</summary>
    public const string LabelColumnName = "Label";
    /// <summary>Column holding each window's first row index.</summary>
    public const string WindowStartColumnName = "WindowStart";

    private readonly IDataView _table;
    private readonly DataViewSchema.Column[] _targets;
    private readonly List<DateTime>? _timestamps;

    private TimeSeriesWindows(IDataView table, DataViewSchema.Column[] targets, DataViewSchema.Column? timestamp, int lookback, int horizon, int stride)
    {
        _table = table;
        _targets = targets;
        _timestamps = timestamp is null ? null : ReadTimestamps(table, timestamp.Value);
        Lookback = lookback;
        Horizon = horizon;
        Stride = stride;
    }

    /// <summary>Past steps per window.</summary>
    public int Lookback { get; }
    /// <summary>Future steps per window.</summary>
    public int Horizon { get; }
    /// <summary>Rows between the starts of consecutive windows.</summary>
    public int Stride { get; }
    /// <summary>Number of target series (channels), in the order of <see cref="TargetColumns"/>.</summary>
    public int Channels => _targets.Length;
    /// <summary>The target columns, one channel each.</summary>
    public IReadOnlyList<string> TargetColumns => _targets.Select(c => c.Name).ToArray();

    /// <summary>Windows over a time-ordered <see cref="IDataView"/>.</summary>
    /// <param name="table">Rows in time order, one per time step.</param>
    /// <param name="targetColumns">Numeric columns to forecast (one channel each).</param>
    /// <param name="lookback">Past steps per window.</param>
    /// <param name="horizon">Future steps per window.</param>
    /// <param name="stride">Rows between window starts.</param>
    /// <param name="timestampColumn">Optional DateTime or text column used by <see cref="ToTimeSeries"/>. Its values must rise
    /// strictly from row to row (rows in time order, no duplicates); this is checked here. Text is read in the invariant culture
    /// (month first: "10/03/2024" is 3 October; ISO 8601 such as "2024-03-10T06:00:00" is unambiguous); a time with a zone or
    /// offset is converted to UTC, one without is kept as written, so the result does not depend on the machine's time zone.</param>
    public static TimeSeriesWindows Create(IDataView table, IEnumerable<string> targetColumns, int lookback, int horizon, int stride = 1, string? timestampColumn = null)
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
            if (timestamp.Value.Type is not (DateTimeDataViewType or TextDataViewType))
                throw new ArgumentOutOfRangeException(nameof(timestampColumn), timestampColumn,
                    $"Timestamp column '{timestampColumn}' has type {timestamp.Value.Type}; it must be DateTime or text.");
        }
        return new TimeSeriesWindows(table, targets, timestamp, lookback, horizon, stride);
    }

    /// <summary>Windows over a time-ordered <see cref="DataFrame"/>; see <see cref="Create(IDataView, IEnumerable{string}, int, int, int, string?)"/>.
    /// Target and timestamp columns must hold no nulls (a DataFrame gives an integer null as 0 and a DateTime null as 0001-01-01).</summary>
    public static TimeSeriesWindows Create(DataFrame table, IEnumerable<string> targetColumns, int lookback, int horizon, int stride = 1, string? timestampColumn = null)
    {
        ArgumentNullException.ThrowIfNull(table);
        ArgumentNullException.ThrowIfNull(targetColumns);
        var names = targetColumns.ToArray();
        foreach (var name in timestampColumn is null ? names : names.Append(timestampColumn))
        {
            int index = table.Columns.IndexOf(name);
            if (index < 0 || table.Columns[index].NullCount == 0) continue;   // a missing column is named by the IDataView checks
            var column = table.Columns[index];
            long row = 0;
            while (column[row] is not null) row++;
            throw new ArgumentException(
                $"Column '{name}' of the DataFrame has {column.NullCount} null value(s), the first at row {row}. Fill or drop them first " +
                "(e.g. DataFrame.DropNulls, or column.FillNulls).", name == timestampColumn ? nameof(timestampColumn) : nameof(targetColumns));
        }
        return Create((IDataView)table, names, lookback, horizon, stride, timestampColumn);
    }

    /// <summary>
    /// Labelled windows (features, label, window start) whose forecast rows lie in [<paramref name="firstTargetRow"/>,
    /// <paramref name="endTargetRow"/>): their inputs may start up to lookback rows earlier, as in the standard train/validation/test
    /// protocol. Without arguments: every window of the table.
    /// </summary>
    /// <param name="firstTargetRow">First row a window may forecast.</param>
    /// <param name="endTargetRow">Row after the last one a window may forecast (null: the table's end).</param>
    public IDataView GetWindows(long firstTargetRow = 0, long? endTargetRow = null)
    {
        if (firstTargetRow < 0) throw new ArgumentOutOfRangeException(nameof(firstTargetRow), firstTargetRow, "firstTargetRow must be >= 0.");
        if (endTargetRow < firstTargetRow) throw new ArgumentOutOfRangeException(nameof(endTargetRow), endTargetRow, "endTargetRow must be >= firstTargetRow.");
        return new WindowView(this, latestOnly: false, firstTargetRow, endTargetRow);
    }

    /// <summary>The newest window (features and window start, no label): the input for forecasting past the table's end.</summary>
    public IDataView GetLatestWindow() => new WindowView(this, latestOnly: true, 0, null);

    /// <summary>
    /// Places each forecast of <paramref name="predictions"/> (the transformed output of a window view) on its row and timestamp.
    /// </summary>
    /// <param name="predictions">Rows with <see cref="WindowStartColumnName"/> and the forecast column.</param>
    /// <param name="forecastColumnName">The forecaster's output column.</param>
    /// <param name="lowerBoundColumnName">The forecaster's lower prediction-bound column, to fill <see cref="ForecastPoint.LowerBound"/>; null to leave it out.</param>
    /// <param name="upperBoundColumnName">The upper prediction-bound column, likewise.</param>
    public IReadOnlyList<ForecastPoint> ToTimeSeries(IDataView predictions, string forecastColumnName = "Forecast",
                                                     string? lowerBoundColumnName = null, string? upperBoundColumnName = null)
    {
        ArgumentNullException.ThrowIfNull(predictions);
        var start = ColumnChecks.Find(predictions.Schema, WindowStartColumnName, "predictions");
        // The forecast, then the lower and upper bounds when asked for: each horizon × channels long.
        var parameters = new (string? Column, string Parameter)[]
        {
            (forecastColumnName, nameof(forecastColumnName)), (lowerBoundColumnName, nameof(lowerBoundColumnName)), (upperBoundColumnName, nameof(upperBoundColumnName)),
        };
        var vectors = parameters.Select(p => p.Column is null ? (DataViewSchema.Column?)null : ColumnChecks.Find(predictions.Schema, p.Column, p.Parameter)).ToArray();
        var label = predictions.Schema.GetColumnOrNull(LabelColumnName);
        var result = new List<ForecastPoint>();
        using var cursor = predictions.GetRowCursor(new[] { start, label }.Concat(vectors).OfType<DataViewSchema.Column>());
        var getStart = cursor.GetGetter<long>(start);
        var getters = vectors.Select(c => c is { } column ? cursor.GetGetter<VBuffer<float>>(column) : null).ToArray();
        var getLabel = label is { } lc ? cursor.GetGetter<VBuffer<float>>(lc) : null;
        long s = 0;
        VBuffer<float> a = default;
        var buffers = new VBuffer<float>[parameters.Length];
        while (cursor.MoveNext())
        {
            getStart(ref s);
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
                    result.Add(new ForecastPoint(s, step + 1, row, TimestampOf(row), _targets[c].Name, values[0]![at], av?[at], values[1]?[at], values[2]?[at]));
                }
        }
        return result;
    }

    private DateTime? TimestampOf(long row)
    {
        if (_timestamps is null) return null;
        if (row < _timestamps.Count) return _timestamps[(int)row];
        if (_timestamps.Count < 2)
            throw new InvalidOperationException($"Row {row} lies past the table's end and the table has fewer than 2 timestamps to extrapolate from.");
        return Extrapolate(_timestamps[^2], _timestamps[^1], row - (_timestamps.Count - 1));
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

    // Every row's timestamp, checked to rise strictly: ToTimeSeries extrapolates past the end with the last interval, and
    // windows assume one row per time step in order.
    private static List<DateTime> ReadTimestamps(IDataView table, DataViewSchema.Column column)
    {
        var list = new List<DateTime>();
        using var cursor = table.GetRowCursor(new[] { column });
        ValueGetter<DateTime> get;
        if (column.Type is DateTimeDataViewType) get = cursor.GetGetter<DateTime>(column);
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
            get(ref current);
            if (list.Count > 0 && current <= list[^1])
                throw new ArgumentException(
                    $"Timestamp column '{column.Name}': row {cursor.Position} ({current:O}) is {(current == list[^1] ? "the same as" : "before")} row " +
                    $"{cursor.Position - 1} ({list[^1]:O}). The rows must be in time order with one row per time step: sort the table by time " +
                    "and remove duplicates.", "timestampColumn");
            list.Add(current);
        }
        return list;
    }

    /// <summary>Windows as an <see cref="IDataView"/>, computed by a cursor with a ring buffer of lookback + horizon rows.</summary>
    private sealed class WindowView : IDataView
    {
        private readonly TimeSeriesWindows _owner;
        private readonly bool _latestOnly;
        private readonly long _firstTargetRow;
        private readonly long? _endTargetRow;

        public WindowView(TimeSeriesWindows owner, bool latestOnly, long firstTargetRow, long? endTargetRow)
        {
            _owner = owner;
            _latestOnly = latestOnly;
            _firstTargetRow = firstTargetRow;
            _endTargetRow = endTargetRow;
            var builder = new DataViewSchema.Builder();
            builder.AddColumn(FeaturesColumnName, new VectorDataViewType(NumberDataViewType.Single, owner.Lookback * owner.Channels));
            if (!latestOnly) builder.AddColumn(LabelColumnName, new VectorDataViewType(NumberDataViewType.Single, owner.Horizon * owner.Channels));
            builder.AddColumn(WindowStartColumnName, NumberDataViewType.Int64);
            Schema = builder.ToSchema();
        }

        public bool CanShuffle => false;
        public DataViewSchema Schema { get; }
        private int Span => _owner.Lookback + (_latestOnly ? 0 : _owner.Horizon);
        private long FirstStart => Math.Max(0, _firstTargetRow - _owner.Lookback);

        public long? GetRowCount()
        {
            if (_owner._table.GetRowCount() is not { } rows) return null;
            if (_latestOnly) return rows >= _owner.Lookback ? 1 : 0;
            long lastStart = Math.Min(rows, _endTargetRow ?? long.MaxValue) - Span;
            return lastStart < FirstStart ? 0 : (lastStart - FirstStart) / _owner.Stride + 1;
        }

        /// <summary>Whether a window may start at table row <paramref name="start"/> (given the rows exist).</summary>
        public bool Accepts(long start) =>
            start >= FirstStart && (start - FirstStart) % _owner.Stride == 0 &&
            (_endTargetRow is not { } end || start + Span <= end);

        public bool PastEnd(long start) => _endTargetRow is { } end && start + Span > end;

        public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null) =>
            new WindowCursor(this, _owner, _latestOnly);

        public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
            new[] { GetRowCursor(columnsNeeded, rand) };

        private sealed class WindowCursor : DataViewRowCursor
        {
            private readonly WindowView _view;
            private readonly TimeSeriesWindows _owner;
            private readonly bool _latestOnly;
            private readonly DataViewRowCursor _source;
            private readonly Func<float>[] _read;
            private readonly float[][] _ring;
            private long _rowsRead;
            private long _position = -1;
            private long _start;
            private bool _done;

            public WindowCursor(WindowView view, TimeSeriesWindows owner, bool latestOnly)
            {
                _view = view;
                _owner = owner;
                _latestOnly = latestOnly;
                _source = owner._table.GetRowCursor(owner._targets);
                _read = owner._targets.Select(c => Numeric.Getter<float>(_source, c)).ToArray();
                _ring = Enumerable.Range(0, view.Span).Select(_ => new float[owner.Channels]).ToArray();
            }

            public override DataViewSchema Schema => _view.Schema;
            public override long Position => _position;
            public override long Batch => 0;
            public override bool IsColumnActive(DataViewSchema.Column column) => true;

            public override ValueGetter<DataViewRowId> GetIdGetter() =>
                (ref DataViewRowId id) => id = new DataViewRowId((ulong)_start, 0);

            public override bool MoveNext()
            {
                if (_done) return false;
                if (_latestOnly)
                {
                    while (ReadRow()) { }
                    _done = true;
                    if (_rowsRead < _owner.Lookback)
                        throw new InvalidOperationException($"The table has {_rowsRead} rows; a window needs Lookback = {_owner.Lookback}.");
                    _start = _rowsRead - _owner.Lookback;
                    _position++;
                    return true;
                }
                while (ReadRow())
                {
                    if (_rowsRead < _ring.Length) continue;
                    long start = _rowsRead - _ring.Length;
                    if (_view.PastEnd(start)) break;
                    if (!_view.Accepts(start)) continue;
                    _start = start;
                    _position++;
                    return true;
                }
                _done = true;
                return false;
            }

            private bool ReadRow()
            {
                if (!_source.MoveNext()) return false;
                var slot = _ring[_rowsRead % _ring.Length];
                for (int c = 0; c < _read.Length; c++) slot[c] = _read[c]();
                _rowsRead++;
                return true;
            }

            // Values of rows [_start + from, _start + from + count) into a time-major vector. A value that is not finite is
            // named by its table row and column here: downstream it could only be named by window.
            private void Fill(ref VBuffer<float> value, int from, int count)
            {
                int channels = _owner.Channels;
                var editor = VBufferEditor.Create(ref value, count * channels);
                for (int k = 0; k < count; k++)
                {
                    long row = _start + from + k;
                    var values = _ring[row % _ring.Length];
                    for (int c = 0; c < channels; c++)
                        if (!float.IsFinite(values[c]))
                            throw new InvalidOperationException(
                                $"Row {row} of table column '{_owner._targets[c].Name}' holds {values[c]} (a value beyond float's range reads as infinity). " +
                                "Windows need finite values at evenly spaced steps: impute it (e.g. carry the previous value forward) rather than drop the row.");
                    values.CopyTo(editor.Values.Slice(k * channels, channels));
                }
                value = editor.Commit();
            }

            public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
            {
                Delegate getter = column.Name switch
                {
                    FeaturesColumnName => (ValueGetter<VBuffer<float>>)((ref VBuffer<float> v) => Fill(ref v, 0, _owner.Lookback)),
                    LabelColumnName => (ValueGetter<VBuffer<float>>)((ref VBuffer<float> v) => Fill(ref v, _owner.Lookback, _owner.Horizon)),
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
