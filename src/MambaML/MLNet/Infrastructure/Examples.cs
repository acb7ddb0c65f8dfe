using Microsoft.ML;
using Microsoft.ML.Data;

namespace MambaML.MLNet;

/// <summary>One row as the networks see it: a sequence (numeric values or token ids) and, for training, its target.</summary>
internal sealed class SequenceExample
{
    /// <summary>Numeric sequences: Steps × Channels values, time-major (value of channel c at step t is at t·Channels + c).</summary>
    public float[] Values { get; init; } = Array.Empty<float>();
    /// <summary>Number of time steps (numeric) or tokens (text).</summary>
    public int Steps { get; init; }
    /// <summary>Text: compact token ids.</summary>
    public long[]? Tokens { get; init; }
    /// <summary>Training target: forecast values, a class index or a regression value.</summary>
    public float[] Target { get; set; } = Array.Empty<float>();
    /// <summary>Forecasting with a seasonal cycle: the time index of the sequence's first step (e.g. its row number).</summary>
    public long CycleIndex { get; set; }
}

/// <summary>An input column that an example is read from; the column is found and checked when the reader is created.</summary>
internal abstract class ColumnReader
{
    /// <summary>The input column read.</summary>
    public DataViewSchema.Column Column { get; }

    /// <summary>Finds <paramref name="name"/> in <paramref name="schema"/>; <paramref name="option"/> names the option that set it.</summary>
    protected ColumnReader(DataViewSchema schema, string name, string option)
    {
        Column = ColumnChecks.Find(schema, name, option);
    }
}

/// <summary>Reads the sequence of a row into a new example.</summary>
internal abstract class SequenceReader : ColumnReader
{
    /// <inheritdoc/>
    protected SequenceReader(DataViewSchema schema, string name, string option) : base(schema, name, option) { }

    /// <summary>A function that reads <paramref name="row"/>'s current sequence.</summary>
    public abstract Func<SequenceExample> Bind(DataViewRow row);
}

/// <summary>Reads the training target of a row into an example.</summary>
internal abstract class TargetReader : ColumnReader
{
    /// <inheritdoc/>
    protected TargetReader(DataViewSchema schema, string name, string option) : base(schema, name, option) { }

    /// <summary>A function that sets an example's target from <paramref name="row"/>'s current value.</summary>
    public abstract Action<SequenceExample> Bind(DataViewRow row);
}

/// <summary>Reads the cycle index of a row (<see cref="SequenceExample.CycleIndex"/>) from an integer-valued numeric column.</summary>
internal sealed class CycleIndexReader : ColumnReader
{
    private readonly string _option;

    /// <param name="schema">Input schema.</param>
    /// <param name="name">Column name.</param>
    /// <param name="option">Option that named the column (for messages).</param>
    public CycleIndexReader(DataViewSchema schema, string name, string option) : base(schema, name, option)
    {
        _option = option;
        if (!Numeric.IsSupported(Column.Type) || Column.Type is BooleanDataViewType)
            throw new ArgumentOutOfRangeException(option, name,
                $"Column '{name}' ({option}) has type {Column.Type}; it must be a numeric scalar holding each window's time index " +
                "(TimeSeriesWindows' WindowStart column, or a row number).");
    }

    /// <summary>A function that sets an example's cycle index from <paramref name="row"/>'s current value.</summary>
    public Action<SequenceExample> Bind(DataViewRow row)
    {
        var read = Numeric.Getter<double>(row, Column);   // exact for every integer below 2^53, the limit checked below
        return example =>
        {
            double index = read();
            if (!double.IsFinite(index) || index != Math.Floor(index) || Math.Abs(index) > 1L << 53)
                throw new InvalidOperationException(
                    $"Row {row.Position} of column '{Column.Name}' ({_option}) holds {index}; the cycle index must be a whole number " +
                    "(the time index of the window's first step, such as TimeSeriesWindows' WindowStart).");
            example.CycleIndex = (long)index;
        };
    }
}

