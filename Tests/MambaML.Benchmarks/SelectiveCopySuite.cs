using System.Diagnostics;
using MambaML.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.Benchmarks;

/// <summary>
/// The Selective Copying task of the Mamba paper (§4.1.1): <c>Tokens</c> data tokens take random positions of a region of
/// <c>Length</c> positions, noise tokens the rest; after it come <c>Tokens</c> marker tokens, at which the model must emit the data tokens
/// in their order. Solving it needs content-aware (selective) memory: the positions vary, so no fixed convolution can do it.
/// Reports accuracy on fresh sequences (every copied token counts).
/// </summary>
/// <remarks>
/// Training uses AdamW with a linear warm-up and a cosine decay to 5% of the peak rate over all steps (a constant rate leaves the
/// accuracy oscillating by ±10 points near the end). Sequences longer than 256 are learnt with a length curriculum
/// (<c>--curriculum L0</c>, default 256): training starts at length L0 and moves to the full length once the accuracy at L0
/// reaches 99% (or half the steps are spent). The paper trains at the full length for 400K steps, far beyond this suite's budget;
/// at L = 4096 without the curriculum the loss stayed at chance (ln 16) for 2,600 steps, while a model that selects by content
/// transfers from short to long sequences.
/// </remarks>
internal sealed class SelectiveCopySuite : IBenchmarkSuite
{
    public string Name => "selective-copy";
    public string Description => "Mamba paper's Selective Copying task; --length L (256), --tokens 16, --vocab 16, --steps, --lr, " +
                                 "--curriculum L0, --device cpu|cuda";

    public IReadOnlyDictionary<string, object> Run(BenchmarkOptions options)
    {
        var args = new ArgParser(options.Args);
        int length = args.Int("--length", 256), tokens = args.Int("--tokens", 16), vocabulary = args.Int("--vocab", 16);
        int batch = args.Int("--batch", 64), steps = args.Int("--steps", options.Quick ? 300 : 4000);
        int dModel = args.Int("--d-model", 128), layers = args.Int("--layers", 2);
        int curriculum = Math.Min(args.Int("--curriculum", Math.Min(length, 256)), length);
        double peakLr = args.Double("--lr", 2e-3);
        int warmup = args.Int("--warmup", Math.Min(100, steps / 10));
        var device = args.String("--device", cuda.is_available() ? "cuda" : "cpu") == "cuda" ? CUDA : CPU;
        var task = new SelectiveCopyTask(length, tokens, vocabulary);
        var trainTask = new SelectiveCopyTask(curriculum, tokens, vocabulary);

        var config = new MambaConfig { DModel = dModel, NLayer = layers, DState = 16 };
        using var model = new MambaLanguageModel(config, task.InputVocabulary, seed: 0);
        model.to(device);
        using var optimizer = optim.AdamW(model.parameters(), lr: peakLr, weight_decay: 0.0);
        var trainData = new Generator(1);
        var testData = new Generator(2);

        Console.WriteLine($"## selective-copy: L={length}, {tokens} tokens, vocabulary {vocabulary}, d_model {dModel}, {layers} layers, " +
                          $"batch {batch}, lr {peakLr} (warm-up {warmup}, cosine), device {device.type}" +
                          (curriculum < length ? $", curriculum from L={curriculum}" : ""));
        Console.WriteLine();
        Console.WriteLine("| step | train length | train loss | test accuracy at train length | elapsed s |");
        Console.WriteLine("|---|---|---|---|---|");
        var clock = Stopwatch.StartNew();
        double loss = double.NaN;
        int step = 0, evalEvery = Math.Max(50, steps / 20);
        while (step < steps)
        {
            double lr = step < warmup ? peakLr * (step + 1) / warmup
                : peakLr * (0.05 + 0.95 * 0.5 * (1 + Math.Cos(Math.PI * (step - warmup) / Math.Max(1, steps - warmup))));
            foreach (var group in optimizer.ParamGroups) group.LearningRate = lr;
            using (var scope = NewDisposeScope())
            {
                var (input, target) = trainTask.Sample(batch, trainData, device);
                var logits = model.Forward(input)[.., ^tokens..];
                var l = nn.functional.cross_entropy(logits.reshape(-1, task.InputVocabulary), target.reshape(-1));
                optimizer.zero_grad();
                l.backward();
                nn.utils.clip_grad_norm_(model.parameters(), 1.0);
                optimizer.step();
                loss = l.item<float>();
            }
            step++;
            if (step % evalEvery == 0 || step == steps)
            {
                double accuracy = Evaluate(model, trainTask, testData, device, sequences: 512);
                Console.WriteLine($"| {step} | {trainTask.Length} | {loss:F4} | {accuracy:P2} | {clock.Elapsed.TotalSeconds:F0} |");
                bool atFullLength = trainTask.Length == length;
                if (atFullLength && accuracy >= 0.999) break;
                if (!atFullLength && (accuracy >= 0.99 || step >= steps / 2)) trainTask = task;
            }
        }
        // The headline is measured at the full length on a fresh test set, once, after training.
        double final = Evaluate(model, task, new Generator(3), device, sequences: 2048);
        Console.WriteLine();
        Console.WriteLine($"Final accuracy at L={length} on 2048 fresh sequences: {final:P2} (target ≥ 99%; Mamba paper at L=4096: 99.8%) " +
                          $"after {step} steps, {clock.Elapsed.TotalSeconds:F0} s");
        return new Dictionary<string, object>
        {
            ["length"] = length, ["curriculum_from"] = curriculum, ["tokens"] = tokens, ["vocab"] = vocabulary, ["steps"] = step,
            ["device"] = device.type.ToString(), ["accuracy"] = Math.Round(final, 4),
            ["train_seconds"] = Math.Round(clock.Elapsed.TotalSeconds, 1),
        };
    }

    private static double Evaluate(MambaLanguageModel model, SelectiveCopyTask task, Generator g, Device device, int sequences)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        model.eval();
        long correct = 0, total = 0;
        for (int done = 0; done < sequences; done += 128)
        {
            var (input, target) = task.Sample(Math.Min(128, sequences - done), g, device);
            var predicted = model.Forward(input)[.., ^task.Tokens..].argmax(-1);
            correct += predicted.eq(target).sum().item<long>();
            total += target.numel();
        }
        model.train();
        return (double)correct / total;
    }
}

/// <summary>Generates Selective Copying sequences: data tokens 0..vocab−1, then a noise token and a marker token.</summary>
internal sealed class SelectiveCopyTask(int length, int tokens, int vocabulary)
{
    public int Length => length;
    public int Tokens => tokens;
    public int Noise => vocabulary;
    public int Marker => vocabulary + 1;
    public int InputVocabulary => vocabulary + 2;

    /// <summary>(batch, length + tokens) inputs and (batch, tokens) targets.</summary>
    public (Tensor Input, Tensor Target) Sample(int batch, Generator g, Device device)
    {
        using var scope = NewDisposeScope();
        var data = randint(vocabulary, new long[] { batch, tokens }, generator: g);
        // Random distinct positions, kept in increasing order so the data tokens appear in the order they must be copied.
        var positions = rand(new long[] { batch, length }, generator: g).argsort(1)[.., ..tokens].sort(1).Values;
        var input = full(new long[] { batch, length + tokens }, Noise, dtype: ScalarType.Int64);
        input[.., ..length] = input[.., ..length].scatter(1, positions, data);
        input[.., length..] = Marker;
        return (input.to(device).MoveToOuterDisposeScope(), data.to(device).MoveToOuterDisposeScope());
    }
}
