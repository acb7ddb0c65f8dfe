using MambaML.MLNet;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace MambaML.Tests.MLNet;

[TestClass]
public sealed class SequenceTests
{
    public sealed class SequenceInput
    {
        public float[] Features { get; set; } = Array.Empty<float>();
        public string Shape { get; set; } = "";
    }
    public sealed class MulticlassOutput
    {
        public float[] Score { get; set; } = Array.Empty<float>();
        public string PredictedShape { get; set; } = "";
    }

    private static IDataView Shapes(MLContext ml, int count, int minLength = 24, int maxLength = 24, int channels = 1, int seed = 1) =>
        ml.Data.LoadFromEnumerable(Synthetic.Shapes(count, minLength, maxLength, channels, seed));

    [TestMethod]
    public void Multiclass_VariableLength_EvaluateAndMapKeyToValueWork()
    {
        var ml = new MLContext(seed: 1);
        var options = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>(epochs: 10);
        options.PatchLength = 2;
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label", "Shape")
            .Append(ml.MulticlassClassification.Trainers.MambaSequence(options))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedShape", "PredictedLabel"));
        var model = pipeline.Fit(Shapes(ml, 150, 16, 40));
        var scored = model.Transform(Shapes(ml, 60, 16, 40, seed: 2));
        var metrics = ml.MulticlassClassification.Evaluate(scored);
        Assert.IsTrue(metrics.MicroAccuracy > 0.8, $"accuracy {metrics.MicroAccuracy:F3}");
        var slotNames = default(VBuffer<ReadOnlyMemory<char>>);
        scored.Schema["Score"].GetSlotNames(ref slotNames);
        CollectionAssert.AreEquivalent(new[] { "sine", "square", "ramp" }, slotNames.DenseValues().Select(m => m.ToString()).ToArray());

        using var engine = ml.Model.CreatePredictionEngine<SequenceInput, MulticlassOutput>(model);
        var square = Synthetic.Shapes(3, 30, 30, seed: 9)[1];
        var prediction = engine.Predict(new SequenceInput { Features = square.Features });
        Assert.AreEqual("square", prediction.PredictedShape);
        Assert.AreEqual(1f, prediction.Score.Sum(), 1e-5f);
    }

    [TestMethod]
    public void PaddedBatches_GiveTheSameResultAsEachSequenceAlone()
    {
        var ml = new MLContext(seed: 1);
        // The last case turns on every input and pooling option whose masking must ignore the padding.
        foreach (var (pooling, extras) in new[] { (SequencePooling.Mean, false), (SequencePooling.Last, false), (SequencePooling.MeanMax, true) })
        {
            var options = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>(epochs: 1);
            options.Pooling = pooling;
            options.Bidirectional = extras;
            options.AddFirstDifference = extras;
            options.TrainingNoise = extras ? 0.1 : 0;
            options.PatchLength = 3;
            options.NormalizeEachSequence = true;
            var data = ml.Transforms.Conversion.MapValueToKey("Label", "Shape").Fit(Shapes(ml, 30, 5, 29)).Transform(Shapes(ml, 30, 5, 29));
            using var model = ml.MulticlassClassification.Trainers.MambaSequence(options).Fit(data);
            var batched = Synthetic.ReadVectors(model.Transform(data), "Score");
            var rows = Synthetic.Shapes(30, 5, 29);
            using var engine = ml.Model.CreatePredictionEngine<SequenceInput, MulticlassOutput>(model, new PredictionEngineOptions { OwnsTransformer = false });
            for (int i = 0; i < rows.Length; i++)
            {
                var alone = engine.Predict(new SequenceInput { Features = rows[i].Features }).Score;
                for (int k = 0; k < 3; k++) Assert.AreEqual(alone[k], batched[i][k], 1e-5f, $"{pooling}, extras {extras}, row {i} (length {rows[i].Features.Length})");
            }
        }
    }

    public sealed class BinaryOutput
    {
        public float Score { get; set; }
        public float Probability { get; set; }
        public bool PredictedLabel { get; set; }
    }

