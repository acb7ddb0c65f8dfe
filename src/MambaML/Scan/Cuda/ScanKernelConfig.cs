namespace MambaML.Scan.Cuda;

/// <summary>How a selective-scan kernel lays its work out (see Kernels/selective_scan_common.cuh).</summary>
/// <param name="StatesPerLane">NP: state entries each lane keeps in registers (1, 2, 4, 8 or 16).</param>
/// <param name="ChannelsPerBlock">CB: channels per thread block (a power of two).</param>
/// <param name="Chunk">T: time steps staged in shared memory at a time (a power of two, at least 16).</param>
/// <param name="SubChunk">S (backward only): steps re-run in registers at a time (4, 8 or 16, dividing T).</param>
/// <param name="ChannelsPerThread">Q (forward only): channels whose same lane one thread runs, sharing its B_t, C_t loads.</param>
/// <param name="StepsPerGroup">G: time steps per cross-lane reduction group (4 or 8; dividing S in the backward kernel).</param>
internal sealed record ScanKernelShape(int StatesPerLane, int ChannelsPerBlock, int Chunk, int SubChunk, int ChannelsPerThread = 1, int StepsPerGroup = 4)
{
    /// <summary>The layout the library uses for <paramref name="recurrences"/> = batch × channels independent recurrences of
    /// <paramref name="stateSize"/> states on a GPU with <paramref name="multiprocessors"/> SMs.</summary>
    /// <remarks>At 16 states, chosen by measurement on an H100 (BENCHMARKS.md, scan-gpu --layouts). With at least 64
    /// recurrences per SM (e.g. 8 × 2048): forward with 4 states per lane and 8-step reduction groups in 128-thread blocks of
    /// 32 channels; backward as before. With fewer (e.g. 1 × 5120): 2 states per lane (more lanes, more parallelism) and
    /// 8-step groups in 64-thread blocks of 8 channels for both kernels, whose 4.8 blocks per SM spread more evenly over the
    /// SMs than 2.4 blocks of 16 channels. Other state sizes keep the earlier layout, which was not re-measured.</remarks>
    public static (ScanKernelShape Forward, ScanKernelShape Backward) Default(long stateSize, long recurrences, int multiprocessors)
    {
        int padded = PaddedStateSize(stateSize);
        if (padded == 16)
            return recurrences >= 64L * multiprocessors
                ? (new ScanKernelShape(4, 32, 32, 0, 1, 8), new ScanKernelShape(2, 16, 64, 8))
                : (new ScanKernelShape(2, 8, 64, 0, 1, 8), new ScanKernelShape(2, 8, 64, 8, 1, 8));
        int np = padded <= 2 ? padded : padded <= 32 ? 2 : padded <= 128 ? 4 : 8;
        int k = padded / np;
        int cb = Math.Min(32, Math.Max(1, 128 / k));
        return (new ScanKernelShape(np, cb, 64, 0), new ScanKernelShape(np, cb, 64, np >= 8 ? 4 : 8));
    }

    /// <summary>The layouts <c>scan-gpu --layouts</c> compares at 16 states (and the GPU tests check), by name.</summary>
    public static IReadOnlyList<(string Name, ScanKernelShape Forward, ScanKernelShape Backward)> Candidates { get; } = new (string, ScanKernelShape, ScanKernelShape)[]
    {
        ("previous default NP2 K8 CB16 T64 / S8", new(2, 16, 64, 0), new(2, 16, 64, 8)),
        ("default, few recurrences", new(2, 8, 64, 0, 1, 8), new(2, 8, 64, 8, 1, 8)),
        ("fwd NP4 K4 CB32 T32 G8", new(4, 32, 32, 0, 1, 8), new(2, 16, 64, 8)),   // the default for many recurrences
        ("fwd NP4 K4 CB32 T16 G8", new(4, 32, 16, 0, 1, 8), new(2, 16, 64, 8)),
        ("fwd NP4 K4 CB16 T32 G8", new(4, 16, 32, 0, 1, 8), new(2, 16, 64, 8)),
        ("fwd NP4 K4 CB64 T16 Q2 G8", new(4, 64, 16, 0, 2, 8), new(2, 16, 64, 8)),
        ("fwd NP4 K4 CB64 T32 Q2 G4", new(4, 64, 32, 0, 2, 4), new(2, 16, 64, 8)),
        ("fwd NP2 K8 CB32 T32 Q2 G8", new(2, 32, 32, 0, 2, 8), new(2, 16, 64, 8)),
        ("fwd NP2 K8 CB16 T64 G8", new(2, 16, 64, 0, 1, 8), new(2, 16, 64, 8)),
        ("fwd NP2 K8 CB16 T32 G8", new(2, 16, 32, 0, 1, 8), new(2, 16, 64, 8)),
        ("fwd NP2 K8 CB8 T32 G8", new(2, 8, 32, 0, 1, 8), new(2, 16, 64, 8)),
        ("bwd NP2 CB8 S8 G8", new(2, 16, 64, 0), new(2, 8, 64, 8, 1, 8)),
        ("bwd NP2 CB16 S8 G8", new(2, 16, 64, 0), new(2, 16, 64, 8, 1, 8)),
    };

