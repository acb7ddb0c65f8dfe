using System.Diagnostics;
using MambaML.Model;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MambaML.Benchmarks.Text;

/// <summary>
/// <c>lm-shakespeare</c>: character-level language modelling on Tiny Shakespeare by nanoGPT's <c>shakespeare_char</c> protocol:
/// the characters of the text are the vocabulary (65), the first 90% train and the last 10% validate, blocks of 256 characters
/// drawn at random, validation loss in nats per character. A <see cref="MambaLanguageModel"/> of about nanoGPT's size (10.7M
/// parameters) is trained with nanoGPT's settings (AdamW, β₂ 0.99, weight decay 0.1 on matrices, 100 warm-up steps, cosine
/// decay to a tenth, gradient clipping at 1, dropout 0.2: <see cref="MambaConfig.Dropout"/>); nanoGPT's validation loss, about
/// 1.47 (ANCHORS.md), is beside it. The best validation loss of the run is reported, as nanoGPT's checkpointing keeps it.
/// </summary>
internal sealed class ShakespeareLanguageModelSuite : IBenchmarkSuite
{
    private const double NanoGptValidationLoss = 1.47;

    public string Name => "lm-shakespeare";
    public string Description => "character-level Mamba LM on Tiny Shakespeare vs nanoGPT's validation loss (needs ../shared/data/text/tinyshakespeare)";

