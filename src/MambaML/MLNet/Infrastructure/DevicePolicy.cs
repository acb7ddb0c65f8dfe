using Microsoft.ML.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.MLNet;

/// <summary>
/// Where MambaML runs, by ML.NET's rule (as Microsoft.ML.TorchSharp): CPU unless <c>MLContext.GpuDeviceId</c> is set; CUDA when it
/// is set and CUDA is available; with no CUDA, CPU if <c>MLContext.FallbackToCpu</c> is true, otherwise an error.
/// </summary>
internal static class DevicePolicy
{
    /// <summary>The device for <paramref name="env"/>'s settings.</summary>
    public static Device Choose(IHostEnvironment env)
    {
        var (gpu, fallback) = MLNetInternals.DeviceSettings(env);
        return Choose(gpu, fallback, cuda.is_available());
    }

    /// <summary>The device for explicit settings (testable without a GPU).</summary>
    public static Device Choose(int? gpuDeviceId, bool fallbackToCpu, bool cudaAvailable)
    {
        if (gpuDeviceId is null) return CPU;
        if (cudaAvailable) return new Device(DeviceType.CUDA, gpuDeviceId.Value);
        if (fallbackToCpu) return CPU;
        throw new InvalidOperationException(
            $"MLContext.GpuDeviceId is {gpuDeviceId} but CUDA is not available to TorchSharp, and MLContext.FallbackToCpu is false. " +
            "Reference TorchSharp-cuda-linux (build with -p:TorchBackend=cuda) on a machine with an NVIDIA GPU, set FallbackToCpu = true, or leave GpuDeviceId null.");
    }
}
