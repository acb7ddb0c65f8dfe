using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.Scan;

/// <summary>
/// The arguments of one selective scan (Mamba-1's <c>selective_scan_fn</c>), shared by every backend.
/// </summary>
/// <remarks>
/// Shapes: <c>U</c>, <c>Delta</c>, <c>Z</c> are (batch, channels D, length L); <c>A</c> is (D, N);
/// <c>B</c> and <c>C</c> are input-dependent (batch, N, L) or fixed (D, N); <c>D</c> and <c>DeltaBias</c> are (D);
/// <c>InitialState</c> is (batch, D, N). Semantics, computed in fp32 (fp64 for fp64 inputs) whatever the input dtype:
/// <code>
/// delta = softplus(delta + delta_bias)                  (softplus only if DeltaSoftplus)
/// h_t   = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t
/// y_t   = sum_n h_t[n] * C_t[n] + D * u_t
/// out   = y * silu(z)                                   (if Z given)
/// </code>
/// The input object does not own its tensors.
/// </remarks>
public sealed class SelectiveScanInput
{
    /// <summary>Input sequence u, (batch, D, L).</summary>
    public required Tensor U { get; init; }
    /// <summary>Step sizes before bias/softplus, (batch, D, L).</summary>
    public required Tensor Delta { get; init; }
    /// <summary>State matrix (diagonal per channel), (D, N); negative real for a stable scan.</summary>
    public required Tensor A { get; init; }
    /// <summary>Input matrix: (batch, N, L) input-dependent, or (D, N) fixed.</summary>
    public required Tensor B { get; init; }
    /// <summary>Output matrix: (batch, N, L) input-dependent, or (D, N) fixed.</summary>
    public required Tensor C { get; init; }
    /// <summary>Optional skip weight, (D).</summary>
    public Tensor? D { get; init; }
    /// <summary>Optional gate, (batch, D, L): the output is multiplied by silu(z).</summary>
    public Tensor? Z { get; init; }
    /// <summary>Optional bias added to delta before the softplus, (D).</summary>
    public Tensor? DeltaBias { get; init; }
    /// <summary>Apply softplus to delta (+ bias); softplus(x) = x for x &gt; 20, as in PyTorch.</summary>
    public bool DeltaSoftplus { get; init; }
    /// <summary>Optional state to start from, (batch, D, N); zeros when absent.</summary>
    public Tensor? InitialState { get; init; }
    /// <summary>Also return the state after the last step, (batch, D, N), in fp32 (fp64 for fp64 inputs).</summary>
    public bool ReturnLastState { get; init; }

    /// <summary>Batch size.</summary>
    public long Batch => U.shape[0];
    /// <summary>Channel count D.</summary>
    public long Channels => U.shape[1];
    /// <summary>Sequence length L.</summary>
    public long Length => U.shape[2];
    /// <summary>State size N.</summary>
    public long StateSize => A.shape[1];
    /// <summary>Whether B is input-dependent (batch, N, L) rather than fixed (D, N).</summary>
    public bool VariableB => B.dim() == 3;
    /// <summary>Whether C is input-dependent (batch, N, L) rather than fixed (D, N).</summary>
    public bool VariableC => C.dim() == 3;

    /// <summary>The dtype the scan computes in: fp64 for fp64 inputs, fp32 otherwise.</summary>
    public ScalarType ComputeType => U.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;

    /// <summary>Checks shapes, devices and dtypes; throws <see cref="ArgumentException"/> naming the offending argument.</summary>
    public void Validate()
    {
        Expect(U.dim() == 3, nameof(U), "must be (batch, D, L)", U);
        long b = U.shape[0], d = U.shape[1], l = U.shape[2];
        Expect(b > 0 && d > 0 && l > 0, nameof(U), "must have non-zero batch, channels and length", U);
        Expect(Delta.shape.SequenceEqual(U.shape), nameof(Delta), $"must have u's shape ({b}, {d}, {l})", Delta);
        Expect(A.dim() == 2 && A.shape[0] == d && A.shape[1] > 0, nameof(A), $"must be (D={d}, N)", A);
        long n = A.shape[1];
        foreach (var (t, name) in new[] { (B, nameof(B)), (C, nameof(C)) })
        {
            bool variable = t.dim() == 3 && t.shape[0] == b && t.shape[1] == n && t.shape[2] == l;
            bool fixedShape = t.dim() == 2 && t.shape[0] == d && t.shape[1] == n;
            Expect(variable || fixedShape, name, $"must be (batch={b}, N={n}, L={l}) or (D={d}, N={n})", t);
        }
        if (D is not null) Expect(D.dim() == 1 && D.shape[0] == d, nameof(D), $"must be (D={d})", D);
        if (DeltaBias is not null) Expect(DeltaBias.dim() == 1 && DeltaBias.shape[0] == d, nameof(DeltaBias), $"must be (D={d})", DeltaBias);
        if (Z is not null) Expect(Z.shape.SequenceEqual(U.shape), nameof(Z), $"must have u's shape ({b}, {d}, {l})", Z);
        if (InitialState is not null)
            Expect(InitialState.dim() == 3 && InitialState.shape[0] == b && InitialState.shape[1] == d && InitialState.shape[2] == n,
                nameof(InitialState), $"must be (batch={b}, D={d}, N={n})", InitialState);
        foreach (var t in AllTensors())
        {
            if (t.device.type != U.device.type || t.device.index != U.device.index)
                throw new ArgumentException($"Selective scan: all tensors must be on u's device ({U.device}); found one on {t.device}.");
            if (!t.is_floating_point())
                throw new ArgumentException($"Selective scan: all tensors must be floating point; found {t.dtype}.");
        }
    }

    /// <summary>The tensors present, in a fixed order: u, delta, A, B, C, then D, z, delta_bias, initial state where given.</summary>
    public IEnumerable<Tensor> AllTensors()
    {
        yield return U; yield return Delta; yield return A; yield return B; yield return C;
        if (D is not null) yield return D;
        if (Z is not null) yield return Z;
        if (DeltaBias is not null) yield return DeltaBias;
        if (InitialState is not null) yield return InitialState;
    }

    private static void Expect(bool ok, string name, string what, Tensor t)
    {
        if (!ok) throw new ArgumentException($"Selective scan: {name} {what}; got ({string.Join(", ", t.shape)}).", name);
    }
}

/// <summary>What a selective scan returns.</summary>
/// <param name="Output">The scan output, (batch, D, L), in u's dtype.</param>
/// <param name="LastState">The state after the last step, (batch, D, N), when requested; otherwise null.</param>
public readonly record struct SelectiveScanResult(Tensor Output, Tensor? LastState);
