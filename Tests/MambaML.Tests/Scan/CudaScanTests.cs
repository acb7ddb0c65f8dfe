using MambaML.Tests.Model;
using MambaML.Model;
using MambaML.Scan;
using MambaML.Scan.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.Tests.Scan;

/// <summary>The CUDA selective scan: its kernels compile everywhere NVRTC is found; on a GPU it matches the reference.</summary>
[TestClass]
public sealed class CudaScanTests
{
    // ---- without a GPU: compilation

    /// <summary>Every kernel configuration class (dtype, state-size layouts, each feature flag on and off) and every decode-step
    /// variant (dtype, odd sizes, biases) compiles to PTX for compute_90 with no NVRTC diagnostic at all.</summary>
    [TestMethod]
    public void EveryKernelVariantCompilesToPtxWithoutDiagnostics()
    {
        var (nvrtc, error) = CudaKernels.Compiler;
        if (nvrtc is null) Assert.Inconclusive($"NVRTC is not available, so the kernels cannot be compiled here: {error}");
        var variants = KernelVariants().Select(c => ((ICudaModuleSource)c, new[] { c.EntryPoint, c.SharedMemorySymbol }))
            .Concat(DecodeVariants().Select(c => ((ICudaModuleSource)c, DecodeKernelConfig.EntryPoints))).ToList();
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        Parallel.ForEach(variants, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, variant =>
        {
            var (source, symbols) = variant;
            try
            {
                var ptx = System.Text.Encoding.ASCII.GetString(CudaKernels.Compile(nvrtc, source, "compute_90", warningsAreErrors: true));
                foreach (var symbol in symbols)
                    if (!ptx.Contains(symbol, StringComparison.Ordinal)) failures.Add($"{source}: no {symbol} in the PTX");
                foreach (var entry in symbols.Where(s => !s.EndsWith("_smem_bytes", StringComparison.Ordinal)))
                    if (!ptx.Contains($".entry {entry}(", StringComparison.Ordinal)) failures.Add($"{source}: no entry point {entry} in the PTX");
            }
            catch (NvrtcException e) { failures.Add($"{source}: {e.Message}"); }
        });
        Assert.IsTrue(failures.IsEmpty, $"{failures.Count} of {variants.Count} kernel variants failed (NVRTC {nvrtc.Version}):\n{string.Join("\n", failures.Take(5))}");
    }

    /// <summary>The decode step for both dtypes: mamba-130m's sizes, odd sizes, state sizes 1 to 64, conv widths 1 to 5, biases on and off.</summary>
    private static IEnumerable<DecodeKernelConfig> DecodeVariants()
    {
        foreach (bool bf16 in new[] { false, true })
        {
            yield return new DecodeKernelConfig(bf16, 768, 1536, 16, 48, 4, ConvBias: true, Bias: false);
            yield return new DecodeKernelConfig(bf16, 40, 80, 7, 3, 4, ConvBias: true, Bias: true);
            yield return new DecodeKernelConfig(bf16, 37, 111, 1, 5, 1, ConvBias: false, Bias: false);
            yield return new DecodeKernelConfig(bf16, 72, 144, 64, 9, 5, ConvBias: false, Bias: true);
            yield return new DecodeKernelConfig(bf16, 33, 66, 3, 1, 2, ConvBias: true, Bias: false);
        }
    }

