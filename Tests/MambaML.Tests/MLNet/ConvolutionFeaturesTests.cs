using MambaML.MLNet;
using Microsoft.ML;
using static TorchSharp.torch;

namespace MambaML.Tests.MLNet;

[TestClass]
public sealed class ConvolutionFeaturesTests
{
    [TestMethod]
    public void Dilations_FollowMiniRocketsRule()
    {
        foreach (var (perKernel, length) in new[] { (119, 150), (119, 24), (5, 251), (1, 9), (40, 1000), (3, 5) })
        {
            var (dilations, features) = ConvolutionFeatures.Dilations(perKernel, length);
            Assert.AreEqual(perKernel, features.Sum(), $"{perKernel} per kernel, length {length}");
            Assert.AreEqual(1, dilations[0]);
            Assert.IsTrue(dilations.Zip(dilations.Skip(1)).All(p => p.First < p.Second), "dilations ascend without repeats");
            Assert.IsTrue(dilations[^1] <= Math.Max(1, (length - 1) / 8), $"largest dilation {dilations[^1]} for length {length}");
            Assert.IsTrue(features.All(f => f >= 1));
        }
        // Length 150, 119 features per kernel (MiniRocket's default of 9,996 features): 32 exponents up to log2(149 / 8); the
        // expected values were computed apart from this code (a few lines of Python with math.floor and collections.Counter)
        // from the rule: ⌊2^e⌋ merged, counts × 119/32 rounded down, the remainder spread from the first dilation.
        var (d, f) = ConvolutionFeatures.Dilations(119, 150);
        CollectionAssert.AreEqual(new[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 15, 16, 18 }, d);
        CollectionAssert.AreEqual(new[] { 30, 15, 12, 12, 4, 8, 8, 4, 4, 4, 3, 3, 3, 3, 3, 3 }, f);
        Assert.AreEqual(0.618034, ConvolutionFeatures.Quantile(0), 1e-6);
        Assert.AreEqual(0.236068, ConvolutionFeatures.Quantile(1), 1e-6);
    }

    // Plain loops: the kernel's zero-padded convolution of row b's channel sum over its own length, and the proportion of the
    // counted steps (all, or those where the dilated kernel lies inside when the pair is unpadded and such steps exist) above the
    // bias. A step whose value is within 1e-4 of the bias (a bias is often a value of the convolution it came from) may fall
    // either side in float arithmetic, so the proportion is returned as the range those steps allow.
    private static (double Low, double High) ReferenceProportion(float[] sum, int length, float[] kernel, int dilation, bool unpadded, float bias)
    {
        int padding = 4 * dilation, counted = 0, positive = 0, tied = 0;
        bool inside = length > 2 * padding;
        for (int t = 0; t < length; t++)
        {
            if (unpadded && inside && (t < padding || t >= length - padding)) continue;
            double c = 0;
            for (int j = 0; j < 9; j++)
            {
                int s = t + (j - 4) * dilation;
                if (s >= 0 && s < length) c += kernel[j] * sum[s];
            }
            counted++;
            if (Math.Abs(c - bias) < 1e-4) tied++;
            else if (c > bias) positive++;
        }
        return (positive / (double)counted, (positive + tied) / (double)counted);
    }

