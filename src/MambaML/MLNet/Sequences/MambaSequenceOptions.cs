namespace MambaML.MLNet;

/// <summary>Settings shared by MambaML's sequence classifiers and regressors.</summary>
public abstract class MambaSequenceOptionsBase : MambaTrainerOptions
{
    /// <summary>Label column: Boolean (binary), key (multiclass) or Single (regression).</summary>
    public string LabelColumnName { get; set; } = "Label";
    /// <summary>Score output column.</summary>
    public string ScoreColumnName { get; set; } = "Score";
    /// <summary>How hidden states are pooled over the sequence.</summary>
    public SequencePooling Pooling { get; set; } = SequencePooling.Mean;
    /// <summary>
    /// Dropout probability, in [0, 1), applied during training to the embedded inputs and to the pooled features before the
    /// head (a regulariser for small data sets such as short texts); 0 turns it off. Prediction never drops.
    /// </summary>
    public double Dropout { get; set; }
    /// <summary>
    /// Adds a second Mamba backbone (as deep and wide as the first, so twice the parameters) that reads each sequence from its
    /// last real step to its first; its hidden states, put back in time order, are added to the forward backbone's before
    /// pooling, so every pooled state has seen the whole sequence.
    /// </summary>
    public bool Bidirectional { get; set; }

    internal override void Validate()
    {
        base.Validate();
        RequireInputColumns((nameof(LabelColumnName), LabelColumnName));
        Check(Dropout >= 0 && Dropout < 1, nameof(Dropout), Dropout, "in [0, 1)");
    }
}

/// <summary>Settings for numeric sequences: one vector column of steps × channels values (time-major), fixed or variable length.</summary>
public abstract class MambaNumericSequenceOptions : MambaSequenceOptionsBase
{
    private protected MambaNumericSequenceOptions() { }

    /// <summary>Input column: a vector of Single, steps × <see cref="Channels"/> values, time-major; rows may differ in length.</summary>
    public string FeatureColumnName { get; set; } = "Features";
    /// <summary>Values per time step (1 for a univariate series).</summary>
    public int Channels { get; set; } = 1;
    /// <summary>Time steps per token: sequences are cut into patches of this length (1 = one token per step). Longer patches scan faster.</summary>
    public int PatchLength { get; set; } = 1;
    /// <summary>z-normalise each sequence (per channel, over its real steps) before the model, as is usual for UCR-style data.</summary>
    public bool NormalizeEachSequence { get; set; }
    /// <summary>
    /// Also feed each channel's first difference (x[t] − x[t−1], 0 at the first step; taken after
    /// <see cref="NormalizeEachSequence"/>) as an extra channel, so the model sees slopes as well as levels.
    /// </summary>
    public bool AddFirstDifference { get; set; }
    /// <summary>
    /// Training-time data augmentation: standard deviation of the Gaussian noise added to every real value (after
    /// <see cref="NormalizeEachSequence"/>, so in units of each sequence's own standard deviation when that is on) each time a
    /// sequence is used; drawn from a generator seeded by <see cref="MambaTrainerOptions.Seed"/>. 0 turns it off. Prediction
    /// never adds noise.
    /// </summary>
    public double TrainingNoise { get; set; }
    /// <summary>
    /// Window slicing, a data augmentation for small training sets: while training, each time a sequence is used the model
    /// reads only a random contiguous window of this fraction of its real steps (rounded, at least one step; the start is drawn
    /// uniformly from a generator seeded by <see cref="MambaTrainerOptions.Seed"/>; taken after
    /// <see cref="NormalizeEachSequence"/>, so a window keeps its place in the whole sequence's scale). At prediction the model
    /// reads <see cref="PredictionWindows"/> windows of the same length, evenly spaced from the first step to the last, and
    /// averages their outputs as ensemble members are averaged. 1 = whole sequences (off); must be in (0, 1].
    /// </summary>
    public double WindowFraction { get; set; } = 1;
    /// <summary>
    /// Windows averaged per sequence at prediction when <see cref="WindowFraction"/> is below 1: the first starts at the first
    /// step, the last ends at the last step, the others are evenly spaced between (1 = one window in the middle). Each costs
    /// a forward pass. Ignored when <see cref="WindowFraction"/> is 1.
    /// </summary>
    public int PredictionWindows { get; set; } = 5;
    /// <summary>
    /// A multi-scale convolutional stem before the patch embedding: one 1-D convolution per kernel size listed here (odd sizes,
    /// in time steps, zero-padded to keep the length), each with <see cref="StemChannels"/> output channels over every input
    /// channel (and first difference), followed by SiLU; their outputs are appended to the step values, so each patch
    /// token also sees local shapes at these scales. Empty = no stem (the patches are embedded directly).
    /// </summary>
    public int[] StemKernelSizes { get; set; } = Array.Empty<int>();
    /// <summary>Output channels of each convolution of the stem (<see cref="StemKernelSizes"/>).</summary>
    public int StemChannels { get; set; } = 8;
    /// <summary>
    /// A linear head on MiniRocket's convolution features (Dempster et al., 2021) beside the Mamba head, their outputs summed
    /// ("wide and deep", as the text classifier's n-gram head): 84 fixed length-9 kernels at dilations spread over the longest
    /// training sequence, each convolved over the sum of a random combination of 1 to 9 channels (all of a univariate series)
    /// and giving the proportion of steps above biases fitted as quantiles of training sequences; the features are
    /// standardised on the training set and the head starts at zero. This
    /// value is the number of features, rounded down to a multiple of 84 (MiniRocket uses 9,996); 0 = no such head (Mamba
    /// alone). Costs about as much training time again as a small Mamba model on the CPU. On UCR data it raised test accuracy
    /// (ArrowHead 0.786 → 0.840) while lowering validation accuracy on splits of the training set (BENCHMARKS.md, classify-ucr).
    /// </summary>
    public int ConvolutionFeatureCount { get; set; }
    /// <summary>
    /// With <see cref="ConvolutionFeatureCount"/>: the convolution-feature head is trained on its own loss, as if alone, and
    /// the Mamba path on the loss of the sum with the head's outputs held fixed, so it learns what the head misses. When
    /// false, both are trained on the loss of the sum.
    /// </summary>
    public bool ConvolutionHeadSeparateLoss { get; set; }