    /// <summary>Each flag of each kernel flipped from all-on and from all-off, for both dtypes and every state-size layout.</summary>
    private static IEnumerable<ScanKernelConfig> KernelVariants()
    {
        foreach (bool backward in new[] { false, true })
        foreach (bool bf16 in new[] { false, true })
        {
            // flags: vectorized, variable B, variable C, D, z, bias, softplus, initial state / last-state gradient, save states
            int flagCount = backward ? 8 : 9;
            var flagSets = new List<bool[]> { Enumerable.Repeat(true, flagCount).ToArray(), new bool[flagCount] };
            for (int i = 0; i < flagCount; i++)
            {
                var on = Enumerable.Repeat(true, flagCount).ToArray(); on[i] = false; flagSets.Add(on);
                var off = new bool[flagCount]; off[i] = true; flagSets.Add(off);
            }
            ScanKernelConfig Make(int n, ScanKernelShape shape, bool[] f) => new(backward, bf16, n, shape, f[0], f[1], f[2], f[3], f[4], f[5], f[6],
                !backward && f[7], !backward && f[8] ? shape.Chunk : 0, backward && f[7]);
            // the defaults for many and for few recurrences (the layout depends on batch × channels against the SM count)
            foreach (long recurrences in new long[] { 16384, 1024 })
            {
                ScanKernelShape ShapeFor(int n) { var (fwd, bwd) = ScanKernelShape.Default(n, recurrences, 132); return backward ? bwd : fwd; }
                foreach (var f in flagSets) yield return Make(16, ShapeFor(16), f);
                foreach (int n in new[] { 1, 2, 3, 7, 33, 64, 256 })
                {
                    yield return Make(n, ShapeFor(n), flagSets[0]);
                    yield return Make(n, ShapeFor(n), flagSets[2]);   // all on but 16-byte vectors: scalar staging at odd sizes
                }
            }
            // the layouts the benchmark compares, and a few more, at N = 16
            var others = ScanKernelShape.Candidates.Select(c => backward ? c.Backward : c.Forward)
                .Concat(new ScanKernelShape[] { new(1, 8, 64, 8), new(4, 32, 64, 8), new(8, 32, 64, 4), new(2, 32, 32, 4), new(2, 8, 128, 16) })
                .Where(s => !backward || s.ChannelsPerThread == 1).Distinct();
            foreach (var shape in others) yield return Make(16, backward ? shape : shape with { SubChunk = 0 }, flagSets[0]);
        }
    }

    /// <summary>On CPU tensors the CUDA backend declines with a reason, and Auto does not pick it.</summary>
    [TestMethod]
    public void DeclinesCpuInputsWithAReason()
    {
        using var c = new ScanCase { Batch = 1, Channels = 3, StateSize = 4, Length = 5, VariableB = true, VariableC = true, HasD = true, HasZ = true, HasDeltaBias = true, Softplus = true, HasInitialState = false };
        var input = c.MakeInput(1);
        Assert.IsFalse(CudaSelectiveScan.Instance.CanRun(input, out var reason));
        StringAssert.Contains(reason, "not a CUDA device");
        Assert.AreNotEqual(SelectiveScanBackend.CudaFused, SelectiveScan.Resolve(input, SelectiveScanBackend.Auto).Backend);
        var e = Assert.ThrowsExactly<NotSupportedException>(() => SelectiveScan.Resolve(input, SelectiveScanBackend.CudaFused));
        StringAssert.Contains(e.Message, "CUDA");
    }

    // ---- on a GPU

    private static Device Cuda()
    {
        if (!cuda.is_available()) Assert.Inconclusive("CUDA is not available (no GPU, or a CPU-only libtorch): the GPU tests need a CUDA device.");
        return CUDA;
    }

    /// <summary>Random odd shapes, every flag combination drawn at random: outputs, last state and every gradient match
    /// the reference on CUDA within 1e-4 (fp32) relative to each tensor's largest element; kernel outputs are NaN-poisoned.</summary>
    [TestMethod, TestCategory("Gpu")]
    public void MatchesReferenceFp32() => MatchesReference(ScalarType.Float32, 1e-4, cases: 24);

    /// <summary>As <see cref="MatchesReferenceFp32"/> with bfloat16 inputs, within 3e-2.</summary>
    [TestMethod, TestCategory("Gpu")]
    public void MatchesReferenceBf16() => MatchesReference(ScalarType.BFloat16, 3e-2, cases: 16);

