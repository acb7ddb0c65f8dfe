using MambaML.Scan.Cpu;
using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.Scan;

/// <summary>
/// The fused selective scan for the CPU: one pass over memory per direction, vectorised over the state dimension with
/// 512-bit vectors, multi-threaded over batch × channel blocks, differentiable through TorchSharp autograd.
/// </summary>
/// <remarks>
/// <para>Computes in fp32. fp32 inputs run directly; bf16 and fp16 inputs are converted to fp32 (the output comes back in
/// u's dtype, the last state in fp32, gradients flow back through the conversions). fp64 inputs are not run here
/// (<see cref="CanRun"/> says so): they are for gradient checks, which <see cref="ReferenceSelectiveScan"/> serves in fp64.</para>
/// <para>Vectors: written with <see cref="System.Runtime.Intrinsics.Vector512{T}"/>; on CPUs without AVX-512, .NET runs
/// those as pairs of 256-bit operations (measured here with AVX-512 disabled: forward about 2.7× slower, backward 2×).</para>
/// <para>Backward memory: the forward pass keeps the state at every 64th step, B·D·N·L/64 floats, and backward recomputes
/// the states in between, chunk by chunk in reverse.</para>
/// <para>Threads: the kernel runs on .NET's thread pool, one worker per core, beside libtorch's OpenMP threads. After each
/// TorchSharp op those threads spin for a while before sleeping, taking cores from the kernel; on machines with few cores,
/// especially shared ones, setting the environment variable <c>OMP_WAIT_POLICY=PASSIVE</c> before the process starts makes
/// training markedly steadier (see BENCHMARKS.md, scan-cpu).</para>
/// <para>Results do not depend on thread timing: every partial sum has a fixed owner and the partial sums are added in a
/// fixed order. They can differ in the last bits between machines with different core counts (the partition follows
/// the core count).</para>
/// </remarks>
public sealed class CpuFusedSelectiveScan : IResolvedSelectiveScan
{
    /// <summary>The shared instance.</summary>
    public static CpuFusedSelectiveScan Instance { get; } = new();

    private CpuFusedSelectiveScan() { }

    /// <inheritdoc/>
    public SelectiveScanBackend Backend => SelectiveScanBackend.CpuFused;

    /// <inheritdoc/>
    public bool CanRun(SelectiveScanInput input, out string? reason)
    {
        if (input.U.device_type != DeviceType.CPU)
            reason = $"the fused CPU scan runs on CPU tensors; u is on {input.U.device}.";
        else if (input.ComputeType != ScalarType.Float32)
            reason = "the fused CPU scan computes in fp32; fp64 inputs (gradient checks) run on the Reference backend.";
        else reason = null;
        return reason is null;
    }

    /// <inheritdoc/>
    public SelectiveScanResult Run(SelectiveScanInput input)
    {
        input.Validate();   // the kernel reads through raw pointers sized by these shapes
        if (!CanRun(input, out var reason)) throw new NotSupportedException($"Selective scan backend CpuFused cannot run this input: {reason}");
        return ((IResolvedSelectiveScan)this).RunResolved(input);
    }

    SelectiveScanResult IResolvedSelectiveScan.RunResolved(SelectiveScanInput input)
    {
        using var scope = NewDisposeScope();
        static Tensor? Fp32(Tensor? t) => t?.to(ScalarType.Float32).contiguous();
        object?[] args =
        {
            Fp32(input.U), Fp32(input.Delta), Fp32(input.A), Fp32(input.B), Fp32(input.C),
            Fp32(input.D), Fp32(input.Z), Fp32(input.DeltaBias), Fp32(input.InitialState), input.DeltaSoftplus, input.ReturnLastState,
        };
        Tensor output;
        Tensor? last;
        if (is_grad_enabled() && input.AllTensors().Any(t => t.requires_grad))
        {
            var results = CpuScanFunction.apply(args!);
            (output, last) = (results[0], input.ReturnLastState ? results[1] : null);
        }
        else
        {
            (output, last, _) = CpuScanFunction.Pack(args).Forward(saveCheckpoints: false);
        }
        var result = output.to(input.U.dtype).MoveToOuterDisposeScope();
        return new SelectiveScanResult(result, input.ReturnLastState ? last!.MoveToOuterDisposeScope() : null);
    }
}
