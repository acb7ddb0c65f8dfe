using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace MambaML.Scan.Cpu;

/// <summary>
/// Raw views of a scan's operands: contiguous fp32 memory, with the state dimension zero-padded to a multiple of 16 where
/// the kernel reads it per step (A, B, C), so one 512-bit vector holds 16 state entries. Padded entries have A = B = C = 0,
/// which keeps their state at exactly 0 and their contributions at 0.
/// </summary>
internal unsafe struct ScanOperands
{
    /// <summary>Batch size, channels D, length L, state size N and N rounded up to a multiple of 16.</summary>
    public int Batch, Channels, Length, State, PaddedState;
    /// <summary>(B, D, L) rows: u, delta before bias/softplus, and the gate z (null when absent).</summary>
    public float* U, Delta, Z;
    /// <summary>(D, Np): A·log2(e) (the exp2 argument scale) and A itself.</summary>
    public float* A2, A;
    /// <summary>B and C: (B, L, Np) when input-dependent (one state vector per step), else (D, Np).</summary>
    public float* B, C;
    /// <summary>Whether B / C are input-dependent.</summary>
    public bool VariableB, VariableC;
    /// <summary>(D) skip weight D and delta bias, null when absent.</summary>
    public float* Skip, DeltaBias;
    /// <summary>Whether delta goes through softplus.</summary>
    public bool Softplus;
    /// <summary>(B, D, N) initial state, null for zeros.</summary>
    public float* InitialState;

    /// <summary>Number of time chunks; the forward pass saves the state at the start of each.</summary>
    public readonly int Chunks => (Length + CpuScanKernel.ChunkLength - 1) / CpuScanKernel.ChunkLength;

    /// <summary>Offset of channel <paramref name="d"/> of batch row <paramref name="b"/> in a (B, D, ·) tensor whose rows hold <paramref name="rowLength"/> values.</summary>
    public readonly long Row(int b, int d, long rowLength) => ((long)b * Channels + d) * rowLength;

    /// <summary>Where (b, d)'s B or C vector for step 0 lives (<paramref name="start"/>), and how far to move per step (0 when fixed).</summary>
    public readonly void Stepwise(float* packed, bool variable, int b, int d, out float* start, out long stride)
    {
        start = variable ? packed + (long)b * Length * PaddedState : packed + (long)d * PaddedState;
        stride = variable ? PaddedState : 0;
    }
}

/// <summary>Where the backward pass writes. Partial sums are reduced by the caller (over batch rows or channel blocks).</summary>
internal unsafe struct ScanGradients
{
    /// <summary>(B, D, L): gradients of u, of delta (before bias/softplus) and of z (null when z is absent).</summary>
    public float* U, Delta, Z;
    /// <summary>(B, D, Np): per-batch-row partial sums of dA.</summary>
    public float* APartial;
    /// <summary>dB and dC partial sums: (B, blocks, L, Np) per channel block when input-dependent, (B, D, Np) per batch row when fixed.</summary>
    public float* BPartial, CPartial;
    /// <summary>(B, D) per-batch-row partial sums of dD and d(delta_bias); null when that input is absent.</summary>
    public float* SkipPartial, DeltaBiasPartial;
    /// <summary>(B, D, N) gradient of the initial state; null when there is none.</summary>
    public float* InitialState;
}

/// <summary>
/// The fused selective scan on the CPU: forward and backward over fp32 memory, vectorised over the state dimension
/// (16 lanes of a 512-bit vector per state block), multi-threaded over (batch, channel block) work items.
/// </summary>
/// <remarks>
/// Time is processed in chunks of <see cref="ChunkLength"/> steps. Per (b, d) and chunk, the per-step scalars (Δ after
/// bias and softplus, Δ·u, gates) are computed 16 steps at a time into a small scratch; then each 16-wide state block runs
/// the recurrence with its state in a register: one exp2, one FMA and one dot with C per step. The forward pass saves the
/// state at each chunk start; the backward pass walks chunks in reverse, recomputes a chunk's states and exp(ΔA) from that
/// checkpoint into an L1-sized buffer, and runs the adjoint recurrence backwards through it. Nothing is allocated per step.
/// </remarks>
internal static unsafe class CpuScanKernel
{
    /// <summary>Steps per chunk: sets the checkpoint memory (B·D·Np·L/64 floats) and the backward recompute buffer (2·64·16 floats).</summary>
    public const int ChunkLength = 64;
    private const int Lanes = 16;