    /// <summary>The state size rounded up to a power of two.</summary>
    public static int PaddedStateSize(long stateSize) => (int)Math.Max(1, System.Numerics.BitOperations.RoundUpToPowerOf2((uint)stateSize));

    /// <summary>Threads per block for <paramref name="stateSize"/> states: channels per block × lanes per channel ÷ channels per thread.</summary>
    public int Threads(long stateSize) => ChannelsPerBlock * (PaddedStateSize(stateSize) / StatesPerLane) / ChannelsPerThread;

    /// <summary>Throws <see cref="ArgumentException"/> if this layout cannot run <paramref name="stateSize"/> states.</summary>
    public ScanKernelShape Validate(long stateSize, bool backward)
    {
        int padded = PaddedStateSize(stateSize);
        bool ok = StatesPerLane is 1 or 2 or 4 or 8 or 16 && padded % StatesPerLane == 0 && padded / StatesPerLane <= 32
                  && int.IsPow2(ChannelsPerBlock) && int.IsPow2(ChannelsPerThread) && ChannelsPerBlock % ChannelsPerThread == 0
                  && Threads(stateSize) % 32 == 0 && Threads(stateSize) <= 1024 && int.IsPow2(Chunk) && Chunk >= 16
                  && StepsPerGroup is 4 or 8 && Chunk % StepsPerGroup == 0
                  && (!backward || (SubChunk is 4 or 8 or 16 && Chunk % SubChunk == 0 && SubChunk % StepsPerGroup == 0 && ChannelsPerThread == 1));
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
    public int Threads => Shape.Threads(StateSize);
    /// <summary>The kernel's entry point.</summary>
    public string EntryPoint => Backward ? "selective_scan_bwd" : "selective_scan_fwd";
    /// <summary>The <c>__constant__</c> holding the kernel's dynamic shared-memory size.</summary>
    public string SharedMemorySymbol => EntryPoint + "_smem_bytes";
    /// <summary>The source file in Kernels/.</summary>
    public string SourceFile => EntryPoint + ".cu";
    /// <summary>The header both scan kernels include.</summary>
    public IReadOnlyList<string> Headers => s_headers;
    private static readonly string[] s_headers = { "selective_scan_common.cuh", "bfloat16.cuh" };

    /// <summary>The -D definitions that configure the kernel source.</summary>
    public IReadOnlyList<string> Defines()
    {
        static string B(bool v) => v ? "1" : "0";
        var d = new List<string>
        {
            $"-DSS_BF16={B(BFloat16)}", $"-DSS_N={StateSize}", $"-DSS_NP={Shape.StatesPerLane}", $"-DSS_K={LanesPerChannel}",
            $"-DSS_CB={Shape.ChannelsPerBlock}", $"-DSS_T={Shape.Chunk}", $"-DSS_Q={Shape.ChannelsPerThread}", $"-DSS_G={Shape.StepsPerGroup}", $"-DSS_VEC={B(Vectorized)}",
            $"-DSS_VAR_B={B(VariableB)}", $"-DSS_VAR_C={B(VariableC)}", $"-DSS_HAS_D={B(HasD)}", $"-DSS_HAS_Z={B(HasZ)}",
            $"-DSS_HAS_BIAS={B(HasDeltaBias)}", $"-DSS_SOFTPLUS={B(Softplus)}",
        };
        if (Backward) { d.Add($"-DSS_S={Shape.SubChunk}"); d.Add($"-DSS_HAS_DLAST={B(HasLastStateGradient)}"); }
        else { d.Add($"-DSS_HAS_H0={B(HasInitialState)}"); d.Add($"-DSS_SAVE_EVERY={SaveEvery}"); }
        return d;
    }

    /// <summary>A short description for logs and benchmark tables.</summary>
    public override string ToString() => $"{EntryPoint}[{(BFloat16 ? "bf16" : "fp32")} N={StateSize} NP={Shape.StatesPerLane} K={LanesPerChannel} " +
        $"CB={Shape.ChannelsPerBlock}{(Shape.ChannelsPerThread > 1 ? $" Q={Shape.ChannelsPerThread}" : "")}{(Shape.StepsPerGroup != 4 ? $" G={Shape.StepsPerGroup}" : "")} T={Shape.Chunk}{(Backward ? $" S={Shape.SubChunk}" : "")}{(Vectorized ? " vec" : "")}]";
}
