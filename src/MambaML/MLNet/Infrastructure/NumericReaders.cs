using Microsoft.ML;
using Microsoft.ML.Data;

namespace MambaML.MLNet;

/// <summary>
/// Reads a numeric sequence from a Single vector column holding Steps × Channels values, time-major. Fixed-size columns are
/// checked once against the schema; variable-size columns row by row.
/// </summary>
internal sealed class NumericSequenceReader : SequenceReader
{
    private readonly int _channels;
    private readonly int? _steps;
    private readonly string _option;
    private readonly string _stepsOption;

    /// <param name="schema">Input schema.</param>
    /// <param name="name">Column name.</param>
    /// <param name="option">Option that named the column (for messages).</param>
    /// <param name="channels">Values per time step.</param>
    /// <param name="steps">Required number of steps, or null for any length.</param>
    /// <param name="stepsOption">Option that set <paramref name="steps"/> (for messages).</param>
    public NumericSequenceReader(DataViewSchema schema, string name, string option, int channels, int? steps, string stepsOption = "Lookback")
        : base(schema, name, option)
    {
        _channels = channels;
        _steps = steps;
        _option = option;
        _stepsOption = stepsOption;
        int size = ColumnChecks.RequireSingleVector(Column, option);
        if (size > 0) CheckLength(size, row: null);
    }

    /// <inheritdoc/>
    public override Func<SequenceExample> Bind(DataViewRow row)
    {
        var getter = row.GetGetter<VBuffer<float>>(Column);
        var buffer = default(VBuffer<float>);
        return () =>
        {
            getter(ref buffer);
            CheckLength(buffer.Length, row.Position);
            var values = new float[buffer.Length];
            buffer.CopyTo(values);
            ColumnChecks.RequireFinite(values, Column, row.Position);
            return new SequenceExample { Values = values, Steps = values.Length / _channels };
        };
    }

    private void CheckLength(int length, long? row)
    {
        string where = row is null ? $"Column '{Column.Name}' ({_option}) has" : $"Row {row} of column '{Column.Name}' ({_option}) has";
        if (_steps is { } steps && length != steps * _channels)
            throw new ArgumentOutOfRangeException(_option, length,
                $"{where} {length} values, but {_stepsOption} ({steps}) × Channels ({_channels}) = {steps * _channels} are expected.");
        if (length == 0 || length % _channels != 0)
            throw new ArgumentOutOfRangeException(_option, length,
                $"{where} {length} values, which is not a positive multiple of Channels ({_channels}): each time step needs one value per channel.");
    }
}

/// <summary>Reads a fixed-length Single vector target (e.g. the future values a forecaster learns).</summary>
internal sealed class VectorTargetReader : TargetReader
{
    private readonly int _length;
    private readonly string _option;
    private readonly string _lengthRule;

    /// <param name="schema">Input schema.</param>
    /// <param name="name">Column name.</param>
    /// <param name="option">Option that named the column.</param>
    /// <param name="length">Required number of values.</param>
    /// <param name="lengthRule">How <paramref name="length"/> follows from the options, for messages (e.g. "Horizon (24) × Channels (1)").</param>
    public VectorTargetReader(DataViewSchema schema, string name, string option, int length, string lengthRule) : base(schema, name, option)
    {
        _length = length;
        _option = option;
        _lengthRule = lengthRule;
        int size = ColumnChecks.RequireSingleVector(Column, option);
        if (size > 0 && size != length) throw LengthError($"Column '{Column.Name}' ({option}) has", size);
    }

    /// <inheritdoc/>
    public override Action<SequenceExample> Bind(DataViewRow row)
    {
        var getter = row.GetGetter<VBuffer<float>>(Column);
        var buffer = default(VBuffer<float>);
        return example =>
        {
            getter(ref buffer);
            if (buffer.Length != _length) throw LengthError($"Row {row.Position} of column '{Column.Name}' ({_option}) has", buffer.Length);
            var values = new float[_length];
            buffer.CopyTo(values);
            ColumnChecks.RequireFinite(values, Column, row.Position);
            example.Target = values;
        };
    }

    private ArgumentOutOfRangeException LengthError(string where, int length) =>
        new(_option, length, $"{where} {length} values, but {_lengthRule} = {_length} are expected.");
}
