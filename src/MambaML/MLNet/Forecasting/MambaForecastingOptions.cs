namespace MambaML.MLNet;

/// <summary>Options of <see cref="MambaForecastingEstimator"/> (<c>mlContext.Forecasting.ForecastByMamba</c>).</summary>
public sealed class MambaForecastingOptions : MambaTrainerOptions
{
    /// <summary>Input column: the past <see cref="Lookback"/> × <see cref="Channels"/> values, time-major (float[]).</summary>
    public string FeatureColumnName { get; set; } = "Features";
    /// <summary>Training target column: the next <see cref="Horizon"/> × <see cref="Channels"/> values, time-major (float[]).</summary>
    public string LabelColumnName { get; set; } = "Label";
    /// <summary>Output column: <see cref="Horizon"/> × <see cref="Channels"/> forecast values, time-major (float[]).</summary>
    public string OutputColumnName { get; set; } = "Forecast";
    /// <summary>
    /// Output column of each forecast value's lower prediction bound (float[], as the forecast), or null (the default) for no
    /// prediction intervals; set it together with <see cref="ConfidenceUpperBoundColumnName"/>. The bounds are the forecast ±
    /// q × the input window's standard deviation in that channel (at least a tenth of the channel's scale), q being the
    /// <see cref="ConfidenceLevel"/> quantile of the absolute errors in those units for that horizon step and channel on the
    /// <see cref="MambaTrainerOptions.ValidationSet"/>: normalised split conformal prediction, so the intervals follow the
    /// series' volatility, and on data like the validation set about that share of values falls inside. About, because early
    /// stopping chose the model on the same set, which split conformal's guarantee does not allow for; with fewer than
    /// level / (1 − level) validation windows (9 at 0.9) the bounds take the largest error and may hold less (the log says
    /// so). Without a validation set, q comes from the training windows, whose errors are smaller than new data's, so the
    /// intervals come out too narrow.
    /// </summary>
    public string? ConfidenceLowerBoundColumnName { get; set; }
    /// <summary>Output column of the upper prediction bounds; see <see cref="ConfidenceLowerBoundColumnName"/>.</summary>
    public string? ConfidenceUpperBoundColumnName { get; set; }
    /// <summary>Share of future values the prediction intervals are to hold, in (0, 1); 0.95 by default (as ML.NET's ForecastBySsa).</summary>
    public float ConfidenceLevel { get; set; } = 0.95f;

    /// <summary>Past time steps the model sees.</summary>
    public int Lookback { get; set; } = 96;
    /// <summary>Future time steps the model predicts.</summary>
    public int Horizon { get; set; } = 24;
    /// <summary>Series per time step (1 for univariate).</summary>
    public int Channels { get; set; } = 1;
    /// <summary>
    /// True: every channel is forecast as its own univariate series with shared weights (robust, the default of the best
    /// long-horizon forecasters). False: all channels of a step are embedded together, so the model can use cross-channel effects.
    /// </summary>
    public bool ChannelIndependent { get; set; } = true;
    /// <summary>
    /// Normalise each window by its own mean and standard deviation per channel and undo it on the output (RevIN). Without it
    /// every window is read the same way: less each channel's training mean (rounded to whole units of its scale) and in
    /// those units, a power of ten near the channel's training deviation.
    /// </summary>
    public bool InstanceNormalization { get; set; } = true;
    /// <summary>Add a linear map from the window to the horizon beside the Mamba path (as DLinear).</summary>
    public bool LinearSkip { get; set; } = true;
    /// <summary>
    /// Before gradient training, fit the linear skip path by least squares on the training windows (one pass, closed form) and
    /// start the Mamba path's head at zero: training then starts from the best linear forecaster and refines it. Needs
    /// <see cref="LinearSkip"/>. With a <see cref="MambaTrainerOptions.ValidationSet"/>, the fitted starting point is validated
    /// too and kept if no epoch beats it.
    /// </summary>
    public bool FitLinearSkip { get; set; }
    /// <summary>
    /// Length in steps of a known seasonal cycle (e.g. 24 for hourly data with a daily pattern, 96 for 15-minute data); 0 (the
    /// default) for none. The model then keeps one value per cycle position and channel (residual cycle forecasting, as
    /// CycleNet): it subtracts the cycle from the input window, forecasts the rest, and adds the cycle back over the horizon.
    /// The cycle starts as the mean of the training windows' values at each position and is trained with the rest of the model.
    /// Each row needs the time index of its window's first step in <see cref="CycleIndexColumnName"/>; position = index mod
    /// <see cref="CycleLength"/>, so the index must count steps in the same frame at training and prediction (row numbers of one table do;
    /// in a table of many series, <see cref="TimeSeriesWindows"/> counts rows within each series, so series that start at different
    /// positions of the cycle need <see cref="TimeSeriesWindows.TimeIndexColumnName"/> as <see cref="CycleIndexColumnName"/>).
    /// At most 1,000,000.
    /// </summary>
    public int CycleLength { get; set; }
    // A cycle longer than any series has nothing to repeat, and CycleLength × Channels floats are allocated up front.
    private const int MaxCycleLength = 1_000_000;
    /// <summary>
    /// Input column with each window's time index (a whole number; <see cref="TimeSeriesWindows.WindowStartColumnName"/>, the row
    /// number of the window's first step, by default). Read only when <see cref="CycleLength"/> is set.
    /// </summary>
    public string CycleIndexColumnName { get; set; } = TimeSeriesWindows.WindowStartColumnName;
    /// <summary>Time steps per token: the window is cut into patches of this length (1 = one token per step). Shorter sequences scan faster.</summary>
    public int PatchLength { get; set; } = 8;

