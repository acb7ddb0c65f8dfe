using MambaML.MLNet;

namespace Microsoft.ML;

/// <summary>Mamba forecasting on <c>mlContext.Forecasting</c>.</summary>
public static class MambaForecastingCatalog
{
    /// <summary>
    /// Forecasts the next <paramref name="horizon"/> values of one or more series from their past <paramref name="lookback"/>
    /// values with a Mamba selective state-space model. The feature column holds lookback × channels values per row and the
    /// label column horizon × channels (both time-major); <see cref="TimeSeriesWindows"/> builds them from a time-ordered table.
    /// </summary>
    /// <param name="catalog">The forecasting catalog (<c>mlContext.Forecasting</c>).</param>
    /// <param name="lookback">Past time steps per window.</param>
    /// <param name="horizon">Future time steps to predict.</param>
    /// <param name="channels">Series per time step (1 for univariate).</param>
    /// <param name="outputColumnName">Output column: horizon × channels forecast values.</param>
    /// <param name="featureColumnName">Input column: lookback × channels past values.</param>
    /// <param name="labelColumnName">Training target column: horizon × channels future values.</param>
    /// <param name="numberOfEpochs">Passes over the training data.</param>
    /// <param name="confidenceLowerBoundColumn">Output column of lower prediction bounds (with <paramref name="confidenceUpperBoundColumn"/>);
    /// null for none. See <see cref="MambaForecastingOptions.ConfidenceLowerBoundColumnName"/>.</param>
    /// <param name="confidenceUpperBoundColumn">Output column of upper prediction bounds; null for none.</param>
    /// <param name="confidenceLevel">Share of future values the prediction intervals are to hold.</param>
    /// <remarks>Windows are cut into patches of <see cref="MambaForecastingOptions.PatchLength"/>'s default length, or of
    /// <paramref name="lookback"/> steps when the window is shorter than that.</remarks>
    /// <example><code>
    /// var windows = TimeSeriesWindows.Create(table, new[] { "OT" }, lookback: 96, horizon: 24);
    /// var model = mlContext.Forecasting.ForecastByMamba(lookback: 96, horizon: 24).Fit(windows.GetWindows());
    /// </code></example>
    public static MambaForecastingEstimator ForecastByMamba(this ForecastingCatalog catalog, int lookback, int horizon, int channels = 1,
        string outputColumnName = "Forecast", string featureColumnName = "Features", string labelColumnName = "Label", int numberOfEpochs = 10,
        string? confidenceLowerBoundColumn = null, string? confidenceUpperBoundColumn = null, float confidenceLevel = 0.95f)
        => ForecastByMamba(catalog, new MambaForecastingOptions
        {
            Lookback = lookback, Horizon = horizon, Channels = channels, OutputColumnName = outputColumnName,
            FeatureColumnName = featureColumnName, LabelColumnName = labelColumnName, NumberOfEpochs = numberOfEpochs,
            ConfidenceLowerBoundColumnName = confidenceLowerBoundColumn, ConfidenceUpperBoundColumnName = confidenceUpperBoundColumn,
            ConfidenceLevel = confidenceLevel,
            PatchLength = Math.Clamp(lookback, 1, new MambaForecastingOptions().PatchLength),
        });

    /// <summary>Forecasts with a Mamba model configured by <paramref name="options"/> (model size, training, validation, seed...).</summary>
    /// <param name="catalog">The forecasting catalog (<c>mlContext.Forecasting</c>).</param>
    /// <param name="options">All settings.</param>
    public static MambaForecastingEstimator ForecastByMamba(this ForecastingCatalog catalog, MambaForecastingOptions options)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return new MambaForecastingEstimator(MLNetInternals.EnvironmentOf(catalog), options);
    }

    /// <summary>
    /// Scores forecasts against the actual values: mean absolute and squared error over every value, by horizon step and by
    /// channel; with bound columns, the prediction intervals' coverage and mean width; with the feature column, the errors of
    /// repeating each window's last value (the naive forecast). Every row's vectors must be horizon × channels long.
    /// </summary>
    /// <param name="catalog">The forecasting catalog (<c>mlContext.Forecasting</c>).</param>
    /// <param name="data">Forecasts with their actual values: a forecaster's <c>Transform</c> of labelled windows.</param>
    /// <param name="channels">Series per time step (the forecaster's <see cref="MambaForecastingOptions.Channels"/>). Required: the
    /// vectors do not say it, and a wrong count splits them into the wrong steps and channels without any length going wrong.</param>
    /// <param name="labelColumnName">Column of actual future values.</param>
    /// <param name="forecastColumnName">Column of forecasts.</param>
    /// <param name="lowerBoundColumnName">Column of lower prediction bounds (with <paramref name="upperBoundColumnName"/>); null for none.</param>
    /// <param name="upperBoundColumnName">Column of upper prediction bounds; null for none.</param>
    /// <param name="featureColumnName">Column of past values (lookback × channels), for the repeat-last-value errors; null to skip them.</param>
    /// <example><code>
    /// var metrics = mlContext.Forecasting.Evaluate(model.Transform(windows.GetWindows(testStart)), windows.Channels, featureColumnName: "Features");
    /// Console.WriteLine($"MAE {metrics.MeanAbsoluteError:F3} (repeat-last {metrics.RepeatLastMeanAbsoluteError:F3})");
    /// </code></example>
    public static ForecastMetrics Evaluate(this ForecastingCatalog catalog, IDataView data, int channels, string labelColumnName = "Label",
        string forecastColumnName = "Forecast", string? lowerBoundColumnName = null, string? upperBoundColumnName = null, string? featureColumnName = null)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return ForecastMetrics.Evaluate(data, channels, labelColumnName, forecastColumnName, lowerBoundColumnName, upperBoundColumnName, featureColumnName);
    }
}
