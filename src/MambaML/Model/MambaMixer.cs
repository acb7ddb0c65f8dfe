using MambaML.Scan;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace MambaML.Model;

/// <summary>
/// The Mamba mixer (mamba_ssm's <c>Mamba</c> module): in_proj → (x, z); causal depthwise conv + SiLU on x;
/// x_proj → (Δ, B, C); dt_proj + softplus; selective scan with A = −exp(A_log) and D skip; y · SiLU(z); out_proj.
/// <see cref="Forward"/> runs a whole sequence in parallel; <see cref="Step"/> advances one time step in O(1).
/// </summary>
public sealed class MambaMixer : nn.Module
{
    private readonly MambaConfig _config;

    /// <summary>d_model → 2·d_inner (x and z).</summary>
    public Linear in_proj;
    /// <summary>Causal depthwise convolution over time, d_conv wide.</summary>
    public Conv1d conv1d;
    /// <summary>d_inner → dt_rank + 2·d_state (Δ, B, C).</summary>
    public Linear x_proj;
    /// <summary>dt_rank → d_inner; its bias is Δ's bias (inverse softplus of the initial Δ).</summary>
    public Linear dt_proj;
    /// <summary>log(−A), (d_inner, d_state).</summary>
    public Parameter A_log;
    /// <summary>Skip weight, (d_inner).</summary>
    public Parameter D;
    /// <summary>d_inner → d_model.</summary>
    public Linear out_proj;

    /// <summary>Creates a mixer with Mamba's initialisation drawn from <paramref name="generator"/>.</summary>
    public MambaMixer(MambaConfig config, Generator generator) : base(nameof(MambaMixer))
    {
        _config = config.Validate();
        int dm = config.DModel, di = config.DInner, n = config.DState, r = config.EffectiveDtRank;
        in_proj = nn.Linear(dm, 2L * di, hasBias: config.Bias);
        conv1d = nn.Conv1d(di, di, config.DConv, groups: di, bias: config.ConvBias);
        x_proj = nn.Linear(di, r + 2L * n, hasBias: false);
        dt_proj = nn.Linear(r, di, hasBias: true);
        out_proj = nn.Linear(di, dm, hasBias: config.Bias);
        // S4D-real: A = −(1..N) for every channel.
        A_log = nn.Parameter(arange(1, n + 1, dtype: ScalarType.Float32).log().repeat(di, 1));
        D = nn.Parameter(ones(di));
        RegisterComponents();
        Initialize(generator);
        this.KeepOutOfDisposeScopes();
    }

    private void Initialize(Generator g)
    {
        using var _ = no_grad();
        // PyTorch's default Linear/Conv1d init (kaiming_uniform with a = √5 → U(±1/√fan_in)), drawn from our generator.
        UniformFanIn(in_proj.weight, in_proj.bias, _config.DModel, g);
        UniformFanIn(conv1d.weight, conv1d.bias, _config.DConv, g);
        UniformFanIn(x_proj.weight, null, _config.DInner, g);
        UniformFanIn(out_proj.weight, out_proj.bias, _config.DInner, g);
        // Mamba: out_proj rescaled by 1/√n_layer (one residual per block), dt_proj weights U(±dt_rank^−½).
        out_proj.weight.div_(Math.Sqrt(_config.NLayer));
        double std = Math.Pow(_config.EffectiveDtRank, -0.5);
        dt_proj.weight.uniform_(-std, std, g);
        // Δ drawn log-uniform in [dt_min, dt_max], floored; bias = softplus⁻¹(Δ) = Δ + log(−expm1(−Δ)).
        double lo = Math.Log(_config.DtMin), hi = Math.Log(_config.DtMax);
        var dt = (rand(new long[] { _config.DInner }, generator: g) * (hi - lo) + lo).exp().clamp_min(_config.DtInitFloor);
        dt_proj.bias!.copy_(dt + (-dt).expm1().neg().log());
        if (in_proj.bias is not null) in_proj.bias.zero_();
        if (out_proj.bias is not null) out_proj.bias.zero_();
    }

