using MambaML.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.Benchmarks.Text;

/// <summary>
/// <c>lm-shakespeare</c>: character-level language modelling on Tiny Shakespeare by nanoGPT's <c>shakespeare_char</c> protocol:
/// the characters of the text are the vocabulary (65), the first 90% train and the last 10% validate, blocks of 256 characters
/// drawn at random, validation loss in nats per character. A <see cref="MambaLanguageModel"/> of about nanoGPT's size (10.7M
/// parameters) is trained by <see cref="LanguageModelTraining"/> with nanoGPT's settings (its defaults, and dropout 0.2:
/// <see cref="MambaConfig.Dropout"/>); nanoGPT's validation loss, about 1.47 (ANCHORS.md), is beside it. The best validation loss
/// of the run is reported, and the model keeps its weights, as nanoGPT's checkpointing does.
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

        Console.WriteLine("| step | train loss (mean since last row) | validation loss | elapsed s |");
        Console.WriteLine("|---|---|---|---|");
        var result = LanguageModelTraining.Train(model, train, validation, new LanguageModelTrainingOptions
        {
            Steps = iterations, BatchSize = batch, BlockLength = block, LearningRate = learningRate, EvaluateEvery = evalEvery,
            EvaluationBatches = evalBatches, Seed = 7,
            ProgressCallback = p => Console.WriteLine($"| {p.Step} | {p.TrainingLoss?.ToString("F4") ?? ""} | {p.ValidationLoss:F4} | {p.Elapsed.TotalSeconds:F0} |"),
        });
        double best = result.BestValidationLoss!.Value, seconds = result.Elapsed.TotalSeconds;
        int bestStep = result.BestStep;
        Console.WriteLine();
        Console.WriteLine("| model | parameters | best validation loss (nats/char) | at step |");
        Console.WriteLine("|---|---|---|---|");
        Console.WriteLine($"| Mamba (MambaLanguageModel), this run | {parameters / 1e6:F2}M | {best:F4} | {bestStep} |");
        Console.WriteLine($"| nanoGPT shakespeare_char (Transformer, dropout 0.2; published, ANCHORS.md) | 10.7M | ≈ {NanoGptValidationLoss:F2} | |");
        Console.WriteLine();
        Console.WriteLine($"{iterations} steps in {seconds:F0} s with evaluations ({result.TrainingTokens / seconds:N0} training characters/s overall).");

        model.eval();
        using (no_grad())
        {
            var prompt = tensor(new[] { ids['\n'] }, ScalarType.Int64, device).view(1, 1);
            var sample = model.Generate(prompt, 400, new GenerationOptions { Temperature = 0.8, TopK = 200, Seed = 1 });
            Console.WriteLine("Sample of the model with the best validation loss (temperature 0.8, top-k 200, seed 1):");
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
}
