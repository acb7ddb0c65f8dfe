namespace MambaML.Scan;

/// <summary>One implementation of the selective scan (see <see cref="SelectiveScanInput"/> for its semantics).</summary>
/// <remarks>Implementations are differentiable with respect to every tensor input through TorchSharp autograd.</remarks>
public interface ISelectiveScan
{
    /// <summary>Which backend this is.</summary>
    SelectiveScanBackend Backend { get; }

    /// <summary>Whether this backend can run the given input (device, dtype, shape); if not, <paramref name="reason"/> says why.</summary>
    bool CanRun(SelectiveScanInput input, out string? reason);

    /// <summary>Runs the scan; an invalid input (<see cref="SelectiveScanInput.Validate"/>) throws <see cref="ArgumentException"/>.</summary>
    SelectiveScanResult Run(SelectiveScanInput input);
}

/// <summary>
/// A backend of this library's, which <see cref="SelectiveScan.Run"/> calls without the checks its public
/// <see cref="ISelectiveScan.Run"/> repeats: the dispatcher has validated the input and resolved it to this backend.
/// </summary>
internal interface IResolvedSelectiveScan : ISelectiveScan
{
    /// <summary>Runs an input already validated, which <see cref="ISelectiveScan.CanRun"/> accepted.</summary>
    SelectiveScanResult RunResolved(SelectiveScanInput input);
}

/// <summary>Selects the selective-scan implementation.</summary>
public enum SelectiveScanBackend
{
    /// <summary>The fastest backend that can run the input: the fused kernel for its device, else the reference.</summary>
    Auto = 0,
    /// <summary>The plain TorchSharp implementation: the ground truth the fused kernels are tested against.</summary>
    Reference = 1,
    /// <summary>The vectorised, multi-threaded CPU kernel.</summary>
    CpuFused = 2,
    /// <summary>The CUDA kernel, compiled at run time with NVRTC.</summary>
    CudaFused = 3,
}