    public IReadOnlyDictionary<string, object> Run(BenchmarkOptions options)
    {
        var headline = new Dictionary<string, object>();
        string? path = options.DataDirectory is null ? null : Path.Combine(options.DataDirectory, "text", "tinyshakespeare", "input.txt");
        if (path is null || !File.Exists(path))
        {
            Console.WriteLine("lm-shakespeare: skipped — the shared data folder (../shared/data/text/tinyshakespeare) is absent.");
            headline["skipped"] = "no data";
            return headline;
        }
        var args = new ArgParser(options.Args);
        bool quick = options.Quick;
        var config = new MambaConfig
        {
            DModel = args.Int("--d-model", quick ? 64 : 384), NLayer = args.Int("--layers", quick ? 2 : 10), DState = args.Int("--d-state", 16),
            Dropout = args.Double("--dropout", 0.2),
        };
        int iterations = args.Int("--iters", quick ? 200 : 5000), batch = args.Int("--batch", quick ? 16 : 64), block = args.Int("--block", quick ? 64 : 256);
        int evalEvery = args.Int("--eval-every", quick ? 50 : 250), evalBatches = args.Int("--eval-batches", quick ? 10 : 200);
        double learningRate = args.Double("--lr", 1e-3);
        var device = args.Int("--gpu", -1) is >= 0 and var gpu ? new Device(DeviceType.CUDA, gpu) : CPU;
        random.manual_seed(3);   // dropout's draws
        if (args.Int("--threads", 0) is > 0 and var threads) set_num_threads(threads);
        if (device.type == DeviceType.CUDA) backends.cuda.matmul.allow_tf32 = true;

        // nanoGPT's prepare.py: the sorted distinct characters are the vocabulary; the first 90% of the text trains.
        string text = File.ReadAllText(path);
        var vocabulary = text.Distinct().Order().ToArray();
        var ids = vocabulary.Select((c, i) => (c, i)).ToDictionary(p => p.c, p => (long)p.i);
        var encoded = text.Select(c => ids[c]).ToArray();
        int split = (int)(encoded.Length * 0.9);
        long[] train = encoded[..split], validation = encoded[split..];

        using var scope = NewDisposeScope();
        using var model = new MambaLanguageModel(config, vocabulary.Length, seed: 1);
        model.to(device);
        long parameters = model.parameters().Sum(p => p.numel());
        Console.WriteLine($"## lm-shakespeare: {text.Length:N0} characters, vocabulary {vocabulary.Length}, train {train.Length:N0} / validation {validation.Length:N0}; " +
                          $"Mamba d_model {config.DModel}, {config.NLayer} layers, d_state {config.DState}, dropout {config.Dropout:G3}, {parameters / 1e6:F2}M parameters on {device}; " +
                          $"{iterations} steps of {batch} × {block} characters, lr {learningRate:G3}; {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
        Console.WriteLine();

        var decay = model.named_parameters().Where(p => p.parameter.dim() >= 2).Select(p => p.parameter).ToList();
        var noDecay = model.named_parameters().Where(p => p.parameter.dim() < 2).Select(p => p.parameter).ToList();
        using var optimizer = optim.AdamW(new[]
        {
            new AdamW.ParamGroup(decay, lr: learningRate, weight_decay: 0.1), new AdamW.ParamGroup(noDecay, lr: learningRate, weight_decay: 0),
        }, lr: learningRate, beta1: 0.9, beta2: 0.99);
        var draws = new Random(7);
        // The same random validation blocks at every evaluation, so the estimates differ only by the model.
        var validationOffsets = Enumerable.Range(0, evalBatches * batch).Select(_ => draws.Next(validation.Length - block - 1)).ToArray();

        Console.WriteLine("| step | train loss (mean since last row) | validation loss | elapsed s |");
        Console.WriteLine("|---|---|---|---|");
        double best = double.PositiveInfinity, trainSum = 0;
        int bestStep = 0, trainCount = 0;
        var clock = Stopwatch.StartNew();
        long trainTokens = 0;
        for (int step = 0; step <= iterations; step++)
        {
            if (step % evalEvery == 0 || step == iterations)
            {
                double loss = ValidationLoss(model, validation, validationOffsets, batch, block, vocabulary.Length, device);
                if (loss < best) (best, bestStep) = (loss, step);
                Console.WriteLine($"| {step} | {(trainCount > 0 ? (trainSum / trainCount).ToString("F4") : "")} | {loss:F4} | {clock.Elapsed.TotalSeconds:F0} |");
                (trainSum, trainCount) = (0, 0);
            }
            if (step == iterations) break;
            using var stepScope = NewDisposeScope();
            double rate = LearningRateAt(step, iterations, learningRate);
            foreach (var group in optimizer.ParamGroups) group.LearningRate = rate;
            var (inputs, targets) = Batch(train, Enumerable.Range(0, batch).Select(_ => draws.Next(train.Length - block - 1)).ToArray(), block, device);
            model.train();
            optimizer.zero_grad();
            var trainLoss = nn.functional.cross_entropy(model.Forward(inputs).reshape(-1, vocabulary.Length), targets.reshape(-1));
            trainLoss.backward();
            nn.utils.clip_grad_norm_(model.parameters(), 1.0);
            optimizer.step();
            trainSum += trainLoss.item<float>();
            trainCount++;
            trainTokens += (long)batch * block;
        }
        double seconds = clock.Elapsed.TotalSeconds;
        Console.WriteLine();
        Console.WriteLine("| model | parameters | best validation loss (nats/char) | at step |");
        Console.WriteLine("|---|---|---|---|");
        Console.WriteLine($"| Mamba (MambaLanguageModel), this run | {parameters / 1e6:F2}M | {best:F4} | {bestStep} |");
        Console.WriteLine($"| nanoGPT shakespeare_char (Transformer, dropout 0.2; published, ANCHORS.md) | 10.7M | ≈ {NanoGptValidationLoss:F2} | |");
        Console.WriteLine();
        Console.WriteLine($"{iterations} steps in {seconds:F0} s with evaluations ({trainTokens / seconds:N0} training characters/s overall).");

        model.eval();
        using (no_grad())
        {
            var prompt = tensor(new[] { ids['\n'] }, ScalarType.Int64, device).view(1, 1);
            var sample = model.Generate(prompt, 400, new GenerationOptions { Temperature = 0.8, TopK = 200, Seed = 1 });
            Console.WriteLine("Sample (temperature 0.8, top-k 200, seed 1, after the last step, not the best one):");
            Console.WriteLine("```");
            Console.WriteLine(new string(sample.cpu().data<long>().ToArray().Select(i => vocabulary[i]).ToArray()));
            Console.WriteLine("```");
        }
        headline["best_validation_loss"] = Math.Round(best, 4);
        headline["best_step"] = bestStep;
        headline["parameters_millions"] = Math.Round(parameters / 1e6, 2);
        headline["nanogpt_validation_loss"] = NanoGptValidationLoss;
        return headline;
    }

    // nanoGPT's schedule: linear warm-up over 100 steps, then cosine decay to a tenth of the rate at the last step.
    private static double LearningRateAt(int step, int iterations, double peak)
    {
        const int warmup = 100;
        if (step < warmup) return peak * (step + 1) / warmup;
        double progress = (double)(step - warmup) / Math.Max(1, iterations - warmup);
        return peak / 10 + 0.5 * (1 + Math.Cos(Math.PI * progress)) * (peak - peak / 10);
    }

    // Blocks of `block` characters at the offsets, and the same shifted by one (the next characters to predict).
    private static (Tensor Inputs, Tensor Targets) Batch(long[] data, int[] offsets, int block, Device device)
    {
        var x = new long[offsets.Length * block];
        var y = new long[offsets.Length * block];
        for (int b = 0; b < offsets.Length; b++)
        {
            Array.Copy(data, offsets[b], x, b * block, block);
            Array.Copy(data, offsets[b] + 1, y, b * block, block);
        }
        return (tensor(x, new long[] { offsets.Length, block }).to(device), tensor(y, new long[] { offsets.Length, block }).to(device));
    }

    private static double ValidationLoss(MambaLanguageModel model, long[] validation, int[] offsets, int batch, int block, int vocabulary, Device device)
    {
        model.eval();
        using var _ = no_grad();
        double sum = 0;
        int count = 0;
        foreach (var chunk in offsets.Chunk(batch))
        {
            using var scope = NewDisposeScope();
            var (inputs, targets) = Batch(validation, chunk, block, device);
            sum += nn.functional.cross_entropy(model.Forward(inputs).reshape(-1, vocabulary), targets.reshape(-1)).item<float>();
            count++;
        }
        return sum / count;
    }
}
