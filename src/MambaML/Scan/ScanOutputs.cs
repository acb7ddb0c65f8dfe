using static TorchSharp.torch;

namespace MambaML.Scan;

/// <summary>Allocates the output buffers of the fused kernels.</summary>
internal static class ScanOutputs
{
    /// <summary>
    /// Tests set this to fill every kernel output with NaN before the kernel runs, so an element the kernel forgets to write shows.
    /// </summary>
    internal static bool Poison { get; set; }

    /// <summary>An uninitialised tensor (NaN-filled while <see cref="Poison"/> is set).</summary>
    internal static Tensor Empty(long[] shape, ScalarType dtype, Device device) =>
        Poison ? full(shape, double.NaN, dtype: dtype, device: device) : empty(shape, dtype: dtype, device: device);
}
