using System.Diagnostics;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MambaML.Model;

/// <summary>
/// Settings of <see cref="LanguageModelTraining.Train"/>. The defaults are nanoGPT's (its <c>shakespeare_char</c> run): AdamW
/// with β₂ 0.99 and weight decay 0.1 on matrices, a linear warm-up then cosine decay to a tenth, gradient clipping at 1.
/// </summary>
public sealed record LanguageModelTrainingOptions
{
    /// <summary>Optimizer steps.</summary>
    public int Steps { get; init; } = 1000;
    /// <summary>Blocks per step.</summary>
    public int BatchSize { get; init; } = 64;
    /// <summary>Tokens per block; each block is drawn at a random offset and predicts its tokens shifted by one.</summary>
    public int BlockLength { get; init; } = 256;
    /// <summary>Peak learning rate.</summary>
    public double LearningRate { get; init; } = 1e-3;
    /// <summary>Steps of linear warm-up to <see cref="LearningRate"/>.</summary>
    public int WarmupSteps { get; init; } = 100;
    /// <summary>Where the cosine decay after the warm-up ends, as a fraction of the peak (reached one step after the last, as nanoGPT's schedule).</summary>
    public double FinalLearningRateFraction { get; init; } = 0.1;
    /// <summary>AdamW weight decay of the matrices (vectors, such as norms, biases, D and Δ's bias, get none, nor does A_log).</summary>
    public double WeightDecay { get; init; } = 0.1;
    /// <summary>AdamW's β₂.</summary>
    public double Beta2 { get; init; } = 0.99;
    /// <summary>Largest gradient norm (0: no clipping).</summary>
    public double GradientClipNorm { get; init; } = 1.0;
    /// <summary>Steps between validation losses (with validation tokens); also logged at step 0 and the last step.</summary>
    public int EvaluateEvery { get; init; } = 250;
    /// <summary>Batches of random validation blocks per evaluation, the same blocks each time.</summary>
    public int EvaluationBatches { get; init; } = 20;
    /// <summary>Seed of the block offsets and, on the CPU, of the model's dropout masks (<see cref="MambaConfig.Dropout"/>; on CUDA
    /// they come from libtorch's CUDA generator).</summary>
    public int Seed { get; init; } = 1;
    /// <summary>Called at every evaluation (every <see cref="EvaluateEvery"/> steps, with or without validation tokens).</summary>
    public Action<LanguageModelProgress>? ProgressCallback { get; init; }
    /// <summary>Stops training between steps (<see cref="OperationCanceledException"/>); the model keeps the best evaluation's
    /// weights so far (without validation tokens, the weights it had then).</summary>
    public CancellationToken CancellationToken { get; init; }
}

/// <summary>One evaluation's report.</summary>
/// <param name="Step">Steps taken.</param>
/// <param name="Steps">Steps in all.</param>
/// <param name="TrainingLoss">Mean training loss (nats per token) of the steps since the last report; null at step 0.</param>
/// <param name="ValidationLoss">Mean loss on the validation blocks; null without validation tokens.</param>
/// <param name="LearningRate">The learning rate of the last step.</param>
/// <param name="Elapsed">Time since training started.</param>
public sealed record LanguageModelProgress(int Step, int Steps, double? TrainingLoss, double? ValidationLoss, double LearningRate, TimeSpan Elapsed);

/// <summary>What <see cref="LanguageModelTraining.Train"/> did.</summary>
/// <param name="BestValidationLoss">The lowest validation loss seen; null without validation tokens.</param>
/// <param name="BestStep">The step it was seen at (the model holds that step's weights); the last step without validation tokens.</param>
/// <param name="TrainingTokens">Tokens trained on (steps × batch × block).</param>
/// <param name="Elapsed">Training time, evaluations included.</param>
public sealed record LanguageModelTrainingResult(double? BestValidationLoss, int BestStep, long TrainingTokens, TimeSpan Elapsed);