    [TestMethod]
    public void Binary_BooleanLabel_BinaryEvaluateWorks()
    {
        var ml = new MLContext(seed: 1);
        var options = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>(epochs: 10);
        options.LabelColumnName = "IsSine";
        options.PatchLength = 2;
        using var model = ml.BinaryClassification.Trainers.MambaSequence(options).Fit(Shapes(ml, 150));
        var scored = model.Transform(Shapes(ml, 60, seed: 3));
        var metrics = ml.BinaryClassification.Evaluate(scored, labelColumnName: "IsSine");
        Assert.IsTrue(metrics.AreaUnderRocCurve > 0.85, $"AUC {metrics.AreaUnderRocCurve:F3}");
        Assert.AreEqual(MambaSequenceTask.BinaryClassification, model.Task);
    }

    [TestMethod]
    public void Regression_Multivariate_RegressionEvaluateWorks()
    {
        var ml = new MLContext(seed: 1);
        var options = Synthetic.SequenceOptions<MambaSequenceRegressionOptions>(epochs: 12);
        options.LabelColumnName = "Frequency";
        options.Channels = 2;
        options.PatchLength = 2;
        using var model = ml.Regression.Trainers.MambaSequence(options).Fit(Shapes(ml, 150, 32, 32, channels: 2));
        var metrics = ml.Regression.Evaluate(model.Transform(Shapes(ml, 60, 32, 32, channels: 2, seed: 4)), labelColumnName: "Frequency");
        Assert.IsTrue(metrics.RSquared > 0.5, $"R² {metrics.RSquared:F3}");
    }

    [TestMethod]
    public void SaveLoad_AllNumericTasks_SameScores()
    {
        var ml = new MLContext(seed: 1);
        var data = Shapes(ml, 40);
        var multiclass = ml.Transforms.Conversion.MapValueToKey("Label", "Shape")
            .Append(ml.MulticlassClassification.Trainers.MambaSequence(Synthetic.SequenceOptions<MambaSequenceClassificationOptions>(epochs: 1)))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedShape", "PredictedLabel"));
        var binary = ml.BinaryClassification.Trainers.MambaSequence(new MambaSequenceClassificationOptions { LabelColumnName = "IsSine", NumberOfEpochs = 1, ModelDimension = 8, NumberOfThreads = 1 });
        var regression = ml.Regression.Trainers.MambaSequence(new MambaSequenceRegressionOptions { LabelColumnName = "Frequency", NumberOfEpochs = 1, ModelDimension = 8, NumberOfThreads = 1 });
        var everyOption = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>(epochs: 1);
        everyOption.Pooling = SequencePooling.MeanMax;
        everyOption.Bidirectional = everyOption.AddFirstDifference = everyOption.NormalizeEachSequence = true;
        everyOption.TrainingNoise = 0.2;
        var multiclassEveryOption = ml.Transforms.Conversion.MapValueToKey("Label", "Shape").Append(ml.MulticlassClassification.Trainers.MambaSequence(everyOption));
        foreach (var estimator in new IEstimator<ITransformer>[] { multiclass, binary, regression, multiclassEveryOption })
        {
            var model = estimator.Fit(data);
            var path = Path.Combine(Path.GetTempPath(), $"mambaml-{Guid.NewGuid():N}.zip");
            try
            {
                ml.Model.Save(model, data.Schema, path);
                var expected = ScoreValues(model.Transform(data));
                var loaded = new MLContext().RegisterMambaML().Model.Load(path, out _);
                CollectionAssert.AreEqual(expected, ScoreValues(loaded.Transform(data)));
                (loaded as IDisposable)?.Dispose();
            }
            finally { File.Delete(path); (model as IDisposable)?.Dispose(); }
        }
    }

