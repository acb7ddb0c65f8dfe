using static TorchSharp.torch;

namespace MambaML.Model;

/// <summary>Keeps a module's tensors out of the caller's dispose scopes.</summary>
internal static class ModuleTensors
{
    /// <summary>
    /// Removes every parameter and buffer of <paramref name="module"/> (and of its submodules) from the dispose scope it was
    /// registered in. A module built or fitted while the caller had a <c>NewDisposeScope</c> open would otherwise lose those
    /// tensors when that scope ends, though the module lives on; TorchSharp's own layers register them too.
    /// </summary>
    public static T KeepOutOfDisposeScopes<T>(this T module) where T : nn.Module
    {
        foreach (var parameter in module.parameters()) parameter.DetachFromDisposeScope();
        foreach (var buffer in module.buffers()) buffer.DetachFromDisposeScope();
        return module;
    }
}
