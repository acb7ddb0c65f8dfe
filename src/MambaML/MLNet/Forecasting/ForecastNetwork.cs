using MambaML.Model;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MambaML.MLNet;

/// <summary>The saved description of a forecaster: shape of the problem, model design and size, and column names.</summary>
internal sealed record ForecastArchitecture
{
    public int Lookback { get; init; }
    public int Horizon { get; init; }
    public int Channels { get; init; }
    public bool ChannelIndependent { get; init; }
    public bool InstanceNormalization { get; init; }
    public bool LinearSkip { get; init; }
    public int PatchLength { get; init; }
    public required MambaConfig Mamba { get; init; }
    public string FeatureColumnName { get; init; } = "Features";
    public string OutputColumnName { get; init; } = "Forecast";
    public int PredictionBatchSize { get; init; } = 256;
}

/// <summary>
/// Mamba forecaster. Each window is normalised by its own mean and standard deviation per channel (RevIN; undone on the output),
/// cut into patches of <see cref="ForecastArchitecture.PatchLength"/> steps, embedded linearly and run through a
/// <see cref="MambaBackbone"/>; a linear head maps the last hidden state to the horizon. Channel-independent models treat each
/// channel as its own univariate series (shared weights); channel-mixing models embed all channels of a patch together.
/// A DLinear-style linear map from the normalised window to the horizon runs beside the Mamba path.
/// </summary>
internal sealed class ForecastNetwork : nn.Module
{
    private const double RevinEpsilon = 1e-5;
    private readonly ForecastArchitecture _arch;

    public Linear embed;
    public MambaBackbone backbone;
    public Linear head;
    public Linear? skip;

    public ForecastNetwork(ForecastArchitecture arch, long seed) : base(nameof(ForecastNetwork))
    {
        _arch = arch;
        var g = new Generator((ulong)seed);
        int seriesWidth = arch.ChannelIndependent ? 1 : arch.Channels;
        int d = arch.Mamba.DModel;
        embed = nn.Linear(arch.PatchLength * seriesWidth, d);
        backbone = new MambaBackbone(arch.Mamba, g);
        head = nn.Linear(d, arch.ChannelIndependent ? arch.Horizon : (long)arch.Horizon * arch.Channels);
        skip = arch.LinearSkip ? nn.Linear(arch.Lookback, arch.Horizon) : null;
        RegisterComponents();
        using var _ = no_grad();
        Init.UniformFanIn(embed, g);
        Init.UniformFanIn(head, g);
        if (skip is not null)
        {
            // Start as "the window mean": a forecast no worse than a constant.
            skip.weight!.fill_(1.0 / arch.Lookback);
            skip.bias!.zero_();
        }
    }

    /// <summary>Forecast in each window's normalised units, with the statistics to undo it.</summary>
    /// <param name="window">(batch, lookback, channels).</param>
    /// <returns>(batch, horizon, channels) normalised forecast; mean and std (batch, 1, channels).</returns>
    public (Tensor Normalized, Tensor Mean, Tensor Std) Forward(Tensor window)
    {
        using var scope = NewDisposeScope();
        long b = window.shape[0], l = _arch.Lookback, c = _arch.Channels, h = _arch.Horizon;
        Tensor mean, std, x;
        if (_arch.InstanceNormalization)
        {
            mean = window.mean(new long[] { 1 }, keepdim: true);
            std = (window.var(1, unbiased: false, keepdim: true) + RevinEpsilon).sqrt();
            x = (window - mean) / std;
        }
        else
        {
            mean = zeros(b, 1, c, device: window.device);
            std = ones(b, 1, c, device: window.device);
            x = window;
        }

        var series = _arch.ChannelIndependent ? x.permute(0, 2, 1).reshape(b * c, l, 1) : x;   // (n, L, width)
        var (hidden, _) = backbone.Forward(embed.forward(Patches(series)));
        var last = hidden.select(1, hidden.shape[1] - 1);                                      // (n, d_model)
        var y = _arch.ChannelIndependent
            ? head.forward(last).reshape(b, c, h).permute(0, 2, 1)
            : head.forward(last).reshape(b, h, c);
        if (skip is not null) y = y + skip.forward(x.permute(0, 2, 1)).permute(0, 2, 1);
        return (y.MoveToOuterDisposeScope(), mean.MoveToOuterDisposeScope(), std.MoveToOuterDisposeScope());
    }

    /// <summary>Forecast in the data's units: (batch, lookback, channels) → (batch, horizon, channels).</summary>
    public Tensor Predict(Tensor window)
    {
        using var scope = NewDisposeScope();
        var (y, mean, std) = Forward(window);
        return (y * std + mean).MoveToOuterDisposeScope();
    }

    /// <summary>Mean squared error against <paramref name="target"/> (batch, horizon, channels), in normalised units with RevIN.</summary>
    public Tensor Loss(Tensor window, Tensor target)
    {
        using var scope = NewDisposeScope();
        var (y, mean, std) = Forward(window);
        var t = _arch.InstanceNormalization ? (target - mean) / std : target;
        return nn.functional.mse_loss(y, t).MoveToOuterDisposeScope();
    }

    // (n, L, width) → (n, ceil(L / P), P·width); the front is padded by repeating the first step so the last patch ends at the newest value.
    private Tensor Patches(Tensor series)
    {
        long n = series.shape[0], l = series.shape[1], width = series.shape[2];
        int p = _arch.PatchLength;
        long pad = (p - l % p) % p;
        if (pad > 0) series = cat(new[] { series.narrow(1, 0, 1).expand(n, pad, width), series }, 1);
        return series.reshape(n, (l + pad) / p, p * width);
    }
}

/// <summary>PyTorch's default initialisation, drawn from an explicit generator so that a seed fixes the model.</summary>
internal static class Init
{
    /// <summary>U(±1/√fan_in) for weight and bias (PyTorch's Linear default).</summary>
    public static void UniformFanIn(Linear layer, Generator g)
    {
        double bound = 1.0 / Math.Sqrt(layer.weight!.shape[1]);
        // Tensor.uniform_, not nn.init.uniform_: TorchSharp 0.107's nn.init ignores the generator.
        layer.weight.uniform_(-bound, bound, g);
        layer.bias?.uniform_(-bound, bound, g);
    }
}
