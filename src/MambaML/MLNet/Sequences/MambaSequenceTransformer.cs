using MambaML.Model;
using Microsoft.ML;
using Microsoft.ML.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.MLNet;

/// <summary>
/// A fitted Mamba sequence model (numeric sequences or text) for binary classification, multiclass classification or regression.
/// Its output columns follow ML.NET's conventions for <see cref="Task"/>, so <c>mlContext.*.Evaluate</c> and
/// <c>MapKeyToValue</c> work unchanged. Save with <c>mlContext.Model.Save</c>; load with <c>mlContext.RegisterMambaML()</c> then
/// <c>mlContext.Model.Load</c>.
/// </summary>
public sealed class MambaSequenceTransformer : MambaTransformerBase
{
    internal const string LoaderSignature = "MambaMLSequence";
    private readonly SequenceArchitecture _arch;
    private readonly SequenceNetwork _network;
    private readonly Device _device;
    private readonly TextTokens? _text;

    internal MambaSequenceTransformer(SequenceArchitecture arch, SequenceNetwork network, Device device)
    {
        _arch = arch;
        _network = network;
        _device = device;
        _text = arch.Vocabulary is { } vocabulary ? new TextTokens(vocabulary) : null;
        _network.eval();
        OutputColumns = SequenceOutputs.Create(arch);
    }

    /// <summary>What the model predicts.</summary>
    public MambaSequenceTask Task => _arch.Task;
    /// <summary>The input column: a numeric sequence (float[]) or, for text models, a text column.</summary>
    public string FeatureColumnName => _arch.FeatureColumnName;
    /// <summary>Whether the model reads text (tokenised with <see cref="Tokenizer"/>) rather than numbers.</summary>
    public bool IsTextModel => _arch.Input == SequenceInputKind.Tokens;
    /// <summary>The tokenizer of a text model (null for numeric models).</summary>
    public MambaTokenizer? Tokenizer => _arch.Vocabulary?.Tokenizer;
    /// <summary>Class names in class order (the training label's key values); null unless multiclass.</summary>
    public IReadOnlyList<string>? ClassNames => _arch.ClassNames is { } names ? Array.AsReadOnly(names) : null;   // not the array the outputs' annotations share
    /// <inheritdoc/>
    public override Device Device => _device;

    private protected override IReadOnlyList<OutputColumn> OutputColumns { get; }
    private protected override int? SavedPredictionBatchSize => _arch.PredictionBatchSize;
    private protected override int CpuPredictionBatchSize => 64;
    internal override long ActivationsPerRow(SequenceExample example) =>
        (long)Math.Ceiling(Math.Max(1, example.Steps) / (double)_arch.PatchLength) * _arch.Mamba.DInner;

    private protected override ExampleReader CreateReader(DataViewSchema inputSchema) => new(SequenceReaders.Create(inputSchema, _arch, _text));

    private protected override float[][] Predict(IReadOnlyList<SequenceExample> batch)
    {
        var (input, lengths) = SequenceBatches.Inputs(batch, _arch, _device);
        var raw = _network.MemberOutputs(input, lengths);   // (members, batch, outputs)
        var output = _arch.Task switch
        {
            MambaSequenceTask.MulticlassClassification => nn.functional.softmax(raw, 2).mean(new long[] { 0 }),
            MambaSequenceTask.Regression => raw.mean(new long[] { 0 }) * _arch.LabelScale + _arch.LabelMean,
            _ => raw.mean(new long[] { 0 }),
        };
        return SplitRows(output, batch.Count);
    }

    private protected override void SaveModel(ModelSaveContext ctx) => ModelFile.Save(ctx, LoaderSignature, _arch, _network);

    private protected override void DisposeNetwork() => _network.Dispose();

    // Called by ML.NET (through the loader registered by RegisterMambaML) with its ModelLoadContext.
    private static MambaSequenceTransformer Create(IHostEnvironment env, object ctx)
    {
        var (arch, network, device) = LoadNetwork<SequenceArchitecture, SequenceNetwork>(env, ctx, LoaderSignature, a => new SequenceNetwork(a, seed: 0));
        return new MambaSequenceTransformer(arch, network, device);
    }
}

