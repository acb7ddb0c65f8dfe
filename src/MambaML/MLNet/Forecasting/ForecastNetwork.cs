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
    /// <summary>Length of the seasonal cycle removed from the input and added to the forecast (0 = none).</summary>
    public int CycleLength { get; init; }
    /// <summary>
    /// Each channel's units (<see cref="MLNet.ChannelScales"/>): RevIN's epsilon and the loss are measured in them. Null when
    /// every channel's is 1, as for z-scored data and for models saved before format 3.
    /// </summary>
    public double[]? ChannelScales { get; init; }
    /// <summary>
    /// Without instance normalisation, each channel's offset (<see cref="MLNet.ChannelScales"/>, zeros included): windows are
    /// read less it and in the channel's units, and forecasts are mapped back. Null with instance normalisation, and for models
    /// saved before format 4, which read windows without RevIN as they were (and still do).
    /// </summary>
    public double[]? ChannelOffsets { get; init; }
    public string CycleIndexColumnName { get; init; } = TimeSeriesWindows.WindowStartColumnName;
    public required MambaConfig Mamba { get; init; }
    public string FeatureColumnName { get; init; } = "Features";
    public string OutputColumnName { get; init; } = "Forecast";
    public int? PredictionBatchSize { get; init; }
    // Prediction intervals (format 5; null without): output columns, level, and per (horizon step, channel), time-major, the
    // multiple of the input window's deviation (ForecastNetwork.WindowDeviation) that makes the half-width: the level's
    // conformal quantile of the calibration windows' absolute errors in those units.
    public string? ConfidenceLowerBoundColumnName { get; init; }
    public string? ConfidenceUpperBoundColumnName { get; init; }
    public float ConfidenceLevel { get; init; }
    public float[]? IntervalQuantiles { get; init; }
}

