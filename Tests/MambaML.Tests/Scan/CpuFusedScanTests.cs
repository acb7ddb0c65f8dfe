using MambaML.Model;
using MambaML.Scan;
using MambaML.Scan.Cpu;
using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.Tests.Scan;

/// <summary>The fused CPU scan against the reference: outputs, last state and every input gradient, on random cases.</summary>
[TestClass]
public sealed class CpuFusedScanTests
{
    // Tolerance: |fused − exact| ≤ Atol + Rtol·|exact|, element-wise, against the reference run in fp64 on the same values
    // (the fp32 reference carries fp32 rounding of its own, as large as ours, so it cannot resolve 1e-5).
    // Rtol = 1e-5 is the bar. Atol = 1e-5 × the exact tensor's RMS: gradients such as dA, dB and dΔ are sums over
    // many steps and channels that cancel, so single elements pass through zero while their rounding error stays at the
    // scale of the summands; an absolute floor at 1e-5 of the tensor's typical size keeps the check at "1e-5 relative to
    // the tensor" without letting near-zero elements demand more precision than fp32 holds.
    private const double Rtol = 1e-5;
    private const double AtolPerRms = 1e-5;

    private static readonly ISelectiveScan Fused = CpuFusedSelectiveScan.Instance;
    private static readonly ISelectiveScan Reference = ReferenceSelectiveScan.Instance;

    [TestMethod]
    public void RandomCasesMatchTheFp64Reference()
    {
        var rng = new Random(3001);
        for (int i = 0; i < 12; i++) AssertMatchesFp64Reference(ScanCase.Random(rng), seed: 100 + i);
    }

    [TestMethod]
    public void SingleStepAndOddLengthsMatch()
    {
        var rng = new Random(3002);
        foreach (long length in new long[] { 1, 1, 3, 63, 65, 131 })
            AssertMatchesFp64Reference(ScanCase.Random(rng, forceLength: length), seed: 200 + length);
    }

    [TestMethod]
    public void StateSizesOneAndSixtyFourMatch()
    {
        var rng = new Random(3003);
        foreach (long n in new long[] { 1, 1, 17, 64, 64 })
            AssertMatchesFp64Reference(ScanCase.Random(rng, forceState: n), seed: 300 + n);
    }

    [TestMethod]
    public void EveryCombinationOfOptionalInputsMatches()
    {
        // 2^7 combinations of fixed/variable B and C, D, z, delta_bias, softplus and initial state, on a length that spans
        // two chunk boundaries and a state size that needs padding.
        for (int flags = 0; flags < 128; flags++)
        {
            var c = new ScanCase
            {
                Batch = 2, Channels = 3, StateSize = 5, Length = 130,
                VariableB = (flags & 1) != 0, VariableC = (flags & 2) != 0, HasD = (flags & 4) != 0, HasZ = (flags & 8) != 0,
                HasDeltaBias = (flags & 16) != 0, Softplus = (flags & 32) != 0, HasInitialState = (flags & 64) != 0,
            };
            AssertMatchesFp64Reference(c, seed: 400 + flags);
        }
    }

    [TestMethod]
    public void ExtremeDeltasMatch()
    {
        // Δ + bias spread over about [−100, 140]: both sides of softplus's threshold at 20 (in fp32 the two branches agree
        // to 1e-9, so this checks range, not the switch), e^x overflowing fp32 above 88 and underflowing below −87.
        using var c = new ScanCase
        {
            Batch = 2, Channels = 5, StateSize = 16, Length = 40, VariableB = true, VariableC = true,
            HasD = true, HasZ = true, HasDeltaBias = true, Softplus = true, HasInitialState = true,
        };
        using var scope = NewDisposeScope();
        var input32 = c.MakeInput(500);
        using var c64 = WithDType(c, ScalarType.Float64);
        var input64 = c64.MakeInput(500);
        foreach (var input in new[] { input32, input64 })
        {
            using var _ = no_grad();
            input.Delta.mul_(80).add_(20);
            input.A.mul_(0.01);                                                  // keeps exp(Δ·A) away from 0 at large Δ
        }
        AssertRunsMatch(input32, input64, c + " with extreme deltas", seed: 500);
    }

