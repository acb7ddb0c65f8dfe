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
    /// <summary>Networks trained apart whose forecasts are averaged (1 = a single network).</summary>
    public int EnsembleSize { get; init; } = 1;
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
/// A DLinear-style linear map from the normalised window to the horizon runs beside the Mamba path. An ensemble is the first
/// member carrying the others in <see cref="ensemble_members"/>; it forecasts the average of their forecasts.
/// </summary>
internal sealed class ForecastNetwork : nn.Module
{
    private const double RevinEpsilon = 1e-5;
    private readonly ForecastArchitecture _arch;

    public Linear embed;
    public MambaBackbone backbone;
    public Linear head;
    public Linear? skip;
    // Members 2 to EnsembleSize of an ensemble (each a whole network of its own); null for a single network.
    public ModuleList<ForecastNetwork>? ensemble_members;

    /// <summary>
    /// A network initialised from <paramref name="seed"/>; for an ensemble architecture, with its other members initialised
    /// from their own seeds (<see cref="MambaTrainerOptions.MemberSeed"/>), as the members trained apart were.
    /// </summary>
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
        if (arch.EnsembleSize > 1)
            ensemble_members = nn.ModuleList(Enumerable.Range(1, arch.EnsembleSize - 1)
                .Select(k => new ForecastNetwork(arch with { EnsembleSize = 1 }, MambaTrainerOptions.MemberSeed(seed, k))).ToArray());
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

    /// <summary>
    /// The ensemble of separately trained single networks: the first, carrying the others as its
    /// <see cref="ensemble_members"/> (the layout an ensemble architecture's constructor builds, so that saved weights load).
    /// </summary>
    public static ForecastNetwork Ensemble(IReadOnlyList<ForecastNetwork> members)
    {
        var first = members[0];
        if (members.Any(m => m.ensemble_members is not null))
            throw new ArgumentException("Ensemble members must be single networks.", nameof(members));
        if (members.Count > 1)
        {
            first.ensemble_members = nn.ModuleList(members.Skip(1).ToArray());
            first.register_module(nameof(ensemble_members), first.ensemble_members);
        }
        return first;
    }

    /// <summary>This network and the other members of its ensemble, in order.</summary>
    public IEnumerable<ForecastNetwork> Members() => ensemble_members is null ? new[] { this } : new[] { this }.Concat(ensemble_members);

