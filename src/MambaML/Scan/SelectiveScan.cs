using TorchSharp;

namespace MambaML.Scan;

/// <summary>Runs the selective scan on the backend chosen by a <see cref="SelectiveScanBackend"/> value.</summary>
public static class SelectiveScan
{
    /// <summary>Validates the input, picks the backend and runs it (the library's backends without checking the input again).</summary>
    /// <param name="input">The scan arguments.</param>
    /// <param name="backend">Which implementation; <see cref="SelectiveScanBackend.Auto"/> picks the fused kernel for the input's device.</param>
    public static SelectiveScanResult Run(SelectiveScanInput input, SelectiveScanBackend backend = SelectiveScanBackend.Auto)
    {
        input.Validate();
        var scan = Resolve(input, backend);
        return scan is IResolvedSelectiveScan resolved ? resolved.RunResolved(input) : scan.Run(input);
    }

    /// <summary>The implementation that <paramref name="backend"/> names for this input.</summary>
    /// <exception cref="NotSupportedException">An explicitly named backend cannot run this input.</exception>
    public static ISelectiveScan Resolve(SelectiveScanInput input, SelectiveScanBackend backend)
    {
        if (backend == SelectiveScanBackend.Auto)
        {
            foreach (var fused in FusedCandidates())
                if (fused.CanRun(input, out _)) return fused;
            return ReferenceSelectiveScan.Instance;
        }
        var chosen = Get(backend);
        if (!chosen.CanRun(input, out var reason))
            throw new NotSupportedException($"Selective scan backend {backend} cannot run this input: {reason}");
        return chosen;
    }

    /// <summary>The implementation for a named backend.</summary>
    public static ISelectiveScan Get(SelectiveScanBackend backend) => backend switch
    {
        SelectiveScanBackend.Reference => ReferenceSelectiveScan.Instance,
        SelectiveScanBackend.CpuFused => CpuFusedSelectiveScan.Instance,
        SelectiveScanBackend.CudaFused => CudaSelectiveScan.Instance,
        _ => throw new NotSupportedException($"Selective scan backend {backend} is not available in this build."),
    };

    // Fused kernels in order of preference; Auto takes the first that can run the input.
    private static IEnumerable<ISelectiveScan> FusedCandidates() => new ISelectiveScan[] { CudaSelectiveScan.Instance, CpuFusedSelectiveScan.Instance };
}