    [TestMethod]
    public void LongSequencesAcrossManyChunksMatch()
    {
        var c = new ScanCase
        {
            Batch = 1, Channels = 4, StateSize = 16, Length = 1000, VariableB = true, VariableC = true,
            HasD = true, HasZ = true, HasDeltaBias = true, Softplus = true, HasInitialState = true,
        };
        AssertMatchesFp64Reference(c, seed: 600);
    }

    [TestMethod]
    public void InferenceWithoutGradientsMatchesAndReturnsInputDtype()
    {
        var rng = new Random(3004);
        for (int i = 0; i < 4; i++)
        {
            using var c = ScanCase.Random(rng);
            using var scope = NewDisposeScope();
            var input = c.MakeInput(700 + i);
            SelectiveScanResult expected;
            using (no_grad()) expected = Reference.Run(input);
            ScanOutputs.Poison = true;
            try
            {
                using var _ = no_grad();
                var actual = Fused.Run(input);
                Assert.IsFalse(actual.Output.requires_grad);
                ScanParity.AssertClose(actual.Output, expected.Output, 1e-4, 1e-4 * Rms(expected.Output), $"output {c}");
                ScanParity.AssertClose(actual.LastState!, expected.LastState!, 1e-4, 1e-4 * Rms(expected.LastState!), $"last state {c}");
            }
            finally { ScanOutputs.Poison = false; }
        }
    }

    [TestMethod]
    public void Bfloat16InputsComputeInFp32AndReturnBfloat16()
    {
        using var c = new ScanCase
        {
            Batch = 2, Channels = 7, StateSize = 16, Length = 33, VariableB = true, VariableC = true,
            HasD = true, HasZ = true, HasDeltaBias = true, Softplus = true, HasInitialState = false, DType = ScalarType.BFloat16,
        };
        using var scope = NewDisposeScope();
        var input = c.MakeInput(800);
        var (output, last) = Fused.Run(input);
        Assert.AreEqual(ScalarType.BFloat16, output.dtype);
        Assert.AreEqual(ScalarType.Float32, last!.dtype);
        // The same bf16 values, scanned by the reference in fp64: only the final rounding to bf16 differs (2^-8 relative).
        var exact = Reference.Run(ToDType(input, ScalarType.Float64));
        ScanParity.AssertClose(output, exact.Output, 1e-2, 1e-2 * Rms(exact.Output), "bf16 output");
        ScanParity.AssertClose(last, exact.LastState!, 1e-5, 1e-5 * Rms(exact.LastState!), "last state from bf16 inputs");
        (output.to(ScalarType.Float32).sum() + last.sum()).backward();
        foreach (var t in input.AllTensors())
        {
            Assert.AreEqual(ScalarType.BFloat16, t.grad!.dtype);
            Assert.IsTrue(t.grad.to(ScalarType.Float32).isfinite().all().item<bool>());
        }
    }