    // Per-chunk scalar arrays in the forward scratch: u, Δ (then Δ after softplus), Δ·u, y, z.
    private const int ForwardChunkArrays = 5;
    // Backward: u, Δ + bias, Δ after softplus, Δ·u, dout, dy, y, du, dΔ, z, plus the recomputed states (L+1 vectors) and exp(ΔA).
    private const int BackwardChunkArrays = 10;

    /// <summary>Scratch floats one forward worker needs.</summary>
    private static long ForwardScratch(in ScanOperands op) => op.PaddedState + ForwardChunkArrays * ChunkLength;

    /// <summary>Scratch floats one backward worker needs.</summary>
    private static long BackwardScratch(in ScanOperands op) =>
        op.PaddedState + BackwardChunkArrays * ChunkLength + (2 * ChunkLength + 1) * Lanes;

    /// <summary>
    /// Runs the scan: writes <paramref name="output"/> (B, D, L), <paramref name="lastState"/> (B, D, N), and, when not null,
    /// <paramref name="checkpoints"/> (B, D, chunks, Np), the state at the start of every chunk.
    /// </summary>
    public static void Forward(ScanOperands op, float* output, float* lastState, float* checkpoints)
    {
        var partition = ChannelPartition.For(op.Batch, op.Channels);
        ParallelWork.Run(op.Batch * partition.BlocksPerBatch, ForwardScratch(op), (item, scratch) =>
        {
            int b = item / partition.BlocksPerBatch, firstChannel = item % partition.BlocksPerBatch * partition.BlockWidth;
            int endChannel = Math.Min(firstChannel + partition.BlockWidth, op.Channels);
            for (int d = firstChannel; d < endChannel; d++) ForwardChannel(op, b, d, output, lastState, checkpoints, scratch);
        });
    }

    private static void ForwardChannel(in ScanOperands op, int b, int d, float* output, float* lastState, float* checkpoints, float* scratch)
    {
        int np = op.PaddedState, length = op.Length;
        float* state = scratch, u = state + np, delta = u + ChunkLength, deltaU = delta + ChunkLength, y = deltaU + ChunkLength, z = y + ChunkLength;
        long row = op.Row(b, d, length);
        LoadState(state, op.InitialState is null ? null : op.InitialState + op.Row(b, d, op.State), op.State, np);
        float bias = op.DeltaBias is null ? 0f : op.DeltaBias[d], skip = op.Skip is null ? 0f : op.Skip[d];
        float* a2 = op.A2 + (long)d * np;
        op.Stepwise(op.B, op.VariableB, b, d, out float* bBase, out long bStride);
        op.Stepwise(op.C, op.VariableC, b, d, out float* cBase, out long cStride);

        for (int chunk = 0, t0 = 0; t0 < length; chunk++, t0 += ChunkLength)
        {
            int len = Math.Min(ChunkLength, length - t0);
            LoadPadded(u, op.U + row + t0, len);
            LoadPadded(delta, op.Delta + row + t0, len);
            for (int k = 0; k < len; k += Lanes)
            {
                var uk = Vector512.Load(u + k);
                var dk = Vector512.Load(delta + k) + Vector512.Create(bias);
                if (op.Softplus) dk = VectorMath.Softplus(dk);
                dk.Store(delta + k);
                (dk * uk).Store(deltaU + k);
                (uk * skip).Store(y + k);
            }

            for (int j = 0; j < np; j += Lanes)
            {
                var h = Vector512.Load(state + j);
                if (checkpoints is not null) h.Store(checkpoints + (op.Row(b, d, op.Chunks) + chunk) * np + j);
                var a2j = Vector512.Load(a2 + j);
                float* bt = bBase + t0 * bStride + j, ct = cBase + t0 * cStride + j;
                for (int k = 0; k < len; k++, bt += bStride, ct += cStride)
                {
                    var decay = VectorMath.Exp2(a2j * delta[k]);
                    h = Vector512.FusedMultiplyAdd(decay, h, Vector512.Load(bt) * deltaU[k]);
                    y[k] += Vector512.Sum(h * Vector512.Load(ct));
                }
                h.Store(state + j);
            }

            if (op.Z is not null)
            {
                LoadPadded(z, op.Z + row + t0, len);
                for (int k = 0; k < len; k += Lanes)
                {
                    var zk = Vector512.Load(z + k);
                    (Vector512.Load(y + k) * zk * VectorMath.Sigmoid(zk)).Store(y + k);
                }
            }
            new ReadOnlySpan<float>(y, len).CopyTo(new Span<float>(output + row + t0, len));
        }
        new ReadOnlySpan<float>(state, op.State).CopyTo(new Span<float>(lastState + op.Row(b, d, op.State), op.State));
    }