    [TestMethod]
    [DataRow(1)]
    [DataRow(4)]
    public void Proportions_MatchPlainLoops_OddLengths_AndBiasesAreQuantilesOfTrainingSequences(int channels)
    {
        var rng = new Random(11);
        const int featureCount = 84 * 7 + 5;
        int[] lengths = { 37, 9, 5, 23, 61, 40 };
        var features = new ConvolutionFeatures(featureCount, referenceLength: 61, channels);
        Assert.AreEqual(84 * 7, features.Count);
        var rows = lengths.Select(n => Enumerable.Range(0, n * channels).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray()).ToArray();
        var sequences = rows.Select((r, i) => tensor(r, new long[] { lengths[i], channels })).ToList();
        features.Fit(sequences, new Generator(3));

        long longest = lengths.Max();
        var padded = new float[rows.Length * longest * channels];
        for (int i = 0; i < rows.Length; i++) rows[i].CopyTo(padded, i * longest * channels);
        var input = tensor(padded, new long[] { rows.Length, longest, channels });
        var proportions = features.Proportions(input, tensor(lengths.Select(n => (long)n).ToArray())).data<float>().ToArray();
        var standardised = features.Forward(input, tensor(lengths.Select(n => (long)n).ToArray())).data<float>().ToArray();
        var biases = features.biases.data<float>().ToArray();
        var kernels = features.kernels.data<float>().ToArray();
        var (dilations, perDilation) = ConvolutionFeatures.Dilations(7, 61);
        var masks = features.channel_masks.data<float>().ToArray();   // (dilations, 84, channels)
        // Each pair sums 1 to min(channels, 9) distinct channels (all of a univariate series), and the pairs differ.
        var pairChannels = Enumerable.Range(0, dilations.Length * 84).Select(p => Enumerable.Range(0, channels).Where(c => masks[p * channels + c] == 1).ToArray()).ToArray();
        Assert.IsTrue(masks.All(m => m is 0 or 1));
        Assert.IsTrue(pairChannels.All(c => c.Length >= 1 && c.Length <= Math.Min(channels, 9)), "a pair sums no channel or too many");
        if (channels > 1) Assert.IsTrue(pairChannels.Select(c => string.Join(",", c)).Distinct().Count() > 3, "the channel combinations are not random");
        float[] PairSum(int row, int pair) => Enumerable.Range(0, lengths[row]).Select(t => pairChannels[pair].Sum(c => rows[row][t * channels + c])).ToArray();

        int feature = 0, ambiguous = 0;
        for (int di = 0; di < dilations.Length; di++)
            for (int k = 0; k < 84; k++)
                for (int f = 0; f < perDilation[di]; f++, feature++)
                {
                    var kernel = kernels[(k * 9)..(k * 9 + 9)];
                    bool unpadded = (di + k) % 2 == 1;
                    var sums = Enumerable.Range(0, rows.Length).Select(b => PairSum(b, di * 84 + k)).ToArray();
                    for (int b = 0; b < rows.Length; b++)
                    {
                        var (low, high) = ReferenceProportion(sums[b], lengths[b], kernel, dilations[di], unpadded, biases[feature]);
                        double actual = proportions[b * features.Count + feature];
                        if (high > low) ambiguous++;
                        Assert.IsTrue(actual >= low - 1e-6 && actual <= high + 1e-6, $"feature {feature} (dilation {dilations[di]}, kernel {k}), row {b}: {actual}, expected {low}–{high}");
                    }
                    // The bias is a quantile of one training sequence's convolution, so it lies within that convolution's range.
                    Assert.IsTrue(sums.Any(s => ConvolutionRange(s, kernel, dilations[di]) is var (lo, hi) && biases[feature] >= lo - 1e-4 && biases[feature] <= hi + 1e-4),
                        $"bias {biases[feature]} of feature {feature} is outside every training sequence's range");
                }
        Assert.IsTrue(ambiguous < features.Count * rows.Length / 20, $"{ambiguous} of {features.Count * rows.Length} comparisons had a step at the bias: too few checked exactly");
        // Standardised on these very sequences: mean 0 and standard deviation 1 (or exactly 0 where a feature is constant).
        for (int j = 0; j < features.Count; j++)
        {
            var column = Enumerable.Range(0, rows.Length).Select(b => (double)standardised[b * features.Count + j]).ToArray();
            double mean = column.Average(), std = Math.Sqrt(column.Select(v => (v - mean) * (v - mean)).Average());
            Assert.AreEqual(0, mean, 1e-5, $"feature {j} mean");
            Assert.IsTrue(Math.Abs(std - 1) < 1e-4 || std < 1e-6, $"feature {j} standard deviation {std}");
        }
    }

