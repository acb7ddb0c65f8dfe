using System.Globalization;
using MambaML.Scan;
using MambaML.Scan.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.Benchmarks;

/// <summary>
/// <c>scan-gpu</c>: the fused CUDA scan against the reference scan on the same GPU, forward and forward+backward, fp32 and
/// bf16, at Mamba's configuration (input-dependent B and C, z, D, delta_bias, softplus). Beside each, a device-to-device copy
/// moving the same number of bytes, timed in the same process, gives the fraction of copy bandwidth the scan achieves.
/// Bytes: forward reads u, delta, z, B, C and writes out; backward reads u, delta, z, dout, B, C and writes du, ddelta, dz,
/// dB, dC (each once). Options: <c>--layouts</c> also times alternative kernel layouts; <c>--no-reference</c> skips the
/// reference (slow at these sizes).
/// </summary>
internal sealed class ScanGpuSuite : IBenchmarkSuite
{
    private static readonly (int B, int D, int N, int L)[] Shapes = { (8, 2048, 16, 2048), (1, 5120, 16, 8192) };

    public string Name => "scan-gpu";
    public string Description => "fused CUDA vs reference selective scan (fwd, fwd+bwd; fp32, bf16) against copy bandwidth";

    public IReadOnlyDictionary<string, object> Run(BenchmarkOptions options)
    {
        if (!cuda.is_available()) throw new InvalidOperationException("scan-gpu needs a CUDA device (and TorchSharp's CUDA libtorch).");
        var device = CUDA;
        var driver = CudaKernels.Driver.Driver ?? throw new InvalidOperationException(CudaKernels.Driver.Error);
        var nvrtc = CudaKernels.Compiler.Compiler;
        bool reference = !options.Args.Contains("--no-reference");
        Console.WriteLine($"## scan-gpu: {driver.DeviceName(driver.Device(0))}, CUDA driver {driver.Version / 1000}.{driver.Version % 1000 / 10}, " +
                          $"NVRTC {nvrtc?.Version.Major}.{nvrtc?.Version.Minor} ({nvrtc?.LibraryPath}), {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC{(options.Quick ? ", --quick" : "")}");
        Console.WriteLine();
        Console.WriteLine("| (B, D, N, L) | dtype | pass | reference ms | fused ms | speedup | fused GB/s | copy GB/s | fraction of copy |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|");
        var headline = new Dictionary<string, object>();
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
        foreach (var shape in Shapes)
        {
            using var scope = NewDisposeScope();
            var input = MakeInput(shape, dtype, device, seed: 1);
            foreach (bool backward in new[] { false, true })
            {
                double bytes = Bytes(shape, dtype, backward);
                double copyMs = CopyMs(bytes, device, options.Quick);
                double fusedMs = ScanMs(CudaSelectiveScan.Instance, input, backward, options.Quick ? 10 : 30);
                double? refMs = reference ? ScanMs(ReferenceSelectiveScan.Instance, input, backward, options.Quick ? 1 : 3) : null;
                double gbps = bytes / fusedMs / 1e6, copyGbps = bytes / copyMs / 1e6, fraction = copyMs / fusedMs;
                string pass = backward ? "fwd+bwd" : "fwd";
                Console.WriteLine($"| {shape} | {DTypeName(dtype)} | {pass} | {(refMs is null ? "—" : F(refMs.Value))} | {F(fusedMs)} | " +
                                  $"{(refMs is null ? "—" : $"{refMs / fusedMs:F0}×")} | {gbps:F0} | {copyGbps:F0} | {fraction:P1} |");
                // Headline keys: unsuffixed for fp32 at the first shape, then _bf16 and _long variants.
                string p = backward ? "fwdbwd" : "fwd", suffix = (dtype == ScalarType.Float32 ? "" : "_bf16") + (shape == Shapes[0] ? "" : "_long");
                headline[$"fused_{p}_ms{suffix}"] = Math.Round(fusedMs, 4);
                headline[$"{p}_bw_fraction{suffix}"] = Math.Round(fraction, 4);
                if (refMs is not null) headline[$"{p}_speedup{suffix}"] = Math.Round(refMs.Value / fusedMs, 1);
            }
        }
        Console.WriteLine();
        Console.WriteLine("fwd runs without autograd (no states saved); fwd+bwd is forward with autograd, then torch.autograd.grad of sum(out·dout)");
        Console.WriteLine("into every input. Times are medians after warm-up of GPU time between CUDA events, repetitions queued back to back");
        Console.WriteLine("(host enqueue time overlapped, as in a model); the copy moves the same bytes (read + write), timed the same way.");
        Console.WriteLine();
        PrintKernels(driver);
        if (options.Args.Contains("--layouts")) CompareLayouts(device, options.Quick);
        return headline;
    }

    private static string DTypeName(ScalarType dtype) => dtype == ScalarType.Float32 ? "fp32" : "bf16";
    private static string F(double ms) => ms.ToString(ms >= 100 ? "F0" : ms >= 10 ? "F1" : "F3", CultureInfo.InvariantCulture);

