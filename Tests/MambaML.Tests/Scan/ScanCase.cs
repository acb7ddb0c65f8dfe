using MambaML.Scan;
using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.Tests.Scan;

/// <summary>A random selective-scan problem: shapes, which optional inputs are present, and the leaf tensors.</summary>
internal sealed class ScanCase : IDisposable
{
    public required long Batch, Channels, StateSize, Length;
    public required bool VariableB, VariableC, HasD, HasZ, HasDeltaBias, Softplus, HasInitialState;
    public ScalarType DType { get; init; } = ScalarType.Float32;
    public Device Device { get; init; } = CPU;

    private readonly List<Tensor> _leaves = new();

    public override string ToString() =>
        $"(B={Batch}, D={Channels}, N={StateSize}, L={Length}, {DType}, B:{(VariableB ? "var" : "fixed")}, C:{(VariableC ? "var" : "fixed")}, " +
        $"D:{HasD}, z:{HasZ}, bias:{HasDeltaBias}, softplus:{Softplus}, h0:{HasInitialState})";

    /// <summary>Draws a case with odd sizes and random flags; <paramref name="forceLength"/>/<paramref name="forceState"/> pin L or N.</summary>
    public static ScanCase Random(Random rng, long? forceLength = null, long? forceState = null, ScalarType? dtype = null, Device? device = null)
    {
        long[] lengths = { 1, 2, 3, 7, 17, 33, 64, 129, 255 };
        long[] states = { 1, 4, 16, 64 };
        return new ScanCase
        {
            Batch = rng.Next(1, 4), Channels = rng.Next(1, 24) | 1, StateSize = forceState ?? states[rng.Next(states.Length)],
            Length = forceLength ?? lengths[rng.Next(lengths.Length)],
            VariableB = rng.Next(4) != 0, VariableC = rng.Next(4) != 0, HasD = rng.Next(2) == 0, HasZ = rng.Next(2) == 0,
            HasDeltaBias = rng.Next(2) == 0, Softplus = rng.Next(3) != 0, HasInitialState = rng.Next(2) == 0,
            DType = dtype ?? ScalarType.Float32, Device = device ?? CPU,
        };
    }

    /// <summary>Fresh leaf tensors (requires_grad) drawn from <paramref name="seed"/>; the same seed gives the same input.</summary>
    public SelectiveScanInput MakeInput(long seed, bool returnLastState = true)
    {
        var g = new Generator((ulong)seed);
        Tensor Leaf(Tensor t) { var leaf = t.to(DType).to(Device).detach().requires_grad_(true); _leaves.Add(leaf); return leaf; }
        Tensor R(params long[] shape) => randn(shape, generator: g);
        // Δ before softplus around 0 (softplus ≈ 0.7); without softplus a positive Δ in (0.01, 1) and a bias ≥ 0, since a
        // negative Δ makes exp(Δ·A) > 1 and the state grow without bound. A = −(0.5..2).
        var delta = Softplus ? R(Batch, Channels, Length) * 0.5 : rand(new[] { Batch, Channels, Length }, generator: g) + 0.01;
        return new SelectiveScanInput
        {
            U = Leaf(R(Batch, Channels, Length)),
            Delta = Leaf(delta),
            A = Leaf(-(rand(new[] { Channels, StateSize }, generator: g) * 1.5 + 0.5)),
            B = Leaf(VariableB ? R(Batch, StateSize, Length) : R(Channels, StateSize)),
            C = Leaf(VariableC ? R(Batch, StateSize, Length) : R(Channels, StateSize)),
            D = HasD ? Leaf(R(Channels)) : null,
            Z = HasZ ? Leaf(R(Batch, Channels, Length)) : null,
            DeltaBias = HasDeltaBias ? Leaf(Softplus ? R(Channels) * 0.5 : rand(new[] { Channels }, generator: g) * 0.5) : null,
            DeltaSoftplus = Softplus,
            InitialState = HasInitialState ? Leaf(R(Batch, Channels, StateSize)) : null,
            ReturnLastState = returnLastState,
        };
    }

    public void Dispose() { foreach (var t in _leaves) t.Dispose(); _leaves.Clear(); }
}

/// <summary>Runs two backends on the same case and compares outputs, final states and every input gradient.</summary>
internal static class ScanParity
{
    /// <summary>
    /// Asserts that <paramref name="candidate"/> matches <paramref name="reference"/> within
    /// |a − b| ≤ atol + rtol·|b| element-wise, for the output, the last state and the gradient of every input.
    /// Kernel outputs are NaN-poisoned before the candidate runs.
    /// </summary>
    public static void AssertMatches(ISelectiveScan candidate, ISelectiveScan reference, ScanCase c, long seed, double rtol, double atol)
    {
        using var scope = NewDisposeScope();
        var (outRef, stateRef, gradsRef) = RunWithGrads(reference, c, seed);
        ScanOutputs.Poison = true;
        try
        {
            var (outNew, stateNew, gradsNew) = RunWithGrads(candidate, c, seed);
            AssertClose(outNew, outRef, rtol, atol, $"output {c}");
            AssertClose(stateNew!, stateRef!, rtol, atol, $"last state {c}");
            Assert.AreEqual(gradsRef.Count, gradsNew.Count);
            foreach (var (name, g) in gradsRef) AssertClose(gradsNew[name], g, rtol, atol, $"d{name} {c}");
        }
        finally { ScanOutputs.Poison = false; }
    }

    /// <summary>Forward with the last state, then backward from random output and state gradients.</summary>
    public static (Tensor Output, Tensor? LastState, Dictionary<string, Tensor> Grads) RunWithGrads(ISelectiveScan scan, ScanCase c, long seed)
    {
        var input = c.MakeInput(seed);
        input.Validate();
        var (y, last) = scan.Run(input);
        var g = new Generator((ulong)(seed + 7919));
        var dy = randn(y.shape, generator: g).to(y.dtype).to(y.device);
        var loss = (y * dy).sum().to(ScalarType.Float64);
        if (last is not null) loss = loss + (last * randn(last.shape, generator: g).to(last.dtype).to(last.device)).sum().to(ScalarType.Float64);
        loss.backward();
        var grads = new Dictionary<string, Tensor>();
        void Add(string name, Tensor? t) { if (t is not null) grads[name] = t.grad!.detach().clone(); }
        Add("u", input.U); Add("delta", input.Delta); Add("A", input.A); Add("B", input.B); Add("C", input.C);
        Add("D", input.D); Add("z", input.Z); Add("delta_bias", input.DeltaBias); Add("h0", input.InitialState);
        return (y.detach(), last?.detach(), grads);
    }

    /// <summary>Asserts |actual − expected| ≤ atol + rtol·|expected| everywhere (NaN fails), reporting the worst element.</summary>
    public static void AssertClose(Tensor actual, Tensor expected, double rtol, double atol, string what)
    {
        CollectionAssert.AreEqual(expected.shape, actual.shape, $"{what}: shape");
        var a = actual.to(ScalarType.Float64).cpu();
        var e = expected.to(ScalarType.Float64).cpu();
        var excess = (a - e).abs() - (e.abs() * rtol + atol);
        bool finite = a.isfinite().all().item<bool>();
        double worst = excess.max().item<double>();
        Assert.IsTrue(finite && worst <= 0,
            $"{what}: {(finite ? "" : "non-finite values; ")}max |diff| = {(a - e).abs().max().item<double>():G4}, " +
            $"max |expected| = {e.abs().max().item<double>():G4}, worst excess over tolerance = {worst:G4}");
    }
}
