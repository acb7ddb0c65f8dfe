using System.Runtime.InteropServices;
using System.Text;

namespace MambaML.Scan.Cuda;

/// <summary>A CUDA C++ source that NVRTC rejected (or warned about, when warnings count as failures).</summary>
internal sealed class NvrtcException : Exception
{
    public NvrtcException(string message) : base(message) { }
}

/// <summary>NVRTC, the CUDA run-time compiler, bound at run time so that MambaML needs no CUDA toolkit to build or load.</summary>
internal sealed unsafe class Nvrtc
{
    private readonly delegate* unmanaged<int*, int*, int> _version;
    private readonly delegate* unmanaged<int*, int> _getNumSupportedArchs;
    private readonly delegate* unmanaged<int*, int> _getSupportedArchs;
    private readonly delegate* unmanaged<IntPtr*, byte*, byte*, int, byte**, byte**, int> _createProgram;
    private readonly delegate* unmanaged<IntPtr, int, byte**, int> _compileProgram;
    private readonly delegate* unmanaged<IntPtr, nuint*, int> _getProgramLogSize;
    private readonly delegate* unmanaged<IntPtr, byte*, int> _getProgramLog;
    private readonly delegate* unmanaged<IntPtr, nuint*, int> _getPtxSize;
    private readonly delegate* unmanaged<IntPtr, byte*, int> _getPtx;
    private readonly delegate* unmanaged<IntPtr, nuint*, int> _getCubinSize;
    private readonly delegate* unmanaged<IntPtr, byte*, int> _getCubin;
    private readonly delegate* unmanaged<IntPtr*, int> _destroyProgram;
    private readonly delegate* unmanaged<int, byte*> _getErrorString;

    /// <summary>Where libnvrtc was loaded from.</summary>
    public string LibraryPath { get; }
    /// <summary>NVRTC's version, e.g. (12, 4).</summary>
    public (int Major, int Minor) Version { get; }
    /// <summary>The virtual/real architectures (e.g. 90 for sm_90) this NVRTC can compile for.</summary>
    public IReadOnlyList<int> SupportedArchitectures { get; }

    private Nvrtc(IntPtr lib, string path)
    {
        LibraryPath = path;
        IntPtr F(string name) => NativeLibrary.TryGetExport(lib, name, out var p) ? p
            : throw new NvrtcException($"the NVRTC library {path} lacks {name}");
        _version = (delegate* unmanaged<int*, int*, int>)F("nvrtcVersion");
        _getNumSupportedArchs = (delegate* unmanaged<int*, int>)F("nvrtcGetNumSupportedArchs");
        _getSupportedArchs = (delegate* unmanaged<int*, int>)F("nvrtcGetSupportedArchs");
        _createProgram = (delegate* unmanaged<IntPtr*, byte*, byte*, int, byte**, byte**, int>)F("nvrtcCreateProgram");
        _compileProgram = (delegate* unmanaged<IntPtr, int, byte**, int>)F("nvrtcCompileProgram");
        _getProgramLogSize = (delegate* unmanaged<IntPtr, nuint*, int>)F("nvrtcGetProgramLogSize");
        _getProgramLog = (delegate* unmanaged<IntPtr, byte*, int>)F("nvrtcGetProgramLog");
        _getPtxSize = (delegate* unmanaged<IntPtr, nuint*, int>)F("nvrtcGetPTXSize");
        _getPtx = (delegate* unmanaged<IntPtr, byte*, int>)F("nvrtcGetPTX");
        _getCubinSize = (delegate* unmanaged<IntPtr, nuint*, int>)F("nvrtcGetCUBINSize");
        _getCubin = (delegate* unmanaged<IntPtr, byte*, int>)F("nvrtcGetCUBIN");
        _destroyProgram = (delegate* unmanaged<IntPtr*, int>)F("nvrtcDestroyProgram");
        _getErrorString = (delegate* unmanaged<int, byte*>)F("nvrtcGetErrorString");
        int major, minor, count;
        Check(_version(&major, &minor), "nvrtcVersion");
        Version = (major, minor);
        Check(_getNumSupportedArchs(&count), "nvrtcGetNumSupportedArchs");
        var archs = new int[count];
        fixed (int* a = archs) Check(_getSupportedArchs(a), "nvrtcGetSupportedArchs");
        SupportedArchitectures = archs;
    }

