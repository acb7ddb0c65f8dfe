using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.Scan.Cpu;

/// <summary>
/// The fused CPU scan as a TorchSharp autograd function. <c>apply</c> takes, in order: u, Δ, A, B, C, D, z, delta_bias,
/// initial state (contiguous fp32 tensors; the optional four may be null) and the softplus flag (a bool); it returns the
/// output (B, D, L) and the last state (B, D, N), both differentiable.
/// </summary>
/// <remarks>
/// TorchSharp treats every argument that is not a live tensor (null tensors, the bool) as a constant, and expects
/// <see cref="backward"/> to return one entry per argument, null exactly at those positions. Forward saves the operands and
/// the chunk-start states (B·D·Np·L/64 floats); backward recomputes everything else from them.
/// <see cref="backward"/> is called from libtorch's autograd engine through a native callback, where a managed exception
/// cannot travel back and ends the process: it validates nothing that forward has not already established.
/// </remarks>
internal sealed class CpuScanFunction : autograd.MultiTensorFunction<CpuScanFunction>
{
    private const int ArgumentCount = 11;

    /// <inheritdoc/>
    public override string Name => "MambaML.CpuFusedSelectiveScan";

    /// <inheritdoc/>
    public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
    {
        if (vars.Length != ArgumentCount) throw new ArgumentException($"{Name} takes {ArgumentCount} arguments; got {vars.Length}.", nameof(vars));
        var tensors = Pack(vars);
        var (output, last, checkpoints) = tensors.Forward(saveCheckpoints: true);
        ctx.save_for_backward(tensors.ToSave(checkpoints)!);
        ctx.save_data("state", tensors.State);
        ctx.save_data("softplus", tensors.Softplus);
        // The last state is an output only when asked for: an output nobody differentiates reaches backward as an undefined
        // gradient, and TorchSharp counts the empty wrapper it makes for it as a live tensor forever.
        bool returnLast = (bool)vars[10];
        // Unused outputs reach backward as undefined gradients, filled with zeros below. (TorchSharp's own zero-filling
        // builds them from per-output templates that the caller's dispose scope may already have freed.)
        ctx.set_materialize_grads(false);
        if (!returnLast) last.Dispose();
        return returnLast ? new List<Tensor> { output, last } : new List<Tensor> { output };
    }

    /// <inheritdoc/>
    public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> grad_outputs)
    {
        // Intermediates die with this scope; the gradients handed back to the engine move out of it.
        using var scope = NewDisposeScope();
        var (tensors, checkpoints) = CpuScanTensors.FromSaved(ctx.get_saved_variables(), (int)ctx.get_data("state"), (bool)ctx.get_data("softplus"));
        // Incoming gradients can be broadcast views (e.g. from sum()); the kernel reads dense fp32 memory.
        var gradOutput = DenseOrZeros(grad_outputs[0], tensors.U.shape);
        var lastShape = new[] { tensors.Batch, tensors.Channels, (long)tensors.State };
        var gradLast = grad_outputs.Count > 1 ? DenseOrZeros(grad_outputs[1], lastShape) : zeros(lastShape, ScalarType.Float32);
        var grads = tensors.Backward(checkpoints, gradOutput, gradLast);
        foreach (var g in grads) g?.MoveToOuterDisposeScope();
        return new List<Tensor>(grads!) { null!, null! };                        // the two flags have no gradient
    }

    private static Tensor DenseOrZeros(Tensor grad, long[] shape) =>
        grad.IsInvalid ? zeros(shape, ScalarType.Float32) : grad.to(ScalarType.Float32).contiguous();

    /// <summary>Builds the kernel operands from <c>apply</c>'s arguments.</summary>
    public static CpuScanTensors Pack(object?[] vars) => CpuScanTensors.Pack(
        (Tensor)vars[0]!, (Tensor)vars[1]!, (Tensor)vars[2]!, (Tensor)vars[3]!, (Tensor)vars[4]!,
        vars[5] as Tensor, vars[6] as Tensor, vars[7] as Tensor, vars[8] as Tensor, (bool)vars[9]!);
}