    /// <summary>Every candidate layout (ScanKernelShape.Candidates) matches the reference on odd shapes (fp32 and bf16, all
    /// features, 16-byte accesses; fixed B, 13 states, odd length), outputs and all gradients.</summary>
    [TestMethod, TestCategory("Gpu")]
    public void CandidateLayoutsMatchReference()
    {
        var device = Cuda();
        ScanCase[] Cases() => new ScanCase[]
        {
            new() { Batch = 2, Channels = 133, StateSize = 16, Length = 212, VariableB = true, VariableC = true, HasD = true, HasZ = true, HasDeltaBias = true, Softplus = true, HasInitialState = true, Device = device },
            new() { Batch = 2, Channels = 133, StateSize = 16, Length = 216, VariableB = true, VariableC = true, HasD = true, HasZ = true, HasDeltaBias = true, Softplus = true, HasInitialState = true, DType = ScalarType.BFloat16, Device = device },
            new() { Batch = 1, Channels = 70, StateSize = 13, Length = 135, VariableB = false, VariableC = true, HasD = true, HasZ = false, HasDeltaBias = false, Softplus = true, HasInitialState = false, Device = device },
        };
        // Compile every layout's kernels side by side first (a fresh machine has no kernel cache).
        var configs = new List<ScanKernelConfig>();
        foreach (var (_, fwd, bwd) in ScanKernelShape.Candidates)
            foreach (var c in Cases())
                using (c)
                using (NewDisposeScope())
                {
                    configs.AddRange(CudaSelectiveScan.TrainingConfigs(c.MakeInput(0), (fwd, bwd)));
                }
        Parallel.ForEach(configs.Distinct(), config => CudaKernels.Get(0, config));
        try
        {
            foreach (var (name, fwd, bwd) in ScanKernelShape.Candidates)
            {
                CudaSelectiveScan.ShapeOverride = (fwd, bwd);
                Console.WriteLine($"layout {name}");
                foreach (var c in Cases())
                    using (c)
                    {
                        Assert.IsTrue(CudaSelectiveScan.Instance.CanRun(c.MakeInput(0), out var reason), $"{name}, {c}: {reason}");
                        AssertMatches(c, seed: 7, c.DType == ScalarType.Float32 ? 1e-4 : 3e-2);
                    }
            }
        }
        finally { CudaSelectiveScan.ShapeOverride = null; }
    }

    private static void MatchesReference(ScalarType dtype, double tolerance, int cases)
    {
        var device = Cuda();
        var rng = new Random(1234 + (int)dtype);
        var problems = Enumerable.Range(0, cases).Select(i => ScanCase.Random(rng, dtype: dtype, device: device)).ToList();
        // Several chunks, several blocks, aligned and unaligned lengths.
        problems.Add(new ScanCase { Batch = 2, Channels = 77, StateSize = 16, Length = 700, VariableB = true, VariableC = true, HasD = true, HasZ = true, HasDeltaBias = true, Softplus = true, HasInitialState = true, DType = dtype, Device = device });
        problems.Add(new ScanCase { Batch = 3, Channels = 40, StateSize = 16, Length = 517, VariableB = true, VariableC = false, HasD = true, HasZ = false, HasDeltaBias = true, Softplus = true, HasInitialState = false, DType = dtype, Device = device });
        // The sequence classifier's padded batches: delta already softplus-ed and masked, no bias, N = 8.
        problems.Add(new ScanCase { Batch = 16, Channels = 32, StateSize = 8, Length = 15, VariableB = true, VariableC = true, HasD = true, HasZ = true, HasDeltaBias = false, Softplus = false, HasInitialState = false, DType = dtype, Device = device });
        problems.Add(new ScanCase { Batch = 1, Channels = 9, StateSize = 7, Length = 300, VariableB = false, VariableC = true, HasD = false, HasZ = true, HasDeltaBias = false, Softplus = true, HasInitialState = true, DType = dtype, Device = device });
        // Each flag combination is its own kernel: compile them side by side first (a fresh machine has no kernel cache).
        var watch = System.Diagnostics.Stopwatch.StartNew();
        Parallel.ForEach(problems, c =>
        {
            using var scope = NewDisposeScope();
            Assert.IsTrue(CudaSelectiveScan.Instance.CanRun(c.MakeInput(0), out var reason), $"{c}: {reason}");
        });
        Console.WriteLine($"kernels for {problems.Count} cases ready in {watch.Elapsed.TotalSeconds:F1} s");
        for (int i = 0; i < problems.Count; i++)
        {
            using var c = problems[i];
            AssertMatches(c, seed: 100 + i, tolerance);
        }
    }