    /// <summary>This network's own forecast in each window's normalised units, with the statistics to undo it.</summary>
    /// <param name="window">(batch, lookback, channels).</param>
    /// <returns>(batch, horizon, channels) normalised forecast; mean and std (batch, 1, channels).</returns>
    public (Tensor Normalized, Tensor Mean, Tensor Std) Forward(Tensor window)
    {
        using var scope = NewDisposeScope();
        long b = window.shape[0], l = _arch.Lookback, c = _arch.Channels, h = _arch.Horizon;
        var (x, mean, std) = Normalize(window);

        var series = _arch.ChannelIndependent ? x.permute(0, 2, 1).reshape(b * c, l, 1) : x;   // (n, L, width)
        var (hidden, _) = backbone.Forward(embed.forward(Patches(series)));
        var last = hidden.select(1, hidden.shape[1] - 1);                                      // (n, d_model)
        var y = _arch.ChannelIndependent
            ? head.forward(last).reshape(b, c, h).permute(0, 2, 1)
            : head.forward(last).reshape(b, h, c);
        if (skip is not null) y = y + skip.forward(x.permute(0, 2, 1)).permute(0, 2, 1);
        return (y.MoveToOuterDisposeScope(), mean.MoveToOuterDisposeScope(), std.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Sets the linear skip path to the least-squares linear forecaster of the training windows and zeroes the head, so that
    /// gradient training starts from the best linear forecast and the Mamba path learns what it misses. The fit minimises the
    /// training loss itself (squared error in data units after RevIN is undone): per (window, channel) row, with the window's
    /// std s and normalised input x, the error is s·(W·x + b − y_normalised), a least-squares problem with rows scaled by s.
    /// </summary>
    /// <param name="windows">Batches of (batch, lookback, channels) windows and their (batch, horizon, channels) targets.</param>
    public void FitLinearSkip(IEnumerable<(Tensor Window, Tensor Target)> windows)
    {
        if (skip is null) throw new InvalidOperationException("FitLinearSkip needs LinearSkip = true.");
        long l = _arch.Lookback, h = _arch.Horizon;
        var device = skip.weight!.device;
        using var scope = NewDisposeScope();
        var gram = zeros(l + 1, l + 1, ScalarType.Float64, device);     // Σ s²·[x,1]ᵀ[x,1]
        var cross = zeros(l + 1, h, ScalarType.Float64, device);        // Σ s²·[x,1]ᵀ y_normalised
        using (no_grad())
        {
            foreach (var (window, target) in windows)
            {
                using var batchScope = NewDisposeScope();
                using var windowOwned = window;   // made by the caller's enumerator: free each batch as it is used
                using var targetOwned = target;
                var (x, mean, std) = Normalize(window.to(ScalarType.Float64));
                var rows = x.permute(0, 2, 1).reshape(-1, l);                                   // (batch·channels, lookback)
                var scale = std.permute(0, 2, 1).reshape(-1, 1);
                var inputs = cat(new[] { rows, ones_like(scale) }, 1) * scale;
                var outputs = (target.to(ScalarType.Float64) - mean).permute(0, 2, 1).reshape(-1, h);   // s·y_normalised
                gram.add_(inputs.T.matmul(inputs));
                cross.add_(inputs.T.matmul(outputs));
            }
            // A small ridge (relative to the data's scale) keeps the solve well posed for short or degenerate data.
            var ridge = gram.diagonal().mean() * 1e-4 + 1e-12;
            var solution = linalg.solve(gram + eye(l + 1, dtype: ScalarType.Float64, device: device) * ridge, cross);   // (lookback + 1, horizon)
            skip.weight!.copy_(solution.narrow(0, 0, l).T);
            skip.bias!.copy_(solution[l]);
            head.weight!.zero_();
            head.bias!.zero_();
        }
    }

    // RevIN statistics of (batch, lookback, channels) windows: normalised window, mean and std (batch, 1, channels).
    private (Tensor X, Tensor Mean, Tensor Std) Normalize(Tensor window)
    {
        if (!_arch.InstanceNormalization)
            return (window, zeros_like(window.narrow(1, 0, 1)), ones_like(window.narrow(1, 0, 1)));
        var mean = window.mean(new long[] { 1 }, keepdim: true);
        var std = (window.var(1, unbiased: false, keepdim: true) + RevinEpsilon).sqrt();
        return ((window - mean) / std, mean, std);
    }

    /// <summary>
    /// Forecast in the data's units: (batch, lookback, channels) → (batch, horizon, channels); for an ensemble, the mean of its
    /// members' forecasts.
    /// </summary>
    public Tensor Predict(Tensor window)
    {
        using var scope = NewDisposeScope();
        var forecast = ensemble_members is null
            ? PredictAlone(window)
            : stack(Members().Select(member => member.PredictAlone(window)).ToList(), 0).mean(new long[] { 0 });
        return forecast.MoveToOuterDisposeScope();
    }

    // This network's own forecast in the data's units.
    private Tensor PredictAlone(Tensor window)
    {
        using var scope = NewDisposeScope();
        var (y, mean, std) = Forward(window);
        return (y * std + mean).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Mean squared error of <see cref="Predict"/> against <paramref name="target"/> (batch, horizon, channels) in the data's units, after RevIN is undone
    /// (as RevIN prescribes): measured in each window's own units, a nearly constant window would dominate the loss.
    /// </summary>
    public Tensor Loss(Tensor window, Tensor target)
    {
        using var scope = NewDisposeScope();
        return nn.functional.mse_loss(Predict(window), target).MoveToOuterDisposeScope();
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
    public static void UniformFanIn(Linear layer, Generator g) => UniformFanIn(layer.weight!, layer.bias, g);

    /// <summary>U(±1/√fan_in), fan_in = input channels × kernel size, for weight and bias (PyTorch's Conv1d default).</summary>
    public static void UniformFanIn(Conv1d layer, Generator g) => UniformFanIn(layer.weight!, layer.bias, g);

    // fan_in: the weights feeding one output unit.
    private static void UniformFanIn(Tensor weight, Tensor? bias, Generator g)
    {
        double bound = 1.0 / Math.Sqrt(weight.numel() / weight.shape[0]);
        // Tensor.uniform_, not nn.init.uniform_: TorchSharp 0.107's nn.init ignores the generator.
        weight.uniform_(-bound, bound, g);
        bias?.uniform_(-bound, bound, g);
    }
}
