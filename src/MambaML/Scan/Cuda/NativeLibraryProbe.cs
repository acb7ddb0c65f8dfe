using System.Runtime.InteropServices;

namespace MambaML.Scan.Cuda;

/// <summary>Finds and loads the CUDA driver and NVRTC libraries, trying the places a TorchSharp/PyTorch/CUDA install puts them.</summary>
internal static class NativeLibraryProbe
{
    /// <summary>
    /// Loads the first library that exports <paramref name="requiredExport"/>: <paramref name="overrideVariable"/> (a full path)
    /// if set; then in each candidate directory the given file names and any file matching <paramref name="prefix"/>*<c>.so*</c>
    /// (wheels ship hashed names); then the bare names through the system loader.
    /// </summary>
    /// <returns>The handle, or <see cref="IntPtr.Zero"/> with <paramref name="tried"/> listing what was tried.</returns>
    public static IntPtr Load(string overrideVariable, string prefix, string[] names, string requiredExport, IEnumerable<string> directories, out string path, out string tried)
    {
        var attempts = new List<string>();
        bool TryLoad(string candidate, out IntPtr handle)
        {
            if (NativeLibrary.TryLoad(candidate, out handle))
            {
                if (NativeLibrary.TryGetExport(handle, requiredExport, out _)) return true;
                attempts.Add($"{candidate} (no {requiredExport})");
                return false;
            }
            attempts.Add(candidate);
            return false;
        }
        var explicitPath = Environment.GetEnvironmentVariable(overrideVariable);
        if (!string.IsNullOrEmpty(explicitPath) && TryLoad(explicitPath, out var chosen)) { path = explicitPath; tried = ""; return chosen; }
        foreach (var dir in directories.Where(Directory.Exists).Distinct())
        {
            var files = names.Select(n => Path.Combine(dir, n)).Where(File.Exists).ToList();
            if (!OperatingSystem.IsWindows())
                files.AddRange(Directory.EnumerateFiles(dir, prefix + "*.so*")
                    .Where(f => !Path.GetFileName(f).Contains("builtins", StringComparison.Ordinal) && !Path.GetFileName(f).Contains("alt", StringComparison.Ordinal))
                    .OrderByDescending(f => f, StringComparer.Ordinal));
            foreach (var file in files.Distinct())
                if (TryLoad(file, out var handle)) { path = file; tried = ""; return handle; }
        }
        foreach (var name in names)
            if (TryLoad(name, out var handle)) { path = name; tried = ""; return handle; }
        path = "";
        tried = string.Join(", ", attempts);
        return IntPtr.Zero;
    }

    /// <summary>Directories that may hold CUDA libraries, most specific first.</summary>
    public static IEnumerable<string> CudaDirectories()
    {
        // Wherever this process already loaded libtorch's CUDA libraries from (TorchSharp-cuda or PyTorch's libtorch).
        foreach (var dir in LoadedLibraryDirectories(f => f.StartsWith("libtorch_cuda", StringComparison.Ordinal) ||
                                                         f.StartsWith("libcudart", StringComparison.Ordinal) ||
                                                         f.StartsWith("libnvrtc", StringComparison.Ordinal)))
        {
            yield return dir;
            foreach (var nvidia in NvidiaWheelDirectories(dir)) yield return nvidia;
        }
        var libtorch = Environment.GetEnvironmentVariable("LIBTORCH_DIR");
        if (!string.IsNullOrEmpty(libtorch))
        {
            yield return libtorch;
            yield return Path.Combine(libtorch, "lib");
            foreach (var nvidia in NvidiaWheelDirectories(libtorch)) yield return nvidia;
        }
        yield return AppContext.BaseDirectory;
        yield return Path.Combine(AppContext.BaseDirectory, "runtimes", OperatingSystem.IsWindows() ? "win-x64" : "linux-x64", "native");
        foreach (var variable in new[] { "CUDA_HOME", "CUDA_PATH", "CUDA_ROOT" })
        {
            var root = Environment.GetEnvironmentVariable(variable);
            if (string.IsNullOrEmpty(root)) continue;
            yield return Path.Combine(root, "lib64");
            yield return Path.Combine(root, "lib");
            yield return Path.Combine(root, "bin");
        }
        if (!OperatingSystem.IsWindows())
        {
            yield return "/usr/local/cuda/lib64";
            yield return "/usr/local/nvidia/lib64";
            yield return "/usr/lib/x86_64-linux-gnu";
            yield return "/usr/lib/wsl/lib";
        }
    }

    // pip's CUDA wheels sit beside torch: site-packages/torch/lib -> site-packages/nvidia/{cuda_nvrtc,cu13,...}/lib
    private static IEnumerable<string> NvidiaWheelDirectories(string torchLib)
    {
        var sitePackages = Path.GetFullPath(Path.Combine(torchLib, "..", ".."));
        var nvidia = Path.Combine(sitePackages, "nvidia");
        if (!Directory.Exists(nvidia)) yield break;
        foreach (var sub in Directory.EnumerateDirectories(nvidia).OrderBy(s => s, StringComparer.Ordinal))
        {
            var lib = Path.Combine(sub, "lib");
            if (Directory.Exists(lib)) yield return lib;
        }
    }

    private static IEnumerable<string> LoadedLibraryDirectories(Func<string, bool> fileFilter)
    {
        const string maps = "/proc/self/maps";
        if (!File.Exists(maps)) return Array.Empty<string>();
        try
        {
            return File.ReadLines(maps)
                .Select(line => line.IndexOf('/') is var i and >= 0 ? line[i..] : null)
                .Where(p => p is not null && fileFilter(Path.GetFileName(p)))
                .Select(p => Path.GetDirectoryName(p)!)
                .Distinct().ToList();
        }
        catch (IOException) { return Array.Empty<string>(); }
    }
}