    /// <summary>Bytes a pass must move at least (ANCHORS.md): each input read once, each output written once.</summary>
    private static double Bytes((int B, int D, int N, int L) s, ScalarType dtype, bool withBackward)
    {
        double e = dtype == ScalarType.Float32 ? 4 : 2, bdl = (double)s.B * s.D * s.L, bnl = (double)s.B * s.N * s.L;
        double forward = e * (3 * bdl + 2 * bnl) + e * bdl;
        double backward = e * (4 * bdl + 2 * bnl) + e * (3 * bdl + 2 * bnl);
        return withBackward ? forward + backward : forward;
    }

    private static SelectiveScanInput MakeInput((int B, int D, int N, int L) s, ScalarType dtype, Device device, long seed)
    {
        var g = new Generator((ulong)seed);
        Tensor Seq(params long[] shape) => (randn(shape, generator: g)).to(dtype).to(device).requires_grad_(true);
        Tensor Param(Tensor t) => t.to(device).requires_grad_(true);
        return new SelectiveScanInput
        {
            U = Seq(s.B, s.D, s.L),
            Delta = (randn(new long[] { s.B, s.D, s.L }, generator: g) * 0.5 - 1).to(dtype).to(device).requires_grad_(true),
            A = Param(-(rand(new long[] { s.D, s.N }, generator: g) * 15 + 1)),
            B = Seq(s.B, s.N, s.L),
            C = Seq(s.B, s.N, s.L),
            D = Param(randn(new long[] { s.D }, generator: g)),
            Z = Seq(s.B, s.D, s.L),
            DeltaBias = Param(randn(new long[] { s.D }, generator: g) * 0.5 - 3),
            DeltaSoftplus = true,
        };
    }

    /// <summary>Median ms of a scan: forward without autograd, or forward + backward into every input.</summary>
    private static double ScanMs(ISelectiveScan scan, SelectiveScanInput input, bool backward, int repetitions)
    {
        var dout = randn(input.U.shape, generator: new Generator(2)).to(input.U.dtype).to(input.U.device);
        var leaves = input.AllTensors().ToList();
        void Once()
        {
            using var scope = NewDisposeScope();
            if (!backward)
            {
                using var _ = no_grad();
                scan.Run(input);
                return;
            }
            var (y, _) = scan.Run(input);
            autograd.grad(new[] { y }, leaves, new[] { dout });
        }
        int warmup = repetitions >= 10 ? 3 : 1;
        return Timing.MeasureGpu(Once, warmup, repetitions).MedianMs;
    }

    /// <summary>Median ms of a device-to-device copy that reads and writes <paramref name="bytes"/> in total.</summary>
    private static double CopyMs(double bytes, Device device, bool quick)
    {
        using var scope = NewDisposeScope();
        long n = (long)(bytes / 2);
        var src = randint(0, 255, new[] { n }, dtype: ScalarType.Byte, device: device);
        var dst = empty(new[] { n }, ScalarType.Byte, device);
        return Timing.MeasureGpu(() => dst.copy_(src), 3, quick ? 10 : 30).MedianMs;
    }

    private static void PrintKernels(CudaDriver driver)
    {
        Console.WriteLine("| kernel | registers | local bytes | shared bytes | threads | blocks/SM |");
        Console.WriteLine("|---|---|---|---|---|---|");
        foreach (var k in CudaKernels.Loaded().OrderBy(k => k.Config.ToString(), StringComparer.Ordinal))
            Console.WriteLine($"| {k.Config} | {k.Registers} | {k.LocalBytes} | {k.SharedBytes} | {k.Config.Threads} | {k.BlocksPerMultiprocessor} |");
        Console.WriteLine();
    }

    /// <summary>Fused-kernel times for the candidate layouts (states per lane, channels per block, chunk, sub-chunk, channels per thread).</summary>
    private static void CompareLayouts(Device device, bool quick)
    {
        Console.WriteLine("| layout | (B, D, N, L) | dtype | fwd ms | fwd+bwd ms | fwd fraction of copy | fwd+bwd fraction of copy |");
        Console.WriteLine("|---|---|---|---|---|---|---|");
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
        foreach (var shape in Shapes)
        {
            using var scope = NewDisposeScope();
            var input = MakeInput(shape, dtype, device, seed: 1);
            double copyFwd = CopyMs(Bytes(shape, dtype, false), device, quick), copyFwdBwd = CopyMs(Bytes(shape, dtype, true), device, quick);
            foreach (var (name, fwd, bwd) in ScanKernelShape.Candidates)
            {
                CudaSelectiveScan.ShapeOverride = (fwd, bwd);
                try
                {
                    double f = ScanMs(CudaSelectiveScan.Instance, input, false, quick ? 5 : 15);
                    double fb = ScanMs(CudaSelectiveScan.Instance, input, true, quick ? 5 : 15);
                    Console.WriteLine($"| {name} | {shape} | {DTypeName(dtype)} | {F(f)} | {F(fb)} | {copyFwd / f:P1} | {copyFwdBwd / fb:P1} |");
                }
                catch (Exception e) when (e is NotSupportedException or ArgumentException) { Console.WriteLine($"| {name} | {shape} | {DTypeName(dtype)} | {e.Message} | | | |"); }
                finally { CudaSelectiveScan.ShapeOverride = null; }
            }
        }
        Console.WriteLine();
        PrintKernels(CudaKernels.Driver.Driver!);
    }
}