    [TestMethod]
    public void NonContiguousInputsGiveTheSameResult()
    {
        using var c = new ScanCase
        {
            Batch = 3, Channels = 9, StateSize = 16, Length = 70, VariableB = true, VariableC = true,
            HasD = true, HasZ = true, HasDeltaBias = true, Softplus = true, HasInitialState = true,
        };
        using var scope = NewDisposeScope();
        var input = c.MakeInput(900);
        // Same values, laid out transposed in memory.
        Tensor Strided(Tensor t) => t.dim() == 3 ? t.transpose(1, 2).contiguous().transpose(1, 2) : t;
        var strided = new SelectiveScanInput
        {
            U = Strided(input.U), Delta = Strided(input.Delta), A = input.A.t().contiguous().t(), B = Strided(input.B), C = Strided(input.C),
            D = input.D, Z = Strided(input.Z!), DeltaBias = input.DeltaBias, DeltaSoftplus = true,
            InitialState = Strided(input.InitialState!), ReturnLastState = true,
        };
        Assert.IsFalse(strided.U.is_contiguous());
        var expected = Fused.Run(input);
        var actual = Fused.Run(strided);
        Assert.IsTrue(expected.Output.equal(actual.Output).all().item<bool>(), "output differs for non-contiguous inputs");
        Assert.IsTrue(expected.LastState!.equal(actual.LastState!).all().item<bool>(), "last state differs for non-contiguous inputs");
    }

    [TestMethod]
    public void RepeatedRunsAreBitwiseIdentical()
    {
        using var c = new ScanCase
        {
            Batch = 4, Channels = 37, StateSize = 16, Length = 200, VariableB = true, VariableC = true,
            HasD = true, HasZ = true, HasDeltaBias = true, Softplus = true, HasInitialState = true,
        };
        using var scope = NewDisposeScope();
        var first = ScanParity.RunWithGrads(Fused, c, 1000);
        for (int i = 0; i < 3; i++)
        {
            var again = ScanParity.RunWithGrads(Fused, c, 1000);
            Assert.IsTrue(first.Output.equal(again.Output).all().item<bool>(), "output");
            foreach (var (name, g) in first.Grads) Assert.IsTrue(g.equal(again.Grads[name]).all().item<bool>(), $"d{name}");
        }
    }

    [TestMethod]
    public void GradientFlowsThroughTheLastStateAlone()
    {
        using var c = new ScanCase
        {
            Batch = 2, Channels = 5, StateSize = 4, Length = 70, VariableB = true, VariableC = false,
            HasD = true, HasZ = true, HasDeltaBias = true, Softplus = true, HasInitialState = true,
        };
        using var scope = NewDisposeScope();
        Dictionary<string, Tensor> Grads(ISelectiveScan scan, ScanCase sc)
        {
            var input = sc.MakeInput(1100);
            scan.Run(input).LastState!.pow(2).sum().to(ScalarType.Float64).backward();
            return new() { ["u"] = input.U.grad!, ["delta"] = input.Delta.grad!, ["A"] = input.A.grad!, ["B"] = input.B.grad!, ["h0"] = input.InitialState!.grad! };
        }
        using var c64 = WithDType(c, ScalarType.Float64);
        var actual = Grads(Fused, c);
        var expected = Grads(Reference, c64);
        foreach (var (name, e) in expected) ScanParity.AssertClose(actual[name], e, Rtol, AtolPerRms * Rms(e), $"d{name} from the last state only");
    }

    [TestMethod]
    public void AutoPicksTheFusedKernelOnCpuAndTheReferenceForFp64()
    {
        using var c = ScanCase.Random(new Random(3005));
        using var c64 = WithDType(c, ScalarType.Float64);
        Assert.AreSame(CpuFusedSelectiveScan.Instance, SelectiveScan.Get(SelectiveScanBackend.CpuFused));
        Assert.AreSame(CpuFusedSelectiveScan.Instance, SelectiveScan.Resolve(c.MakeInput(1), SelectiveScanBackend.Auto));
        Assert.AreSame(ReferenceSelectiveScan.Instance, SelectiveScan.Resolve(c64.MakeInput(1), SelectiveScanBackend.Auto));
    }

    [TestMethod]
    public void Fp64InputsAreRefusedWithTheReason()
    {
        using var c = WithDType(ScanCase.Random(new Random(3006)), ScalarType.Float64);
        var input = c.MakeInput(1);
        Assert.IsFalse(Fused.CanRun(input, out var reason));
        StringAssert.Contains(reason, "fp64");
        var e = Assert.ThrowsExactly<NotSupportedException>(() => SelectiveScan.Run(input, SelectiveScanBackend.CpuFused));
        StringAssert.Contains(e.Message, "CpuFused");
        StringAssert.Contains(e.Message, "Reference");
    }

