using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.MLNet;

/// <summary>Batches of input values as tensors in libtorch's own memory.</summary>
internal static class InputTensors
{
    /// <summary>
    /// A (<paramref name="shape"/>) float tensor of <paramref name="values"/> on <paramref name="device"/>, in memory libtorch
    /// allocated. TorchSharp's <c>tensor(float[])</c> wraps the managed array, whose alignment changes from call to call,
    /// and the CPU's matrix products (MKL) choose their kernels by alignment: fed such a tensor directly, a patch embedding
    /// gave results that differ in the last bit from one call to the next, so neither training nor prediction was
    /// reproducible. A copy makes them so.
    /// </summary>
    public static Tensor FromValues(float[] values, long[] shape, Device device)
    {
        using var wrapped = tensor(values, shape);
        return device.type == DeviceType.CPU ? wrapped.clone() : wrapped.to(device);
    }
}
