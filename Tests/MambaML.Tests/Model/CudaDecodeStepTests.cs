using MambaML.Model;
using MambaML.Scan;
using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.Tests.Model;

/// <summary>The fused CUDA decode step (Kernels/mamba_decode_step.cu) against the reference <see cref="MambaLanguageModel.Step"/>.</summary>
[TestClass]
public sealed class CudaDecodeStepTests
{
    private const long Vocabulary = 101;
    private const int Steps = 20;

    private static Device Cuda()
    {
        if (!cuda.is_available()) Assert.Inconclusive("CUDA is not available (no GPU, or a CPU-only libtorch): the GPU tests need a CUDA device.");
        return CUDA;
    }

    // Odd widths, dt ranks 3 and 5, state sizes 16 and 7, with and without biases, conv widths 4 and 3.
    private static IEnumerable<MambaConfig> Configs() => new[]
    {
        new MambaConfig { DModel = 40, NLayer = 3, DState = 16, DtRank = 3 },
        new MambaConfig { DModel = 72, NLayer = 3, DState = 7, DtRank = 5, DConv = 3, Bias = true, ConvBias = false },
    };

    /// <summary>fp32: 20 consecutive steps from a zero state, batch 1 and 3: logits and every layer's conv and SSM state
    /// match the reference within 1e-4 of each tensor's largest element; the fused outputs are NaN-poisoned.</summary>
    [TestMethod, TestCategory("Gpu")]
    public void FusedStepMatchesReferenceFp32()
    {
        var device = Cuda();
        foreach (var config in Configs())
        foreach (long batch in new[] { 1L, 3L })
        {
            using var scope = NewDisposeScope();
            using var model = new MambaLanguageModel(config, Vocabulary, seed: 7 + batch);
            model.to(device);
            CompareSteps(model, model, batch, tolerance: 1e-4, $"fp32 d_model {config.DModel} N {config.DState} batch {batch}");
        }
    }

    /// <summary>bf16 weights: the fused step (fp32 activations) matches an fp32 reference holding the same bf16-rounded
    /// weights within 1e-2 (its conv state and logits are rounded to bf16), and the all-bf16 reference within 5e-2.
    /// The model ran fused in fp32 first, so this also checks that the weight pointers are re-read after <c>to(bfloat16)</c>.</summary>
    [TestMethod, TestCategory("Gpu")]
    public void FusedStepMatchesReferenceBf16()
    {
        var device = Cuda();
        foreach (var config in Configs())
        foreach (long batch in new[] { 1L, 3L })
        {
            using var scope = NewDisposeScope();
            using var model = new MambaLanguageModel(config, Vocabulary, seed: 11 + batch);
            model.to(device);
            using (no_grad()) model.Step(zeros(new[] { batch }, ScalarType.Int64, device), model.backbone.ZeroState(batch), DecodeBackend.CudaFused);
            model.to(ScalarType.BFloat16);
            using var rounded = new MambaLanguageModel(config, Vocabulary, seed: 11 + batch);
            rounded.to(device);
            rounded.to(ScalarType.BFloat16);
            rounded.to(ScalarType.Float32);
            string what = $"bf16 d_model {config.DModel} N {config.DState} batch {batch}";
            CompareSteps(model, rounded, batch, tolerance: 1e-2, what + " vs fp32 reference of the rounded weights");
            CompareSteps(model, model, batch, tolerance: 5e-2, what + " vs bf16 reference");
        }
    }