    [TestMethod]
    public void BackboneTrainsTheSameWithTheFusedScan()
    {
        // A model-level check: outputs, final states and every parameter gradient of a 2-layer backbone with the fused
        // scan agree with an fp64 copy running the reference scan, with and without padding lengths and an initial state.
        var config = new MambaConfig { DModel = 16, NLayer = 2, DState = 8, ScanBackend = SelectiveScanBackend.CpuFused };
        using var scope = NewDisposeScope();
        using var fused = new MambaBackbone(config, seed: 7);
        using var exact = new MambaBackbone(config with { ScanBackend = SelectiveScanBackend.Reference }, seed: 7);
        // Copy the weights rather than trust the seed: TorchSharp 0.107's nn.init.uniform_ ignores its generator argument.
        exact.load_state_dict(fused.state_dict());
        exact.to(ScalarType.Float64);
        var g = new Generator(1200);
        var x = randn(new long[] { 3, 37, 16 }, generator: g);
        var weights = randn(new long[] { 3, 37, 16 }, generator: g);
        var lengths = tensor(new long[] { 37, 20, 1 });
        foreach (var withLengths in new[] { false, true })
        {
            fused.zero_grad();
            exact.zero_grad();
            var start = fused.ZeroState(3);
            var (yFused, sFused) = fused.Forward(x, start, withLengths ? lengths : null, returnState: true);
            var (yExact, sExact) = exact.Forward(x.to(ScalarType.Float64), MambaState.Zeros(config, 3, dtype: ScalarType.Float64),
                withLengths ? lengths : null, returnState: true);
            (yFused * weights).sum().backward();
            (yExact * weights.to(ScalarType.Float64)).sum().backward();
            string what = withLengths ? "with lengths" : "without lengths";
            ScanParity.AssertClose(yFused, yExact, 1e-4, 1e-4 * Rms(yExact), $"backbone output {what}");
            for (int i = 0; i < config.NLayer; i++)
                ScanParity.AssertClose(sFused!.Layers[i].Ssm, sExact!.Layers[i].Ssm, 1e-4, 1e-4 * Rms(sExact.Layers[i].Ssm), $"layer {i} state {what}");
            var exactGrads = exact.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!);
            foreach (var (name, p) in fused.named_parameters())
                ScanParity.AssertClose(p.grad!, exactGrads[name], 1e-4, 1e-4 * Rms(exactGrads[name]), $"d{name} {what}");
        }
    }

    [TestMethod]
    public void TrainingWithTheFusedScanFollowsTheReference()
    {
        // Ten Adam steps from the same weights: the loss curves agree and go down.
        var config = new MambaConfig { DModel = 16, NLayer = 2, DState = 16, ScanBackend = SelectiveScanBackend.CpuFused };
        using var scope = NewDisposeScope();
        var g = new Generator(1400);
        var x = randn(new long[] { 4, 40, 16 }, generator: g);
        var target = randn(new long[] { 4, 40, 16 }, generator: g) * 0.1 + x.roll(1, 1) * 0.5;
        using var fused = new MambaBackbone(config, seed: 13);
        using var reference = new MambaBackbone(config with { ScanBackend = SelectiveScanBackend.Reference }, seed: 13);
        reference.load_state_dict(fused.state_dict());
        double[] Losses(MambaBackbone model)
        {
            var optimizer = optim.Adam(model.parameters(), lr: 1e-2);
            var losses = new double[10];
            for (int step = 0; step < losses.Length; step++)
            {
                using var stepScope = NewDisposeScope();
                optimizer.zero_grad();
                var loss = nn.functional.mse_loss(model.Forward(x).Output, target);
                loss.backward();
                optimizer.step();
                losses[step] = loss.item<float>();
            }
            return losses;
        }
        var fusedLosses = Losses(fused);
        var referenceLosses = Losses(reference);
        for (int step = 0; step < fusedLosses.Length; step++)
            Assert.AreEqual(referenceLosses[step], fusedLosses[step], 1e-4 * referenceLosses[0], $"loss at step {step}");
        Assert.IsLessThan(0.9 * fusedLosses[0], fusedLosses[^1], "the loss should fall over ten steps");
    }

    [TestMethod]
    public void BackboneStepsReproduceTheFusedForward()
    {
        // Step-by-step decoding (no scan) continues exactly where a fused Forward over a prefix left off.
        var config = new MambaConfig { DModel = 16, NLayer = 2, DState = 16, ScanBackend = SelectiveScanBackend.CpuFused };
        using var scope = NewDisposeScope();
        using var model = new MambaBackbone(config, seed: 11);
        using var _ = no_grad();
        var x = randn(new long[] { 2, 40, 16 }, generator: new Generator(1300));
        var (whole, _) = model.Forward(x);
        var (prefix, state) = model.Forward(x.narrow(1, 0, 30), returnState: true);
        var s = state!;
        for (int t = 30; t < 40; t++)
        {
            var (yt, next) = model.Step(x.select(1, t), s);
            ScanParity.AssertClose(yt, whole.select(1, t), 1e-4, 1e-4 * Rms(whole), $"step {t}");
            s = next;
        }
        ScanParity.AssertClose(prefix, whole.narrow(1, 0, 30), 1e-5, 1e-5 * Rms(whole), "prefix");
    }

    [TestMethod]
    public void TorchThreadCount_BoundsTheWorkers_AndResultsDoNotDependOnIt()
    {
        // A fit with NumberOfThreads = 1 sets libtorch's count for its thread; the fused scan keeps to it too.
        using var scope = NewDisposeScope();
        int threads = get_num_threads();
        using var c = ScanCase.Random(new Random(17), forceLength: 37);
        var (allThreads, allThreadsState, grads) = ScanParity.RunWithGrads(Fused, c, seed: 5);
        try
        {
            set_num_threads(1);
            Assert.AreEqual(1, ParallelWork.WorkerCount(1000));
            var (oneThread, oneThreadState, oneThreadGrads) = ScanParity.RunWithGrads(Fused, c, seed: 5);
            Assert.IsTrue(oneThread.eq(allThreads).all().item<bool>(), "output");
            if (allThreadsState is not null) Assert.IsTrue(oneThreadState!.eq(allThreadsState).all().item<bool>(), "last state");
            foreach (var (name, grad) in grads) Assert.IsTrue(oneThreadGrads[name].eq(grad).all().item<bool>(), name);
        }
        finally { set_num_threads(threads); }
        Assert.AreEqual(Math.Min(Environment.ProcessorCount, threads), ParallelWork.WorkerCount(1000));
    }

    [TestMethod]
    public void WorkPartitionCoversEveryChannelOnceFromTwoToSixtyFourCores()
    {
        foreach (int cores in new[] { 1, 2, 3, 16, 64 })
            foreach (var (batch, channels) in new[] { (1, 1), (8, 256), (1, 1536), (3, 7), (64, 2048), (2, 5) })
            {
                var p = ChannelPartition.For(batch, channels, cores);
                string what = $"{cores} cores, B={batch}, D={channels}: {p}";
                Assert.IsTrue(p.BlockWidth >= 1 && p.BlocksPerBatch >= 1, what);
                Assert.IsTrue((p.BlocksPerBatch - 1) * p.BlockWidth < channels && p.BlocksPerBatch * p.BlockWidth >= channels, what);
                // At least two items per core (four are aimed at; block rounding can halve that) when there are enough channels.
                Assert.IsTrue(batch * p.BlocksPerBatch >= Math.Min(2L * cores, (long)batch * channels), what);
            }
    }

    /// <summary>Runs the fused scan on the fp32 case and the reference on the same values in fp64; compares everything.</summary>
    private static void AssertMatchesFp64Reference(ScanCase c, long seed)
    {
        using var scope = NewDisposeScope();
        using var c64 = WithDType(c, ScalarType.Float64);
        var (outRef, stateRef, gradsRef) = ScanParity.RunWithGrads(Reference, c64, seed);
        ScanOutputs.Poison = true;
        try
        {
            var (outNew, stateNew, gradsNew) = ScanParity.RunWithGrads(Fused, c, seed);
            AssertClose(outNew, outRef, $"output {c} seed {seed}");
            AssertClose(stateNew!, stateRef!, $"last state {c} seed {seed}");
            CollectionAssert.AreEquivalent(gradsRef.Keys.ToList(), gradsNew.Keys.ToList(), $"gradients present {c}");
            foreach (var (name, g) in gradsRef) AssertClose(gradsNew[name], g, $"d{name} {c} seed {seed}");
        }
        finally
        {
            ScanOutputs.Poison = false;
            c.Dispose();
        }
    }

    /// <summary>As <see cref="AssertMatchesFp64Reference"/>, for inputs built by hand.</summary>
    private static void AssertRunsMatch(SelectiveScanInput input32, SelectiveScanInput input64, string what, long seed)
    {
        var g = new Generator((ulong)seed);
        var (y, last) = Fused.Run(input32);
        var (yRef, lastRef) = Reference.Run(input64);
        var dy = randn(y.shape, generator: g);
        var dLast = randn(last!.shape, generator: g);
        ((y * dy).sum().to(ScalarType.Float64) + (last * dLast).sum().to(ScalarType.Float64)).backward();
        ((yRef * dy.to(ScalarType.Float64)).sum() + (lastRef! * dLast.to(ScalarType.Float64)).sum()).backward();
        AssertClose(y, yRef, $"output {what}");
        AssertClose(last, lastRef!, $"last state {what}");
        foreach (var (a, e) in input32.AllTensors().Zip(input64.AllTensors())) AssertClose(a.grad!, e.grad!, $"gradient {what}");
    }

    private static void AssertClose(Tensor actual, Tensor exact, string what) =>
        ScanParity.AssertClose(actual, exact, Rtol, AtolPerRms * Rms(exact), what);

    private static double Rms(Tensor t) => t.to(ScalarType.Float64).pow(2).mean().sqrt().item<double>();

    /// <summary>The same case in another dtype: <see cref="ScanCase.MakeInput"/> then draws the same values, converted.</summary>
    private static ScanCase WithDType(ScanCase c, ScalarType dtype) => new()
    {
        Batch = c.Batch, Channels = c.Channels, StateSize = c.StateSize, Length = c.Length,
        VariableB = c.VariableB, VariableC = c.VariableC, HasD = c.HasD, HasZ = c.HasZ, HasDeltaBias = c.HasDeltaBias,
        Softplus = c.Softplus, HasInitialState = c.HasInitialState, DType = dtype, Device = c.Device,
    };

    /// <summary>A copy of <paramref name="input"/> with every tensor converted (detached leaves, no gradients).</summary>
    private static SelectiveScanInput ToDType(SelectiveScanInput input, ScalarType dtype)
    {
        Tensor? T(Tensor? t) => t?.detach().to(dtype);
        return new SelectiveScanInput
        {
            U = T(input.U)!, Delta = T(input.Delta)!, A = T(input.A)!, B = T(input.B)!, C = T(input.C)!, D = T(input.D), Z = T(input.Z),
            DeltaBias = T(input.DeltaBias), DeltaSoftplus = input.DeltaSoftplus, InitialState = T(input.InitialState),
            ReturnLastState = input.ReturnLastState,
        };
    }
}
