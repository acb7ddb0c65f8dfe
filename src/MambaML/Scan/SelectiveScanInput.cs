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
    // Runs on every scan call (twice through SelectiveScan.Run): each shape is read from libtorch once, and messages are
    // built only for a failure (formatting them all made a check cost 17 µs, a tenth of a small model's prediction).
    public void Validate()
    {
        long[] u = U.shape;
        if (u.Length != 3) throw Invalid(nameof(U), "must be (batch, D, L)", u);
        long b = u[0], d = u[1], l = u[2];
        if (b <= 0 || d <= 0 || l <= 0) throw Invalid(nameof(U), "must have non-zero batch, channels and length", u);
        long[] delta = Delta.shape;
        if (!delta.SequenceEqual(u)) throw Invalid(nameof(Delta), $"must have u's shape ({b}, {d}, {l})", delta);
        long[] a = A.shape;
        if (a.Length != 2 || a[0] != d || a[1] <= 0) throw Invalid(nameof(A), $"must be (D={d}, N)", a);
        long n = a[1];
        foreach (var (t, name) in new[] { (B, nameof(B)), (C, nameof(C)) })
        {
            long[] shape = t.shape;
            bool variable = shape.Length == 3 && shape[0] == b && shape[1] == n && shape[2] == l;
            bool fixedShape = shape.Length == 2 && shape[0] == d && shape[1] == n;
            if (!variable && !fixedShape) throw Invalid(name, $"must be (batch={b}, N={n}, L={l}) or (D={d}, N={n})", shape);
        }
        if (D?.shape is { } dShape && !dShape.SequenceEqual(new[] { d })) throw Invalid(nameof(D), $"must be (D={d})", dShape);
        if (DeltaBias?.shape is { } biasShape && !biasShape.SequenceEqual(new[] { d })) throw Invalid(nameof(DeltaBias), $"must be (D={d})", biasShape);
        if (Z?.shape is { } zShape && !zShape.SequenceEqual(u)) throw Invalid(nameof(Z), $"must have u's shape ({b}, {d}, {l})", zShape);
        if (InitialState?.shape is { } stateShape && !stateShape.SequenceEqual(new[] { b, d, n }))
            throw Invalid(nameof(InitialState), $"must be (batch={b}, D={d}, N={n})", stateShape);
        var (deviceType, deviceIndex) = (U.device_type, U.device_index);
        foreach (var t in AllTensors())
        {
            if (t.device_type != deviceType || t.device_index != deviceIndex)
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

    private static ArgumentException Invalid(string name, string what, long[] shape) =>
        new($"Selective scan: {name} {what}; got ({string.Join(", ", shape)}).", name);
}

/// <summary>What a selective scan returns.</summary>
/// <param name="Output">The scan output, (batch, D, L), in u's dtype.</param>
/// <param name="LastState">The state after the last step, (batch, D, N), when requested; otherwise null.</param>
public readonly record struct SelectiveScanResult(Tensor Output, Tensor? LastState);
