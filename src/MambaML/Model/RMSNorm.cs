using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MambaML.Model;

/// <summary>Root-mean-square layer norm: x / sqrt(mean(x²) + eps) · weight, over the last dimension.</summary>
public sealed class RMSNorm : nn.Module<Tensor, Tensor>
{
    private readonly double _eps;
    /// <summary>Per-feature scale, initialised to ones.</summary>
    public Parameter weight;

    /// <summary>Creates a norm over <paramref name="size"/> features.</summary>
    public RMSNorm(long size, double eps = 1e-5) : base(nameof(RMSNorm))
    {
        _eps = eps;
        weight = nn.Parameter(ones(size));
        RegisterComponents();
        this.KeepOutOfDisposeScopes();
    }

    /// <summary>x / √(mean(x²) over the last dimension + ε) · weight, reduced in fp32 (fp64 for fp64 input), returned in x's dtype.</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var xf = x.to(x.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32);   // reduce in fp32 at least
        var normed = xf * (xf.square().mean(new long[] { -1 }, keepdim: true) + _eps).rsqrt();
        return (normed.to(x.dtype) * weight).MoveToOuterDisposeScope();
    }
}