/// <summary>The sequence reader for an architecture's input column.</summary>
internal static class SequenceReaders
{
    public static SequenceReader Create(DataViewSchema schema, SequenceArchitecture arch, TextTokens? text) =>
        arch.Input == SequenceInputKind.Numeric
            ? new NumericSequenceReader(schema, arch.FeatureColumnName, "FeatureColumnName", arch.Channels, steps: null)
            : new TextSequenceReader(schema, arch.FeatureColumnName, "TextColumnName", text!);
}

/// <summary>Pads examples into the sequence network's tensors.</summary>
internal static class SequenceBatches
{
    /// <summary>Numeric: (batch, steps, channels) float zero-padded; text: (batch, tokens) int64; and (batch) int64 lengths.</summary>
    public static (Tensor Input, Tensor Lengths) Inputs(IReadOnlyList<SequenceExample> batch, SequenceArchitecture arch, Device device)
    {
        int longest = batch.Max(e => e.Steps);
        var lengths = tensor(batch.Select(e => (long)e.Steps).ToArray()).to(device);
        if (arch.Input == SequenceInputKind.Tokens)
        {
            var ids = new long[batch.Count * longest];
            for (int i = 0; i < batch.Count; i++) batch[i].Tokens!.CopyTo(ids, i * longest);
            return (tensor(ids, new long[] { batch.Count, longest }).to(device), lengths);
        }
        int c = arch.Channels;
        var values = new float[batch.Count * longest * c];
        for (int i = 0; i < batch.Count; i++) batch[i].Values.CopyTo(values, i * longest * c);
        return (InputTensors.FromValues(values, new long[] { batch.Count, longest, c }, device), lengths);
    }

