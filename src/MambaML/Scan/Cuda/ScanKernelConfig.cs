namespace MambaML.Scan.Cuda;

/// <summary>How a selective-scan kernel lays its work out (see Kernels/selective_scan_common.cuh).</summary>
/// <param name="StatesPerLane">NP: state entries each lane keeps in registers (1, 2, 4 or 8).</param>
/// <param name="ChannelsPerBlock">CB: channels per thread block (a power of two).</param>
/// <param name="Chunk">T: time steps staged in shared memory at a time (a power of two, at least 16).</param>
/// <param name="SubChunk">S (backward only): steps re-run in registers at a time (4, 8 or 16, dividing T).</param>
internal sealed record ScanKernelShape(int StatesPerLane, int ChannelsPerBlock, int Chunk, int SubChunk)
{
    /// <summary>The layout the library uses for a problem with <paramref name="stateSize"/> states.</summary>
    /// <remarks>Two states per lane (8 lanes per channel at N = 16) measured fastest on an H100 for both benchmark shapes
    /// (BENCHMARKS.md, scan-gpu --layouts): more lanes per channel give the sequential recurrence more parallelism.</remarks>
    public static (ScanKernelShape Forward, ScanKernelShape Backward) Default(long stateSize)
    {
        int padded = PaddedStateSize(stateSize);
        int np = padded <= 2 ? padded : padded <= 32 ? 2 : padded <= 128 ? 4 : 8;
        int k = padded / np;
        int cb = Math.Min(32, Math.Max(1, 128 / k));
        return (new ScanKernelShape(np, cb, 64, 0), new ScanKernelShape(np, cb, 64, np >= 8 ? 4 : 8));
    }

    /// <summary>The state size rounded up to a power of two.</summary>
    public static int PaddedStateSize(long stateSize) => (int)Math.Max(1, System.Numerics.BitOperations.RoundUpToPowerOf2((uint)stateSize));

    /// <summary>Throws <see cref="ArgumentException"/> if this layout cannot run <paramref name="stateSize"/> states.</summary>
    public ScanKernelShape Validate(long stateSize, bool backward)
    {
        int padded = PaddedStateSize(stateSize);
        bool ok = StatesPerLane is 1 or 2 or 4 or 8 && padded % StatesPerLane == 0 && padded / StatesPerLane <= 32
                  && int.IsPow2(ChannelsPerBlock) && ChannelsPerBlock * (padded / StatesPerLane) % 32 == 0
                  && ChannelsPerBlock * (padded / StatesPerLane) <= 1024 && int.IsPow2(Chunk) && Chunk >= 16
                  && (!backward || (SubChunk is 4 or 8 or 16 && Chunk % SubChunk == 0));
        if (!ok) throw new ArgumentException($"Kernel layout {this} cannot run a scan with {stateSize} states (padded to {padded}).");
        return this;
    }
}

/// <summary>Everything that selects one compiled kernel: direction, dtype, state size, layout and features.</summary>
internal sealed record ScanKernelConfig(
    bool Backward, bool BFloat16, int StateSize, ScanKernelShape Shape, bool Vectorized,
    bool VariableB, bool VariableC, bool HasD, bool HasZ, bool HasDeltaBias, bool Softplus,
    bool HasInitialState, int SaveEvery, bool HasLastStateGradient) : ICudaModuleSource
{
    /// <summary>The padded state size NP·K.</summary>
    public int PaddedStates => ScanKernelShape.PaddedStateSize(StateSize);
    /// <summary>Lanes per channel K.</summary>
    public int LanesPerChannel => PaddedStates / Shape.StatesPerLane;
    /// <summary>Threads per block.</summary>
    public int Threads => Shape.ChannelsPerBlock * LanesPerChannel;
    /// <summary>The kernel's entry point.</summary>
    public string EntryPoint => Backward ? "selective_scan_bwd" : "selective_scan_fwd";
    /// <summary>The <c>__constant__</c> holding the kernel's dynamic shared-memory size.</summary>
    public string SharedMemorySymbol => EntryPoint + "_smem_bytes";
    /// <summary>The source file in Kernels/.</summary>
    public string SourceFile => EntryPoint + ".cu";
    /// <summary>The header both scan kernels include.</summary>
    public IReadOnlyList<string> Headers => s_headers;
    private static readonly string[] s_headers = { "selective_scan_common.cuh" };

    /// <summary>The -D definitions that configure the kernel source.</summary>
    public IReadOnlyList<string> Defines()
    {
        static string B(bool v) => v ? "1" : "0";
        var d = new List<string>
        {
            $"-DSS_BF16={B(BFloat16)}", $"-DSS_N={StateSize}", $"-DSS_NP={Shape.StatesPerLane}", $"-DSS_K={LanesPerChannel}",
            $"-DSS_CB={Shape.ChannelsPerBlock}", $"-DSS_T={Shape.Chunk}", $"-DSS_VEC={B(Vectorized)}",
            $"-DSS_VAR_B={B(VariableB)}", $"-DSS_VAR_C={B(VariableC)}", $"-DSS_HAS_D={B(HasD)}", $"-DSS_HAS_Z={B(HasZ)}",
            $"-DSS_HAS_BIAS={B(HasDeltaBias)}", $"-DSS_SOFTPLUS={B(Softplus)}",
        };
        if (Backward) { d.Add($"-DSS_S={Shape.SubChunk}"); d.Add($"-DSS_HAS_DLAST={B(HasLastStateGradient)}"); }
        else { d.Add($"-DSS_HAS_H0={B(HasInitialState)}"); d.Add($"-DSS_SAVE_EVERY={SaveEvery}"); }
        return d;
    }

    /// <summary>A short description for logs and benchmark tables.</summary>
    public override string ToString() => $"{EntryPoint}[{(BFloat16 ? "bf16" : "fp32")} N={StateSize} NP={Shape.StatesPerLane} K={LanesPerChannel} " +
        $"CB={Shape.ChannelsPerBlock} T={Shape.Chunk}{(Backward ? $" S={Shape.SubChunk}" : "")}{(Vectorized ? " vec" : "")}]";
}