    private static void UniformFanIn(Tensor weight, Tensor? bias, long fanIn, Generator g)
    {
        double bound = 1.0 / Math.Sqrt(fanIn);
        // Tensor.uniform_ honours the generator; TorchSharp 0.107's nn.init.uniform_ ignores it (draws from the global RNG).
        weight.uniform_(-bound, bound, g);
        bias?.uniform_(-bound, bound, g);
    }

    /// <summary>Runs a whole sequence.</summary>
    /// <param name="hidden">(batch, L, d_model).</param>
    /// <param name="state">Optional state to continue from (zeros when null).</param>
    /// <param name="lengths">Optional int64 (batch) true lengths of right-padded sequences: padded steps leave outputs and the final state untouched.</param>
    /// <param name="returnState">Also return the state after each sequence's last (real) step.</param>
    /// <returns>(batch, L, d_model) outputs, and the final state when requested.</returns>
    public (Tensor Output, MambaLayerState? State) Forward(Tensor hidden, MambaLayerState? state = null, Tensor? lengths = null, bool returnState = false)
    {
        RequireSequenceInput(hidden, state, lengths);
        return ForwardChecked(hidden, state, lengths, returnState);
    }

    /// <summary>Throws <see cref="ArgumentException"/> unless <see cref="Forward"/> can take these inputs.</summary>
    internal void RequireSequenceInput(Tensor hidden, MambaLayerState? state, Tensor? lengths)
    {
        ModelInputs.RequireSequence(_config, in_proj.weight!.dtype, hidden, lengths);
        state?.RequireFits(_config, hidden.shape[0]);
    }

    /// <summary>Throws <see cref="ArgumentException"/> unless <see cref="Step"/> can take these inputs.</summary>
    internal void RequireStepInput(Tensor hidden, MambaLayerState state)
    {
        ModelInputs.RequireStep(_config, in_proj.weight!.dtype, hidden);
        state.RequireFits(_config, hidden.shape[0]);
    }

    /// <summary><see cref="Forward"/> for inputs the caller has checked.</summary>
    internal (Tensor Output, MambaLayerState? State) ForwardChecked(Tensor hidden, MambaLayerState? state, Tensor? lengths, bool returnState)
    {
        using var scope = NewDisposeScope();
        long batch = hidden.shape[0], len = hidden.shape[1];
        int k = _config.DConv, n = _config.DState, r = _config.EffectiveDtRank, di = _config.DInner;

        var xz = in_proj.forward(hidden).transpose(1, 2);                          // (b, 2·di, L)
        var x = xz.narrow(1, 0, di);
        var z = xz.narrow(1, di, di);

        // Causal conv: prepend the previous k−1 inputs (zeros at the start), no padding.
        var prev = state?.Conv.to(x.dtype) ?? zeros(batch, di, k - 1, dtype: x.dtype, device: x.device);
        var xPadded = cat(new[] { prev, x }, 2);                                    // (b, di, L + k − 1)
        var xc = F.silu(F.conv1d(xPadded, conv1d.weight, conv1d.bias, groups: di));    // (b, di, L)

        var xDbl = x_proj.forward(xc.transpose(1, 2));                              // (b, L, r + 2n)
        var dtLow = xDbl.narrow(2, 0, r);
        var bMat = xDbl.narrow(2, r, n).transpose(1, 2).contiguous();               // (b, n, L)
        var cMat = xDbl.narrow(2, r + n, n).transpose(1, 2).contiguous();
        var delta = F.linear(dtLow, dt_proj.weight).transpose(1, 2);                // (b, di, L), bias added in the scan
        var ct = ComputeType(hidden);
        var a = A_log.to(ct).exp().neg();

        Tensor? mask = lengths is null ? null : LengthMask(lengths, len, hidden.device);
        var input = new SelectiveScanInput
        {
            U = xc.contiguous(),
            // With padding, Δ must be exactly 0 on padded steps (exp(0·A) = 1, 0·B·u = 0) so the state passes through them unchanged.
            Delta = mask is null ? delta.contiguous() : (F.softplus(delta + dt_proj.bias!.unsqueeze(-1)) * mask.unsqueeze(1).to(delta.dtype)).contiguous(),
            A = a,
            B = bMat,
            C = cMat,
            D = D.to(ct),
            Z = z.contiguous(),
            DeltaBias = mask is null ? dt_proj.bias!.to(ct) : null,
            DeltaSoftplus = mask is null,
            InitialState = state?.Ssm,
            ReturnLastState = returnState,
        };
        var scan = SelectiveScan.Run(input, _config.ScanBackend);
        var output = out_proj.forward(scan.Output.transpose(1, 2));                // (b, L, d_model)

        MambaLayerState? newState = null;
        if (returnState)
        {
            // The conv state after a sequence is the k−1 inputs ending at its own last step.
            var convState = lengths is null
                ? xPadded.narrow(2, len, k - 1)
                : xPadded.gather(2, (lengths.to(ScalarType.Int64).to(x.device).unsqueeze(1) + arange(k - 1, device: x.device).unsqueeze(0))
                                      .unsqueeze(1).expand(batch, di, k - 1));
            newState = new MambaLayerState(convState.contiguous(), scan.LastState!).MoveToOuterDisposeScope();
        }
        return (output.MoveToOuterDisposeScope(), newState);
    }