    [TestMethod]
    public void Proportions_OfABatchReadInParts_EqualThoseOfEachRowAlone()
    {
        // 20 rows of up to 15,000 steps: more comparisons than one part holds, so the batch is read a few rows at a time.
        var rng = new Random(5);
        int[] lengths = Enumerable.Range(0, 20).Select(_ => rng.Next(4_000, 15_001)).ToArray();
        var features = new ConvolutionFeatures(168, referenceLength: lengths.Max(), channels: 1);
        var rows = lengths.Select(n => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray()).ToArray();
        features.Fit(rows.Select(r => tensor(r, new long[] { r.Length, 1 })).ToList(), new Generator(3));
        long longest = lengths.Max();
        var padded = new float[rows.Length * longest];
        for (int i = 0; i < rows.Length; i++) rows[i].CopyTo(padded, i * longest);
        Assert.IsTrue(rows.Length * 84L * longest > 1 << 24, "the batch must not fit one part");
        var together = features.Proportions(tensor(padded, new long[] { rows.Length, longest, 1 }), tensor(lengths.Select(n => (long)n).ToArray())).data<float>().ToArray();
        int exact = 0;
        for (int b = 0; b < rows.Length; b++)
        {
            var alone = features.Proportions(tensor(rows[b], new long[] { 1, lengths[b], 1 }), tensor(new long[] { lengths[b] })).data<float>().ToArray();
            for (int j = 0; j < features.Count; j++)
            {
                float actual = together[b * features.Count + j];
                // A step at a bias may fall either side when the convolution runs over another batch shape.
                Assert.AreEqual(alone[j], actual, 3.0 / lengths[b], $"row {b}, feature {j}");
                if (actual == alone[j]) exact++;
            }
        }
        Assert.IsTrue(exact > 0.95 * rows.Length * features.Count, $"only {exact} of {rows.Length * features.Count} features equal exactly");
    }

    private static (double Low, double High) ConvolutionRange(float[] sum, float[] kernel, int dilation)
    {
        double low = double.MaxValue, high = double.MinValue;
        for (int t = 0; t < sum.Length; t++)
        {
            double c = 0;
            for (int j = 0; j < 9; j++)
            {
                int s = t + (j - 4) * dilation;
                if (s >= 0 && s < sum.Length) c += kernel[j] * sum[s];
            }
            low = Math.Min(low, c);
            high = Math.Max(high, c);
        }
        return (low, high);
    }

