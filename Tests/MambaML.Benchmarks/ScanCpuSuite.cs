using System.Diagnostics;
using System.Globalization;
using MambaML.Model;
using MambaML.Scan;
using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.Benchmarks;

/// <summary>
/// <c>scan-cpu</c>: the reference scan against the fused CPU kernel, forward and forward+backward, at Mamba's
/// configuration (input-dependent B and C, z, D, delta_bias, softplus), plus end-to-end training steps per second of a
/// small forecasting model with either backend. Everything runs in one process on the same inputs.
/// </summary>
internal sealed class ScanCpuSuite : IBenchmarkSuite
{
    private static readonly (int B, int D, int N, int L)[] Shapes = { (8, 256, 16, 1024), (1, 1536, 16, 4096) };

    // A reference measurement whose first (warm-up) run takes longer than this is not repeated: that run is the sample.
    private const double SingleRunThresholdMs = 20_000;

    public string Name => "scan-cpu";
    public string Description => "reference vs fused CPU selective scan (fwd, fwd+bwd) and training steps/s";

    public IReadOnlyDictionary<string, object> Run(BenchmarkOptions options)
    {
        int cores = Environment.ProcessorCount;
        Console.WriteLine($"## scan-cpu: {CpuModel()}, {cores} cores, torch threads {get_num_threads()}, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC{(options.Quick ? ", --quick" : "")}");
        // Other processes on the same cores slow both backends; the load average tells whether they were there.
        Console.WriteLine($"load average at start: {LoadAverage()}");
        Console.WriteLine();
        Console.WriteLine("| (B, D, N, L) | pass | reference ms | fused ms | speedup | fused state updates/s | per core |");
        Console.WriteLine("|---|---|---|---|---|---|---|");
        var headline = new Dictionary<string, object>();
        foreach (var shape in Shapes)
        {
            using var scope = NewDisposeScope();
            var inputs = MakeInputs(shape, seed: 1);
            double updates = (double)shape.B * shape.D * shape.N * shape.L;
            foreach (bool backward in new[] { false, true })
            {
                var reference = MeasureScan(ReferenceSelectiveScan.Instance, inputs, backward, options.Quick, mayBeSlow: true);
                var fused = MeasureScan(CpuFusedSelectiveScan.Instance, inputs, backward, options.Quick, mayBeSlow: false);
                double speedup = reference.Ms / fused.Ms, rate = updates / (fused.Ms / 1000);
                Console.WriteLine($"| {shape} | {(backward ? "fwd+bwd" : "fwd")} | {reference} | {fused} | {speedup:F1}× | {rate:E3} | {rate / cores:E3} |");
                if (shape == Shapes[0])
                {
                    headline[backward ? "fwdbwd_speedup" : "fwd_speedup"] = Math.Round(speedup, 2);
                    headline[backward ? "fused_fwdbwd_ms" : "fused_fwd_ms"] = Math.Round(fused.Ms, 3);
                    if (!backward) headline["state_updates_per_s"] = Math.Round(rate / 1e6) * 1e6;
                }
            }
        }
        Console.WriteLine();
        Console.WriteLine("Scan: input-dependent B and C, z, D, delta_bias, softplus; fp32. fwd runs without autograd; fwd+bwd is forward, then");
        Console.WriteLine("backward of sum(y·dy) + sum(h_L·dh) into every input. Times: median of the repetitions; in brackets the fastest one and");
        Console.WriteLine("warm-up + repetitions (for the reference, its first run is the warm-up). Speedups are ratios of medians.");
        Console.WriteLine();

        Console.WriteLine("| training (d_model 64, 2 layers, L 96, batch 32, Adam) | steps/s | ms/step |");
        Console.WriteLine("|---|---|---|");
        foreach (var backend in new[] { SelectiveScanBackend.Reference, SelectiveScanBackend.CpuFused })
        {
            double ms = MeasureTraining(backend, options.Quick);
            Console.WriteLine($"| {backend} | {1000 / ms:F2} | {ms:F1} |");
            headline[backend == SelectiveScanBackend.Reference ? "train_steps_per_s_reference" : "train_steps_per_s_fused"] = Math.Round(1000 / ms, 3);
        }
        Console.WriteLine($"load average at end: {LoadAverage()}");
        Console.WriteLine();
        return headline;
    }

    /// <summary>A median time, the fastest repetition (what the machine can do when nothing else interferes), and the counts.</summary>
    private sealed record Measurement(double Ms, double MinMs, int Warmup, int Repetitions)
    {
        public override string ToString() =>
            $"{Format(Ms)} (min {Format(MinMs)}; {Warmup}+{Repetitions}{(Warmup == 0 ? ", single cold run" : "")})";