    /// <summary>
    /// Backpropagates <paramref name="gradOutput"/> (B, D, L) and <paramref name="gradLastState"/> (B, D, N) through the scan
    /// whose forward pass saved <paramref name="checkpoints"/>, writing <paramref name="grads"/>.
    /// </summary>
    public static void Backward(ScanOperands op, float* checkpoints, float* gradOutput, float* gradLastState, ScanGradients grads)
    {
        var partition = ChannelPartition.For(op.Batch, op.Channels);
        long slot = (long)op.Length * op.PaddedState;
        ParallelWork.Run(op.Batch * partition.BlocksPerBatch, BackwardScratch(op), (item, scratch) =>
        {
            int b = item / partition.BlocksPerBatch, block = item % partition.BlocksPerBatch;
            int firstChannel = block * partition.BlockWidth, endChannel = Math.Min(firstChannel + partition.BlockWidth, op.Channels);
            // Input-dependent dB/dC: this item sums its channels into its own (L, Np) slot; the caller adds the slots.
            float* dB = op.VariableB ? grads.BPartial + item * slot : null;
            float* dC = op.VariableC ? grads.CPartial + item * slot : null;
            if (dB is not null) new Span<float>(dB, checked((int)slot)).Clear();
            if (dC is not null) new Span<float>(dC, checked((int)slot)).Clear();
            for (int d = firstChannel; d < endChannel; d++)
                BackwardChannel(op, b, d, checkpoints, gradOutput, gradLastState, grads, dB, dC, scratch);
        });
    }

