using System.Collections.Concurrent;
using System.Reflection;
using System.Security.Cryptography;
using System.Text;

namespace MambaML.Scan.Cuda;

/// <summary>A loaded kernel: its function handle on one device and what a launch needs.</summary>
internal sealed record LoadedScanKernel(ScanKernelConfig Config, IntPtr Context, IntPtr Function, int SharedBytes, int Registers, int LocalBytes, int BlocksPerMultiprocessor);

/// <summary>One compilation unit: a kernel source in Kernels/, the headers it includes and the -D definitions that configure it.</summary>
internal interface ICudaModuleSource
{
    /// <summary>The source file in Kernels/.</summary>
    string SourceFile { get; }
    /// <summary>The headers (in Kernels/) it includes.</summary>
    IReadOnlyList<string> Headers { get; }
    /// <summary>The -D definitions.</summary>
    IReadOnlyList<string> Defines();
}

/// <summary>A module loaded on one device, and that device's limits.</summary>
internal sealed record LoadedModule(IntPtr Context, IntPtr Module, int SharedOptin);

/// <summary>
/// Compiles the embedded kernel sources (Kernels/*.cu) with NVRTC for the GPU at hand, caches the binaries on disk, and
/// loads them through the CUDA driver. One binary per <see cref="ICudaModuleSource"/> value: every size and flag is a
/// compile-time constant.
/// </summary>
internal static class CudaKernels
{
    private static readonly Lazy<(CudaDriver? Driver, string? Error)> s_driver = new(() => Try(CudaDriver.Load));
    private static readonly Lazy<(Nvrtc? Compiler, string? Error)> s_nvrtc = new(() => Try(Nvrtc.Load));
    private static readonly ConcurrentDictionary<(int Device, ICudaModuleSource Source), Lazy<LoadedModule>> s_modules = new();
    private static readonly ConcurrentDictionary<(int Device, ScanKernelConfig Config), Lazy<LoadedScanKernel>> s_loaded = new();
    private static readonly ConcurrentDictionary<int, (IntPtr Context, int Arch, int SharedOptin, int Multiprocessors)> s_devices = new();

    /// <summary>The CUDA driver, or null with the reason it could not be loaded.</summary>
    public static (CudaDriver? Driver, string? Error) Driver => s_driver.Value;
    /// <summary>NVRTC, or null with the reason it could not be loaded.</summary>
    public static (Nvrtc? Compiler, string? Error) Compiler => s_nvrtc.Value;

    /// <summary>The source of a kernel file embedded from Kernels/.</summary>
    public static string Source(string file)
    {
        var asm = typeof(CudaKernels).Assembly;
        using var stream = asm.GetManifestResourceStream("MambaML.Kernels." + file)
            ?? throw new InvalidOperationException($"Kernel source {file} is not embedded in {asm.GetName().Name}.");
        using var reader = new StreamReader(stream, Encoding.UTF8);
        return reader.ReadToEnd();
    }

    /// <summary>NVRTC options for a source and target (compute_XX: PTX; sm_XX: CUBIN).</summary>
    public static IReadOnlyList<string> Options(ICudaModuleSource source, string target) =>
        new[] { $"--gpu-architecture={target}", "--std=c++17", "-default-device", "-lineinfo" }.Concat(source.Defines()).ToArray();

    /// <summary>Compiles a source; any NVRTC diagnostic fails when <paramref name="warningsAreErrors"/>.</summary>
    public static byte[] Compile(Nvrtc nvrtc, ICudaModuleSource source, string target, bool warningsAreErrors) =>
        nvrtc.Compile(source.SourceFile, Source(source.SourceFile), source.Headers.ToDictionary(h => h, Source), Options(source, target), warningsAreErrors).Image;

    /// <summary>The kernel for <paramref name="config"/> on CUDA device <paramref name="ordinal"/>, compiled and loaded on first use.</summary>
    /// <exception cref="CudaException">The driver could not load it.</exception>
    /// <exception cref="NvrtcException">NVRTC could not compile it.</exception>
    /// <remarks>A failure is remembered: the same configuration fails the same way without compiling again.</remarks>
    public static LoadedScanKernel Get(int ordinal, ScanKernelConfig config) =>
        s_loaded.GetOrAdd((ordinal, config), key => new Lazy<LoadedScanKernel>(() => LoadScanKernel(key.Device, key.Config))).Value;

    /// <summary>The kernels loaded so far (for reports).</summary>
    public static IEnumerable<LoadedScanKernel> Loaded() => s_loaded.Values.Where(l => l.IsValueCreated).Select(l => l.Value);

    /// <summary>The module compiled from <paramref name="source"/> on CUDA device <paramref name="ordinal"/>, loaded on first use
    /// (a failure is remembered, as for <see cref="Get"/>).</summary>
    public static LoadedModule Module(int ordinal, ICudaModuleSource source) =>
        s_modules.GetOrAdd((ordinal, source), key => new Lazy<LoadedModule>(() => LoadModule(key.Device, key.Source))).Value;

