using System.Runtime.InteropServices;
using System.Text;

namespace MambaML.Scan.Cuda;

/// <summary>A CUDA driver API call failed.</summary>
internal sealed class CudaException : Exception
{
    public CudaException(string message) : base(message) { }
}

/// <summary>
/// The few CUDA driver API entry points the scan kernels need (module loading and launching), bound at run time to
/// <c>libcuda</c> so that MambaML loads on machines without CUDA.
/// </summary>
internal sealed unsafe class CudaDriver
{
    // CUdevice_attribute / CUfunction_attribute / CUjit_option values (cuda.h).
    public const int AttrMultiprocessorCount = 16, AttrComputeCapabilityMajor = 75, AttrComputeCapabilityMinor = 76, AttrMaxSharedPerBlockOptin = 97;
    public const int FuncAttrLocalSizeBytes = 3, FuncAttrNumRegs = 4, FuncAttrMaxDynamicSharedSizeBytes = 8;
    private const int JitErrorLogBuffer = 5, JitErrorLogBufferSizeBytes = 6;

    private readonly delegate* unmanaged<uint, int> _cuInit;
    private readonly delegate* unmanaged<int*, int> _cuDriverGetVersion;
    private readonly delegate* unmanaged<int*, int, int> _cuDeviceGet;
    private readonly delegate* unmanaged<int*, int, int, int> _cuDeviceGetAttribute;
    private readonly delegate* unmanaged<byte*, int, int, int> _cuDeviceGetName;
    private readonly delegate* unmanaged<IntPtr*, int, int> _cuDevicePrimaryCtxRetain;
    private readonly delegate* unmanaged<IntPtr*, int> _cuCtxGetCurrent;
    private readonly delegate* unmanaged<IntPtr, int> _cuCtxSetCurrent;
    private readonly delegate* unmanaged<IntPtr*, byte*, uint, int*, IntPtr*, int> _cuModuleLoadDataEx;
    private readonly delegate* unmanaged<IntPtr*, IntPtr, byte*, int> _cuModuleGetFunction;
    private readonly delegate* unmanaged<ulong*, nuint*, IntPtr, byte*, int> _cuModuleGetGlobal;
    private readonly delegate* unmanaged<void*, ulong, nuint, int> _cuMemcpyDtoH;
    private readonly delegate* unmanaged<int*, int, IntPtr, int> _cuFuncGetAttribute;
    private readonly delegate* unmanaged<IntPtr, int, int, int> _cuFuncSetAttribute;
    private readonly delegate* unmanaged<int*, IntPtr, int, nuint, int> _cuOccupancyMaxActiveBlocksPerMultiprocessor;
    private readonly delegate* unmanaged<IntPtr, uint, uint, uint, uint, uint, uint, uint, IntPtr, void**, void**, int> _cuLaunchKernel;
    private readonly delegate* unmanaged<IntPtr*, uint, int> _cuEventCreate;
    private readonly delegate* unmanaged<IntPtr, IntPtr, int> _cuEventRecord;
    private readonly delegate* unmanaged<IntPtr, int> _cuEventSynchronize;
    private readonly delegate* unmanaged<float*, IntPtr, IntPtr, int> _cuEventElapsedTime;
    private readonly delegate* unmanaged<IntPtr, int> _cuEventDestroy;
    private readonly delegate* unmanaged<int, byte**, int> _cuGetErrorName;
    private readonly delegate* unmanaged<int, byte**, int> _cuGetErrorString;

    /// <summary>Where the driver library was loaded from.</summary>
    public string LibraryPath { get; }

    /// <summary>The driver's CUDA version, e.g. 13000.</summary>
    public int Version { get; }