    private static void BackwardChannel(in ScanOperands op, int b, int d, float* checkpoints, float* gradOutput, float* gradLastState,
        in ScanGradients grads, float* dBSlot, float* dCSlot, float* scratch)
    {
        int np = op.PaddedState, length = op.Length;
        float* gCarry = scratch, u = gCarry + np, x = u + ChunkLength, delta = x + ChunkLength, deltaU = delta + ChunkLength,
            dout = deltaU + ChunkLength, dy = dout + ChunkLength, y = dy + ChunkLength, du = y + ChunkLength,
            dDelta = du + ChunkLength, z = dDelta + ChunkLength, states = z + ChunkLength, decays = states + (ChunkLength + 1) * Lanes;
        long row = op.Row(b, d, length);
        LoadState(gCarry, gradLastState + op.Row(b, d, op.State), op.State, np);
        float bias = op.DeltaBias is null ? 0f : op.DeltaBias[d], skip = op.Skip is null ? 0f : op.Skip[d];
        float* a2 = op.A2 + (long)d * np, a = op.A + (long)d * np;
        float* dA = grads.APartial + op.Row(b, d, np);
        new Span<float>(dA, np).Clear();
        op.Stepwise(op.B, op.VariableB, b, d, out float* bBase, out long bStride);
        op.Stepwise(op.C, op.VariableC, b, d, out float* cBase, out long cStride);
        // Fixed dB/dC: one (Np) row per (b, d) that every step adds into (stride 0); input-dependent: the item's (L, Np) slot.
        float* dBBase = dBSlot != null ? dBSlot : grads.BPartial + op.Row(b, d, np);
        float* dCBase = dCSlot != null ? dCSlot : grads.CPartial + op.Row(b, d, np);
        if (dBSlot is null) new Span<float>(dBBase, np).Clear();
        if (dCSlot is null) new Span<float>(dCBase, np).Clear();
        double dSkip = 0, dBias = 0;

        for (int chunk = op.Chunks - 1; chunk >= 0; chunk--)
        {
            int t0 = chunk * ChunkLength, len = Math.Min(ChunkLength, length - t0);
            LoadPadded(u, op.U + row + t0, len);
            LoadPadded(x, op.Delta + row + t0, len);
            LoadPadded(dout, gradOutput + row + t0, len);
            if (op.Z is not null) LoadPadded(z, op.Z + row + t0, len);
            var skipSum = Vector512<float>.Zero;
            for (int k = 0; k < len; k += Lanes)
            {
                var uk = Vector512.Load(u + k);
                var xk = Vector512.Load(x + k) + Vector512.Create(bias);
                xk.Store(x + k);
                var dk = op.Softplus ? VectorMath.Softplus(xk) : xk;
                dk.Store(delta + k);
                (dk * uk).Store(deltaU + k);
                var g = Vector512.Load(dout + k);
                if (op.Z is not null)
                {
                    var zk = Vector512.Load(z + k);
                    g *= zk * VectorMath.Sigmoid(zk);
                    (uk * skip).Store(y + k);                                  // y is rebuilt for dz below
                }
                g.Store(dy + k);
                (g * skip).Store(du + k);
                skipSum += g * uk;                                              // padded steps have dout = u = 0
                Vector512<float>.Zero.Store(dDelta + k);
            }
            dSkip += Vector512.Sum(skipSum);

            for (int j = 0; j < np; j += Lanes)
            {
                // Recompute this chunk's states h_{t0−1 … t0+len−1} and decays exp(Δ·A) from the checkpoint.
                var h = Vector512.Load(checkpoints + (op.Row(b, d, op.Chunks) + chunk) * np + j);
                h.Store(states);
                var a2j = Vector512.Load(a2 + j);
                float* bt = bBase + t0 * bStride + j, ct = cBase + t0 * cStride + j;
                for (int k = 0; k < len; k++, bt += bStride, ct += cStride)
                {
                    var decay = VectorMath.Exp2(a2j * delta[k]);
                    h = Vector512.FusedMultiplyAdd(decay, h, Vector512.Load(bt) * deltaU[k]);
                    decay.Store(decays + k * Lanes);
                    h.Store(states + (k + 1) * Lanes);
                    if (op.Z is not null) y[k] += Vector512.Sum(h * Vector512.Load(ct));
                }

                // Adjoint, backwards in time: g = dL/dh_t, then carried to h_{t−1} through the decay.
                var gState = Vector512.Load(gCarry + j);
                var aj = Vector512.Load(a + j);
                var dAj = Vector512<float>.Zero;
                float* dBt = dBBase + (t0 + len - 1) * bStride + j, dCt = dCBase + (t0 + len - 1) * cStride + j;
                bt = bBase + (t0 + len - 1) * bStride + j;
                ct = cBase + (t0 + len - 1) * cStride + j;
                for (int k = len - 1; k >= 0; k--, bt -= bStride, ct -= cStride, dBt -= bStride, dCt -= cStride)
                {
                    var hk = Vector512.Load(states + (k + 1) * Lanes);
                    var hPrev = Vector512.Load(states + k * Lanes);
                    var decay = Vector512.Load(decays + k * Lanes);
                    var bk = Vector512.Load(bt);
                    gState = Vector512.FusedMultiplyAdd(Vector512.Load(ct), Vector512.Create(dy[k]), gState);
                    Vector512.FusedMultiplyAdd(hk, Vector512.Create(dy[k]), Vector512.Load(dCt)).Store(dCt);
                    Vector512.FusedMultiplyAdd(gState, Vector512.Create(deltaU[k]), Vector512.Load(dBt)).Store(dBt);
                    // ∂h_t/∂Δ = A·exp(ΔA)·h_{t−1} + B·u;  ∂h_t/∂A = Δ·exp(ΔA)·h_{t−1};  ∂h_t/∂(ΔB) = u.
                    var throughDecay = gState * decay * hPrev;
                    dAj = Vector512.FusedMultiplyAdd(throughDecay, Vector512.Create(delta[k]), dAj);
                    float gB = Vector512.Sum(gState * bk);
                    du[k] += delta[k] * gB;
                    dDelta[k] += u[k] * gB + Vector512.Sum(throughDecay * aj);
                    gState *= decay;
                }
                gState.Store(gCarry + j);
                (Vector512.Load(dA + j) + dAj).Store(dA + j);
            }

            var biasSum = Vector512<float>.Zero;
            for (int k = 0; k < len; k += Lanes)
            {
                var dk = Vector512.Load(dDelta + k);
                if (op.Softplus) dk *= VectorMath.SoftplusDerivative(Vector512.Load(x + k));
                dk.Store(dDelta + k);
                biasSum += dk;                                                  // padded steps have dΔ = 0
                if (op.Z is not null)
                {
                    var zk = Vector512.Load(z + k);
                    var sig = VectorMath.Sigmoid(zk);
                    var dSilu = sig * (Vector512<float>.One + zk * (Vector512<float>.One - sig));
                    (Vector512.Load(dout + k) * Vector512.Load(y + k) * dSilu).Store(z + k);
                }
            }
            dBias += Vector512.Sum(biasSum);
            StoreRow(grads.U + row + t0, du, len);
            StoreRow(grads.Delta + row + t0, dDelta, len);
            if (grads.Z is not null) StoreRow(grads.Z + row + t0, z, len);
        }

        long scalarIndex = op.Row(b, d, 1);
        if (grads.SkipPartial is not null) grads.SkipPartial[scalarIndex] = (float)dSkip;
        if (grads.DeltaBiasPartial is not null) grads.DeltaBiasPartial[scalarIndex] = (float)dBias;
        if (grads.InitialState is not null)
            new ReadOnlySpan<float>(gCarry, op.State).CopyTo(new Span<float>(grads.InitialState + op.Row(b, d, op.State), op.State));
    }

    /// <summary>Copies <paramref name="len"/> values into <paramref name="dst"/> and zeroes it up to the next multiple of 16.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void LoadPadded(float* dst, float* src, int len)
    {
        new ReadOnlySpan<float>(src, len).CopyTo(new Span<float>(dst, len));
        int padded = (len + Lanes - 1) / Lanes * Lanes;
        new Span<float>(dst + len, padded - len).Clear();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow(float* dst, float* src, int len) => new ReadOnlySpan<float>(src, len).CopyTo(new Span<float>(dst, len));

    /// <summary>Copies an (N) state into an (Np) buffer with zero padding; null means the zero state.</summary>
    private static void LoadState(float* dst, float* src, int n, int np)
    {
        if (src is null) { new Span<float>(dst, np).Clear(); return; }
        new ReadOnlySpan<float>(src, n).CopyTo(new Span<float>(dst, n));
        new Span<float>(dst + n, np - n).Clear();
    }
}