    internal override void Validate()
    {
        base.Validate();
        RequireInputColumns((nameof(FeatureColumnName), FeatureColumnName));
        Check(TrainingNoise >= 0 && double.IsFinite(TrainingNoise), nameof(TrainingNoise), TrainingNoise, ">= 0");
        Check(WindowFraction > 0 && WindowFraction <= 1, nameof(WindowFraction), WindowFraction, "in (0, 1]");
        Check(PredictionWindows >= 1, nameof(PredictionWindows), PredictionWindows, ">= 1");
        Check(StemKernelSizes is not null && StemKernelSizes.All(k => k >= 1 && k % 2 == 1), nameof(StemKernelSizes),
              StemKernelSizes is null ? "null" : string.Join(",", StemKernelSizes), "odd sizes >= 1");
        Check(StemChannels >= 1, nameof(StemChannels), StemChannels, ">= 1");
        Check(ConvolutionFeatureCount == 0 || ConvolutionFeatureCount >= 84, nameof(ConvolutionFeatureCount), ConvolutionFeatureCount, "0 or >= 84");
        Check(!ConvolutionHeadSeparateLoss || ConvolutionFeatureCount > 0, nameof(ConvolutionHeadSeparateLoss), ConvolutionHeadSeparateLoss,
              "false unless ConvolutionFeatureCount > 0 (there is no convolution-feature head to train apart)");
        Check(Channels >= 1, nameof(Channels), Channels, ">= 1");
        Check(PatchLength >= 1, nameof(PatchLength), PatchLength, ">= 1");
    }
}

/// <summary>Options of <c>mlContext.BinaryClassification.Trainers.MambaSequence</c> and <c>mlContext.MulticlassClassification.Trainers.MambaSequence</c>.</summary>
public sealed class MambaSequenceClassificationOptions : MambaNumericSequenceOptions
{
    /// <summary>Predicted label output column (Boolean for binary, key for multiclass).</summary>
    public string PredictedLabelColumnName { get; set; } = "PredictedLabel";
    /// <summary>Probability output column (binary only; multiclass models ignore it).</summary>
    public string ProbabilityColumnName { get; set; } = "Probability";
    /// <summary>
    /// Label smoothing, a regulariser against over-confident fits of small training sets: the training target puts
    /// 1 − ε + ε/K on the true class and ε/K on each of the K classes (K = 2 for binary), with ε this value in [0, 1). The loss
    /// is cross-entropy against that target; prediction is unchanged. 0 = one-hot targets (off).
    /// </summary>
    public double LabelSmoothing { get; set; }
    /// <summary>
    /// Mixup (Zhang et al., 2018), a regulariser for small training sets: each training batch is paired with a random
    /// permutation of itself, and each sequence becomes λ · itself + (1 − λ) · its partner (after
    /// <see cref="MambaNumericSequenceOptions.NormalizeEachSequence"/> and windowing; the longer length of the two), trained
    /// against λ · its target + (1 − λ) · the partner's. λ is drawn per sequence from Beta(α, α), with α this value, from a
    /// generator seeded by <see cref="MambaTrainerOptions.Seed"/>; small α (0.1–0.4) keeps most mixes close to one sequence.
    /// 0 = off. Prediction never mixes.
    /// </summary>
    public double MixupAlpha { get; set; }

    internal override void Validate()
    {
        base.Validate();
        Check(LabelSmoothing >= 0 && LabelSmoothing < 1, nameof(LabelSmoothing), LabelSmoothing, "in [0, 1)");
        Check(MixupAlpha >= 0 && double.IsFinite(MixupAlpha), nameof(MixupAlpha), MixupAlpha, ">= 0");
        RequireDistinctOutputs((nameof(ScoreColumnName), ScoreColumnName), (nameof(PredictedLabelColumnName), PredictedLabelColumnName));
    }

    /// <summary>The binary trainer's check: its three outputs need three names.</summary>
    internal void ValidateBinaryOutputs() =>
        RequireDistinctOutputs((nameof(ScoreColumnName), ScoreColumnName), (nameof(PredictedLabelColumnName), PredictedLabelColumnName),
                               (nameof(ProbabilityColumnName), ProbabilityColumnName));
}

/// <summary>Options of <c>mlContext.Regression.Trainers.MambaSequence</c>.</summary>
public sealed class MambaSequenceRegressionOptions : MambaNumericSequenceOptions
{
    internal override void Validate()
    {
        base.Validate();
        RequireDistinctOutputs((nameof(ScoreColumnName), ScoreColumnName));
    }
}
