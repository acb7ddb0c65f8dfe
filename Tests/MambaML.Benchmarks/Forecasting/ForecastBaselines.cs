using static TorchSharp.torch;

namespace MambaML.Benchmarks.Forecasting;

/// <summary>A forecaster of (lookback × channels) windows, time-major, for the baselines run beside Mamba.</summary>
internal interface IWindowForecaster
{
    string Name { get; }
    /// <summary>Forecasts a batch: pasts (n, lookback, channels) → futures (n, horizon, channels).</summary>
    Tensor Predict(Tensor pasts);
}

/// <summary>Repeats the last observed value of each channel over the horizon.</summary>
internal sealed class RepeatLastValue(int horizon) : IWindowForecaster
{
    public string Name => "Repeat last value";
    public Tensor Predict(Tensor pasts) => pasts[.., ^1..].expand(pasts.shape[0], horizon, pasts.shape[2]).contiguous();
}

/// <summary>
/// One linear map from the lookback window to the horizon, shared by all channels (channel-independent), on windows centred
/// by their own mean (RLinear-style instance normalisation), fitted in closed form by ridge regression on every train window.
/// </summary>
internal sealed class LinearWindowForecaster : IWindowForecaster
{
    private readonly Tensor _weight;   // (lookback, horizon)

    public string Name => "Linear (RLinear-style, closed form)";

    public LinearWindowForecaster(EttDataset data, int lookback, int horizon, double ridge = 1e-3)
    {
        using var scope = NewDisposeScope();
        var (pasts, futures) = EttWindows.All(data, EttSplit.Train, lookback, horizon);
        // (n·channels, lookback) and (n·channels, horizon), each row centred by its window's mean.
        var x = pasts.permute(0, 2, 1).reshape(-1, lookback).to(ScalarType.Float64);
        var y = futures.permute(0, 2, 1).reshape(-1, horizon).to(ScalarType.Float64);
        var mean = x.mean(new long[] { 1 }, keepdim: true);
        x = x - mean; y = y - mean;
        var gram = x.T.matmul(x) + eye(lookback, dtype: ScalarType.Float64) * (ridge * x.shape[0]);
        _weight = linalg.solve(gram, x.T.matmul(y)).to(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    public Tensor Predict(Tensor pasts)
    {
        using var scope = NewDisposeScope();
        var x = pasts.permute(0, 2, 1);                                   // (n, channels, lookback)
        var mean = x.mean(new long[] { 2 }, keepdim: true);
        var y = (x - mean).matmul(_weight) + mean;                        // (n, channels, horizon)
        return y.permute(0, 2, 1).contiguous().MoveToOuterDisposeScope();
    }
}

/// <summary>Materialises a split's windows as tensors (the ETT files are small) and scores forecasters on them.</summary>
internal static class EttWindows
{
    /// <summary>(n, lookback, channels) pasts and (n, horizon, channels) futures of every window of a split.</summary>
    public static (Tensor Pasts, Tensor Futures) All(EttDataset data, EttSplit split, int lookback, int horizon)
    {
        int n = data.WindowCount(split, lookback, horizon), c = data.ChannelCount;
        var past = new float[n * lookback * c];
        var future = new float[n * horizon * c];
        for (int i = 0; i < n; i++)
            data.Window(split, i, lookback, horizon, past.AsSpan(i * lookback * c, lookback * c), future.AsSpan(i * horizon * c, horizon * c));
        return (tensor(past).view(n, lookback, c), tensor(future).view(n, horizon, c));
    }

    /// <summary>MSE and MAE over every element of every test window.</summary>
    public static (double Mse, double Mae) Score(Tensor predicted, Tensor actual)
    {
        using var scope = NewDisposeScope();
        var err = (predicted.to(ScalarType.Float64) - actual.to(ScalarType.Float64));
        return (err.square().mean().item<double>(), err.abs().mean().item<double>());
    }
}