/// <summary>
/// Mamba forecaster. Each window is normalised by its own mean and standard deviation per channel (RevIN; undone on the output),
/// cut into patches of <see cref="ForecastArchitecture.PatchLength"/> steps, embedded linearly and run through a
/// <see cref="MambaBackbone"/>; a linear head maps the last hidden state to the horizon. Channel-independent models treat each
/// channel as its own univariate series (shared weights); channel-mixing models embed all channels of a patch together.
/// A DLinear-style linear map from the normalised window to the horizon runs beside the Mamba path. With a seasonal cycle
/// (<see cref="ForecastArchitecture.CycleLength"/>), a learned value per cycle position and channel is subtracted from the window
/// before all this and added to the forecast after (CycleNet's residual cycle forecasting). An ensemble is the first
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
    // (cycle length, channels): the seasonal cycle; null without one.
    public Parameter? cycle;
    // (1, 1, channels): ForecastArchitecture.ChannelScales (null when all 1) and ChannelOffsets (null with RevIN or absent).
    public Tensor? channel_scale;
    public Tensor? channel_offset;
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
        cycle = arch.CycleLength > 0 ? new Parameter(zeros(arch.CycleLength, arch.Channels)) : null;
        channel_scale = ChannelScales.AsTensor(arch.ChannelScales, arch.Channels);
        channel_offset = ChannelScales.OffsetsAsTensor(arch.ChannelOffsets, arch.Channels);
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

    /// <summary>
    /// This network's own forecast in each window's normalised units, with the statistics to undo it; with a cycle, of the
    /// window less its cycle (add <see cref="CycleValues"/> over the horizon after undoing the normalisation).
    /// </summary>
    /// <param name="window">(batch, lookback, channels).</param>
    /// <param name="cycleIndex">(batch) int64 time index of each window's first step; null without a cycle.</param>
    /// <returns>(batch, horizon, channels) normalised forecast; mean and std (batch, 1, channels).</returns>
    public (Tensor Normalized, Tensor Mean, Tensor Std) Forward(Tensor window, Tensor? cycleIndex = null)
    {
        using var scope = NewDisposeScope();
        long b = window.shape[0], l = _arch.Lookback, c = _arch.Channels, h = _arch.Horizon;
        var (x, mean, std) = Normalize(RemoveCycle(window, cycleIndex));

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
    /// std s and normalised input x, the error is s·(W·x + b − y_normalised), a least-squares problem with rows scaled by s
    /// (by s over the channel's scale, with channel scales).
    /// </summary>
    /// <param name="windows">
    /// Batches of (batch, lookback, channels) windows, their (batch, horizon, channels) targets and, with a cycle, their (batch)
    /// cycle indices (the fit is of the series less the cycle, as <see cref="Forward"/> sees it).
    /// </param>
    public void FitLinearSkip(IEnumerable<(Tensor Window, Tensor Target, Tensor? CycleIndex)> windows)
    {
        if (skip is null) throw new InvalidOperationException("FitLinearSkip needs LinearSkip = true.");
        long l = _arch.Lookback, h = _arch.Horizon;
        var device = skip.weight!.device;
        using var scope = NewDisposeScope();
        var gram = zeros(l + 1, l + 1, ScalarType.Float64, device);     // Σ s²·[x,1]ᵀ[x,1]
        var cross = zeros(l + 1, h, ScalarType.Float64, device);        // Σ s²·[x,1]ᵀ y_normalised
        using (no_grad())
        {
            foreach (var (window, target, cycleIndex) in windows)
            {
                using var batchScope = NewDisposeScope();
                using var windowOwned = window;   // made by the caller's enumerator: free each batch as it is used
                using var targetOwned = target;
                using var indexOwned = cycleIndex;
                var (x, mean, std) = Normalize(RemoveCycle(window, cycleIndex).to(ScalarType.Float64));
                var rows = x.permute(0, 2, 1).reshape(-1, l);                                   // (batch·channels, lookback)
                var scale = (channel_scale is null ? std : std / channel_scale.to(ScalarType.Float64)).permute(0, 2, 1).reshape(-1, 1);
                var inputs = cat(new[] { rows, ones_like(scale) }, 1) * scale;
                var future = cycleIndex is null ? target : target - CycleValues(cycleIndex, l, h);
                var outputs = (future.to(ScalarType.Float64) - mean);                                  // s·y_normalised
                if (channel_scale is not null) outputs = outputs / channel_scale.to(ScalarType.Float64);
                outputs = outputs.permute(0, 2, 1).reshape(-1, h);
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

    /// <summary>
    /// Sets the cycle to the mean of the training windows' values at each cycle position, per channel (positions no window
    /// covers stay 0): the seasonal profile that training then refines. Without RevIN it is taken about the channel offsets,
    /// which <see cref="Normalize"/> removes from the window as well: a cycle holding the series' level too would have it
    /// removed twice, and the network would start from inputs a whole level away from zero.
    /// </summary>
    /// <param name="windows">Batches of (batch, lookback, channels) windows with their (batch) cycle indices.</param>
    public void FitCycle(IEnumerable<(Tensor Window, Tensor CycleIndex)> windows)
    {
        if (cycle is null) throw new InvalidOperationException("FitCycle needs CycleLength > 0.");
        var device = cycle.device;
        using var scope = NewDisposeScope();
        var sums = zeros(_arch.CycleLength, _arch.Channels, ScalarType.Float64, device);
        var counts = zeros(_arch.CycleLength, ScalarType.Float64, device);
        using (no_grad())
        {
            foreach (var (window, cycleIndex) in windows)
            {
                using var batchScope = NewDisposeScope();
                using var windowOwned = window;
                using var indexOwned = cycleIndex;
                var positions = CyclePositions(cycleIndex, 0, _arch.Lookback).reshape(-1);
                var values = window.reshape(-1, _arch.Channels).to(ScalarType.Float64);
                if (channel_offset is not null) values = values - channel_offset.to(ScalarType.Float64).reshape(1, _arch.Channels);
                sums.index_add_(0, positions, values, 1.0);
                counts.index_add_(0, positions, ones(positions.shape[0], ScalarType.Float64, device), 1.0);
            }
            cycle.copy_(sums / counts.clamp_min(1).unsqueeze(1));
        }
    }

    /// <summary>
    /// Takes <paramref name="fitted"/>'s fitted start (a network of the same architecture after <see cref="FitCycle"/> and, when
    /// <paramref name="linearSkip"/>, <see cref="FitLinearSkip"/>): its cycle, its linear skip path and a zero head, as
    /// running those fits here would give, since they depend on the data alone.
    /// </summary>
    public void CopyFittedStart(ForecastNetwork fitted, bool linearSkip)
    {
        using var _ = no_grad();
        cycle?.copy_(fitted.cycle!);
        if (!linearSkip) return;
        skip!.weight!.copy_(fitted.skip!.weight!);
        skip.bias!.copy_(fitted.skip.bias!);
        head.weight!.zero_();
        head.bias!.zero_();
    }

    /// <summary>(batch, length) int64: the cycle positions of steps <paramref name="offset"/> to offset + length − 1 after each window's first step.</summary>
    private Tensor CyclePositions(Tensor cycleIndex, long offset, long length) =>
        (cycleIndex.to(ScalarType.Int64).unsqueeze(1) + offset + arange(length, device: cycleIndex.device).unsqueeze(0)).remainder(_arch.CycleLength);

    /// <summary>
    /// (batch, length, channels): the cycle's values at steps <paramref name="offset"/> to offset + length − 1 counted from each
    /// window's first step (offset = lookback gives the horizon's).
    /// </summary>
    /// <param name="cycleIndex">(batch) int64 time index of each window's first step.</param>
    /// <param name="offset">Steps after the window's first step.</param>
    /// <param name="length">Steps.</param>
    public Tensor CycleValues(Tensor cycleIndex, long offset, long length)
    {
        var positions = CyclePositions(cycleIndex, offset, length);
        return cycle!.index_select(0, positions.reshape(-1)).view(positions.shape[0], length, _arch.Channels);
    }

    // The window less its cycle (the window itself without a cycle); a cycle needs the windows' indices.
    private Tensor RemoveCycle(Tensor window, Tensor? cycleIndex)
    {
        if (cycle is null) return window;
        if (cycleIndex is null) throw new ArgumentNullException(nameof(cycleIndex), "A forecaster with a cycle needs each window's cycle index.");
        return window - CycleValues(cycleIndex, 0, _arch.Lookback);
    }

    // RevIN statistics of (batch, lookback, channels) windows: normalised window, mean and std (batch, 1, channels). Without
    // RevIN, the series' own level and units instead (its channel offsets and scales), the same for every window.
    private (Tensor X, Tensor Mean, Tensor Std) Normalize(Tensor window)
    {
        if (!_arch.InstanceNormalization)
        {
            var first = window.narrow(1, 0, 1);
            if (channel_offset is null) return (window, zeros_like(first), ones_like(first));   // a model saved before format 4
            var level = channel_offset.to(window.dtype).expand_as(first);
            var units = channel_scale is null ? ones_like(first) : channel_scale.to(window.dtype).expand_as(first);
            return ((window - level) / units, level, units);
        }
        // The statistics are taken in each channel's units (a series around 1e-25 or 1e37 trains as one around 1), and RevIN's
        // epsilon is relative to the channel's scale; the mean and deviation returned are in the data's units. Unit scales leave
        // every value as it was, bit for bit.
        var (w, scale) = InChannelUnits(window);
        var mean = w.mean(new long[] { 1 }, keepdim: true);
        var std = Deviation(w, RevinEpsilon);
        // Values beyond about 1e19 units overflow the float32 variance; such windows take their deviation in float64 (finite
        // windows keep the float32 one, bit for bit).
        var wide = Deviation(w.to(ScalarType.Float64), RevinEpsilon).to(window.dtype);
        std = where(std.isfinite(), std, wide);
        var x = (w - mean) / std;
        return scale is null ? (x, mean, std) : (x, mean * scale, std * scale);
    }

    /// <summary>
    /// Each window's standard deviation per channel, (batch, lookback, channels) → (batch, 1, channels) in the data's units,
    /// floored smoothly at a tenth of the channel's scale (√(variance + 0.1²) in the channel's units): the scale prediction
    /// intervals are measured in, so that they widen and narrow with the series' volatility, while a flat stretch (a stuck
    /// sensor, a run of zeros) among the calibration windows does not give errors divided by almost nothing.
    /// </summary>
    public Tensor WindowDeviation(Tensor window)
    {
        using var scope = NewDisposeScope();
        var (w, scale) = InChannelUnits(window.to(ScalarType.Float64));
        var std = Deviation(w, IntervalDeviationFloor * IntervalDeviationFloor);
        return (scale is null ? std : std * scale).to(window.dtype).MoveToOuterDisposeScope();
    }

    private const double IntervalDeviationFloor = 0.1;

    // The window in its channels' units (where a variance neither underflows nor overflows float32 for any series), and the
    // scales that map back (null for unit scales).
    private (Tensor W, Tensor? Scale) InChannelUnits(Tensor window)
    {
        var scale = channel_scale?.to(window.dtype);
        return (scale is null ? window : window / scale, scale);
    }

    // Each channel's standard deviation over a window's steps, with epsilon added to the variance.
    private static Tensor Deviation(Tensor window, double epsilon) => (window.var(1, unbiased: false, keepdim: true) + epsilon).sqrt();

    /// <summary>
    /// Forecast in the data's units: (batch, lookback, channels) → (batch, horizon, channels); for an ensemble, the mean of its
    /// members' forecasts.
    /// </summary>
    /// <param name="window">(batch, lookback, channels).</param>
    /// <param name="cycleIndex">(batch) int64 time index of each window's first step; null without a cycle.</param>
    public Tensor Predict(Tensor window, Tensor? cycleIndex = null)
    {
        using var scope = NewDisposeScope();
        var forecast = ensemble_members is null
            ? PredictAlone(window, cycleIndex)
            : stack(Members().Select(member => member.PredictAlone(window, cycleIndex)).ToList(), 0).mean(new long[] { 0 });
        return forecast.MoveToOuterDisposeScope();
    }

    // This network's own forecast in the data's units.
    private Tensor PredictAlone(Tensor window, Tensor? cycleIndex)
    {
        using var scope = NewDisposeScope();
        var (y, mean, std) = Forward(window, cycleIndex);
        var forecast = y * std + mean;
        if (cycle is not null) forecast = forecast + CycleValues(cycleIndex!, _arch.Lookback, _arch.Horizon);
        return forecast.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Mean squared error of <see cref="Predict"/> against <paramref name="target"/> (batch, horizon, channels) in the data's units, after RevIN is undone
    /// (as RevIN prescribes): measured in each window's own units, a nearly constant window would dominate the loss. With channel
    /// scales, each channel's error is measured in its scale's units.
    /// </summary>
    /// <param name="window">(batch, lookback, channels).</param>
    /// <param name="target">(batch, horizon, channels).</param>
    /// <param name="cycleIndex">(batch) int64 time index of each window's first step; null without a cycle.</param>
    public Tensor Loss(Tensor window, Tensor target, Tensor? cycleIndex = null)
    {
        using var scope = NewDisposeScope();
        var forecast = Predict(window, cycleIndex);
        var loss = channel_scale is null ? nn.functional.mse_loss(forecast, target) : nn.functional.mse_loss(forecast / channel_scale, target / channel_scale);
        return loss.MoveToOuterDisposeScope();
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