    private static T Field<T>(MambaSequenceTransformer model, string name) =>
        (T)typeof(MambaSequenceTransformer).GetField(name, System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!.GetValue(model)!;

    [TestMethod]
    public void ConvolutionFeatureHead_SameSeedSameModel_ChangesTheModel_SeparateLoss_SavesAndLoads()
    {
        var ml = new MLContext(seed: 1);
        var key = ml.Transforms.Conversion.MapValueToKey("Label", "Shape").Fit(ml.Data.LoadFromEnumerable(Synthetic.Shapes(60, 12, 40)));
        var train = key.Transform(ml.Data.LoadFromEnumerable(Synthetic.Shapes(60, 12, 40)));
        var test = key.Transform(ml.Data.LoadFromEnumerable(Synthetic.Shapes(40, 12, 40, seed: 2)));
        MambaSequenceClassificationOptions Options(int features, int seed, bool separateLoss = false)
        {
            var options = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>(epochs: 6);
            options.ConvolutionFeatureCount = features;
            options.ConvolutionHeadSeparateLoss = separateLoss;
            options.NormalizeEachSequence = true;
            options.Seed = seed;
            return options;
        }
        float[] Scores(ITransformer model) => Synthetic.ReadVectors(model.Transform(test), "Score").SelectMany(v => v).ToArray();

        using var model = ml.MulticlassClassification.Trainers.MambaSequence(Options(420, 5)).Fit(train);
        var scores = Scores(model);
        using (var again = ml.MulticlassClassification.Trainers.MambaSequence(Options(420, 5)).Fit(train))
            CollectionAssert.AreEqual(scores, Scores(again), "same seed, same model");
        using (var without = ml.MulticlassClassification.Trainers.MambaSequence(Options(0, 5)).Fit(train))
            CollectionAssert.AreNotEqual(scores, Scores(without), "the convolution-feature head had no effect");
        var network = Field<SequenceNetwork>(model, "_network");
        Assert.IsTrue(network.convolution_head!.weight!.abs().max().item<float>() > 0, "the head did not train");

        // Separate loss: another model; its training objective is the head's cross-entropy plus that of the sum with the head
        // held fixed, and its evaluation loss (validation, early stopping) that of the sum alone: the model's own.
        using (var separate = ml.MulticlassClassification.Trainers.MambaSequence(Options(420, 5, separateLoss: true)).Fit(train))
        {
            CollectionAssert.AreNotEqual(scores, Scores(separate), "the separate loss had no effect");
            var separateNetwork = Field<SequenceNetwork>(separate, "_network");
            var arch = Field<SequenceArchitecture>(separate, "_arch");
            Assert.IsTrue(arch.ConvolutionHeadSeparateLoss);
            var batch = Synthetic.Shapes(7, 12, 40, seed: 3).Select((row, i) => new SequenceExample { Values = row.Features, Steps = row.Features.Length, Target = new[] { (float)(i % 3) } }).ToList();
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var (input, lengths) = SequenceBatches.Inputs(batch, arch, CPU);
            var classes = tensor(batch.Select(e => (long)e.Target[0]).ToArray());
            var (mamba, linear) = separateNetwork.ForwardParts(input, lengths);
            double sumLoss = nn.functional.cross_entropy(linear! + mamba, classes).item<float>();
            Assert.AreEqual(sumLoss, SequenceBatches.Loss(separateNetwork, arch, batch, CPU).item<float>(), 1e-5, "evaluation loss");
            separateNetwork.train();   // no noise or dropout in these options, so the outputs are the same
            try
            {
                double objective = nn.functional.cross_entropy(linear!, classes).item<float>() + sumLoss;
                Assert.AreEqual(objective, SequenceBatches.Loss(separateNetwork, arch, batch, CPU).item<float>(), 1e-5, "training objective");
            }
            finally { separateNetwork.eval(); }
        }
        var accuracy = ml.MulticlassClassification.Evaluate(model.Transform(test)).MicroAccuracy;
        Assert.IsTrue(accuracy > 0.6, $"accuracy {accuracy:F3} (chance 0.33)");

        Synthetic.CheckSavedAndLoaded(ml, model, train.Schema, loaded => CollectionAssert.AreEqual(scores, Scores(loaded), "the loaded model scores differently"));
    }

    public sealed class ShapeInput
    {
        public float[] Features { get; set; } = Array.Empty<float>();
    }
    public sealed class ShapeScores
    {
        public float[] Score { get; set; } = Array.Empty<float>();
    }

    [TestMethod]
    public void PredictionLoop_WithTheHead_DoesNotGrowNativeMemory()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Transforms.Conversion.MapValueToKey("Label", "Shape").Fit(ml.Data.LoadFromEnumerable(Synthetic.Shapes(30, 12, 40)))
            .Transform(ml.Data.LoadFromEnumerable(Synthetic.Shapes(30, 12, 40)));
        var options = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>(epochs: 2);
        options.ConvolutionFeatureCount = 168;
        using var model = ml.MulticlassClassification.Trainers.MambaSequence(options).Fit(data);
        using var engine = ml.Model.CreatePredictionEngine<ShapeInput, ShapeScores>(model, new PredictionEngineOptions { OwnsTransformer = false });
        var rows = Synthetic.Shapes(50, 12, 40, seed: 4);
        engine.Predict(new ShapeInput { Features = rows[0].Features });
        var statistics = TorchSharp.DisposeScopeManager.Statistics;
        long before = statistics.ThreadTotalLiveCount;
        foreach (var row in rows) engine.Predict(new ShapeInput { Features = row.Features });
        Synthetic.ReadVectors(model.Transform(data), "Score");
        Assert.AreEqual(before, statistics.ThreadTotalLiveCount, "live tensors grew during prediction");
    }
}
