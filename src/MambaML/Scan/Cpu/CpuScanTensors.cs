using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.Scan.Cpu;

/// <summary>
/// The scan's operands as contiguous fp32 CPU tensors, plus the copies the kernel reads per step: A, A·log2(e), B and C
/// with the state dimension zero-padded to a multiple of 16, B and C laid out one state vector per step.
/// </summary>
internal sealed class CpuScanTensors
{
    private const int Lanes = 16;

    public required Tensor U, Delta, A2, APadded, BPacked, CPacked;
    public Tensor? Skip, Z, DeltaBias, InitialState;
    public required bool Softplus;
    public required int State;

    public int Batch => (int)U.shape[0];
    public int Channels => (int)U.shape[1];
    public int Length => (int)U.shape[2];
    public int PaddedState => (int)APadded.shape[1];
    public bool VariableB => BPacked.dim() == 3;
    public bool VariableC => CPacked.dim() == 3;

    /// <summary>Packs fp32 contiguous operands (u, Δ, z: (B, D, L); A: (D, N); B, C: (B, N, L) or (D, N); D, bias: (D); h0: (B, D, N)).</summary>
    public static unsafe CpuScanTensors Pack(Tensor u, Tensor delta, Tensor a, Tensor b, Tensor c, Tensor? skip, Tensor? z, Tensor? deltaBias,
        Tensor? initialState, bool softplus)
    {
        int n = (int)a.shape[1], np = (n + Lanes - 1) / Lanes * Lanes, channels = (int)a.shape[0];
        Tensor Rows(float scale)
        {
            var padded = ScanOutputs.Empty(new long[] { channels, np }, ScalarType.Float32, CPU);
            ScanLayout.PadRows(Pointer(a), Pointer(padded), channels, n, np, scale);
            return padded;
        }
        // Input-dependent (B, N, L) becomes (B, L, Np): the 16 state entries a step needs are adjacent.
        Tensor Stepwise(Tensor t)
        {
            if (t.dim() == 2)
            {
                var fixedRows = ScanOutputs.Empty(new long[] { channels, np }, ScalarType.Float32, CPU);
                ScanLayout.PadRows(Pointer(t), Pointer(fixedRows), channels, n, np, 1f);
                return fixedRows;
            }
            int batch = (int)t.shape[0], length = (int)t.shape[2];
            var packed = ScanOutputs.Empty(new long[] { batch, length, np }, ScalarType.Float32, CPU);
            ScanLayout.PackSteps(Pointer(t), Pointer(packed), batch, n, length, np);
            return packed;
        }
        return new CpuScanTensors
        {
            U = u, Delta = delta, Skip = skip, Z = z, DeltaBias = deltaBias, InitialState = initialState, Softplus = softplus, State = n,
            A2 = Rows(VectorMath.Log2E), APadded = Rows(1f), BPacked = Stepwise(b), CPacked = Stepwise(c),
        };
    }

    /// <summary>The tensors backward needs, in the order <see cref="FromSaved"/> reads them.</summary>
    public List<Tensor?> ToSave(Tensor? checkpoints) => new() { U, Delta, A2, APadded, BPacked, CPacked, Skip, Z, DeltaBias, InitialState, checkpoints };

    /// <summary>Rebuilds the operands and the checkpoints from the saved tensors.</summary>
    public static (CpuScanTensors Tensors, Tensor Checkpoints) FromSaved(List<Tensor> saved, int state, bool softplus) => (new CpuScanTensors
    {
        U = saved[0], Delta = saved[1], A2 = saved[2], APadded = saved[3], BPacked = saved[4], CPacked = saved[5],
        Skip = saved[6], Z = saved[7], DeltaBias = saved[8], InitialState = saved[9], Softplus = softplus, State = state,
    }, saved[10]);

    /// <summary>Runs the forward kernel: output (B, D, L), last state (B, D, N), and the chunk checkpoints when asked for.</summary>
    public unsafe (Tensor Output, Tensor LastState, Tensor? Checkpoints) Forward(bool saveCheckpoints)
    {
        var op = Operands();
        var output = ScanOutputs.Empty(new long[] { Batch, Channels, Length }, ScalarType.Float32, CPU);
        var last = ScanOutputs.Empty(new long[] { Batch, Channels, State }, ScalarType.Float32, CPU);
        var checkpoints = saveCheckpoints ? ScanOutputs.Empty(new long[] { Batch, Channels, op.Chunks, PaddedState }, ScalarType.Float32, CPU) : null;
        CpuScanKernel.Forward(op, Pointer(output), Pointer(last), Pointer(checkpoints));
        return (output, last, checkpoints);
    }