    private CudaDriver(IntPtr lib, string path)
    {
        LibraryPath = path;
        IntPtr F(string name) => NativeLibrary.TryGetExport(lib, name, out var p) ? p
            : throw new CudaException($"the CUDA driver library {path} lacks {name}");
        _cuInit = (delegate* unmanaged<uint, int>)F("cuInit");
        _cuDriverGetVersion = (delegate* unmanaged<int*, int>)F("cuDriverGetVersion");
        _cuDeviceGet = (delegate* unmanaged<int*, int, int>)F("cuDeviceGet");
        _cuDeviceGetAttribute = (delegate* unmanaged<int*, int, int, int>)F("cuDeviceGetAttribute");
        _cuDeviceGetName = (delegate* unmanaged<byte*, int, int, int>)F("cuDeviceGetName");
        _cuDevicePrimaryCtxRetain = (delegate* unmanaged<IntPtr*, int, int>)F("cuDevicePrimaryCtxRetain");
        _cuCtxGetCurrent = (delegate* unmanaged<IntPtr*, int>)F("cuCtxGetCurrent");
        _cuCtxSetCurrent = (delegate* unmanaged<IntPtr, int>)F("cuCtxSetCurrent");
        _cuModuleLoadDataEx = (delegate* unmanaged<IntPtr*, byte*, uint, int*, IntPtr*, int>)F("cuModuleLoadDataEx");
        _cuModuleGetFunction = (delegate* unmanaged<IntPtr*, IntPtr, byte*, int>)F("cuModuleGetFunction");
        _cuModuleGetGlobal = (delegate* unmanaged<ulong*, nuint*, IntPtr, byte*, int>)F("cuModuleGetGlobal_v2");
        _cuMemcpyDtoH = (delegate* unmanaged<void*, ulong, nuint, int>)F("cuMemcpyDtoH_v2");
        _cuFuncGetAttribute = (delegate* unmanaged<int*, int, IntPtr, int>)F("cuFuncGetAttribute");
        _cuFuncSetAttribute = (delegate* unmanaged<IntPtr, int, int, int>)F("cuFuncSetAttribute");
        _cuOccupancyMaxActiveBlocksPerMultiprocessor = (delegate* unmanaged<int*, IntPtr, int, nuint, int>)F("cuOccupancyMaxActiveBlocksPerMultiprocessor");
        _cuLaunchKernel = (delegate* unmanaged<IntPtr, uint, uint, uint, uint, uint, uint, uint, IntPtr, void**, void**, int>)F("cuLaunchKernel");
        _cuEventCreate = (delegate* unmanaged<IntPtr*, uint, int>)F("cuEventCreate");
        _cuEventRecord = (delegate* unmanaged<IntPtr, IntPtr, int>)F("cuEventRecord");
        _cuEventSynchronize = (delegate* unmanaged<IntPtr, int>)F("cuEventSynchronize");
        _cuEventElapsedTime = (delegate* unmanaged<float*, IntPtr, IntPtr, int>)F("cuEventElapsedTime");
        _cuEventDestroy = (delegate* unmanaged<IntPtr, int>)F("cuEventDestroy_v2");
        _cuGetErrorName = (delegate* unmanaged<int, byte**, int>)F("cuGetErrorName");
        _cuGetErrorString = (delegate* unmanaged<int, byte**, int>)F("cuGetErrorString");
        Check(_cuInit(0), "cuInit");
        int version;
        Check(_cuDriverGetVersion(&version), "cuDriverGetVersion");
        Version = version;
    }

    /// <summary>Loads and initialises the driver; throws <see cref="CudaException"/> saying what was tried.</summary>
    public static CudaDriver Load()
    {
        var names = OperatingSystem.IsWindows() ? new[] { "nvcuda.dll" } : new[] { "libcuda.so.1", "libcuda.so" };
        var lib = NativeLibraryProbe.Load("MAMBAML_LIBCUDA", "libcuda.so", names, "cuInit", NativeLibraryProbe.CudaDirectories(), out var path, out var tried);
        if (lib == IntPtr.Zero) throw new CudaException($"the CUDA driver library was not found (tried {tried}); set MAMBAML_LIBCUDA to its path");
        return new CudaDriver(lib, path);
    }

    public int Device(int ordinal) { int dev; Check(_cuDeviceGet(&dev, ordinal), "cuDeviceGet"); return dev; }

    public int DeviceAttribute(int device, int attribute) { int v; Check(_cuDeviceGetAttribute(&v, attribute, device), "cuDeviceGetAttribute"); return v; }

    public string DeviceName(int device)
    {
        byte* name = stackalloc byte[256];
        Check(_cuDeviceGetName(name, 256, device), "cuDeviceGetName");
        return Marshal.PtrToStringAnsi((IntPtr)name) ?? "";
    }

    /// <summary>The device's primary context: the one PyTorch's runtime uses.</summary>
    public IntPtr PrimaryContext(int device) { IntPtr ctx; Check(_cuDevicePrimaryCtxRetain(&ctx, device), "cuDevicePrimaryCtxRetain"); return ctx; }

    /// <summary>Makes <paramref name="context"/> current on this thread (autograd runs backward on its own threads).</summary>
    public void MakeCurrent(IntPtr context)
    {
        IntPtr current;
        Check(_cuCtxGetCurrent(&current), "cuCtxGetCurrent");
        if (current != context) Check(_cuCtxSetCurrent(context), "cuCtxSetCurrent");
    }