    /// <summary>Advances one time step.</summary>
    /// <param name="hidden">(batch, d_model), the input at this step.</param>
    /// <param name="state">The state before this step.</param>
    /// <returns>(batch, d_model) output and the state after this step (new tensors; <paramref name="state"/> is unchanged).</returns>
    public (Tensor Output, MambaLayerState State) Step(Tensor hidden, MambaLayerState state)
    {
        RequireStepInput(hidden, state);
        return StepChecked(hidden, state);
    }

    /// <summary><see cref="Step"/> for inputs the caller has checked.</summary>
    internal (Tensor Output, MambaLayerState State) StepChecked(Tensor hidden, MambaLayerState state)
    {
        using var scope = NewDisposeScope();
        int n = _config.DState, r = _config.EffectiveDtRank, di = _config.DInner;
        var ct = ComputeType(hidden);
        var xz = in_proj.forward(hidden);                                           // (b, 2·di)
        var x = xz.narrow(1, 0, di);
        var z = xz.narrow(1, di, di);

        var window = cat(new[] { state.Conv.to(x.dtype), x.unsqueeze(-1) }, 2);     // (b, di, k)
        var xc = (window * conv1d.weight.squeeze(1)).sum(-1);
        if (conv1d.bias is not null) xc = xc + conv1d.bias;
        xc = F.silu(xc);

        var xDbl = x_proj.forward(xc);
        var delta = F.softplus(dt_proj.forward(xDbl.narrow(1, 0, r))).to(ct);   // (b, di)
        var bVec = xDbl.narrow(1, r, n).to(ct);
        var cVec = xDbl.narrow(1, r + n, n).to(ct);
        var a = A_log.to(ct).exp().neg();
        var xf = xc.to(ct);

        var h = (delta.unsqueeze(-1) * a).exp() * state.Ssm + (delta * xf).unsqueeze(-1) * bVec.unsqueeze(1);
        var y = (h * cVec.unsqueeze(1)).sum(-1) + D.to(ct) * xf;
        y = (y * F.silu(z.to(ct))).to(hidden.dtype);
        var output = out_proj.forward(y);
        var next = new MambaLayerState(window.narrow(2, 1, window.shape[2] - 1).contiguous(), h).MoveToOuterDisposeScope();
        return (output.MoveToOuterDisposeScope(), next);
    }

    // The scan and its state compute in fp32 (fp64 for an fp64 model), whatever the activations' dtype.
    private static ScalarType ComputeType(Tensor hidden) => hidden.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;

    /// <summary>A (batch, L) bool mask: true for steps before each sequence's length.</summary>
    internal static Tensor LengthMask(Tensor lengths, long length, Device device) =>
        (arange(length, device: device).unsqueeze(0) < lengths.to(ScalarType.Int64).to(device).unsqueeze(1));
}