    /// <summary>
    /// Runs the backward kernel and reduces its partial sums. Returns the gradients of u, Δ, A, B, C, D, z, delta_bias and the
    /// initial state, shaped as those inputs (null where an input is absent).
    /// </summary>
    public unsafe Tensor?[] Backward(Tensor checkpoints, Tensor gradOutput, Tensor gradLastState)
    {
        var op = Operands();
        long b = Batch, d = Channels, l = Length, np = PaddedState;
        Tensor Empty(params long[] shape) => ScanOutputs.Empty(shape, ScalarType.Float32, CPU);
        int blocks = ChannelPartition.For(Batch, Channels).BlocksPerBatch;
        var du = Empty(b, d, l);
        var dDelta = Empty(b, d, l);
        var dz = Z is null ? null : Empty(b, d, l);
        var dAPartial = Empty(b, d, np);
        var dBPartial = VariableB ? Empty(b, blocks, l, np) : Empty(b, d, np);
        var dCPartial = VariableC ? Empty(b, blocks, l, np) : Empty(b, d, np);
        var dSkipPartial = Skip is null ? null : Empty(b, d);
        var dBiasPartial = DeltaBias is null ? null : Empty(b, d);
        var dh0 = InitialState is null ? null : Empty(b, d, State);
        var grads = new ScanGradients
        {
            U = Pointer(du), Delta = Pointer(dDelta), Z = Pointer(dz), APartial = Pointer(dAPartial),
            BPartial = Pointer(dBPartial), CPartial = Pointer(dCPartial),
            SkipPartial = Pointer(dSkipPartial), DeltaBiasPartial = Pointer(dBiasPartial), InitialState = Pointer(dh0),
        };
        CpuScanKernel.Backward(op, Pointer(checkpoints), Pointer(gradOutput), Pointer(gradLastState), grads);

        // Partial sums: over batch rows for the per-channel parameters, over channel blocks for input-dependent B and C.
        Tensor OverBatch(Tensor partial, int rowLength, params long[] shape)
        {
            var sum = Empty(shape);
            ScanLayout.SumOverBatch(Pointer(partial), Pointer(sum), Batch, d, rowLength, shape.Length == 1 ? 1 : State);
            return sum;
        }
        Tensor StepwiseGrad(Tensor partial, bool variable)
        {
            if (!variable) return OverBatch(partial, PaddedState, d, State);
            var sum = Empty(b, State, l);
            ScanLayout.SumSlots(Pointer(partial), Pointer(sum), Batch, blocks, Length, PaddedState, State);
            return sum;
        }
        return new[]
        {
            du, dDelta, OverBatch(dAPartial, PaddedState, d, State), StepwiseGrad(dBPartial, VariableB), StepwiseGrad(dCPartial, VariableC),
            dSkipPartial is null ? null : OverBatch(dSkipPartial, 1, d), dz, dBiasPartial is null ? null : OverBatch(dBiasPartial, 1, d), dh0,
        };
    }

    private unsafe ScanOperands Operands() => new()
    {
        Batch = Batch, Channels = Channels, Length = Length, State = State, PaddedState = PaddedState,
        U = Pointer(U), Delta = Pointer(Delta), Z = Pointer(Z), A2 = Pointer(A2), A = Pointer(APadded),
        B = Pointer(BPacked), C = Pointer(CPacked), VariableB = VariableB, VariableC = VariableC,
        Skip = Pointer(Skip), DeltaBias = Pointer(DeltaBias), Softplus = Softplus, InitialState = Pointer(InitialState),
    };

    /// <summary>The address of a contiguous fp32 CPU tensor's first element (null for null).</summary>
    internal static unsafe float* Pointer(Tensor? t)
    {
        if (t is null) return null;
        if (t.dtype != ScalarType.Float32 || !t.is_contiguous() || t.device_type != DeviceType.CPU)
            throw new InvalidOperationException($"CPU scan kernel: expected a contiguous fp32 CPU tensor, got {t.dtype} on {t.device} (contiguous: {t.is_contiguous()}).");
        using var storage = t.storage<float>();
        return (float*)storage.data_ptr() + t.storage_offset();
    }
}
