using System.Diagnostics;
using MambaML.Model;
using Microsoft.ML;
using Microsoft.ML.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MambaML.MLNet;

/// <summary>
/// The training loop every MambaML trainer shares: streams the data through cursors in shuffled batches (bounded buffer),
/// AdamW with decoupled weight decay (none on A_log, D, norms, biases), warm-up + cosine learning rate, gradient clipping,
/// per-epoch progress to the ML.NET log and a callback, early stopping on a validation set keeping the best weights,
/// cancellation between batches, and a clear stop when the loss stops being finite.
/// </summary>
internal sealed class TrainingLoop
{
    private readonly IHostEnvironment _env;
    private readonly MambaTrainerOptions _options;
    private readonly string _trainerName;
    private readonly int _member, _members;

    /// <param name="env">ML.NET environment: its log receives the progress lines.</param>
    /// <param name="options">Training settings.</param>
    /// <param name="trainerName">Names the trainer in log lines and errors.</param>
    /// <param name="member">Which of <paramref name="members"/> networks trained one after another this loop trains, from 1
    /// (reported in the progress, and counted in its time estimate).</param>
    /// <param name="members">Networks trained one after another in this fit.</param>
    public TrainingLoop(IHostEnvironment env, MambaTrainerOptions options, string trainerName, int member = 1, int members = 1)
    {
        _env = env;
        _options = options;
        _trainerName = trainerName;
        (_member, _members) = (member, members);
    }

    /// <summary>Trains <paramref name="network"/> in place; on return it holds the final (or best-validation) weights, in eval mode.</summary>
    /// <param name="network">The network, already on its device.</param>
    /// <param name="train">Training data.</param>
    /// <param name="trainReader">Reads training examples (with targets).</param>
    /// <param name="valid">Optional validation data and its reader.</param>
    /// <param name="batchLoss">Mean loss of a batch (builds the tensors, runs the network).</param>
    /// <param name="seed">Shuffling seed.</param>
    /// <param name="validateStart">
    /// Also validate the network as it is before the first epoch and keep it if no epoch beats it (for a network that starts
    /// from a fitted solution rather than at random); needs a validation set to have an effect.
    /// </param>
    /// <param name="learningRateScale">
    /// Optional factor on the learning rate (and its schedule) of each parameter, by name; null trains every parameter at
    /// <see cref="MambaTrainerOptions.LearningRate"/>.
    /// </param>
    public void Run(nn.Module network, IDataView train, ExampleReader trainReader, (IDataView Data, ExampleReader Reader)? valid,
                    Func<IReadOnlyList<SequenceExample>, Tensor> batchLoss, int seed, bool validateStart = false,
                    Func<string, double>? learningRateScale = null)
    {
        long rows = CountRows(train, trainReader);
        if (rows == 0)
            throw new ArgumentException($"{_trainerName}: the training data has no rows. Pass a non-empty IDataView to Fit " +
                                        "(windows from TimeSeriesWindows need at least Lookback + Horizon table rows in the range asked for).", "input");
        if (valid is { } v && !ValidationSetReader.Read(v.Reader.ReadAll(v.Data)).Any())   // before an epoch is spent, not after
            throw EmptyValidationSet();

        using var gradients = enable_grad();   // whatever the caller's grad mode
        // libtorch's thread count is per thread, and new threads take the last value set anywhere: touch it only when asked to,
        // since restoring a value read while another fit had changed it would hand that fit's setting to later threads.
        int? threadsBefore = _options.NumberOfThreads is null ? null : get_num_threads();
        if (_options.NumberOfThreads is { } threads) set_num_threads(threads);
        try
        {
            RunEpochs(network, train, trainReader, valid, batchLoss, seed, rows, validateStart, learningRateScale ?? (_ => 1));
        }
        finally
        {
            if (threadsBefore is { } before) set_num_threads(before);
        }
    }

    // Fewer optimizer steps than this get a warning in the log.
    internal const int FewSteps = 200;

