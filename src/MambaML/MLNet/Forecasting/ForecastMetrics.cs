using Microsoft.ML;
using Microsoft.ML.Data;

namespace MambaML.MLNet;

/// <summary>
/// Forecasts scored against the actual values (<c>mlContext.Forecasting.Evaluate</c>): errors over every value, by horizon step
/// and by channel, the prediction intervals' coverage, and the same errors of repeating each window's last value, the naive
/// forecast every model should beat.
/// </summary>
public sealed class ForecastMetrics
{
    /// <summary>Windows (rows) scored.</summary>
    public long Windows { get; init; }
    /// <summary>Values compared: windows × horizon × channels.</summary>
    public long Values { get; init; }
    /// <summary>Mean absolute error over every value.</summary>
    public double MeanAbsoluteError { get; init; }
    /// <summary>Mean squared error over every value.</summary>
    public double MeanSquaredError { get; init; }
    /// <summary>Square root of <see cref="MeanSquaredError"/>.</summary>
    public double RootMeanSquaredError => Math.Sqrt(MeanSquaredError);
    /// <summary>Mean absolute error at each horizon step (index 0: one step ahead).</summary>
    public IReadOnlyList<double> MeanAbsoluteErrorByStep { get; init; } = Array.Empty<double>();
    /// <summary>Mean squared error at each horizon step.</summary>
    public IReadOnlyList<double> MeanSquaredErrorByStep { get; init; } = Array.Empty<double>();
    /// <summary>Mean absolute error of each channel, in its own units.</summary>
    public IReadOnlyList<double> MeanAbsoluteErrorByChannel { get; init; } = Array.Empty<double>();
    /// <summary>Mean squared error of each channel, in its own units.</summary>
    public IReadOnlyList<double> MeanSquaredErrorByChannel { get; init; } = Array.Empty<double>();
    /// <summary>Share of actual values within [lower, upper] bound, when bound columns were named; else null.</summary>
    public double? IntervalCoverage { get; init; }
    /// <summary>Mean of upper − lower bound, when bound columns were named; else null.</summary>
    public double? MeanIntervalWidth { get; init; }
    /// <summary>Mean absolute error of repeating each window's last value over the horizon, when the feature column was named; else null.</summary>
    public double? RepeatLastMeanAbsoluteError { get; init; }
    /// <summary>Mean squared error of repeating each window's last value, when the feature column was named; else null.</summary>
    public double? RepeatLastMeanSquaredError { get; init; }

    // Positions of the columns read, in the order Evaluate names them.
    private const int Label = 0, Forecast = 1, Lower = 2, Upper = 3, Features = 4;

    /// <summary>Scores <paramref name="data"/>'s forecasts; see <c>mlContext.Forecasting.Evaluate</c>.</summary>
    internal static ForecastMetrics Evaluate(IDataView data, int channels, string labelColumnName, string forecastColumnName,
                                             string? lowerBoundColumnName, string? upperBoundColumnName, string? featureColumnName)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (channels < 1) throw new ArgumentOutOfRangeException(nameof(channels), channels, "channels must be >= 1.");
        if (lowerBoundColumnName is null != upperBoundColumnName is null)
            throw new ArgumentException("Name both bound columns, or neither.", lowerBoundColumnName is null ? nameof(lowerBoundColumnName) : nameof(upperBoundColumnName));
        // In this order (Label, Forecast, Lower, Upper, Features): the label's length is the one the others must have.
        var named = new (string? Column, string Parameter)[]
        {
            (labelColumnName, nameof(labelColumnName)), (forecastColumnName, nameof(forecastColumnName)),
            (lowerBoundColumnName, nameof(lowerBoundColumnName)), (upperBoundColumnName, nameof(upperBoundColumnName)), (featureColumnName, nameof(featureColumnName)),
        };
        var columns = named.Select(n => n.Column is null ? (DataViewSchema.Column?)null : ColumnChecks.Find(data.Schema, n.Column, n.Parameter)).ToArray();
        for (int k = 0; k < columns.Length; k++)
            if (columns[k] is { } column) ColumnChecks.RequireSingleVector(column, named[k].Parameter);