    /// <summary>Loads a CUBIN or NUL-terminated PTX image into the current context.</summary>
    public IntPtr LoadModule(byte[] image)
    {
        const int logSize = 8192;
        var log = new byte[logSize];
        IntPtr module;
        int result;
        fixed (byte* img = image)
        fixed (byte* logPtr = log)
        {
            int* options = stackalloc int[] { JitErrorLogBuffer, JitErrorLogBufferSizeBytes };
            IntPtr* values = stackalloc IntPtr[] { (IntPtr)logPtr, logSize };
            result = _cuModuleLoadDataEx(&module, img, 2, options, values);
        }
        if (result != 0)
        {
            var jitLog = Encoding.UTF8.GetString(log).TrimEnd('\0').Trim();
            throw new CudaException($"cuModuleLoadDataEx failed: {ErrorText(result)}{(jitLog.Length > 0 ? ": " + jitLog : "")}");
        }
        return module;
    }

    public IntPtr Function(IntPtr module, string name)
    {
        var bytes = Encoding.ASCII.GetBytes(name + "\0");
        IntPtr f;
        fixed (byte* n = bytes) Check(_cuModuleGetFunction(&f, module, n), $"cuModuleGetFunction({name})");
        return f;
    }

    /// <summary>Reads a 32-bit <c>__constant__</c> variable of a module.</summary>
    public uint ReadConstant(IntPtr module, string name)
    {
        var bytes = Encoding.ASCII.GetBytes(name + "\0");
        ulong ptr;
        nuint size;
        fixed (byte* n = bytes) Check(_cuModuleGetGlobal(&ptr, &size, module, n), $"cuModuleGetGlobal({name})");
        if (size != 4) throw new CudaException($"{name} has {size} bytes, expected 4");
        uint value;
        Check(_cuMemcpyDtoH(&value, ptr, 4), "cuMemcpyDtoH");
        return value;
    }

    public int FunctionAttribute(IntPtr function, int attribute) { int v; Check(_cuFuncGetAttribute(&v, attribute, function), "cuFuncGetAttribute"); return v; }

    public void SetFunctionAttribute(IntPtr function, int attribute, int value) => Check(_cuFuncSetAttribute(function, attribute, value), "cuFuncSetAttribute");

    public int ActiveBlocksPerMultiprocessor(IntPtr function, int threads, int sharedBytes)
    {
        int blocks;
        Check(_cuOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, function, threads, (nuint)sharedBytes), "cuOccupancyMaxActiveBlocksPerMultiprocessor");
        return blocks;
    }

    /// <summary>
    /// Launches on the legacy default stream (stream 0), which PyTorch also uses unless told otherwise, so the kernel is
    /// ordered after the work that produced its inputs and before the work that reads its outputs.
    /// </summary>
    public void Launch<TParams>(IntPtr function, uint gridX, uint gridY, uint threads, uint sharedBytes, ref TParams parameters) where TParams : unmanaged
    {
        fixed (TParams* p = &parameters)
        {
            void** args = stackalloc void*[] { p };
            Check(_cuLaunchKernel(function, gridX, gridY, 1, threads, 1, 1, sharedBytes, IntPtr.Zero, args, null), "cuLaunchKernel");
        }
    }

    /// <summary>Creates a timing event in the current context (for benchmarks: GPU time without host gaps).</summary>
    public IntPtr CreateEvent() { IntPtr e; Check(_cuEventCreate(&e, 0), "cuEventCreate"); return e; }

    /// <summary>Records <paramref name="cudaEvent"/> on the legacy default stream, the stream <see cref="Launch"/> uses.</summary>
    public void RecordEvent(IntPtr cudaEvent) => Check(_cuEventRecord(cudaEvent, IntPtr.Zero), "cuEventRecord");

    /// <summary>Waits for <paramref name="end"/> and returns the GPU time between two recorded events, in milliseconds.</summary>
    public float ElapsedMs(IntPtr start, IntPtr end)
    {
        Check(_cuEventSynchronize(end), "cuEventSynchronize");
        float ms;
        Check(_cuEventElapsedTime(&ms, start, end), "cuEventElapsedTime");
        return ms;
    }

    /// <summary>Destroys an event made by <see cref="CreateEvent"/>.</summary>
    public void DestroyEvent(IntPtr cudaEvent) => Check(_cuEventDestroy(cudaEvent), "cuEventDestroy");

    private void Check(int result, string call)
    {
        if (result != 0) throw new CudaException($"{call} failed: {ErrorText(result)}");
    }

    private string ErrorText(int result)
    {
        byte* name = null, text = null;
        _cuGetErrorName(result, &name);
        _cuGetErrorString(result, &text);
        return $"{(name != null ? Marshal.PtrToStringAnsi((IntPtr)name) : "CUDA error")} ({result}){(text != null ? ": " + Marshal.PtrToStringAnsi((IntPtr)text) : "")}";
    }
}