    private void RunEpochs(nn.Module network, IDataView train, ExampleReader trainReader, (IDataView Data, ExampleReader Reader)? valid,
                           Func<IReadOnlyList<SequenceExample>, Tensor> batchLoss, int seed, long rows, bool validateStart,
                           Func<string, double> learningRateScale)
    {
        int batchSize = _options.BatchSize;
        long stepsPerEpoch = (rows + batchSize - 1) / batchSize;
        long totalSteps = stepsPerEpoch * _options.NumberOfEpochs;
        var (adamW, groupScales) = CreateOptimizer(network, learningRateScale);
        using var optimizer = adamW;
        var rng = new Random(seed);
        var host = _env.Register("MambaML");
        using var channel = host.Start(_trainerName);
        channel.Info(MessageSensitivity.None,
            $"{_trainerName}: {rows} training rows, {stepsPerEpoch} batches of {batchSize} per epoch, up to {_options.NumberOfEpochs} epochs, " +
            $"{network.parameters().Sum(p => p.numel())} parameters on {network.parameters().First().device}.");
        if (totalSteps < FewSteps && _member == 1)   // once per fit, not per ensemble member
            // The defaults (batches of 32, 10 epochs) suit thousands of rows; on a few hundred they leave the model near chance,
            // with nothing else to say why.
            channel.Warning(MessageSensitivity.None,
                $"{_trainerName}: training will make only {totalSteps} optimizer steps ({rows} rows in batches of {batchSize}, {_options.NumberOfEpochs} epochs), " +
                $"too few for most models to learn much. Lower BatchSize or raise NumberOfEpochs so that it makes at least {FewSteps}.");

        var clock = Stopwatch.StartNew();
        Dictionary<string, Tensor>? best = null;
        double bestValidation = double.PositiveInfinity;
        int epochsWithoutImprovement = 0;
        long step = 0;
        double learningRate = _options.LearningRate;
        try
        {
            if (validateStart && valid is { } start)
            {
                bestValidation = Evaluate(network, start.Data, start.Reader, batchLoss, trained: null);
                best = Snapshot(network);
                channel.Info(MessageSensitivity.None, $"{_trainerName}: before training: validation loss {bestValidation:G5}");
            }
            for (int epoch = 1; epoch <= _options.NumberOfEpochs; epoch++)
            {
                network.train();
                double lossSum = 0;
                long seen = 0, batchIndex = 0;
                foreach (var batch in ShuffledBatches(trainReader.ReadAll(train), batchSize, _options.ShuffleBufferSize, rng))
                {
                    _options.CancellationToken.ThrowIfCancellationRequested();
                    learningRate = LearningRateAt(step++, totalSteps);
                    foreach (var (group, scale) in optimizer.ParamGroups.Zip(groupScales)) group.LearningRate = learningRate * scale;

                    using var scope = NewDisposeScope();
                    optimizer.zero_grad();
                    var loss = batchLoss(batch);
                    double value = loss.item<float>();
                    if (!double.IsFinite(value))
                        throw new InvalidOperationException(step == 1
                            // No update has run yet, so no setting of the optimiser can be the cause.
                            ? $"{_trainerName}: the loss of the first batch, before any training step, is {value}: the untrained model's output " +
                              $"is not finite on this data: {DataAdvice()}."
                            : $"{_trainerName}: training diverged at epoch {epoch}, batch {batchIndex + 1}: the loss became {value}. " + DivergenceAdvice(learningRate) + ".");
                    loss.backward();
                    if (_options.GradientClipNorm > 0) nn.utils.clip_grad_norm_(network.parameters(), _options.GradientClipNorm);
                    optimizer.step();
                    lossSum += value * batch.Count;
                    seen += batch.Count;
                    batchIndex++;
                }

                double trainLoss = lossSum / Math.Max(1, seen);
                double? validLoss = valid is { } v ? Evaluate(network, v.Data, v.Reader, batchLoss, (trainLoss, learningRate)) : null;
                bool isBest = validLoss is null || validLoss < bestValidation;
                if (validLoss is { } vl && isBest)
                {
                    bestValidation = vl;
                    epochsWithoutImprovement = 0;
                    DisposeAll(best);
                    best = Snapshot(network);
                }
                else if (validLoss is not null) epochsWithoutImprovement++;

                bool stopEarly = validLoss is not null && _options.EarlyStoppingPatience > 0 && epochsWithoutImprovement >= _options.EarlyStoppingPatience;
                var elapsed = clock.Elapsed;
                long remainingEpochs = (stopEarly ? 0 : _options.NumberOfEpochs - epoch) + (long)(_members - _member) * _options.NumberOfEpochs;
                var progress = new MambaTrainingProgress(epoch, _options.NumberOfEpochs, trainLoss, validLoss, isBest, learningRate,
                                                         elapsed, TimeSpan.FromTicks(elapsed.Ticks / epoch * remainingEpochs), _member, _members);
                channel.Info(MessageSensitivity.None, $"{_trainerName}: {progress}");
                _options.ProgressCallback?.Invoke(progress);
                if (stopEarly)
                {
                    channel.Info(MessageSensitivity.None,
                        $"{_trainerName}: early stopping after epoch {epoch}: no better validation loss for {_options.EarlyStoppingPatience} epochs; keeping the best (validation loss {bestValidation:G5}).");
                    break;
                }
            }
            if (best is not null)
                using (no_grad()) network.load_state_dict(best);
            else if (!double.IsFinite(MeanLoss(network, trainReader.ReadAll(train), batchLoss).Loss))
                // Each batch's loss is checked before its update; without a validation loss after it, the last update is not.
                throw new InvalidOperationException(
                    $"{_trainerName}: training diverged in its last step: the trained model's loss on the training data is not finite. " +
                    DivergenceAdvice(learningRate) + ".");
        }
        finally
        {
            DisposeAll(best);
            network.eval();
        }
    }