        using var cursor = data.GetRowCursor(columns.OfType<DataViewSchema.Column>());
        var getters = columns.Select(c => c is { } column ? cursor.GetGetter<VBuffer<float>>(column) : null).ToArray();
        var buffers = new VBuffer<float>[columns.Length];
        int length = -1, horizon = 0;
        double[] absByStep = [], sqByStep = [], absByChannel = new double[channels], sqByChannel = new double[channels];
        double inside = 0, width = 0, lastAbs = 0, lastSq = 0;
        long windows = 0;
        while (cursor.MoveNext())
        {
            for (int k = 0; k < columns.Length; k++) getters[k]?.Invoke(ref buffers[k]);
            var y = buffers[Label].GetValues();
            if (length < 0)
            {
                if (y.Length == 0 || y.Length % channels != 0)
                    throw new ArgumentException($"Column '{labelColumnName}' has {y.Length} values per row, not a positive multiple of channels = {channels} (horizon × channels).", nameof(channels));
                (length, horizon) = (y.Length, y.Length / channels);
                (absByStep, sqByStep) = (new double[horizon], new double[horizon]);
            }
            for (int k = 0; k < columns.Length; k++)
            {
                if (getters[k] is null) continue;
                var values = buffers[k].GetValues();
                bool ok = k == Features ? values.Length > 0 && values.Length % channels == 0 : values.Length == length;   // features: any number of steps
                if (!ok)
                    throw new ArgumentException($"Row {cursor.Position} of column '{named[k].Column}' has {values.Length} values; " +
                                                (k == Features ? $"a positive multiple of channels = {channels} expected." : $"{length} (horizon × channels, as in the first row's label) expected."), named[k].Parameter);
                ColumnChecks.RequireFinite(values, columns[k]!.Value, cursor.Position);
            }
            var f = buffers[Forecast].GetValues();
            for (int i = 0; i < length; i++)
            {
                double e = f[i] - y[i];
                int step = i / channels, channel = i % channels;
                absByStep[step] += Math.Abs(e);
                sqByStep[step] += e * e;
                absByChannel[channel] += Math.Abs(e);
                sqByChannel[channel] += e * e;
                if (getters[Lower] is not null)
                {
                    float lower = buffers[Lower].GetValues()[i], upper = buffers[Upper].GetValues()[i];
                    if (lower <= y[i] && y[i] <= upper) inside++;
                    width += upper - lower;
                }
                if (getters[Features] is not null)
                {
                    var x = buffers[Features].GetValues();
                    double naive = x[x.Length - channels + channel] - y[i];
                    lastAbs += Math.Abs(naive);
                    lastSq += naive * naive;
                }
            }
            windows++;
        }
        if (windows == 0) throw new ArgumentException("The data has no rows to evaluate.", nameof(data));
        long count = windows * length;
        return new ForecastMetrics
        {
            Windows = windows, Values = count,
            MeanAbsoluteError = absByStep.Sum() / count, MeanSquaredError = sqByStep.Sum() / count,
            MeanAbsoluteErrorByStep = absByStep.Select(s => s / (windows * channels)).ToArray(),
            MeanSquaredErrorByStep = sqByStep.Select(s => s / (windows * channels)).ToArray(),
            MeanAbsoluteErrorByChannel = absByChannel.Select(s => s / (windows * horizon)).ToArray(),
            MeanSquaredErrorByChannel = sqByChannel.Select(s => s / (windows * horizon)).ToArray(),
            IntervalCoverage = getters[Lower] is null ? null : inside / count, MeanIntervalWidth = getters[Lower] is null ? null : width / count,
            RepeatLastMeanAbsoluteError = getters[Features] is null ? null : lastAbs / count, RepeatLastMeanSquaredError = getters[Features] is null ? null : lastSq / count,
        };
    }
}