    [TestMethod]
    public void Dropout_SameSeedSameModel_ChangesTraining_PredictsWithoutDropping()
    {
        float[] Scores(double dropout, int seed) => TrainedShapeScores(o => { o.Dropout = dropout; o.Seed = seed; }, $"dropout {dropout}");
        var withDropout = Scores(0.3, seed: 5);
        CollectionAssert.AreEqual(withDropout, Scores(0.3, seed: 5), "same seed, same model");
        CollectionAssert.AreNotEqual(withDropout, Scores(0.0, seed: 5), "dropout had no effect on training");
    }

    [TestMethod]
    public void TrainingNoise_SameSeedSameModel_ChangesTraining_PredictsWithoutNoise()
    {
        float[] Scores(double noise, int seed) =>
            TrainedShapeScores(o => { o.TrainingNoise = noise; o.NormalizeEachSequence = true; o.Seed = seed; }, $"noise {noise}");
        var withNoise = Scores(0.2, seed: 5);
        CollectionAssert.AreEqual(withNoise, Scores(0.2, seed: 5), "same seed, same model");
        CollectionAssert.AreNotEqual(withNoise, Scores(0.0, seed: 5), "noise had no effect on training");
        CollectionAssert.AreNotEqual(withNoise, Scores(0.2, seed: 6), "the seed does not drive the noise");
    }

    // Trains a classifier of the shapes with the options set by `configure`, checks that prediction is deterministic (dropout
    // and noise act only while training) and that the shapes are learnt, and returns the test scores.
    private static float[] TrainedShapeScores(Action<MambaSequenceClassificationOptions> configure, string what)
    {
        var ml = new MLContext(seed: 1);
        var options = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>(epochs: 8);
        configure(options);
        var key = ml.Transforms.Conversion.MapValueToKey("Label", "Shape").Fit(Shapes(ml, 90));
        using var model = ml.MulticlassClassification.Trainers.MambaSequence(options).Fit(key.Transform(Shapes(ml, 90)));
        var test = key.Transform(Shapes(ml, 60, seed: 2));
        var first = ScoreValues(model.Transform(test));
        CollectionAssert.AreEqual(first, ScoreValues(model.Transform(test)), $"{what}: prediction is not deterministic");
        var accuracy = ml.MulticlassClassification.Evaluate(model.Transform(test)).MicroAccuracy;
        Assert.IsTrue(accuracy > 0.6, $"{what}: accuracy {accuracy:F3} (chance 0.33)");
        return first;
    }

    [TestMethod]
    public void BidirectionalMeanMaxFirstDifference_LearnTheShapes_AndChangeTheModel()
    {
        var ml = new MLContext(seed: 1);
        var key = ml.Transforms.Conversion.MapValueToKey("Label", "Shape").Fit(Shapes(ml, 150, 16, 40));
        var test = key.Transform(Shapes(ml, 60, 16, 40, seed: 2));
        float[]? plain = null;
        foreach (var (bidirectional, difference, pooling) in new[] { (false, false, SequencePooling.Mean), (true, false, SequencePooling.Mean),
                     (false, true, SequencePooling.Mean), (false, false, SequencePooling.MeanMax) })
        {
            var options = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>(epochs: 10);
            options.PatchLength = 2;
            (options.Bidirectional, options.AddFirstDifference, options.Pooling) = (bidirectional, difference, pooling);
            using var model = ml.MulticlassClassification.Trainers.MambaSequence(options).Fit(key.Transform(Shapes(ml, 150, 16, 40)));
            var accuracy = ml.MulticlassClassification.Evaluate(model.Transform(test)).MicroAccuracy;
            Assert.IsTrue(accuracy > 0.8, $"bidirectional {bidirectional}, difference {difference}, {pooling}: accuracy {accuracy:F3}");
            var scores = ScoreValues(model.Transform(test));
            if (plain is null) plain = scores;
            else CollectionAssert.AreNotEqual(plain, scores, $"bidirectional {bidirectional}, difference {difference}, {pooling} left the model unchanged");
        }
    }