    /// <summary>Logs an Info line of <paramref name="trainerName"/> to <c>mlContext.Log</c>, as the epochs are.</summary>
    internal static void Log(IHostEnvironment env, string trainerName, string message)
    {
        using var channel = env.Register("MambaML").Start(trainerName);
        channel.Info(MessageSensitivity.None, $"{trainerName}: {message}");
    }

    // What to change after a divergence: the options that can make the loss blow up, with their values.
    private string DivergenceAdvice(double learningRate) =>
        $"Lower LearningRate (now {_options.LearningRate:G3}; {learningRate:G3} at this point of the schedule)" +
        (_options is MambaTextClassificationOptions { NgramHeadLength: > 0, NgramHeadLearningRate: { } headRate }
            ? $" or NgramHeadLearningRate (now {headRate:G3}), the n-gram head's own rate" : "") +
        $", keep GradientClipNorm > 0 (now {_options.GradientClipNorm:G3}), lower WeightDecay (now {_options.WeightDecay:G3}) if it is large" +
        (_options is MambaNumericSequenceOptions { TrainingNoise: > 0 } numeric ? $", lower TrainingNoise (now {numeric.TrainingNoise:G3}) if it is large" : "") +
        (_options is MambaTextClassificationOptions ? "" : ", and " + DataAdvice());

    // What in numeric data can make a loss non-finite, and what helps, by task (text has no numeric input).
    private string DataAdvice() => _options switch
    {
        MambaForecastingOptions => "check the data for extreme values (InstanceNormalization and mlContext.Transforms.NormalizeMeanVariance help)",
        MambaTextClassificationOptions => "check the label column",
        _ => "check the data for extreme values, such as outliers many orders of magnitude beyond the rest (mlContext.Transforms.NormalizeMeanVariance helps)",
    };

    private ArgumentException EmptyValidationSet() =>
        new($"{_trainerName}: the validation set has no rows. Pass a non-empty ValidationSet or leave it null.", nameof(MambaTrainerOptions.ValidationSet));

    /// <summary>
    /// Mean loss over all examples of the validation set, in eval mode without gradients. <paramref name="trained"/>: the
    /// epoch's training loss and learning rate, or null before any training step (the fitted start), which tell a validation
    /// set out of the training data's range from a diverged model.
    /// </summary>
    private double Evaluate(nn.Module network, IDataView data, ExampleReader reader, Func<IReadOnlyList<SequenceExample>, Tensor> batchLoss,
                            (double Loss, double LearningRate)? trained)
    {
        var (loss, count) = MeanLoss(network, ValidationSetReader.Read(reader.ReadAll(data)), batchLoss);
        if (count == 0) throw EmptyValidationSet();
        if (double.IsFinite(loss)) return loss;
        const string OutOfRange = "the validation set's values are probably far outside the training data's (compare their ranges; a loss beyond 3.4e38 does not fit a float)";
        throw new InvalidOperationException(trained switch
        {
            null => $"{_trainerName}: before training, the validation loss of the fitted start is {loss}: {OutOfRange}.",
            ({ } train, var rate) when double.IsFinite(train) =>
                $"{_trainerName}: the validation loss became {loss} while the training loss is {train:G5}: {OutOfRange}. " +
                $"If they are alike, the model diverged: {DivergenceAdvice(rate)}.",
            (_, var rate) => $"{_trainerName}: the validation loss became {loss}; the model diverged. {DivergenceAdvice(rate)}.",
        });
    }

    /// <summary>
    /// Mean loss over <paramref name="examples"/> and their count, in eval mode without gradients; the first batch whose loss
    /// is not finite ends the pass and gives that loss.
    /// </summary>
    private (double Loss, long Count) MeanLoss(nn.Module network, IEnumerable<SequenceExample> examples, Func<IReadOnlyList<SequenceExample>, Tensor> batchLoss)
    {
        network.eval();
        double sum = 0;
        long count = 0;
        try
        {
            using (no_grad())
                foreach (var batch in ShuffledBatches(examples, _options.BatchSize, bufferSize: 1, rng: null))
                {
                    _options.CancellationToken.ThrowIfCancellationRequested();
                    using var scope = NewDisposeScope();
                    double value = batchLoss(batch).item<float>();
                    if (!double.IsFinite(value)) return (value, count + batch.Count);
                    sum += value * batch.Count;
                    count += batch.Count;
                }
        }
        finally
        {
            network.train();
        }
        return (count == 0 ? double.NaN : sum / count, count);
    }

