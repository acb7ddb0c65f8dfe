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
        foreach (var pooling in new[] { SequencePooling.Mean, SequencePooling.Last })
        {
            var options = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>(epochs: 1);
            options.Pooling = pooling;
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
                for (int k = 0; k < 3; k++) Assert.AreEqual(alone[k], batched[i][k], 1e-5f, $"{pooling}, row {i} (length {rows[i].Features.Length})");
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
        foreach (var estimator in new IEstimator<ITransformer>[] { multiclass, binary, regression })
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
        float[] Scores(double dropout, int seed)
        {
            var ml = new MLContext(seed: 1);
            var options = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>(epochs: 8);
            options.Dropout = dropout;
            options.Seed = seed;
            var data = ml.Transforms.Conversion.MapValueToKey("Label", "Shape").Fit(Shapes(ml, 90)).Transform(Shapes(ml, 90));
            using var model = ml.MulticlassClassification.Trainers.MambaSequence(options).Fit(data);
            var test = ml.Transforms.Conversion.MapValueToKey("Label", "Shape").Fit(Shapes(ml, 90)).Transform(Shapes(ml, 60, seed: 2));
            var first = ScoreValues(model.Transform(test));
            // Prediction is deterministic (no dropout outside training) and the model still learns the shapes.
            CollectionAssert.AreEqual(first, ScoreValues(model.Transform(test)));
            var accuracy = ml.MulticlassClassification.Evaluate(model.Transform(test)).MicroAccuracy;
            Assert.IsTrue(accuracy > 0.6, $"dropout {dropout}: accuracy {accuracy:F3} (chance 0.33)");
            return first;
        }
        var withDropout = Scores(0.3, seed: 5);
        CollectionAssert.AreEqual(withDropout, Scores(0.3, seed: 5), "same seed, same model");
        CollectionAssert.AreNotEqual(withDropout, Scores(0.0, seed: 5), "dropout had no effect on training");
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
