using static TorchSharp.torch;

namespace MambaML.Benchmarks.Forecasting;

/// <summary>A forecaster of (lookback × channels) windows, time-major, for the baselines run beside Mamba.</summary>
internal interface IWindowForecaster
{
    string Name { get; }
    /// <summary>
    /// Forecasts a batch: pasts (n, lookback, channels) → futures (n, horizon, channels); <paramref name="starts"/> (n) int64 is
    /// the row index of each window's first step (its time index).
    /// </summary>
    Tensor Predict(Tensor pasts, Tensor starts);
}

/// <summary>Repeats the last observed value of each channel over the horizon.</summary>
internal sealed class RepeatLastValue(int horizon) : IWindowForecaster
{
    public string Name => "Repeat last value";
    public Tensor Predict(Tensor pasts, Tensor starts) => pasts[.., ^1..].expand(pasts.shape[0], horizon, pasts.shape[2]).contiguous();
}

/// <summary>
/// One linear map from the lookback window to the horizon, shared by all channels (channel-independent), on windows centred
/// by their own mean (RLinear-style instance normalisation), fitted in closed form by ridge regression on every train window.
/// With a cycle length, a fixed seasonal profile (the mean of the train rows at each cycle position, per channel) is subtracted
/// from the windows before the fit and added back to the forecast (CycleNet's residual cycle idea with a fixed cycle).
/// </summary>
internal sealed class LinearWindowForecaster : IWindowForecaster
{
    private readonly Tensor _weight;   // (lookback, horizon)
    private readonly Tensor? _cycle;   // (cycle length, channels)
    private readonly int _lookback, _horizon;

    public string Name => _cycle is null ? "Linear (RLinear-style, closed form)" : $"Linear + daily cycle ({_cycle.shape[0]} steps, closed form)";

    public LinearWindowForecaster(EttDataset data, int lookback, int horizon, int cycleLength = 0, double ridge = 1e-3)
    {
        using var scope = NewDisposeScope();
        _lookback = lookback; _horizon = horizon;
        if (cycleLength > 0) _cycle = TrainProfile(data, cycleLength).MoveToOuterDisposeScope();
        var (pasts, futures, starts) = EttWindows.All(data, EttSplit.Train, lookback, horizon);
        (pasts, futures) = (pasts - Cycle(starts, 0, lookback), futures - Cycle(starts, lookback, horizon));
        // (n·channels, lookback) and (n·channels, horizon), each row centred by its window's mean.
        var x = pasts.permute(0, 2, 1).reshape(-1, lookback).to(ScalarType.Float64);
        var y = futures.permute(0, 2, 1).reshape(-1, horizon).to(ScalarType.Float64);
        var mean = x.mean(new long[] { 1 }, keepdim: true);
        x = x - mean; y = y - mean;
        var gram = x.T.matmul(x) + eye(lookback, dtype: ScalarType.Float64) * (ridge * x.shape[0]);
        _weight = linalg.solve(gram, x.T.matmul(y)).to(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    public Tensor Predict(Tensor pasts, Tensor starts)
    {
        using var scope = NewDisposeScope();
        var x = (pasts - Cycle(starts, 0, _lookback)).permute(0, 2, 1);   // (n, channels, lookback)
        var mean = x.mean(new long[] { 2 }, keepdim: true);
        var y = (x - mean).matmul(_weight) + mean;                        // (n, channels, horizon)
        return (y.permute(0, 2, 1) + Cycle(starts, _lookback, _horizon)).contiguous().MoveToOuterDisposeScope();
    }

    // (n, length, channels): the profile at steps offset … offset + length − 1 of each window; zeros without a cycle.
    private Tensor Cycle(Tensor starts, int offset, int length)
    {
        if (_cycle is null) return zeros(1, 1, 1);
        var positions = (starts.unsqueeze(1) + offset + arange(length).unsqueeze(0)).remainder(_cycle.shape[0]);
        return _cycle.index_select(0, positions.reshape(-1)).view(starts.shape[0], length, _cycle.shape[1]);
    }

    // (cycle length, channels): the mean of the train rows at each position of the cycle (row r is at position r mod length).
    private static Tensor TrainProfile(EttDataset data, int cycleLength)
    {
        var (start, end) = data.SplitRows(EttSplit.Train, 0);
        var sums = new double[cycleLength, data.ChannelCount];
        var counts = new int[cycleLength];
        for (int r = start; r < end; r++)
        {
            counts[r % cycleLength]++;
            for (int c = 0; c < data.ChannelCount; c++) sums[r % cycleLength, c] += data.Values[r, c];
        }
        var profile = new float[cycleLength * data.ChannelCount];
        for (int p = 0; p < cycleLength; p++)
            for (int c = 0; c < data.ChannelCount; c++) profile[p * data.ChannelCount + c] = (float)(sums[p, c] / Math.Max(1, counts[p]));
        return tensor(profile).view(cycleLength, data.ChannelCount);
    }
}

/// <summary>Materialises a split's windows as tensors (the ETT files are small) and scores forecasters on them.</summary>
internal static class EttWindows
{
    /// <summary>
    /// (n, lookback, channels) pasts and (n, horizon, channels) futures of every window of a split, and (n) int64 starts: the row
    /// index of each window's first step.
    /// </summary>
    public static (Tensor Pasts, Tensor Futures, Tensor Starts) All(EttDataset data, EttSplit split, int lookback, int horizon)
    {
        int n = data.WindowCount(split, lookback, horizon), c = data.ChannelCount;
        var past = new float[n * lookback * c];
        var future = new float[n * horizon * c];
        for (int i = 0; i < n; i++)
            data.Window(split, i, lookback, horizon, past.AsSpan(i * lookback * c, lookback * c), future.AsSpan(i * horizon * c, horizon * c));
        return (tensor(past).view(n, lookback, c), tensor(future).view(n, horizon, c), arange(n) + data.WindowStart(split, 0, lookback));
    }

    /// <summary>MSE and MAE over every element of every test window.</summary>
    public static (double Mse, double Mae) Score(Tensor predicted, Tensor actual)
    {
        using var scope = NewDisposeScope();
        var err = (predicted.to(ScalarType.Float64) - actual.to(ScalarType.Float64));
        return (err.square().mean().item<double>(), err.abs().mean().item<double>());
    }
}