/// <summary>Reads examples (sequence, optional target, optional cycle index) from rows of one schema.</summary>
internal sealed class ExampleReader
{
    private readonly SequenceReader _sequence;
    private readonly TargetReader? _target;
    private readonly CycleIndexReader? _cycleIndex;

    /// <summary>Combines a sequence reader with optional target and cycle-index readers.</summary>
    public ExampleReader(SequenceReader sequence, TargetReader? target = null, CycleIndexReader? cycleIndex = null)
    {
        _sequence = sequence;
        _target = target;
        _cycleIndex = cycleIndex;
    }

    /// <summary>The input columns read.</summary>
    public IReadOnlyList<DataViewSchema.Column> Columns =>
        new ColumnReader?[] { _sequence, _target, _cycleIndex }.OfType<ColumnReader>().Select(reader => reader.Column).ToArray();

    /// <summary>A function that reads <paramref name="row"/>'s current values into a new example.</summary>
    public Func<SequenceExample> Bind(DataViewRow row)
    {
        var readSequence = _sequence.Bind(row);
        var readTarget = _target?.Bind(row);
        var readCycleIndex = _cycleIndex?.Bind(row);
        return () =>
        {
            var example = readSequence();
            readTarget?.Invoke(example);
            readCycleIndex?.Invoke(example);
            return example;
        };
    }

    /// <summary>All examples of <paramref name="data"/>, streamed through one cursor; <paramref name="cancellation"/> is checked before each row.</summary>
    public IEnumerable<SequenceExample> ReadAll(IDataView data, CancellationToken cancellation = default)
    {
        using var cursor = data.GetRowCursor(Columns);
        var read = Bind(cursor);
        while (true)
        {
            cancellation.ThrowIfCancellationRequested();
            if (!cursor.MoveNext()) yield break;
            yield return read();
        }
    }
}

/// <summary>Column lookups and checks with messages that name the column, the option and the fix.</summary>
internal static class ColumnChecks
{
    /// <summary>The visible column <paramref name="name"/>, or an error listing the columns present.</summary>
    public static DataViewSchema.Column Find(DataViewSchema schema, string name, string option)
    {
        if (string.IsNullOrEmpty(name))
            throw new ArgumentException($"{option} is empty; set it to the name of an input column.", option);
        if (schema.GetColumnOrNull(name) is { } column) return column;
        var present = string.Join(", ", schema.Where(c => !c.IsHidden).Select(c => $"'{c.Name}'"));
        throw new ArgumentOutOfRangeException(option, name,
            $"Column '{name}' ({option}) was not found in the input data. Columns present: {present}. Set {option} to the right column or rename it.");
    }

    /// <summary>Requires a vector of Single; returns its size (0 for variable length).</summary>
    public static int RequireSingleVector(DataViewSchema.Column column, string option)
    {
        if (column.Type is VectorDataViewType { ItemType: var item } vector && item == NumberDataViewType.Single)
            return vector.Size;
        throw new ArgumentOutOfRangeException(option, column.Name,
            $"Column '{column.Name}' ({option}) has type {column.Type}; MambaML needs a vector of Single (float[]). " +
            "Convert it with mlContext.Transforms.Conversion.ConvertType or build it with mlContext.Transforms.Concatenate.");
    }

    /// <summary>Throws if any value is NaN or infinite, naming the row and position.</summary>
    public static void RequireFinite(ReadOnlySpan<float> values, DataViewSchema.Column column, long row)
    {
        for (int i = 0; i < values.Length; i++)
            if (!float.IsFinite(values[i]))
                throw new InvalidOperationException(
                    $"Row {row} of column '{column.Name}' holds {values[i]} at position {i}. MambaML needs finite values: " +
                    "remove those rows or impute them first (e.g. mlContext.Transforms.ReplaceMissingValues).");
    }
}