    private static LoadedModule LoadModule(int ordinal, ICudaModuleSource source)
    {
        var driver = Driver.Driver ?? throw new CudaException(Driver.Error!);
        var nvrtc = Compiler.Compiler ?? throw new NvrtcException(Compiler.Error!);
        var (context, arch, sharedOptin, _) = DeviceInfo(driver, ordinal);
        driver.MakeCurrent(context);
        // Exact machine code when this NVRTC knows the GPU; otherwise PTX for the newest architecture it knows, which the driver compiles.
        string target = nvrtc.SupportedArchitectures.Contains(arch) ? $"sm_{arch}"
            : nvrtc.SupportedArchitectures.Where(a => a <= arch).DefaultIfEmpty(0).Max() is var best and > 0 ? $"compute_{best}"
            : throw new NvrtcException($"NVRTC {nvrtc.Version.Major}.{nvrtc.Version.Minor} at {nvrtc.LibraryPath} cannot compile for compute capability {arch / 10}.{arch % 10}");
        return new LoadedModule(context, driver.LoadModule(CachedCompile(nvrtc, source, target)), sharedOptin);
    }

    private static LoadedScanKernel LoadScanKernel(int ordinal, ScanKernelConfig config)
    {
        var driver = Driver.Driver!;
        var (context, module, sharedOptin) = Module(ordinal, config);
        IntPtr function = driver.Function(module, config.EntryPoint);
        int shared = (int)driver.ReadConstant(module, config.SharedMemorySymbol);
        if (shared > sharedOptin)
            throw new CudaException($"{config} needs {shared} bytes of shared memory per block; the GPU allows {sharedOptin}");
        driver.SetFunctionAttribute(function, CudaDriver.FuncAttrMaxDynamicSharedSizeBytes, shared);
        return new LoadedScanKernel(config, context, function, shared,
            driver.FunctionAttribute(function, CudaDriver.FuncAttrNumRegs), driver.FunctionAttribute(function, CudaDriver.FuncAttrLocalSizeBytes),
            driver.ActiveBlocksPerMultiprocessor(function, config.Threads, shared));
    }

    /// <summary>The number of SMs of CUDA device <paramref name="ordinal"/>.</summary>
    /// <exception cref="CudaException">The driver could not be loaded.</exception>
    public static int Multiprocessors(int ordinal) => DeviceInfo(Driver.Driver ?? throw new CudaException(Driver.Error!), ordinal).Multiprocessors;

    /// <summary>The primary context of CUDA device <paramref name="ordinal"/> (the one the kernels and PyTorch use), retained once.</summary>
    /// <exception cref="CudaException">The driver could not be loaded.</exception>
    public static IntPtr Context(int ordinal) => DeviceInfo(Driver.Driver ?? throw new CudaException(Driver.Error!), ordinal).Context;

    private static (IntPtr Context, int Arch, int SharedOptin, int Multiprocessors) DeviceInfo(CudaDriver driver, int ordinal) =>
        s_devices.GetOrAdd(ordinal, o =>
        {
            int dev = driver.Device(o);
            int cc = driver.DeviceAttribute(dev, CudaDriver.AttrComputeCapabilityMajor) * 10 + driver.DeviceAttribute(dev, CudaDriver.AttrComputeCapabilityMinor);
            return (driver.PrimaryContext(dev), cc, driver.DeviceAttribute(dev, CudaDriver.AttrMaxSharedPerBlockOptin),
                driver.DeviceAttribute(dev, CudaDriver.AttrMultiprocessorCount));
        });

    // Binaries are cached under the user's cache folder, keyed by the sources, the options, the target and NVRTC's version.
    private static byte[] CachedCompile(Nvrtc nvrtc, ICudaModuleSource source, string target)
    {
        var options = Options(source, target);
        string key = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(string.Join("\n",
            source.Headers.Select(Source).Append(Source(source.SourceFile)).Append($"nvrtc {nvrtc.Version.Major}.{nvrtc.Version.Minor}").Concat(options)))))[..32];
        string? dir = CacheDirectory();
        string? file = dir is null ? null : Path.Combine(dir, $"{Path.GetFileNameWithoutExtension(source.SourceFile)}-{key}.{(target.StartsWith("sm_", StringComparison.Ordinal) ? "cubin" : "ptx")}");
        if (file is not null && File.Exists(file))
        {
            try { return File.ReadAllBytes(file); } catch (IOException) { }
        }
        byte[] image = Compile(nvrtc, source, target, warningsAreErrors: false);
        if (file is not null)
        {
            try
            {
                Directory.CreateDirectory(dir!);
                string temp = file + "." + Environment.ProcessId + ".tmp";
                File.WriteAllBytes(temp, image);
                File.Move(temp, file, overwrite: true);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }   // an unwritable cache only costs a recompile
        }
        return image;
    }

    /// <summary>$MAMBAML_CACHE_DIR, else $XDG_CACHE_HOME/mambaml/cuda, else ~/.cache/mambaml/cuda (LocalApplicationData on Windows).</summary>
    public static string? CacheDirectory()
    {
        var explicitDir = Environment.GetEnvironmentVariable("MAMBAML_CACHE_DIR");
        if (!string.IsNullOrEmpty(explicitDir)) return explicitDir;
        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        if (!string.IsNullOrEmpty(xdg)) return Path.Combine(xdg, "mambaml", "cuda");
        var home = OperatingSystem.IsWindows() ? Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData)
                                               : Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        return string.IsNullOrEmpty(home) ? null : Path.Combine(home, OperatingSystem.IsWindows() ? "MambaML" : ".cache/mambaml", "cuda");
    }

    private static (T?, string?) Try<T>(Func<T> load) where T : class
    {
        try { return (load(), null); }
        catch (Exception e) when (e is CudaException or NvrtcException or DllNotFoundException or EntryPointNotFoundException) { return (null, e.Message); }
    }
}
