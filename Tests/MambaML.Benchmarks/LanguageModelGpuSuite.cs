using MambaML.Model;
using MambaML.Scan;
using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.Benchmarks;

/// <summary>
/// <c>lm-gpu</c>: end to end on CUDA with a ~130M-parameter Mamba language model (d_model 768, 24 layers, vocabulary 50,280,
/// as mamba_ssm's mamba-130m): training tokens/s (batch 8 × 2048, AdamW, cross-entropy) and batch-1 greedy generation
/// tokens/s through <see cref="MambaLanguageModel.Generate"/> with the reference step and with the fused CUDA decode step,
/// in fp32 (TF32 matmuls) and with bf16 parameters and activations.
/// </summary>
internal sealed class LanguageModelGpuSuite : IBenchmarkSuite
{
    private const int Vocabulary = 50280, Batch = 8, Length = 2048;

    public string Name => "lm-gpu";
    public string Description => "~130M Mamba LM on CUDA: training tokens/s and batch-1 generation tokens/s";

    public IReadOnlyDictionary<string, object> Run(BenchmarkOptions options)
    {
        if (!cuda.is_available()) throw new InvalidOperationException("lm-gpu needs a CUDA device (and TorchSharp's CUDA libtorch).");
        var device = CUDA;
        backends.cuda.matmul.allow_tf32 = true;
        backends.cudnn.allow_tf32 = true;
        var config = new MambaConfig { DModel = 768, NLayer = 24, DState = 16 };
        Console.WriteLine($"## lm-gpu: Mamba LM d_model {config.DModel}, {config.NLayer} layers, d_state {config.DState}, vocabulary {Vocabulary}, " +
                          $"{DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC{(options.Quick ? ", --quick" : "")}");
        Console.WriteLine();
        Console.WriteLine("| dtype | parameters | train ms/step (8 × 2048) | train tokens/s | generate tokens/s, reference step | generate tokens/s, fused step | fused / reference | same tokens | sampled tokens/s, fused step | scan backend |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|");
        var headline = new Dictionary<string, object>();
        foreach (var dtype in new[] { ScalarType.BFloat16, ScalarType.Float32 })
        {
            using var scope = NewDisposeScope();
            var backend = SelectiveScan.Resolve(ProbeInput(dtype, device), SelectiveScanBackend.Auto).Backend;
            if (backend != SelectiveScanBackend.CudaFused)
                throw new InvalidOperationException($"lm-gpu measures the fused CUDA scan, but {backend} would run (see the warning above).");
            using var model = new MambaLanguageModel(config, Vocabulary, seed: 1);
            model.to(device);
            if (dtype != ScalarType.Float32) model.to(dtype);
            long parameters = model.parameters().Sum(p => p.numel());
            double trainMs = TrainStepMs(model, device, options.Quick);
            int referenceCount = options.Quick ? 50 : 200, fusedCount = options.Quick ? 500 : 2000;
            var (reference, referenceTokens) = GenerateTokensPerSecond(model, device, referenceCount, DecodeBackend.Reference, GenerationOptions.Greedy);
            var (fused, fusedTokens) = GenerateTokensPerSecond(model, device, fusedCount, DecodeBackend.CudaFused, GenerationOptions.Greedy);
            var (sampled, _) = GenerateTokensPerSecond(model, device, fusedCount, DecodeBackend.CudaFused, Sampling);
            int same = referenceTokens.Zip(fusedTokens).TakeWhile(p => p.First == p.Second).Count();
            string name = dtype == ScalarType.Float32 ? "fp32" : "bf16";
            Console.WriteLine($"| {name} | {parameters / 1e6:F1}M | {trainMs:F1} | {Batch * Length / (trainMs / 1000):F0} | {reference:F1} | {fused:F0} | " +
                              $"{fused / reference:F1}× | first {same} of {referenceTokens.Length} | {sampled:F0} | {backend} |");
            headline[$"train_tokens_per_s_{name}"] = Math.Round(Batch * Length / (trainMs / 1000));
            headline[$"generate_tokens_per_s_reference_{name}"] = Math.Round(reference, 1);
            headline[$"generate_tokens_per_s_fused_{name}"] = Math.Round(fused, 1);
            headline[$"generate_fused_speedup_{name}"] = Math.Round(fused / reference, 2);
            headline[$"generate_tokens_per_s_sampled_fused_{name}"] = Math.Round(sampled, 1);
        }
        Console.WriteLine();
        Console.WriteLine("Training: random tokens, next-token cross-entropy (in fp32), AdamW lr 1e-4; median of CUDA-synchronised steps after warm-up.");
        Console.WriteLine("bf16 means bf16 parameters and activations (TorchSharp has no autocast); the scan computes in fp32 either way.");
        Console.WriteLine("Generation: greedy MambaLanguageModel.Generate from a one-token prompt, batch 1; per-token time = (time for n tokens −");
        Console.WriteLine("time for 1 token) / (n − 1), CUDA-synchronised medians after a warm-up, so the prompt pass is not counted.");
        Console.WriteLine("Same tokens: how many leading tokens the fused generation shares with the reference one (bf16 and near-ties may part them).");
        Console.WriteLine($"Sampled: the fused step's logits, then {Sampling} (TorchSharp operations, drawn on the CPU).");
        Console.WriteLine();
        return headline;
    }

    private static SelectiveScanInput ProbeInput(ScalarType dtype, Device device) => new()
    {
        U = zeros(1, 1, 8, dtype: dtype, device: device), Delta = zeros(1, 1, 8, dtype: dtype, device: device),
        A = zeros(1, 16, device: device), B = zeros(1, 16, 8, dtype: dtype, device: device), C = zeros(1, 16, 8, dtype: dtype, device: device),
    };

    private static double TrainStepMs(MambaLanguageModel model, Device device, bool quick)
    {
        var g = new Generator(3);
        var tokens = randint(0, Vocabulary, new long[] { Batch, Length + 1 }, generator: g).to(device);
        var inputs = tokens.narrow(1, 0, Length);
        var targets = tokens.narrow(1, 1, Length).reshape(-1);
        var optimizer = optim.AdamW(model.parameters(), lr: 1e-4);
        void Step()
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            var logits = model.Forward(inputs);
            var loss = nn.functional.cross_entropy(logits.reshape(-1, Vocabulary).to(ScalarType.Float32), targets);
            loss.backward();
            optimizer.step();
        }
        return Timing.Measure(Step, 2, quick ? 3 : 8, () => cuda.synchronize()).MedianMs;
    }

    private static readonly GenerationOptions Sampling = new() { TopK = 50, Temperature = 0.8, Seed = 1 };

    // Tokens/s of generation after the prompt, and the tokens generated in the timed run.
    private static (double TokensPerSecond, long[] Tokens) GenerateTokensPerSecond(MambaLanguageModel model, Device device, int count, DecodeBackend backend,
                                                                                  GenerationOptions options)
    {
        using var scope = NewDisposeScope();
        var prompt = zeros(new long[] { 1, 1 }, ScalarType.Int64, device);
        Tensor? last = null;
        void Run(int n) { using var s = NewDisposeScope(); var t = model.Generate(prompt, n, options, backend); if (n == count) { last?.Dispose(); last = t.MoveToOuterDisposeScope(); } }
        double oneMs = Timing.Measure(() => Run(1), 2, 5, () => cuda.synchronize()).MedianMs;
        double allMs = Timing.Measure(() => Run(count), 1, 3, () => cuda.synchronize()).MedianMs;
        return ((count - 1) / ((allMs - oneMs) / 1000), last!.cpu().data<long>().ToArray());
    }
}
