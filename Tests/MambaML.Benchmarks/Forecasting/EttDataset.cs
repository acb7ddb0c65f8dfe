using System.Globalization;

namespace MambaML.Benchmarks.Forecasting;

/// <summary>
/// An ETT file (ETTh1/ETTm1) split by the standard long-horizon protocol (Informer/Autoformer code): 12/4/4 months of
/// train/validation/test rows, validation and test windows starting <c>lookback</c> rows before their boundary, a z-score scaler
/// fitted on the train rows only, every window with stride 1.
/// </summary>
internal sealed class EttDataset
{
    public string Name { get; }
    public string[] Channels { get; }
    /// <summary>z-scored values, (rows, channels), row-major.</summary>
    public float[,] Values { get; }
    public int RowsPerMonth { get; }
    /// <summary>Rows per day (24 hourly, 96 every 15 minutes): the length of the daily cycle. Row 0 is midnight.</summary>
    public int StepsPerDay { get; }

    private EttDataset(string name, string[] channels, float[,] values, int rowsPerMonth, int stepsPerDay)
    {
        Name = name; Channels = channels; Values = values; RowsPerMonth = rowsPerMonth; StepsPerDay = stepsPerDay;
    }

    public int Rows => Values.GetLength(0);
    public int ChannelCount => Values.GetLength(1);

    /// <summary>Reads ETTh1.csv or ETTm1.csv (date column first, then the numeric channels) and z-scores it with train statistics.</summary>
    public static EttDataset Load(string path)
    {
        var name = Path.GetFileNameWithoutExtension(path);
        int stepsPerDay = name.StartsWith("ETTm", StringComparison.Ordinal) ? 24 * 4 : 24, rowsPerMonth = 30 * stepsPerDay;
        var lines = File.ReadAllLines(path);
        var header = lines[0].Split(',');
        var channels = header[1..];
        var raw = new float[lines.Length - 1, channels.Length];
        for (int r = 1; r < lines.Length; r++)
        {
            var cells = lines[r].Split(',');
            if (cells.Length != header.Length) throw new FormatException($"{path}, line {r + 1}: expected {header.Length} fields, found {cells.Length}.");
            for (int c = 0; c < channels.Length; c++) raw[r - 1, c] = float.Parse(cells[c + 1], CultureInfo.InvariantCulture);
        }
        return FromValues(name, channels, raw, rowsPerMonth, stepsPerDay);
    }

    /// <summary>
    /// A data set from raw values (rows, channels) with the ETT split geometry scaled to <paramref name="rowsPerMonth"/>
    /// (at least 20 months of rows) and <paramref name="stepsPerDay"/> rows per daily cycle, z-scored in place with train
    /// statistics; used for embedded synthetic data.
    /// </summary>
    public static EttDataset FromValues(string name, string[] channels, float[,] raw, int rowsPerMonth, int stepsPerDay)
    {
        if (raw.GetLength(1) != channels.Length) throw new ArgumentException($"{name}: {raw.GetLength(1)} value columns but {channels.Length} channel names.", nameof(channels));
        if (raw.GetLength(0) < 20 * rowsPerMonth) throw new ArgumentException($"{name}: {raw.GetLength(0)} rows; the 12/4/4-month split needs {20 * rowsPerMonth}.", nameof(raw));
        int trainRows = 12 * rowsPerMonth;
        for (int c = 0; c < channels.Length; c++)
        {
            double sum = 0, sumSq = 0;
            for (int r = 0; r < trainRows; r++) { sum += raw[r, c]; sumSq += (double)raw[r, c] * raw[r, c]; }
            double mean = sum / trainRows, std = Math.Sqrt(sumSq / trainRows - mean * mean);
            for (int r = 0; r < raw.GetLength(0); r++) raw[r, c] = (float)((raw[r, c] - mean) / std);
        }
        return new EttDataset(name, channels, raw, rowsPerMonth, stepsPerDay);
    }

    /// <summary>The [start, end) rows a split's windows are drawn from (windows of lookback + horizon rows, stride 1).</summary>
    public (int Start, int End) SplitRows(EttSplit split, int lookback)
    {
        int m = RowsPerMonth;
        return split switch
        {
            EttSplit.Train => (0, 12 * m),
            EttSplit.Validation => (12 * m - lookback, 16 * m),
            EttSplit.Test => (16 * m - lookback, 20 * m),
            _ => throw new ArgumentOutOfRangeException(nameof(split)),
        };
    }

    /// <summary>Row index of the first step of window <paramref name="index"/> of a split (its time index).</summary>
    public long WindowStart(EttSplit split, int index, int lookback) => SplitRows(split, lookback).Start + index;

    /// <summary>Number of windows of a split.</summary>
    public int WindowCount(EttSplit split, int lookback, int horizon)
    {
        var (start, end) = SplitRows(split, lookback);
        return end - start - lookback - horizon + 1;
    }

    /// <summary>
    /// Copies window <paramref name="index"/> of a split: the past (lookback × channels) and the future (horizon × channels),
    /// time-major (row t, channel c at t·channels + c).
    /// </summary>
    public void Window(EttSplit split, int index, int lookback, int horizon, Span<float> past, Span<float> future)
    {
        var (start, _) = SplitRows(split, lookback);
        int c = ChannelCount, first = start + index;
        for (int t = 0; t < lookback; t++) for (int k = 0; k < c; k++) past[t * c + k] = Values[first + t, k];
        for (int t = 0; t < horizon; t++) for (int k = 0; k < c; k++) future[t * c + k] = Values[first + lookback + t, k];
    }
}

internal enum EttSplit { Train, Validation, Test }