    /// <summary>Finds and loads NVRTC; throws <see cref="NvrtcException"/> saying where it looked.</summary>
    public static Nvrtc Load()
    {
        var names = OperatingSystem.IsWindows()
            ? new[] { "nvrtc64_130_0.dll", "nvrtc64_120_0.dll", "nvrtc64_112_0.dll" }
            : new[] { "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so" };
        var lib = NativeLibraryProbe.Load("MAMBAML_NVRTC", "libnvrtc", names, "nvrtcCompileProgram", NativeLibraryProbe.CudaDirectories(), out var path, out var tried);
        if (lib == IntPtr.Zero)
            throw new NvrtcException($"NVRTC (libnvrtc) was not found (tried {tried}). Install CUDA's NVRTC (pip nvidia-cuda-nvrtc, the CUDA " +
                                     "toolkit, or Debian's libnvrtc12) or set MAMBAML_NVRTC to its path");
        return new Nvrtc(lib, path);
    }

    /// <summary>Compiles <paramref name="source"/> (with its headers) to PTX (a compute_XX target) or CUBIN (an sm_XX target).</summary>
    /// <param name="name">The source's file name, for diagnostics.</param>
    /// <param name="source">CUDA C++ source.</param>
    /// <param name="headers">Headers it includes, by include name.</param>
    /// <param name="options">NVRTC options; <c>--gpu-architecture</c> picks PTX or CUBIN.</param>
    /// <param name="warningsAreErrors">Treat any diagnostic in NVRTC's log as a failure.</param>
    /// <returns>The binary image (PTX is NUL-terminated) and NVRTC's log.</returns>
    public (byte[] Image, string Log) Compile(string name, string source, IReadOnlyDictionary<string, string> headers, IReadOnlyList<string> options, bool warningsAreErrors)
    {
        bool cubin = options.Any(o => o.StartsWith("--gpu-architecture=sm_", StringComparison.Ordinal));
        var pinned = new List<GCHandle>();
        byte* Pin(string s)
        {
            var h = GCHandle.Alloc(Encoding.UTF8.GetBytes(s + "\0"), GCHandleType.Pinned);
            pinned.Add(h);
            return (byte*)h.AddrOfPinnedObject();
        }
        IntPtr program = IntPtr.Zero;
        try
        {
            var headerNames = headers.Keys.ToArray();
            byte** headerSources = stackalloc byte*[Math.Max(1, headerNames.Length)];
            byte** includeNames = stackalloc byte*[Math.Max(1, headerNames.Length)];
            for (int i = 0; i < headerNames.Length; i++) { headerSources[i] = Pin(headers[headerNames[i]]); includeNames[i] = Pin(headerNames[i]); }
            Check(_createProgram(&program, Pin(source), Pin(name), headerNames.Length, headerSources, includeNames), "nvrtcCreateProgram");
            byte** opts = stackalloc byte*[Math.Max(1, options.Count)];
            for (int i = 0; i < options.Count; i++) opts[i] = Pin(options[i]);
            int result = _compileProgram(program, options.Count, opts);
            string log = ProgramLog(program);
            if (result != 0)
                throw new NvrtcException($"NVRTC could not compile {name} ({ErrorText(result)}) with {string.Join(' ', options)}:\n{log}");
            if (warningsAreErrors && log.Length > 0)
                throw new NvrtcException($"NVRTC reported diagnostics for {name} with {string.Join(' ', options)}:\n{log}");
            nuint size;
            if (cubin)
            {
                Check(_getCubinSize(program, &size), "nvrtcGetCUBINSize");
                var image = new byte[size];
                fixed (byte* p = image) Check(_getCubin(program, p), "nvrtcGetCUBIN");
                return (image, log);
            }
            else
            {
                Check(_getPtxSize(program, &size), "nvrtcGetPTXSize");   // includes the terminating NUL
                var image = new byte[size];
                fixed (byte* p = image) Check(_getPtx(program, p), "nvrtcGetPTX");
                return (image, log);
            }
        }
        finally
        {
            if (program != IntPtr.Zero) _destroyProgram(&program);
            foreach (var h in pinned) h.Free();
        }
    }

    private string ProgramLog(IntPtr program)
    {
        nuint size;
        Check(_getProgramLogSize(program, &size), "nvrtcGetProgramLogSize");
        var buffer = new byte[Math.Max(1, (int)size)];
        fixed (byte* p = buffer) Check(_getProgramLog(program, p), "nvrtcGetProgramLog");
        return Encoding.UTF8.GetString(buffer).TrimEnd('\0').Trim();
    }

    private void Check(int result, string call)
    {
        if (result != 0) throw new NvrtcException($"{call} failed: {ErrorText(result)}");
    }

    private string ErrorText(int result) => Marshal.PtrToStringAnsi((IntPtr)_getErrorString(result)) ?? $"NVRTC error {result}";
}