        private static string Format(double ms) => ms.ToString(ms >= 100 ? "F0" : "F2", CultureInfo.InvariantCulture);
    }

    private static Measurement MeasureScan(ISelectiveScan scan, SelectiveScanInput input, bool backward, bool quick, bool mayBeSlow)
    {
        var g = new Generator(2);
        var dy = randn(input.U.shape, generator: g);
        var dh = randn(new[] { input.Batch, input.Channels, input.StateSize }, generator: g);
        void Once()
        {
            using var scope = NewDisposeScope();
            if (!backward)
            {
                using var _ = no_grad();
                scan.Run(input);
                return;
            }
            foreach (var t in input.AllTensors()) t.grad?.zero_();
            var (y, last) = scan.Run(input);
            ((y * dy).sum() + (last! * dh).sum()).backward();
        }
        int warmup = quick ? 1 : 2, repetitions = quick ? 3 : 10;
        if (mayBeSlow)
        {
            // The reference's first run doubles as the warm-up and tells how many repetitions fit in about two minutes.
            long start = Stopwatch.GetTimestamp();
            Once();
            double first = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            if (first > SingleRunThresholdMs) return new Measurement(first, first, 0, 1);
            warmup = 0;
            repetitions = (int)Math.Clamp(120_000 / first, 1, quick ? 2 : 5);
        }
        var (median, samples) = Timing.Measure(Once, warmup, repetitions);
        return new Measurement(median, samples.Min(), warmup + (mayBeSlow ? 1 : 0), repetitions);
    }

    private static SelectiveScanInput MakeInputs((int B, int D, int N, int L) s, long seed)
    {
        var g = new Generator((ulong)seed);
        Tensor Leaf(Tensor t) => t.requires_grad_(true);
        return new SelectiveScanInput
        {
            U = Leaf(randn(new long[] { s.B, s.D, s.L }, generator: g)),
            Delta = Leaf(randn(new long[] { s.B, s.D, s.L }, generator: g) * 0.5),
            A = Leaf(-(rand(new long[] { s.D, s.N }, generator: g) * 1.5 + 0.5)),
            B = Leaf(randn(new long[] { s.B, s.N, s.L }, generator: g)),
            C = Leaf(randn(new long[] { s.B, s.N, s.L }, generator: g)),
            D = Leaf(randn(new long[] { s.D }, generator: g)),
            Z = Leaf(randn(new long[] { s.B, s.D, s.L }, generator: g)),
            DeltaBias = Leaf(randn(new long[] { s.D }, generator: g) * 0.5),
            DeltaSoftplus = true,
            ReturnLastState = true,
        };
    }

    /// <summary>
    /// Milliseconds per Adam step of a small forecaster: 7 input series → Linear → 2-layer Mamba backbone (d_model 64) →
    /// Linear head predicting the next 24 values of every series from the last position; synthetic sinusoids.
    /// </summary>
    private static double MeasureTraining(SelectiveScanBackend backend, bool quick)
    {
        const int batch = 32, length = 96, series = 7, horizon = 24, dModel = 64;
        using var scope = NewDisposeScope();
        var config = new MambaConfig { DModel = dModel, NLayer = 2, ScanBackend = backend };
        var backbone = new MambaBackbone(config, seed: 3);
        var embed = nn.Linear(series, dModel);
        var head = nn.Linear(dModel, series * horizon);
        var parameters = backbone.parameters().Concat(embed.parameters()).Concat(head.parameters()).ToList();
        var optimizer = optim.Adam(parameters, lr: 1e-3);
        var g = new Generator(4);
        var phase = rand(new long[] { batch, 1, series }, generator: g) * 6.28;
        var time = arange(length + horizon, dtype: ScalarType.Float32).view(1, -1, 1);
        var signal = (time * 0.15 + phase).sin() + 0.1 * randn(new long[] { batch, length + horizon, series }, generator: g);
        var x = signal.narrow(1, 0, length);
        var target = signal.narrow(1, length, horizon).reshape(batch, -1);
        void Step()
        {
            using var stepScope = NewDisposeScope();
            optimizer.zero_grad();
            var (hidden, _) = backbone.Forward(embed.forward(x));
            var loss = nn.functional.mse_loss(head.forward(hidden.select(1, length - 1)), target);
            loss.backward();
            optimizer.step();
        }
        return Timing.Measure(Step, warmup: 2, repetitions: quick ? 3 : 10).MedianMs;
    }

    private static string LoadAverage()
    {
        try { return string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
        catch (IOException) { return "unknown"; }
    }

    private static string CpuModel()
    {
        try
        {
            var line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
            return line?.Split(':', 2)[1].Trim() ?? "unknown CPU";
        }
        catch (IOException) { return "unknown CPU"; }
    }
}