    internal override void Validate()
    {
        base.Validate();
        RequireInputColumns((nameof(FeatureColumnName), FeatureColumnName), (nameof(LabelColumnName), LabelColumnName));
        if (CycleLength > 0) RequireInputColumns((nameof(CycleIndexColumnName), CycleIndexColumnName));
        Check(Lookback >= 1, nameof(Lookback), Lookback, ">= 1");
        Check(Horizon >= 1, nameof(Horizon), Horizon, ">= 1");
        Check(Channels >= 1, nameof(Channels), Channels, ">= 1");
        Check(CycleLength is >= 0 and <= MaxCycleLength, nameof(CycleLength), CycleLength, $"in [0, {MaxCycleLength}] (0 = no cycle; a year of minutes is 525,600 steps)");
        Check(PatchLength >= 1 && PatchLength <= Lookback, nameof(PatchLength), PatchLength, $"in [1, Lookback = {Lookback}]");
        Check((long)Lookback * Channels <= int.MaxValue, nameof(Lookback), Lookback, $"at most {int.MaxValue / Channels} with Channels = {Channels} (one vector holds Lookback × Channels values)");
        Check((long)Horizon * Channels <= int.MaxValue, nameof(Horizon), Horizon, $"at most {int.MaxValue / Channels} with Channels = {Channels} (one vector holds Horizon × Channels values)");
        if (LabelColumnName == FeatureColumnName)
            throw new ArgumentException($"LabelColumnName and FeatureColumnName are both '{LabelColumnName}': the forecaster would learn to predict its own input. " +
                                        "Name the future values' column (TimeSeriesWindows writes 'Label') in LabelColumnName.", nameof(LabelColumnName));
        if (FitLinearSkip && !LinearSkip) throw new ArgumentException("FitLinearSkip needs LinearSkip = true; set LinearSkip or clear FitLinearSkip.", nameof(FitLinearSkip));
        Check(ConfidenceLevel is > 0 and < 1, nameof(ConfidenceLevel), ConfidenceLevel, "in (0, 1)");
        if (ConfidenceLowerBoundColumnName is null != ConfidenceUpperBoundColumnName is null)
            throw new ArgumentException("Set both ConfidenceLowerBoundColumnName and ConfidenceUpperBoundColumnName for prediction intervals, or neither.",
                                        ConfidenceLowerBoundColumnName is null ? nameof(ConfidenceLowerBoundColumnName) : nameof(ConfidenceUpperBoundColumnName));
        if (PredictsIntervals)
            RequireDistinctOutputs((nameof(OutputColumnName), OutputColumnName), (nameof(ConfidenceLowerBoundColumnName), ConfidenceLowerBoundColumnName!),
                                   (nameof(ConfidenceUpperBoundColumnName), ConfidenceUpperBoundColumnName!));
        else
            RequireDistinctOutputs((nameof(OutputColumnName), OutputColumnName));
    }

    /// <summary>Whether the forecaster adds prediction-interval columns.</summary>
    internal bool PredictsIntervals => ConfidenceLowerBoundColumnName is not null;
}