    [TestMethod]
    public void FirstDifferenceAndReversal_MatchPlainLoops_OddLengths()
    {
        var rng = new Random(3);
        const int batch = 5, steps = 13, channels = 3;
        long[] lengths = { 13, 1, 7, 12, 2 };
        var values = new float[batch * steps * channels];
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < lengths[b] * channels; t++) values[(b * steps) * channels + t] = (float)rng.NextDouble() * 4 - 2;
        using var scope = TorchSharp.torch.NewDisposeScope();
        var lengthTensor = TorchSharp.torch.tensor(lengths);
        var difference = SequenceNetwork.FirstDifference(TorchSharp.torch.tensor(values, new long[] { batch, steps, channels }), lengthTensor)
            .data<float>().ToArray();
        var reversal = SequenceNetwork.ReversalIndex(lengthTensor, steps).data<long>().ToArray();
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < steps; t++)
            {
                Assert.AreEqual(t < lengths[b] ? lengths[b] - 1 - t : t, reversal[b * steps + t], $"reversal row {b}, step {t}");
                for (int c = 0; c < channels; c++)
                {
                    int i = (b * steps + t) * channels + c;
                    float expected = t >= 1 && t < lengths[b] ? values[i] - values[i - channels] : 0f;
                    Assert.AreEqual(expected, difference[i], 1e-6f, $"difference row {b}, step {t}, channel {c}");
                }
            }
    }

    [TestMethod]
    public void Ensemble_AveragesItsMembersProbabilities_SavesAndLoads()
    {
        var ml = new MLContext(seed: 1);
        var key = ml.Transforms.Conversion.MapValueToKey("Label", "Shape").Fit(Shapes(ml, 90));
        var train = key.Transform(Shapes(ml, 90));
        var test = key.Transform(Shapes(ml, 30, seed: 2));
        MambaSequenceClassificationOptions Options(int members)
        {
            var options = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>(epochs: 8);
            options.EnsembleSize = members;
            options.Seed = 4;
            return options;
        }
        using var ensemble = ml.MulticlassClassification.Trainers.MambaSequence(Options(3)).Fit(train);
        using var single = ml.MulticlassClassification.Trainers.MambaSequence(Options(1)).Fit(train);
        var ensembleScores = Synthetic.ReadVectors(ensemble.Transform(test), "Score");
        var singleScores = Synthetic.ReadVectors(single.Transform(test), "Score");
        CollectionAssert.AreNotEqual(singleScores.SelectMany(v => v).ToArray(), ensembleScores.SelectMany(v => v).ToArray(), "the ensemble predicts as one network");

        // Reference: each member run alone through the same network code, softmax, then the plain average over members.
        var network = (SequenceNetwork)typeof(MambaSequenceTransformer).GetField("_network", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!.GetValue(ensemble)!;
        Assert.AreEqual(2, network.ensemble_members!.Count);
        var rows = Synthetic.Shapes(30, seed: 2);
        using (var scope = TorchSharp.torch.NewDisposeScope())
        using (TorchSharp.torch.no_grad())
        {
            var input = TorchSharp.torch.tensor(rows.SelectMany(r => r.Features).ToArray(), new long[] { rows.Length, rows[0].Features.Length, 1 });
            var lengths = TorchSharp.torch.full(rows.Length, rows[0].Features.Length, TorchSharp.torch.ScalarType.Int64);
            var members = new[] { network.Forward(input, lengths) }.Concat(network.ensemble_members.Select(m => m.Forward(input, lengths)))
                .Select(raw => TorchSharp.torch.nn.functional.softmax(raw, 1).data<float>().ToArray()).ToArray();
            for (int i = 0; i < rows.Length; i++)
                for (int k = 0; k < 3; k++)
                {
                    double expected = members.Average(m => m[i * 3 + k]);
                    Assert.AreEqual(expected, ensembleScores[i][k], 1e-5, $"row {i}, class {k}");
                }
            Assert.IsTrue(members.Skip(1).All(m => !m.SequenceEqual(members[0])), "ensemble members are identical");
        }
        var accuracy = ml.MulticlassClassification.Evaluate(ensemble.Transform(test)).MicroAccuracy;
        Assert.IsTrue(accuracy > 0.6, $"ensemble accuracy {accuracy:F3} (chance 0.33)");

        var path = Path.Combine(Path.GetTempPath(), $"mambaml-{Guid.NewGuid():N}.zip");
        try
        {
            ml.Model.Save(ensemble, train.Schema, path);
            var loaded = new MLContext().RegisterMambaML().Model.Load(path, out _);
            CollectionAssert.AreEqual(ensembleScores.SelectMany(v => v).ToArray(), ScoreValues(loaded.Transform(test)));
            (loaded as IDisposable)?.Dispose();
        }
        finally { File.Delete(path); }
    }

    [TestMethod]
    public void TrainingNoiseAndEnsembleSize_OutOfRange_NameTheOption()
    {
        var options = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>();
        options.TrainingNoise = -0.1;
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new MLContext().MulticlassClassification.Trainers.MambaSequence(options));
        StringAssert.Contains(e.Message, "TrainingNoise");
        options = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>();
        options.EnsembleSize = 0;
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new MLContext().MulticlassClassification.Trainers.MambaSequence(options));
        StringAssert.Contains(e.Message, "EnsembleSize");
    }

    [TestMethod]
    public void Dropout_OutOfRange_NamesTheOption()
    {
        foreach (double dropout in new[] { -0.1, 1.0 })
        {
            var options = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>();
            options.Dropout = dropout;
            var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new MLContext().MulticlassClassification.Trainers.MambaSequence(options));
            StringAssert.Contains(e.Message, "Dropout");
        }
    }

    private static float[] ScoreValues(IDataView scored) => scored.Schema["Score"].Type is VectorDataViewType
        ? Synthetic.ReadVectors(scored, "Score").SelectMany(v => v).ToArray()
        : scored.GetColumn<float>("Score").ToArray();

    [TestMethod]
    public void LabelErrors_NonKeyLabel_SingleClass_WrongLabelType()
    {
        var ml = new MLContext();
        var options = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>(epochs: 1);
        options.LabelColumnName = "Shape";
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.MambaSequence(options).Fit(Shapes(ml, 9)));
        StringAssert.Contains(e.Message, "MapValueToKey");

        var oneClass = ml.Data.LoadFromEnumerable(Synthetic.Shapes(9).Where(r => r.Shape == "ramp"));
        var single = Assert.ThrowsExactly<ArgumentException>(() => ml.Transforms.Conversion.MapValueToKey("Label", "Shape")
            .Append(ml.MulticlassClassification.Trainers.MambaSequence(Synthetic.SequenceOptions<MambaSequenceClassificationOptions>(1))).Fit(oneClass));
        StringAssert.Contains(single.Message, "at least two classes");
        var binaryOptions = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>(1);
        binaryOptions.LabelColumnName = "IsSine";
        single = Assert.ThrowsExactly<ArgumentException>(() => ml.BinaryClassification.Trainers.MambaSequence(binaryOptions).Fit(oneClass));
        StringAssert.Contains(single.Message, "at least two classes");

        var regressionOptions = Synthetic.SequenceOptions<MambaSequenceRegressionOptions>(1);
        regressionOptions.LabelColumnName = "IsSine";
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Regression.Trainers.MambaSequence(regressionOptions).Fit(Shapes(ml, 9)));
        StringAssert.Contains(e.Message, "Single");
    }

    [TestMethod]
    public void MultivariateLength_NotAMultipleOfChannels_NamesTheRow()
    {
        var ml = new MLContext();
        var rows = Synthetic.Shapes(6, 10, 10);
        rows[4].Features = rows[4].Features[..9];
        var options = Synthetic.SequenceOptions<MambaSequenceRegressionOptions>(1);
        options.LabelColumnName = "Frequency";
        options.Channels = 2;
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Regression.Trainers.MambaSequence(options).Fit(ml.Data.LoadFromEnumerable(rows)));
        StringAssert.Contains(e.Message, "Row 4");
        StringAssert.Contains(e.Message, "Channels (2)");
    }
}