/// <summary>
/// Next-token training of a <see cref="MambaLanguageModel"/> on a token stream (nanoGPT's recipe): random blocks, AdamW, warm-up
/// and cosine decay, clipping, and with validation tokens the weights of the best evaluation kept, as a checkpoint of the best
/// validation loss would. On the model's device.
/// </summary>
public static class LanguageModelTraining
{
    /// <summary>Trains <paramref name="model"/> in place and leaves it in evaluation mode.</summary>
    /// <param name="model">The model, on the device to train on.</param>
    /// <param name="trainingTokens">The training text's token ids, in order (at least <see cref="LanguageModelTrainingOptions.BlockLength"/> + 1).</param>
    /// <param name="validationTokens">Held-out token ids (at least block length + 1), or null to train without evaluation.</param>
    /// <param name="options">Settings; null for the defaults.</param>
    public static LanguageModelTrainingResult Train(MambaLanguageModel model, long[] trainingTokens, long[]? validationTokens = null, LanguageModelTrainingOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(trainingTokens);
        var o = options ?? new LanguageModelTrainingOptions();
        Validate(o);
        RequireTokens(trainingTokens, nameof(trainingTokens), o.BlockLength, model.VocabularySize);
        if (validationTokens is not null) RequireTokens(validationTokens, nameof(validationTokens), o.BlockLength, model.VocabularySize);

        var device = model.parameters().First().device;
        model.backbone.Draws.Reseed((ulong)o.Seed);
        var draws = new Random(o.Seed);
        // The same validation blocks at every evaluation, so successive losses differ only by the model.
        int[]? validationOffsets = validationTokens is null ? null
            : Enumerable.Range(0, o.EvaluationBatches * o.BatchSize).Select(_ => draws.Next(validationTokens.Length - o.BlockLength)).ToArray();
        var named = model.named_parameters().Where(p => p.parameter.requires_grad).ToList();
        // Each group states its betas: a ParamGroup's own defaults (β₂ 0.999) would override the optimizer's.
        AdamW.ParamGroup Group(bool decay) => new(named.Where(p => TrainingRules.TakesWeightDecay(p.name, p.parameter) == decay).Select(p => p.parameter),
                                                  lr: o.LearningRate, beta1: 0.9, beta2: o.Beta2, weight_decay: decay ? o.WeightDecay : 0);
        using var optimizer = optim.AdamW(new[] { Group(decay: true), Group(decay: false) }, lr: o.LearningRate, beta1: 0.9, beta2: o.Beta2);

        var clock = Stopwatch.StartNew();
        Dictionary<string, Tensor>? best = null;
        double? bestLoss = null;
        int bestStep = o.Steps;
        double trainSum = 0, rate = 0;
        int trainCount = 0;
        try
        {
            for (int step = 0; ; step++)
            {
                if (step % o.EvaluateEvery == 0 || step == o.Steps)
                {
                    double? validationLoss = validationOffsets is null ? null : MeanLoss(model, validationTokens!, validationOffsets, o.BatchSize, o.BlockLength, device);
                    if (validationLoss < (bestLoss ?? double.PositiveInfinity))
                    {
                        (bestLoss, bestStep) = (validationLoss, step);
                        DisposeAll(best);
                        best = model.state_dict().ToDictionary(p => p.Key, p => { using var detached = p.Value.detach(); return detached.clone(); });
                    }
                    o.ProgressCallback?.Invoke(new LanguageModelProgress(step, o.Steps, trainCount > 0 ? trainSum / trainCount : null, validationLoss, rate, clock.Elapsed));
                    (trainSum, trainCount) = (0, 0);
                }
                if (step == o.Steps) break;
                o.CancellationToken.ThrowIfCancellationRequested();
                rate = TrainingRules.WarmupCosine(step, o.Steps, o.WarmupSteps, o.LearningRate, o.FinalLearningRateFraction);
                foreach (var group in optimizer.ParamGroups) group.LearningRate = rate;
                using var scope = NewDisposeScope();
                model.train();
                optimizer.zero_grad();
                var offsets = Enumerable.Range(0, o.BatchSize).Select(_ => draws.Next(trainingTokens.Length - o.BlockLength)).ToArray();
                var loss = BatchLoss(model, trainingTokens, offsets, o.BlockLength, device);
                double value = loss.item<float>();
                if (!double.IsFinite(value))
                    throw new InvalidOperationException($"Language model training diverged at step {step + 1}: the loss became {value}. Lower LearningRate (now {o.LearningRate:G3}) or keep GradientClipNorm > 0.");
                loss.backward();
                if (o.GradientClipNorm > 0) nn.utils.clip_grad_norm_(model.parameters(), o.GradientClipNorm);
                optimizer.step();
                trainSum += value;
                trainCount++;
            }
        }
        finally
        {
            // Also when cancelled or diverged: the best evaluation's weights are what a checkpoint would have kept.
            if (best is not null)
                using (no_grad()) model.load_state_dict(best);
            DisposeAll(best);
            model.eval();
        }
        return new LanguageModelTrainingResult(bestLoss, bestStep, (long)o.Steps * o.BatchSize * o.BlockLength, clock.Elapsed);
    }