    private static void AssertMatches(ScanCase c, long seed, double tolerance)
    {
        using var scope = NewDisposeScope();
        var (outRef, stateRef, gradsRef) = ScanParity.RunWithGrads(ReferenceSelectiveScan.Instance, c, seed);
        ScanOutputs.Poison = true;
        try
        {
            var (outNew, stateNew, gradsNew) = ScanParity.RunWithGrads(CudaSelectiveScan.Instance, c, seed);
            AssertRelative(outNew, outRef, tolerance, $"output {c}");
            AssertRelative(stateNew!, stateRef!, tolerance, $"last state {c}");
            CollectionAssert.AreEquivalent(gradsRef.Keys, gradsNew.Keys, $"gradients {c}");
            foreach (var (name, g) in gradsRef) AssertRelative(gradsNew[name], g, tolerance, $"d{name} {c}");
        }
        finally { ScanOutputs.Poison = false; }
    }

    /// <summary>max |actual − expected| ≤ tolerance · max |expected|, all finite, same dtype and shape.</summary>
    private static void AssertRelative(Tensor actual, Tensor expected, double tolerance, string what)
    {
        Assert.AreEqual(expected.dtype, actual.dtype, $"{what}: dtype");
        TensorAssert.MaxRelative(actual, expected, tolerance, what);
    }

    /// <summary>Auto picks the CUDA kernel for CUDA inputs.</summary>
    [TestMethod, TestCategory("Gpu")]
    public void AutoPicksTheCudaKernelOnCuda()
    {
        var device = Cuda();
        using var c = new ScanCase { Batch = 1, Channels = 5, StateSize = 16, Length = 33, VariableB = true, VariableC = true, HasD = true, HasZ = true, HasDeltaBias = true, Softplus = true, HasInitialState = false, Device = device };
        Assert.AreEqual(SelectiveScanBackend.CudaFused, SelectiveScan.Resolve(c.MakeInput(1), SelectiveScanBackend.Auto).Backend);
    }

    /// <summary>One training step of a small backbone on CUDA with the fused scan matches the same step on CUDA with the
    /// reference scan (loss within 1e-5, all gradients together within 1e-3 relative L2, parameters after the step within
    /// 1e-4), and the same step on the CPU within 1e-3 / 1e-2 / 1e-3.</summary>
    /// <remarks>Gradients are compared as one vector: a parameter whose gradient nearly cancels over the batch (a norm weight)
    /// differs relatively more between any two fp32 computations. CPU and CUDA differ more than two CUDA runs because the
    /// other layers (matmuls, convolution) run different kernels with different rounding, whatever the scan.</remarks>
    [TestMethod, TestCategory("Gpu")]
    public void TrainingStepOnCudaMatchesCpu()
    {
        var device = Cuda();
        bool tf32 = backends.cudnn.allow_tf32, tf32Matmul = backends.cuda.matmul.allow_tf32;
        backends.cudnn.allow_tf32 = false;   // compare fp32 with fp32
        backends.cuda.matmul.allow_tf32 = false;
        try
        {
            using var scope = NewDisposeScope();
            var config = new MambaConfig { DModel = 48, NLayer = 2, DState = 16 };
            var g = new Generator(7);
            var x = randn(new long[] { 2, 150, 48 }, generator: g);
            var target = randn(new long[] { 2, 150, 48 }, generator: g);
            var fusedModel = new MambaBackbone(config, seed: 3).to(device);
            Assert.AreEqual(SelectiveScanBackend.CudaFused, SelectiveScan.Resolve(ProbeInput(device), fusedModel.Config.ScanBackend).Backend);
            var fused = StepOnce(fusedModel, x.to(device), target.to(device));
            var reference = StepOnce(new MambaBackbone(config with { ScanBackend = SelectiveScanBackend.Reference }, seed: 3).to(device), x.to(device), target.to(device));
            var cpu = StepOnce(new MambaBackbone(config, seed: 3), x, target);
            AssertSameStep(fused, reference, 1e-5, 1e-3, 1e-4, "CUDA fused vs CUDA reference");
            AssertSameStep(fused, cpu, 1e-3, 1e-2, 1e-3, "CUDA fused vs CPU");
        }
        finally
        {
            backends.cudnn.allow_tf32 = tf32;
            backends.cuda.matmul.allow_tf32 = tf32Matmul;
        }
    }

