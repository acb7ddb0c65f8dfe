using static TorchSharp.torch;

namespace MambaML.MLNet;

/// <summary>The ML.NET layer's models are float32; torch layers take their dtype from the process's default.</summary>
internal static class DefaultDtype
{
    /// <summary>Throws unless the process's default dtype is float32, which Fit and Load need to build float32 networks.</summary>
    public static void RequireFloat32(string who)
    {
        var dtype = get_default_dtype();
        if (dtype != ScalarType.Float32)
            throw new InvalidOperationException(
                $"{who}: MambaML's ML.NET models are float32, but the process's default dtype is {dtype} " +
                "(torch.set_default_dtype changed it). Set it back with torch.set_default_dtype(ScalarType.Float32) before Fit or Load.");
    }
}