    /// <summary>Mean next-token loss of <paramref name="model"/> (evaluation mode, no gradients) on blocks at <paramref name="offsets"/>.</summary>
    private static double MeanLoss(MambaLanguageModel model, long[] tokens, int[] offsets, int batchSize, int blockLength, Device device)
    {
        model.eval();
        using var _ = no_grad();
        double sum = 0;
        int count = 0;
        foreach (var chunk in offsets.Chunk(batchSize))
        {
            using var scope = NewDisposeScope();
            sum += BatchLoss(model, tokens, chunk, blockLength, device).item<float>() * chunk.Length;
            count += chunk.Length;
        }
        return sum / count;
    }

    // Cross-entropy of predicting each block's tokens shifted by one, over blocks of `blockLength` at the offsets.
    private static Tensor BatchLoss(MambaLanguageModel model, long[] tokens, int[] offsets, int blockLength, Device device)
    {
        var inputs = new long[offsets.Length * blockLength];
        var targets = new long[offsets.Length * blockLength];
        for (int b = 0; b < offsets.Length; b++)
        {
            Array.Copy(tokens, offsets[b], inputs, b * blockLength, blockLength);
            Array.Copy(tokens, offsets[b] + 1, targets, b * blockLength, blockLength);
        }
        var x = tensor(inputs, new long[] { offsets.Length, blockLength }).to(device);
        var y = tensor(targets, new long[] { offsets.Length * blockLength }).to(device);
        var logits = model.Forward(x);
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[^1]).to(ScalarType.Float32), y);
    }

    private static void Validate(LanguageModelTrainingOptions o)
    {
        void Check(bool ok, string name, object value, string rule)
        {
            if (!ok) throw new ArgumentException($"LanguageModelTrainingOptions.{name} must be {rule}; got {value}.", name);
        }
        Check(o.Steps >= 1, nameof(o.Steps), o.Steps, ">= 1");
        Check(o.BatchSize >= 1, nameof(o.BatchSize), o.BatchSize, ">= 1");
        Check(o.BlockLength >= 1, nameof(o.BlockLength), o.BlockLength, ">= 1");
        Check(o.LearningRate > 0 && double.IsFinite(o.LearningRate), nameof(o.LearningRate), o.LearningRate, "> 0 and finite");
        Check(o.WarmupSteps >= 0 && o.WarmupSteps < o.Steps, nameof(o.WarmupSteps), o.WarmupSteps, $"in [0, Steps = {o.Steps}) (the rate would never leave the warm-up)");
        Check(o.FinalLearningRateFraction is >= 0 and <= 1, nameof(o.FinalLearningRateFraction), o.FinalLearningRateFraction, "in [0, 1]");
        Check(o.WeightDecay >= 0 && double.IsFinite(o.WeightDecay), nameof(o.WeightDecay), o.WeightDecay, ">= 0 and finite");
        Check(o.Beta2 is > 0 and < 1, nameof(o.Beta2), o.Beta2, "in (0, 1)");
        Check(o.GradientClipNorm >= 0 && double.IsFinite(o.GradientClipNorm), nameof(o.GradientClipNorm), o.GradientClipNorm, ">= 0 and finite");
        Check(o.EvaluateEvery >= 1, nameof(o.EvaluateEvery), o.EvaluateEvery, ">= 1");
        Check(o.EvaluationBatches >= 1, nameof(o.EvaluationBatches), o.EvaluationBatches, ">= 1");
    }

    private static void RequireTokens(long[] tokens, string name, int blockLength, long vocabulary)
    {
        if (tokens.Length < blockLength + 1)
            throw new ArgumentException($"{name} holds {tokens.Length} tokens; a block of BlockLength = {blockLength} and its next token need {blockLength + 1}. " +
                                        "Lower BlockLength or give more text.", name);
        long min = tokens.Min(), max = tokens.Max();
        if (min < 0 || max >= vocabulary)
            throw new ArgumentException($"{name} holds token ids from {min} to {max}, outside [0, {vocabulary}) (the model's vocabulary).", name);
    }

    private static void DisposeAll(Dictionary<string, Tensor>? tensors)
    {
        if (tensors is null) return;
        foreach (var t in tensors.Values) t.Dispose();
    }
}