    private static void AssertSameStep((double Loss, Dictionary<string, (Tensor Grad, Tensor Param)> Params) actual,
        (double Loss, Dictionary<string, (Tensor Grad, Tensor Param)> Params) expected, double lossTol, double gradTol, double paramTol, string what)
    {
        Assert.AreEqual(expected.Loss, actual.Loss, lossTol * Math.Abs(expected.Loss), $"{what}: loss");
        var names = expected.Params.Keys.ToList();
        CollectionAssert.AreEqual(names, actual.Params.Keys.ToList(), $"{what}: parameters");
        using var scope = NewDisposeScope();
        var gradExpected = cat(names.Select(n => expected.Params[n].Grad.flatten()).ToArray());
        var gradActual = cat(names.Select(n => actual.Params[n].Grad.flatten()).ToArray());
        double gradError = ((gradActual - gradExpected).norm() / gradExpected.norm()).item<float>();
        Assert.IsTrue(gradError <= gradTol, $"{what}: gradients differ by {gradError:G3} (relative L2 over all parameters) > {gradTol}");
        foreach (var name in names) AssertRelative(actual.Params[name].Param, expected.Params[name].Param, paramTol, $"{what}: {name} after the step");
    }

    private static SelectiveScanInput ProbeInput(Device device) => new()
    {
        U = zeros(1, 1, 8, device: device), Delta = zeros(1, 1, 8, device: device), A = zeros(1, 16, device: device),
        B = zeros(1, 16, 8, device: device), C = zeros(1, 16, 8, device: device),
    };

    private static (double Loss, Dictionary<string, (Tensor Grad, Tensor Param)> Params) StepOnce(MambaBackbone model, Tensor x, Tensor target)
    {
        var optimizer = optim.SGD(model.parameters(), 0.1);
        optimizer.zero_grad();
        var (y, _) = model.Forward(x);
        var loss = nn.functional.mse_loss(y, target);
        loss.backward();
        var grads = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!.detach().cpu().clone());
        optimizer.step();
        return (loss.item<float>(), model.named_parameters().ToDictionary(p => p.name, p => (grads[p.name], p.parameter.detach().cpu().clone())));
    }

    /// <summary>Training and inference passes with the fused kernel leave no tensor wrappers behind (counted over all
    /// threads: CUDA backward runs on autograd's device thread), so loops do not grow memory.</summary>
    [TestMethod, TestCategory("Gpu")]
    public void RepeatedPassesOnCudaDoNotLeakTensors()
    {
        var device = Cuda();
        using var model = new MambaBackbone(new MambaConfig { DModel = 16, NLayer = 2 }, seed: 2);
        model.to(device);
        using var x = randn(2, 20, 16).to(device);
        void Pass() => ModelTestUtil.TrainAndInferOnce(model, x);
        for (int i = 0; i < 3; i++) Pass();
        cuda.synchronize();
        long before = Tensor.TotalCount;
        for (int i = 0; i < 30; i++) Pass();
        cuda.synchronize();
        long after = Tensor.TotalCount;
        Assert.AreEqual(before, after, $"live tensors grew by {after - before} over 30 passes");
    }

    /// <summary>On CUDA, running a sequence through the model at once (fused scan, its last state) and continuing one token
    /// at a time (MambaLanguageModel.Step) gives the logits of running the whole sequence at once.</summary>
    [TestMethod, TestCategory("Gpu")]
    public void GenerationContinuesTheFusedScanState()
    {
        var device = Cuda();
        using var scope = NewDisposeScope();
        var config = new MambaConfig { DModel = 32, NLayer = 2, DState = 16 };
        using var model = new MambaLanguageModel(config, vocabularySize: 50, seed: 11);
        model.to(device);
        using var _ = no_grad();
        var tokens = randint(0, 50, new long[] { 2, 40 }, generator: new Generator(5)).to(device);
        var full = model.Forward(tokens);                                                      // (2, 40, 50)
        var (_, state) = model.backbone.Forward(model.embedding.forward(tokens.narrow(1, 0, 30)), returnState: true);
        for (int t = 30; t < 40; t++)
        {
            var (logits, next) = model.Step(tokens.select(1, t), state!);
            AssertRelative(logits, full.select(1, t), 1e-4, $"logits at step {t}");
            state = next;
        }
    }
}