    /// <summary>Mean loss of a batch for the architecture's task: in training mode the objective the optimiser minimises, in
    /// eval mode the loss of the model's predictions.</summary>
    public static Tensor Loss(SequenceNetwork network, SequenceArchitecture arch, IReadOnlyList<SequenceExample> batch, Device device)
    {
        using var scope = NewDisposeScope();
        var (input, lengths) = Inputs(batch, arch, device);
        var target = tensor(batch.Select(e => e.Target[0]).ToArray()).to(device);
        var mixup = network.DrawMixup(batch.Count, device);
        if (network.training && (arch.NgramHeadLength > 0 && arch.NgramHeadSeparateLoss || arch.ConvolutionFeatureCount > 0 && arch.ConvolutionHeadSeparateLoss))
        {
            // Each member's linear head learns as if alone; its Mamba path learns what the head misses (the head's outputs are
            // held fixed there). The loss is the mean over members. Evaluation (eval mode: validation, early stopping) scores
            // what the model predicts instead, the sum of both paths, as below.
            var losses = network.Members().Select(member =>
            {
                var (mamba, linear) = member.ForwardParts(input, lengths, mixup: mixup);
                return TaskLoss(linear!, target, arch, mixup) + TaskLoss(linear!.detach() + mamba, target, arch, mixup);
            }).ToList();
            return stack(losses).mean().MoveToOuterDisposeScope();
        }
        // Every ensemble member is scored on the batch: the mean over (member, example) pairs is the mean of the members' losses.
        var members = network.MemberOutputs(input, lengths, mixup);
        return TaskLoss(members.reshape(-1, members.shape[2]), target, arch, mixup).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Mean loss of raw outputs (copies × rows, outputs), each of the batch's rows repeated once per ensemble member, against
    /// the batch's targets (rows): cross-entropy (label-smoothed; against mixed targets under <paramref name="mixup"/>) or the
    /// squared error of the normalised regression value.
    /// </summary>
    private static Tensor TaskLoss(Tensor raw, Tensor target, SequenceArchitecture arch, MixupDraw? mixup)
    {
        using var scope = NewDisposeScope();
        long copies = raw.shape[0] / target.shape[0];
        var loss = arch.Task switch
        {
            // Without mixup the fused cross-entropy (the same arithmetic as before mixup existed, so earlier models train bit for bit).
            MambaSequenceTask.MulticlassClassification => mixup is null
                ? SmoothedCrossEntropy(raw, target.to(ScalarType.Int64).repeat(copies), arch.LabelSmoothing)
                : SoftCrossEntropy(raw, ClassTargets(target.to(ScalarType.Int64), arch.Outputs, arch.LabelSmoothing, mixup).repeat(copies, 1)),
            MambaSequenceTask.BinaryClassification =>
                nn.functional.binary_cross_entropy_with_logits(raw.squeeze(1), BinaryTargets(target, arch.LabelSmoothing, mixup).repeat(copies)),
            _ => nn.functional.mse_loss(raw.squeeze(1), ((target - arch.LabelMean) / arch.LabelScale).repeat(copies)),
        };
        return loss.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Training targets of a multiclass batch, (rows, K): one-hot, mixed with the partner's as λ · own + (1 − λ) · partner's
    /// under <paramref name="mixup"/>, then smoothed to (1 − ε) · target + ε/K.
    /// </summary>
    internal static Tensor ClassTargets(Tensor classes, int classCount, double epsilon, MixupDraw? mixup)
    {
        using var scope = NewDisposeScope();
        var target = nn.functional.one_hot(classes, classCount).to(ScalarType.Float32);
        if (mixup is { } m) target = m.Mix(target);
        return (target * (1 - epsilon) + epsilon / classCount).MoveToOuterDisposeScope();
    }

    /// <summary>Training targets of a binary batch, (rows): 0/1, mixed as <see cref="ClassTargets"/>, then smoothed to (1 − ε) · t + ε/2.</summary>
    internal static Tensor BinaryTargets(Tensor labels, double epsilon, MixupDraw? mixup)
    {
        using var scope = NewDisposeScope();
        var target = mixup is { } m ? m.Mix(labels) : labels;
        return (target * (1 - epsilon) + epsilon / 2).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Mean cross-entropy of <paramref name="logits"/> (rows, K) against targets with 1 − ε + ε/K on the class and ε/K on every
    /// class: (1 − ε) · cross-entropy + ε · the mean over classes of −log p.
    /// </summary>
    internal static Tensor SmoothedCrossEntropy(Tensor logits, Tensor classes, double epsilon)
    {
        var loss = nn.functional.cross_entropy(logits, classes);
        if (epsilon == 0) return loss;
        using var scope = NewDisposeScope();
        var uniform = -nn.functional.log_softmax(logits, 1).mean(new long[] { 1 }).mean();
        return (loss * (1 - epsilon) + uniform * epsilon).MoveToOuterDisposeScope();
    }

    /// <summary>Mean over rows of the cross-entropy −Σₖ qₖ log softmax(logits)ₖ of <paramref name="logits"/> (rows, K) against target distributions <paramref name="targets"/> (rows, K).</summary>
    internal static Tensor SoftCrossEntropy(Tensor logits, Tensor targets)
    {
        using var scope = NewDisposeScope();
        return (-(targets * nn.functional.log_softmax(logits, 1)).sum(1).mean()).MoveToOuterDisposeScope();
    }
}

/// <summary>Trains a <see cref="SequenceNetwork"/> for an architecture (shared by the numeric and text estimators).</summary>
internal static class SequenceFitting
{
    /// <summary>Builds the network for <paramref name="arch"/>, trains it (optionally with a learning-rate factor per parameter name) and wraps it.</summary>
    public static MambaSequenceTransformer Fit(IHostEnvironment env, MambaTrainerOptions options, SequenceArchitecture arch, IDataView train,
        ExampleReader trainReader, (IDataView, ExampleReader)? valid, string trainerName, Func<string, double>? learningRateScale = null)
    {
        var device = DevicePolicy.Choose(env);
        int seed = options.Seed ?? MLNetInternals.Seed(env) ?? 0;
        using var scope = NewDisposeScope();   // the fit's own: a scope the caller has open must not own the model's tensors
        var network = new SequenceNetwork(arch, seed);
        try
        {
            network.to(device);
            if (arch.ConvolutionFeatureCount > 0)
            {
                var clock = System.Diagnostics.Stopwatch.StartNew();
                TrainingLoop.Log(env, trainerName, $"fitting {arch.ConvolutionFeatureCount / 84 * 84} convolution features on the training sequences.");
                network.FitConvolutionFeatures(trainReader.ReadAll(train, options.CancellationToken), device, options.CancellationToken);
                TrainingLoop.Log(env, trainerName, $"convolution features fitted in {clock.Elapsed.TotalSeconds:F1} s.");
            }
            new TrainingLoop(env, options, trainerName).Run(network, train, trainReader, valid,
                batch => SequenceBatches.Loss(network, arch, batch, device), seed, learningRateScale: learningRateScale);
            return new MambaSequenceTransformer(arch, network.KeepOutOfDisposeScopes(), device);
        }
        catch
        {
            network.Dispose();
            throw;
        }
    }
}