    /// <summary>
    /// AdamW with a group per learning-rate scale and decay: decay for matrices (weights of projections, convolutions,
    /// embeddings), none for A_log, D, norms and biases. Returns the optimizer and each group's learning-rate scale, in order.
    /// </summary>
    private (AdamW Optimizer, double[] Scales) CreateOptimizer(nn.Module network, Func<string, double> learningRateScale)
    {
        var groups = new SortedDictionary<(double Scale, bool Decay), List<Parameter>>();
        foreach (var (name, parameter) in network.named_parameters())
        {
            if (!parameter.requires_grad) continue;
            bool decay = TrainingRules.TakesWeightDecay(name, parameter);
            var key = (learningRateScale(name), decay);
            if (!groups.TryGetValue(key, out var list)) groups[key] = list = new List<Parameter>();
            list.Add(parameter);
        }
        var paramGroups = groups.Select(g => new AdamW.ParamGroup(g.Value, lr: _options.LearningRate * g.Key.Scale,
                                                                   weight_decay: g.Key.Decay ? _options.WeightDecay : 0)).ToList();
        return (optim.AdamW(paramGroups, lr: _options.LearningRate), groups.Keys.Select(k => k.Scale).ToArray());
    }

    /// <summary>The learning rate at optimisation step <paramref name="step"/> of <paramref name="totalSteps"/>.</summary>
    internal double LearningRateAt(long step, long totalSteps)
    {
        if (_options.LearningRateSchedule == LearningRateSchedule.Constant) return _options.LearningRate;
        return TrainingRules.WarmupCosine(step, totalSteps, (long)Math.Ceiling(_options.WarmupFraction * totalSteps), _options.LearningRate);
    }

    // Batch lists grow past this as rows come, so a huge BatchSize or PredictionBatchSize allocates for the rows there are.
    internal const int MaxInitialBatchCapacity = 1024;

    /// <summary>
    /// Groups <paramref name="source"/> into batches in a shuffled order using a buffer of at most <paramref name="bufferSize"/>
    /// examples (as ML.NET's own trainers do): a dataset larger than memory streams through. A null <paramref name="rng"/> keeps the order.
    /// </summary>
    internal static IEnumerable<IReadOnlyList<SequenceExample>> ShuffledBatches(IEnumerable<SequenceExample> source, int batchSize, int bufferSize, Random? rng)
    {
        var batch = new List<SequenceExample>(Math.Min(batchSize, MaxInitialBatchCapacity));
        foreach (var example in Shuffle(source, bufferSize, rng))
        {
            batch.Add(example);
            if (batch.Count == batchSize)
            {
                yield return batch;
                batch = new List<SequenceExample>(Math.Min(batchSize, MaxInitialBatchCapacity));
            }
        }
        if (batch.Count > 0) yield return batch;
    }

    private static IEnumerable<T> Shuffle<T>(IEnumerable<T> source, int bufferSize, Random? rng)
    {
        if (rng is null)
        {
            foreach (var item in source) yield return item;
            yield break;
        }
        var buffer = new List<T>(Math.Min(bufferSize, 1 << 16));
        foreach (var item in source)
        {
            if (buffer.Count < bufferSize) { buffer.Add(item); continue; }
            int j = rng.Next(bufferSize);
            yield return buffer[j];
            buffer[j] = item;
        }
        // Drain in random order (Fisher–Yates).
        for (int i = buffer.Count - 1; i >= 0; i--)
        {
            int j = rng.Next(i + 1);
            yield return buffer[j];
            buffer[j] = buffer[i];
        }
    }

    /// <summary>Rows of <paramref name="data"/>: its known count, else one pass of a cursor that reads no column.</summary>
    internal static long CountRows(IDataView data, ExampleReader reader)
    {
        if (data.GetRowCount() is { } known) return known;
        long count = 0;
        using var cursor = data.GetRowCursor(reader.Columns.Take(0));
        while (cursor.MoveNext()) count++;
        return count;
    }

    private static Dictionary<string, Tensor> Snapshot(nn.Module network)
    {
        using var _ = no_grad();
        return network.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone().DetachFromDisposeScope());
    }

    private static void DisposeAll(Dictionary<string, Tensor>? state)
    {
        if (state is null) return;
        foreach (var t in state.Values) t.Dispose();
        state.Clear();
    }
}
