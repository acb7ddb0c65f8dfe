using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.Scan;

/// <summary>
/// The selective scan written in plain TorchSharp ops, step by step in time: slow, simple, differentiable through autograd,
/// and the ground truth every fused kernel is tested against.
/// </summary>
/// <remarks>
/// exp(ΔA) and ΔBu are formed for all steps at once and split with <c>unbind</c>, so autograd sees one node per step
/// plus one stack in backward: memory and time stay O(L), unlike slicing one big tensor per step (O(L²) in backward).
/// </remarks>
public sealed class ReferenceSelectiveScan : IResolvedSelectiveScan
{
    /// <summary>The shared instance.</summary>
    public static ReferenceSelectiveScan Instance { get; } = new();

    private ReferenceSelectiveScan() { }

    /// <inheritdoc/>
    public SelectiveScanBackend Backend => SelectiveScanBackend.Reference;

    /// <inheritdoc/>
    public bool CanRun(SelectiveScanInput input, out string? reason) { reason = null; return true; }

    /// <inheritdoc/>
    public SelectiveScanResult Run(SelectiveScanInput input)
    {
        input.Validate();   // broadcasting would otherwise accept some wrong shapes silently
        return ((IResolvedSelectiveScan)this).RunResolved(input);
    }

    SelectiveScanResult IResolvedSelectiveScan.RunResolved(SelectiveScanInput input)
    {
        var ct = input.ComputeType;
        using var scope = NewDisposeScope();
        var u = input.U.to(ct);
        var delta = input.Delta.to(ct);
        if (input.DeltaBias is not null) delta = delta + input.DeltaBias.to(ct).unsqueeze(-1);
        if (input.DeltaSoftplus) delta = nn.functional.softplus(delta);   // threshold 20, as PyTorch

        var a = input.A.to(ct);
        // (b, d, l, n): exp(Δ·A) and Δ·B·u for every step.
        var deltaA = (delta.unsqueeze(-1) * a.unsqueeze(1)).exp();
        var deltaU = (delta * u).unsqueeze(-1);
        var bTerm = input.VariableB ? input.B.to(ct).transpose(1, 2).unsqueeze(1) : input.B.to(ct).unsqueeze(1);   // (b,1,l,n) or (d,1,n)
        var deltaBU = deltaU * bTerm;
        var cTerm = input.VariableC ? input.C.to(ct).transpose(1, 2).unsqueeze(1) : input.C.to(ct).unsqueeze(1);
        var cSteps = input.VariableC ? cTerm.unbind(2) : null;

        var aSteps = deltaA.unbind(2);
        var bSteps = deltaBU.unbind(2);
        var h = input.InitialState?.to(ct) ?? zeros(input.Batch, input.Channels, input.StateSize, dtype: ct, device: u.device);
        var ys = new Tensor[input.Length];
        for (int t = 0; t < input.Length; t++)
        {
            h = aSteps[t] * h + bSteps[t];
            var c = cSteps is null ? cTerm.squeeze(1) : cSteps[t];   // (b,1,n) or (d,n)
            ys[t] = (h * c).sum(-1);
        }
        var y = stack(ys, dim: -1);                                          // (b, d, l)
        if (input.D is not null) y = y + u * input.D.to(ct).unsqueeze(-1);
        if (input.Z is not null) y = y * nn.functional.silu(input.Z.to(ct));
        var output = y.to(input.U.dtype).MoveToOuterDisposeScope();
        var last = input.ReturnLastState ? h.MoveToOuterDisposeScope() : null;
        return new SelectiveScanResult(output, last);
    }
}