    /// <summary>Runs <see cref="Steps"/> random tokens through the fused step of <paramref name="fused"/> and the reference
    /// step of <paramref name="reference"/>, each carrying its own state, comparing logits and states after every step.</summary>
    private static void CompareSteps(MambaLanguageModel fused, MambaLanguageModel reference, long batch, double tolerance, string what)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var device = fused.embedding.weight!.device;
        var tokens = randint(0, Vocabulary, new[] { batch, (long)Steps }, generator: new Generator(3)).to(device);
        var stateFused = fused.backbone.ZeroState(batch);
        var stateRef = reference.backbone.ZeroState(batch);
        ScanOutputs.Poison = true;
        try
        {
            for (int t = 0; t < Steps; t++)
            {
                var input = tokens.select(1, t);   // a strided view: the fused step must accept it
                var (logits, nextFused) = fused.Step(input, stateFused, DecodeBackend.CudaFused);
                var (logitsRef, nextRef) = reference.Step(input, stateRef, DecodeBackend.Reference);
                Assert.AreEqual(fused.embedding.weight!.dtype, logits.dtype, $"{what}: logits dtype");
                TensorAssert.MaxRelative(logits, logitsRef, tolerance, $"{what}: logits at step {t}");
                for (int l = 0; l < nextRef.Layers.Count; l++)
                {
                    TensorAssert.MaxRelative(nextFused.Layers[l].Conv, nextRef.Layers[l].Conv, tolerance, $"{what}: conv state of layer {l} at step {t}");
                    TensorAssert.MaxRelative(nextFused.Layers[l].Ssm, nextRef.Layers[l].Ssm, tolerance, $"{what}: SSM state of layer {l} at step {t}");
                }
                stateFused = nextFused;
                stateRef = nextRef;
            }
        }
        finally { ScanOutputs.Poison = false; }
    }

    /// <summary>Greedy generation (in-place states, token choice on the GPU) picks the same 20 tokens as the reference,
    /// batch 1 and 3, from a prompt read in parallel; for fp32 models whose logits differ by ~1e-6, ties are not a concern.</summary>
    [TestMethod, TestCategory("Gpu")]
    public void FusedGenerationMatchesReference()
    {
        var device = Cuda();
        foreach (var config in Configs())
        foreach (long batch in new[] { 1L, 3L })
        {
            using var scope = NewDisposeScope();
            using var model = new MambaLanguageModel(config, Vocabulary, seed: 21 + batch);
            model.to(device);
            var prompt = randint(0, Vocabulary, new[] { batch, 5L }, generator: new Generator(9)).to(device);
            var expected = model.Generate(prompt, Steps, DecodeBackend.Reference).cpu();
            ScanOutputs.Poison = true;
            try
            {
                // Twice, each in its own dispose scope: the second reuses what the first left behind (its scratch buffers).
                for (int run = 0; run < 2; run++)
                {
                    using var runScope = NewDisposeScope();
                    var actual = model.Generate(prompt, Steps, DecodeBackend.CudaFused).cpu();
                    CollectionAssert.AreEqual(expected.data<long>().ToArray(), actual.data<long>().ToArray(),
                        $"d_model {config.DModel} batch {batch}, run {run}: generated tokens differ");
                }
            }
            finally { ScanOutputs.Poison = false; }
        }
    }

    /// <summary>Generation options on the fused path (the fused step's logits, tokens chosen by TorchSharp on the GPU), fp32:
    /// greedy with a repetition penalty and an end-of-sequence token picks the same tokens as the reference; seeded top-k
    /// sampling gives the same tokens twice, each among the 3 most likely under the parallel forward pass.</summary>
    [TestMethod, TestCategory("Gpu")]
    public void FusedGenerationWithOptionsMatchesReference()
    {
        var device = Cuda();
        foreach (var config in Configs())
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            using var model = new MambaLanguageModel(config, Vocabulary, seed: 31);
            model.to(device);
            var prompt = randint(0, Vocabulary, new[] { 3L, 5L }, generator: new Generator(9)).to(device);
            var greedy = new GenerationOptions { RepetitionPenalty = 1.5, EndOfSequenceTokenId = 7 };
            CollectionAssert.AreEqual(model.Generate(prompt, Steps, greedy, DecodeBackend.Reference).cpu().data<long>().ToArray(),
                model.Generate(prompt, Steps, greedy, DecodeBackend.CudaFused).cpu().data<long>().ToArray(), $"d_model {config.DModel}: penalised greedy tokens differ");

            var sampling = new GenerationOptions { TopK = 3, Temperature = 1.5, Seed = 2 };
            var sampled = model.Generate(prompt, Steps, sampling, DecodeBackend.CudaFused);
            CollectionAssert.AreEqual(sampled.cpu().data<long>().ToArray(), model.Generate(prompt, Steps, sampling, DecodeBackend.CudaFused).cpu().data<long>().ToArray(),
                $"d_model {config.DModel}: the same seed sampled other tokens");
            var logits = model.Forward(cat(new[] { prompt, sampled }, 1)).narrow(1, 4, Steps);
            var above = (logits > logits.gather(2, sampled.unsqueeze(2))).sum(2);
            Assert.IsTrue(above.max().item<long>() < 3, $"d_model {config.DModel}: a sampled token is outside the top 3");
        }
    }

    /// <summary>Auto uses the fused step on CUDA with gradients off and the reference with gradients on (whose logits then
    /// carry gradients), and after the model moves to the CPU, Auto runs the reference there.</summary>
    [TestMethod, TestCategory("Gpu")]
    public void AutoPicksTheFusedStepOnlyWhereItCanRun()
    {
        var device = Cuda();
        using var scope = NewDisposeScope();
        var config = Configs().First();
        using var model = new MambaLanguageModel(config, Vocabulary, seed: 5);
        model.to(device);
        var token = tensor(new long[] { 4 }, device: device);
        Tensor fusedLogits;
        using (no_grad()) fusedLogits = model.Step(token, model.backbone.ZeroState(1)).Logits;
        Assert.IsFalse(fusedLogits.requires_grad);
        var withGrad = model.Step(token, model.backbone.ZeroState(1)).Logits;
        Assert.IsTrue(withGrad.requires_grad, "with gradients on, Auto must run the differentiable reference");
        TensorAssert.MaxRelative(fusedLogits, withGrad.detach(), 1e-4, "Auto fused vs Auto reference");
        model.to(CPU);
        Tensor cpuLogits;
        using (no_grad()) cpuLogits = model.Step(token.cpu(), model.backbone.ZeroState(1)).Logits;
        Assert.AreEqual(DeviceType.CPU, cpuLogits.device_type);
        TensorAssert.MaxRelative(cpuLogits, fusedLogits.cpu(), 1e-4, "reference on the CPU after moving the model");
        using (no_grad())
            Assert.ThrowsExactly<NotSupportedException>(() => model.Step(token.cpu(), model.backbone.ZeroState(1), DecodeBackend.CudaFused));
    }

    /// <summary>On the CPU: Generate reads the prompt, then continues greedily one reference step at a time (checked against
    /// the full-sequence forward pass of prompt + generated tokens); asking for the fused step there fails with a reason.</summary>
    [TestMethod]
    public void GenerateIsGreedyContinuationOnTheCpu()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var config = Configs().Last();
        using var model = new MambaLanguageModel(config, Vocabulary, seed: 3);
        var prompt = randint(0, Vocabulary, new[] { 3L, 4L }, generator: new Generator(1));
        var generated = model.Generate(prompt, 6);
        CollectionAssert.AreEqual(new[] { 3L, 6L }, generated.shape);
        var all = cat(new[] { prompt, generated }, 1);
        var logits = model.Forward(all);                                   // (3, 10, vocab)
        var expected = logits.narrow(1, 3, 6).argmax(-1);                  // the choice after each prefix
        CollectionAssert.AreEqual(expected.data<long>().ToArray(), generated.data<long>().ToArray(), "Generate is not the greedy continuation");
        var e = Assert.ThrowsExactly<NotSupportedException>(() => model.Generate(prompt, 2, DecodeBackend.CudaFused));
        StringAssert.Contains(e.Message, "not a CUDA device");
    }
}
