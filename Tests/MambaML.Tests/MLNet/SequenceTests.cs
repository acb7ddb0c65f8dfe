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

    public sealed class NumberedShape
    {
        public float[] Features { get; set; } = Array.Empty<float>();
        public float Class { get; set; }
    }

    public sealed class NumberedPrediction
    {
        [ColumnName("PredictedClass")] public float Class { get; set; }
    }

    [TestMethod]
    public void NumericClassValues_MapBackToTheirOwnType_InAnyCulture()
    {
        var culture = System.Globalization.CultureInfo.CurrentCulture;
        System.Globalization.CultureInfo.CurrentCulture = new System.Globalization.CultureInfo("de-DE");   // writes 1.5 as "1,5"
        try
        {
            var ml = new MLContext(seed: 1);
            var rows = Synthetic.Shapes(60).Select(r => new NumberedShape { Features = r.Features, Class = r.Shape switch { "sine" => 0f, "square" => 1.5f, _ => 3f } }).ToArray();
            var data = ml.Data.LoadFromEnumerable(rows);
            var pipeline = ml.Transforms.Conversion.MapValueToKey("Label", "Class")
                .Append(ml.MulticlassClassification.Trainers.MambaSequence(Synthetic.SequenceOptions<MambaSequenceClassificationOptions>(epochs: 2)))
                .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedClass", "PredictedLabel"));
            var declared = pipeline.GetOutputSchema(MLNetInternals.ToSchemaShape(data.Schema));
            Assert.AreEqual(NumberDataViewType.Single, declared.Single(c => c.Name == "PredictedClass").ItemType, "declared type of the mapped-back label");
            var model = pipeline.Fit(data);
            var scored = model.Transform(data);
            Assert.AreEqual(NumberDataViewType.Single, scored.Schema["PredictedClass"].Type);
            var trainer = model.OfType<MambaSequenceTransformer>().Single();
            CollectionAssert.AreEqual(new[] { "0", "1.5", "3" }, trainer.ClassNames!.ToArray(), "class names are stored in the invariant culture");
            // A read-only view: writing through it once renamed the Score slots of every later Transform.
            Assert.ThrowsExactly<NotSupportedException>(() => ((IList<string>)trainer.ClassNames!)[0] = "renamed");
            Synthetic.CheckSavedAndLoaded(ml, model, data.Schema, loaded =>
            {
                using var engine = ml.Model.CreatePredictionEngine<NumberedShape, NumberedPrediction>(loaded);
                var predicted = rows.Select(r => engine.Predict(r).Class).ToArray();
                Assert.IsTrue(predicted.All(p => p is 0f or 1.5f or 3f), string.Join(", ", predicted.Distinct()));
            });
        }
        finally
        {
            System.Globalization.CultureInfo.CurrentCulture = culture;
        }
    }

    public sealed class UInt16KeyRow
    {
        public float[] Features { get; set; } = Array.Empty<float>();
        [KeyType(3)] public ushort Label { get; set; }
    }

    [TestMethod]
    public void KeyLabelOfAnotherRawType_IsRejectedAsSuch()
    {
        var ml = new MLContext();
        var data = ml.Data.LoadFromEnumerable(Synthetic.Shapes(6).Select((r, i) => new UInt16KeyRow { Features = r.Features, Label = (ushort)(i % 3 + 1) }).ToArray());
        Assert.AreEqual(typeof(ushort), data.Schema["Label"].Type.RawType);
        var trainer = ml.MulticlassClassification.Trainers.MambaSequence(Synthetic.SequenceOptions<MambaSequenceClassificationOptions>(epochs: 1));
        var declared = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => trainer.GetOutputSchema(MLNetInternals.ToSchemaShape(data.Schema)));
        StringAssert.Contains(declared.Message, "a key of UInt32");
        var fitted = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => trainer.Fit(data));
        StringAssert.Contains(fitted.Message, "needs a key of UInt32");
    }

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
            options.WindowFraction = extras ? 0.6 : 1;
            options.StemKernelSizes = extras ? new[] { 1, 5 } : Array.Empty<int>();
            options.ConvolutionFeatureCount = extras ? 168 : 0;
            options.PredictionWindows = 3;
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
    [DataRow(false, DisplayName = "Mamba alone")]
    [DataRow(true, DisplayName = "with the convolution-feature head, separate loss")]
    public void Binary_BooleanLabel_BinaryEvaluateWorks(bool convolutionHead)
    {
        var ml = new MLContext(seed: 1);
        var options = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>(epochs: 10);
        options.LabelColumnName = "IsSine";
        options.PatchLength = 2;
        options.ConvolutionFeatureCount = convolutionHead ? 336 : 0;
        options.ConvolutionHeadSeparateLoss = convolutionHead;
        using var model = ml.BinaryClassification.Trainers.MambaSequence(options).Fit(Shapes(ml, 150));
        var scored = model.Transform(Shapes(ml, 60, seed: 3));
        var metrics = ml.BinaryClassification.Evaluate(scored, labelColumnName: "IsSine");
        Assert.IsTrue(metrics.AreaUnderRocCurve > 0.85, $"AUC {metrics.AreaUnderRocCurve:F3}");
        Assert.AreEqual(MambaSequenceTask.BinaryClassification, model.Task);
    }

    [TestMethod]
    [DataRow(false, DisplayName = "Mamba alone")]
    [DataRow(true, DisplayName = "with the convolution-feature head, separate loss")]
    public void Regression_Multivariate_RegressionEvaluateWorks(bool convolutionHead)
    {
        var ml = new MLContext(seed: 1);
        var options = Synthetic.SequenceOptions<MambaSequenceRegressionOptions>(epochs: 12);
        options.LabelColumnName = "Frequency";
        options.Channels = 2;
        options.PatchLength = 2;
        options.ConvolutionFeatureCount = convolutionHead ? 336 : 0;
        options.ConvolutionHeadSeparateLoss = convolutionHead;
        using var model = ml.Regression.Trainers.MambaSequence(options).Fit(Shapes(ml, 150, 32, 32, channels: 2));
        var metrics = ml.Regression.Evaluate(model.Transform(Shapes(ml, 60, 32, 32, channels: 2, seed: 4)), labelColumnName: "Frequency");
        Assert.IsTrue(metrics.RSquared > 0.5, $"R² {metrics.RSquared:F3}");
    }

    [TestMethod]
    public void ScoreColumns_CarryMLNetScoringAnnotations_DeclaredFittedAndLoaded()
    {
        var ml = new MLContext(seed: 1);
        var rows = Synthetic.Shapes(30).Select(r => new NumberedShape { Features = r.Features, Class = r.Shape switch { "sine" => 0f, "square" => 1.5f, _ => 3f } }).ToArray();
        var numbered = ml.Data.LoadFromEnumerable(rows);
        var shapes = Shapes(ml, 30);
        var cases = new (IEstimator<ITransformer> Estimator, IDataView Data, string Task, (string Column, string ValueKind)[] Columns)[]
        {
            (ml.Transforms.Conversion.MapValueToKey("Label", "Class").Append(ml.MulticlassClassification.Trainers.MambaSequence(Synthetic.SequenceOptions<MambaSequenceClassificationOptions>(epochs: 1))),
             numbered, "MulticlassClassification", new[] { ("Score", "Score"), ("PredictedLabel", "PredictedLabel") }),
            (ml.BinaryClassification.Trainers.MambaSequence(new MambaSequenceClassificationOptions { LabelColumnName = "IsSine", NumberOfEpochs = 1, ModelDimension = 8, NumberOfThreads = 1 }),
             shapes, "BinaryClassification", new[] { ("Score", "Score"), ("Probability", "Probability"), ("PredictedLabel", "PredictedLabel") }),
            (ml.Regression.Trainers.MambaSequence(new MambaSequenceRegressionOptions { LabelColumnName = "Frequency", NumberOfEpochs = 1, ModelDimension = 8, NumberOfThreads = 1 }),
             shapes, "Regression", new[] { ("Score", "Score") }),
        };
        foreach (var (estimator, data, task, columns) in cases)
        {
            var declared = estimator.GetOutputSchema(MLNetInternals.ToSchemaShape(data.Schema));
            foreach (var (column, _) in columns)
            {
                var kinds = declared.Single(c => c.Name == column).Annotations.Select(a => a.Name).ToArray();
                CollectionAssert.IsSubsetOf(new[] { "ScoreColumnKind", "ScoreValueKind", "ScoreColumnSetId" }, kinds, $"{task} {column} declared");
            }
            var model = estimator.Fit(data);
            try
            {
                void Check(DataViewSchema schema, string where)
                {
                    foreach (var (column, valueKind) in columns)
                    {
                        var annotations = schema[column].Annotations;
                        Assert.AreEqual(task, Text(annotations, "ScoreColumnKind"), $"{task} {column} {where}");
                        Assert.AreEqual(valueKind, Text(annotations, "ScoreValueKind"), $"{task} {column} {where}");
                        uint setId = 0;
                        annotations.GetValue("ScoreColumnSetId", ref setId);
                        Assert.AreEqual(1u, setId, $"{task} {column} {where}");
                    }
                    if (task == "BinaryClassification")
                    {
                        bool normalized = false;
                        schema["Probability"].Annotations.GetValue("IsNormalized", ref normalized);
                        Assert.IsTrue(normalized, where);
                    }
                    if (task == "MulticlassClassification")
                    {
                        // The training label's values, in the label's own type (here Single), as ML.NET's trainers give them.
                        var values = default(VBuffer<float>);
                        schema["Score"].Annotations.GetValue("TrainingLabelValues", ref values);
                        CollectionAssert.AreEqual(new[] { 0f, 1.5f, 3f }, values.DenseValues().ToArray(), where);
                    }
                }
                Check(model.Transform(data).Schema, "fitted");
                Synthetic.CheckSavedAndLoaded(ml, model, data.Schema, loaded => Check(loaded.Transform(data).Schema, "loaded"));
            }
            finally { (model as IDisposable)?.Dispose(); }
        }

        static string Text(DataViewSchema.Annotations annotations, string kind)
        {
            var value = default(ReadOnlyMemory<char>);
            annotations.GetValue(kind, ref value);
            return value.ToString();
        }
    }

    /// <summary>
    /// Scores of a small classifier fitted on shapes of 20–28 steps (so batches are padded) whose values <paramref name="value"/>
    /// maps (value, position in the row); checks that the model saved and loaded scores the same.
    /// </summary>
    private static float[] ShapeScores(int channels, bool normalizeEachSequence, Func<float, int, float> value)
    {
        var ml = new MLContext(seed: 1);
        var rows = Synthetic.Shapes(60, 20, 28, channels).Select(r => new Synthetic.ShapeRow { Features = r.Features.Select(value).ToArray(), Shape = r.Shape }).ToArray();
        var options = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>(epochs: 3);
        options.PatchLength = 2;
        options.Channels = channels;
        options.NormalizeEachSequence = normalizeEachSequence;
        var data = ml.Data.LoadFromEnumerable(rows);
        var model = ml.Transforms.Conversion.MapValueToKey("Label", "Shape").Append(ml.MulticlassClassification.Trainers.MambaSequence(options)).Fit(data);
        try
        {
            var scores = ScoreValues(model.Transform(data));
            Synthetic.CheckSavedAndLoaded(ml, model, data.Schema, loaded => CollectionAssert.AreEqual(scores, ScoreValues(loaded.Transform(data))));
            return scores;
        }
        finally { model.LastTransformer.Dispose(); }
    }

    [TestMethod]
    public void InputsInAnyPowerOfTenUnits_ScoreAsAtUnitScale()
    {
        // Before: features ×1e6 or ×1e-4 gave chance accuracy without per-sequence normalisation, and with it ×1e20 overflowed the
        // variance (every score that of an all-zero input). Values are now read in each channel's units, a power of ten near its
        // deviation, so a power-of-ten rescaling changes nothing.
        foreach (var (scale, normalize) in new[] { (1e6f, false), (1e-4f, false), (1e20f, true), (1e-8f, true) })
        {
            var unit = ShapeScores(channels: 1, normalize, (v, _) => v);
            var scaled = ShapeScores(channels: 1, normalize, (v, _) => v * scale);
            for (int i = 0; i < unit.Length; i++) Assert.AreEqual(unit[i], scaled[i], 1e-3, $"×{scale}, NormalizeEachSequence {normalize}: score {i}");
        }
    }

    [TestMethod]
    public void InputsFarFromZero_ScoreAsNearZero()
    {
        // Before: shapes around 10 scored 0.45 and around 100 chance (1/3) without per-sequence normalisation, where the same
        // shapes around 0 scored 1.0 (a scratch run of 40 epochs). Each channel's mean, in whole units, is now subtracted first;
        // padded steps must stay zero, so the rows differ in length.
        var near = ShapeScores(channels: 2, normalizeEachSequence: false, (v, _) => v);
        var far = ShapeScores(channels: 2, normalizeEachSequence: false, (v, i) => v + (i % 2 == 0 ? 100 : -300));
        for (int i = 0; i < near.Length; i++) Assert.AreEqual(near[i], far[i], 2e-3, $"score {i}");

        var (scales, offsets) = ChannelScales.Of(new[] { new float[] { 1000.2f, 0.1f, 1000.9f, -0.3f, 999.4f, 0.2f } }, channels: 2);
        CollectionAssert.AreEqual(new[] { 1.0, 0.1 }, scales, "deviations 0.62 and 0.22");
        CollectionAssert.AreEqual(new[] { 1000.0, 0.0 }, offsets, "the mean in whole units of each channel's deviation");
        Assert.IsNull(ChannelScales.Of(new[] { new float[] { 1.4f, -1.3f, 0.2f } }, channels: 1).Offsets, "mean 0.1 in units of 1: no offset");
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
        everyOption.WindowFraction = 0.7;
        everyOption.PredictionWindows = 3;
        everyOption.LabelSmoothing = 0.1;
        everyOption.MixupAlpha = 0.3;
        everyOption.StemKernelSizes = new[] { 3, 7 };
        everyOption.StemChannels = 4;
        var multiclassEveryOption = ml.Transforms.Conversion.MapValueToKey("Label", "Shape").Append(ml.MulticlassClassification.Trainers.MambaSequence(everyOption));
        foreach (var estimator in new IEstimator<ITransformer>[] { multiclass, binary, regression, multiclassEveryOption })
        {
            var model = estimator.Fit(data);
            try
            {
                var expected = ScoreValues(model.Transform(data));
                Synthetic.CheckSavedAndLoaded(ml, model, data.Schema, loaded => CollectionAssert.AreEqual(expected, ScoreValues(loaded.Transform(data))));
            }
            finally { (model as IDisposable)?.Dispose(); }
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

    [TestMethod]
    public void WindowSlicing_SameSeedSameModel_ChangesTraining_AveragesTheWindowsAtPrediction()
    {
        float[] Scores(double fraction, int seed) =>
            TrainedShapeScores(o => { o.WindowFraction = fraction; o.PredictionWindows = 4; o.NormalizeEachSequence = true; o.Seed = seed; }, $"window {fraction}");
        var windowed = Scores(0.75, seed: 5);
        CollectionAssert.AreEqual(windowed, Scores(0.75, seed: 5), "same seed, same model");
        CollectionAssert.AreNotEqual(windowed, Scores(1.0, seed: 5), "windows had no effect");
        CollectionAssert.AreNotEqual(windowed, Scores(0.75, seed: 6), "the seed does not drive the windows");

        // The prediction is the plain average of the softmax of each prediction window, each read on its own.
        var ml = new MLContext(seed: 1);
        var options = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>(epochs: 2);
        (options.WindowFraction, options.PredictionWindows, options.NormalizeEachSequence, options.PatchLength) = (0.5, 3, false, 2);
        var key = ml.Transforms.Conversion.MapValueToKey("Label", "Shape").Fit(Shapes(ml, 30));
        using var model = ml.MulticlassClassification.Trainers.MambaSequence(options).Fit(key.Transform(Shapes(ml, 30)));
        var rows = Synthetic.Shapes(7, 9, 23, seed: 2);
        var scores = Synthetic.ReadVectors(model.Transform(key.Transform(ml.Data.LoadFromEnumerable(rows))), "Score");
        const System.Reflection.BindingFlags privateField = System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance;
        var network = (SequenceNetwork)typeof(MambaSequenceTransformer).GetField("_network", privateField)!.GetValue(model)!;
        var arch = (SequenceArchitecture)typeof(MambaSequenceTransformer).GetField("_arch", privateField)!.GetValue(model)!;
        // The same weights in a network without windows, fed each window cut out by hand (without per-sequence normalisation a
        // window of the input is exactly what the windowed network reads).
        using var plain = new SequenceNetwork(arch with { WindowFraction = 1 }, seed: 0);
        using var scope = TorchSharp.torch.NewDisposeScope();
        using var noGrad = TorchSharp.torch.no_grad();
        plain.load_state_dict(network.state_dict());
        plain.eval();
        for (int i = 0; i < rows.Length; i++)
        {
            int length = rows[i].Features.Length, width = (int)Math.Round(0.5 * length);
            var average = new double[3];
            for (int w = 0; w < 3; w++)
            {
                int start = (length - width) * w / 2;
                var window = TorchSharp.torch.tensor(rows[i].Features[start..(start + width)], new long[] { 1, width, 1 });
                var probabilities = TorchSharp.torch.nn.functional.softmax(plain.Forward(window, TorchSharp.torch.tensor(new long[] { width })), 1);
                var p = probabilities.data<float>().ToArray();
                for (int k = 0; k < 3; k++) average[k] += p[k] / 3;
            }
            for (int k = 0; k < 3; k++) Assert.AreEqual(average[k], scores[i][k], 1e-5, $"row {i} (length {length}), class {k}");
        }
    }

    [TestMethod]
    public void ConvolutionalStem_SameSeedSameModel_ChangesTheModel()
    {
        float[] Scores(int[] kernels, int seed) =>
            TrainedShapeScores(o => { o.StemKernelSizes = kernels; o.StemChannels = 4; o.PatchLength = 2; o.Seed = seed; }, $"stem [{string.Join(",", kernels)}]");
        var withStem = Scores(new[] { 3, 9 }, seed: 5);
        CollectionAssert.AreEqual(withStem, Scores(new[] { 3, 9 }, seed: 5), "same seed, same model");
        CollectionAssert.AreNotEqual(withStem, Scores(Array.Empty<int>(), seed: 5), "the stem had no effect");
        CollectionAssert.AreNotEqual(withStem, Scores(new[] { 3, 5 }, seed: 5), "the kernel sizes had no effect");
    }

    [TestMethod]
    public void WindowHelpers_MatchPlainLoops_OddLengths()
    {
        const int steps = 13, channels = 2;
        long[] lengths = { 13, 1, 7, 12, 2 };
        int batch = lengths.Length;
        var rng = new Random(5);
        var values = Enumerable.Range(0, batch * steps * channels).Select(_ => (float)rng.NextDouble() * 4 - 2).ToArray();
        using var scope = TorchSharp.torch.NewDisposeScope();
        var lengthTensor = TorchSharp.torch.tensor(lengths);
        var input = TorchSharp.torch.tensor(values, new long[] { batch, steps, channels });
        foreach (double fraction in new[] { 0.3, 0.55, 1.0 })
        {
            var windowLengths = SequenceNetwork.WindowLengths(lengthTensor, fraction);
            long[] expectedLengths = lengths.Select(n => Math.Max(1L, (long)Math.Round(fraction * n, MidpointRounding.ToEven))).ToArray();
            CollectionAssert.AreEqual(expectedLengths, windowLengths.data<long>().ToArray(), $"window lengths, fraction {fraction}");
            foreach (int windows in new[] { 1, 2, 5 })
                for (int w = 0; w < windows; w++)
                {
                    var starts = SequenceNetwork.PredictionWindowStarts(lengthTensor, windowLengths, w, windows).data<long>().ToArray();
                    for (int b = 0; b < batch; b++)
                    {
                        long room = lengths[b] - expectedLengths[b];
                        Assert.AreEqual(windows == 1 ? room / 2 : room * w / (windows - 1), starts[b], $"start, fraction {fraction}, window {w} of {windows}, row {b}");
                    }
                }
            var generator = new TorchSharp.torch.Generator(11);
            var random = SequenceNetwork.RandomWindowStarts(lengthTensor, windowLengths, generator);
            var randomStarts = random.data<long>().ToArray();
            CollectionAssert.AreEqual(randomStarts, SequenceNetwork.RandomWindowStarts(lengthTensor, windowLengths, new TorchSharp.torch.Generator(11)).data<long>().ToArray(), "same seed, same starts");
            for (int b = 0; b < batch; b++)
                Assert.IsTrue(randomStarts[b] >= 0 && randomStarts[b] <= lengths[b] - expectedLengths[b], $"random start {randomStarts[b]} of row {b} outside its room");

            var output = SequenceNetwork.Window(input, random, windowLengths);
            long width = expectedLengths.Max();
            CollectionAssert.AreEqual(new[] { (long)batch, width, (long)channels }, output.shape);
            var taken = output.data<float>().ToArray();
            for (int b = 0; b < batch; b++)
                for (int t = 0; t < width; t++)
                    for (int c = 0; c < channels; c++)
                    {
                        float expected = t < expectedLengths[b] ? values[(b * steps + randomStarts[b] + t) * channels + c] : 0f;
                        Assert.AreEqual(expected, taken[(b * width + t) * channels + c], $"window value, fraction {fraction}, row {b}, step {t}, channel {c}");
                    }
        }
        // Over many draws every start in a row's room comes up (uniform over the room, inclusive at both ends).
        var seen = new HashSet<long>();
        var draws = new TorchSharp.torch.Generator(3);
        for (int i = 0; i < 200; i++)
            seen.Add(SequenceNetwork.RandomWindowStarts(TorchSharp.torch.tensor(new long[] { 7 }), TorchSharp.torch.tensor(new long[] { 4 }), draws).item<long>());
        CollectionAssert.AreEquivalent(new long[] { 0, 1, 2, 3 }, seen.ToArray());
    }

    [TestMethod]
    public void LabelSmoothing_LossMatchesSoftTargets_ChangesTraining()
    {
        using (var scope = TorchSharp.torch.NewDisposeScope())
        {
            var rng = new Random(2);
            const int rows = 5, classes = 4;
            var logits = Enumerable.Range(0, rows * classes).Select(_ => (float)(rng.NextDouble() * 6 - 3)).ToArray();
            long[] labels = { 0, 3, 1, 1, 2 };
            foreach (double epsilon in new[] { 0.0, 0.1, 0.5 })
            {
                double expected = 0;
                for (int r = 0; r < rows; r++)
                {
                    var row = logits.Skip(r * classes).Take(classes).Select(v => (double)v).ToArray();
                    double logSum = Math.Log(row.Sum(Math.Exp));
                    for (int k = 0; k < classes; k++)
                        expected -= ((k == labels[r] ? 1 - epsilon : 0) + epsilon / classes) * (row[k] - logSum) / rows;
                }
                var loss = SequenceBatches.SmoothedCrossEntropy(TorchSharp.torch.tensor(logits, new long[] { rows, classes }), TorchSharp.torch.tensor(labels), epsilon);
                Assert.AreEqual(expected, loss.item<float>(), 1e-5, $"epsilon {epsilon}");
            }
        }
        var smoothed = TrainedShapeScores(o => { o.LabelSmoothing = 0.2; o.Seed = 5; }, "label smoothing 0.2");
        CollectionAssert.AreEqual(smoothed, TrainedShapeScores(o => { o.LabelSmoothing = 0.2; o.Seed = 5; }, "label smoothing 0.2"), "same seed, same model");
        CollectionAssert.AreNotEqual(smoothed, TrainedShapeScores(o => { o.LabelSmoothing = 0; o.Seed = 5; }, "no label smoothing"), "label smoothing had no effect");
    }

    [TestMethod]
    public void Mixup_TargetsAndValuesMixAsDrawn_WeightsAreBeta_ChangesTraining()
    {
        using (var scope = TorchSharp.torch.NewDisposeScope())
        {
            var rng = new Random(4);
            const int rows = 7, classes = 3;
            long[] labels = { 0, 2, 1, 1, 0, 2, 2 };
            long[] partner = { 3, 0, 6, 1, 5, 2, 4 };
            var weights = Enumerable.Range(0, rows).Select(_ => (float)rng.NextDouble()).ToArray();
            var draw = new MixupDraw(TorchSharp.torch.tensor(partner), TorchSharp.torch.tensor(weights));
            var logits = Enumerable.Range(0, rows * classes).Select(_ => (float)(rng.NextDouble() * 6 - 3)).ToArray();
            var logitTensor = TorchSharp.torch.tensor(logits, new long[] { rows, classes });
            foreach (double epsilon in new[] { 0.0, 0.2 })
            {
                var targets = SequenceBatches.ClassTargets(TorchSharp.torch.tensor(labels), classes, epsilon, draw).data<float>().ToArray();
                var binary = SequenceBatches.BinaryTargets(TorchSharp.torch.tensor(labels.Select(l => (float)(l % 2)).ToArray()), epsilon, draw).data<float>().ToArray();
                double expectedLoss = 0;
                for (int r = 0; r < rows; r++)
                {
                    var row = logits.Skip(r * classes).Take(classes).Select(v => (double)v).ToArray();
                    double logSum = Math.Log(row.Sum(Math.Exp));
                    for (int k = 0; k < classes; k++)
                    {
                        double mixedClass = weights[r] * (labels[r] == k ? 1 : 0) + (1 - weights[r]) * (labels[partner[r]] == k ? 1 : 0);
                        double expected = (1 - epsilon) * mixedClass + epsilon / classes;
                        Assert.AreEqual(expected, targets[r * classes + k], 1e-6, $"epsilon {epsilon}, row {r}, class {k}");
                        expectedLoss -= expected * (row[k] - logSum) / rows;
                    }
                    double mixedBinary = weights[r] * (labels[r] % 2) + (1 - weights[r]) * (labels[partner[r]] % 2);
                    Assert.AreEqual((1 - epsilon) * mixedBinary + epsilon / 2, binary[r], 1e-6, $"binary, epsilon {epsilon}, row {r}");
                }
                var soft = SequenceBatches.SoftCrossEntropy(logitTensor, SequenceBatches.ClassTargets(TorchSharp.torch.tensor(labels), classes, epsilon, draw));
                Assert.AreEqual(expectedLoss, soft.item<float>(), 1e-5, $"soft cross-entropy, epsilon {epsilon}");
                // Without mixup the soft targets give the fused smoothed cross-entropy.
                var unmixed = SequenceBatches.SoftCrossEntropy(logitTensor, SequenceBatches.ClassTargets(TorchSharp.torch.tensor(labels), classes, epsilon, null));
                Assert.AreEqual(SequenceBatches.SmoothedCrossEntropy(logitTensor, TorchSharp.torch.tensor(labels), epsilon).item<float>(), unmixed.item<float>(), 1e-5);
            }

            // The values: weight 1 leaves each row alone, weight 0 replaces it by its partner (equal lengths), and the draw
            // is a permutation with Beta(α, α) weights, only while training.
            var arch = new SequenceArchitecture
            {
                Task = MambaSequenceTask.MulticlassClassification, Mamba = new MambaML.Model.MambaConfig { DModel = 8, NLayer = 1 },
                Outputs = classes, PatchLength = 2, NormalizeEachSequence = true, MixupAlpha = 0.4,
            };
            using var network = new SequenceNetwork(arch, seed: 3);
            var input = TorchSharp.torch.randn(new long[] { rows, 11, 1 }, generator: new TorchSharp.torch.Generator(5));
            var lengths = TorchSharp.torch.full(rows, 11L);
            network.eval();
            Assert.IsNull(network.DrawMixup(rows, TorchSharp.torch.CPU), "mixup drawn outside training");
            var plain = network.Forward(input, lengths);
            var ones = new MixupDraw(TorchSharp.torch.tensor(partner), TorchSharp.torch.ones(rows));
            var zeros = new MixupDraw(TorchSharp.torch.tensor(partner), TorchSharp.torch.zeros(rows));
            Assert.IsTrue(network.Forward(input, lengths, mixup: ones).allclose(plain, rtol: 0, atol: 1e-6), "weight 1 changed the rows");
            Assert.IsTrue(network.Forward(input, lengths, mixup: zeros).allclose(plain.index_select(0, TorchSharp.torch.tensor(partner)), rtol: 0, atol: 1e-5), "weight 0 is not the partner");
            Assert.IsFalse(network.Forward(input, lengths, mixup: draw).allclose(plain, rtol: 0, atol: 1e-3), "mixing had no effect");
            network.train();
            var drawn = network.DrawMixup(4000, TorchSharp.torch.CPU)!.Value;
            CollectionAssert.AreEquivalent(Enumerable.Range(0, 4000).Select(i => (long)i).ToArray(), drawn.Partner.data<long>().ToArray(), "partners are not a permutation");
            var w = drawn.Weight.data<float>().Select(v => (double)v).ToArray();
            Assert.IsTrue(w.All(v => v >= 0 && v <= 1), "weight outside [0, 1]");
            double mean = w.Average(), variance = w.Select(v => (v - mean) * (v - mean)).Average();
            // Beta(0.4, 0.4): mean 1/2, variance 1 / (4 (2α + 1)) = 0.1389; standard errors about 0.006 and 0.002.
            Assert.AreEqual(0.5, mean, 0.03, "mean weight");
            Assert.AreEqual(1 / (4 * (2 * 0.4 + 1)), variance, 0.01, "weight variance");
        }
        var mixed = TrainedShapeScores(o => { o.MixupAlpha = 0.4; o.Seed = 5; }, "mixup 0.4");
        CollectionAssert.AreEqual(mixed, TrainedShapeScores(o => { o.MixupAlpha = 0.4; o.Seed = 5; }, "mixup 0.4"), "same seed, same model");
        CollectionAssert.AreNotEqual(mixed, TrainedShapeScores(o => { o.MixupAlpha = 0; o.Seed = 5; }, "no mixup"), "mixup had no effect");
    }

    // Trains a classifier of the shapes with the options set by `configure`, checks that prediction is deterministic (dropout
    // and noise act only while training) and that the shapes are learnt, and returns the test scores.
    [TestMethod]
    public void SameSeedSameModel_WhenThePatchEmbeddingReadsTheInputDirectly()
    {
        // Without normalisation or a stem the input batch feeds the patch embedding's matrix product as it is; that product
        // must not depend on where the batch happens to lie in memory.
        float[] Scores()
        {
            var ml = new MLContext(seed: 1);
            var options = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>(epochs: 2);
            (options.PatchLength, options.NormalizeEachSequence, options.ModelDimension, options.Seed) = (4, false, 8, 5);
            var key = ml.Transforms.Conversion.MapValueToKey("Label", "Shape").Fit(Shapes(ml, 60, 16, 40));
            using var model = ml.MulticlassClassification.Trainers.MambaSequence(options).Fit(key.Transform(Shapes(ml, 60, 16, 40)));
            var test = key.Transform(Shapes(ml, 60, 16, 40, seed: 2));
            var scores = ScoreValues(model.Transform(test));
            CollectionAssert.AreEqual(scores, ScoreValues(model.Transform(test)), "prediction is not deterministic");
            return scores;
        }
        var first = Scores();
        for (int i = 0; i < 3; i++) CollectionAssert.AreEqual(first, Scores(), $"fit {i + 2}: same seed, same model");
    }

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

        Synthetic.CheckSavedAndLoaded(ml, ensemble, train.Schema,
            loaded => CollectionAssert.AreEqual(ensembleScores.SelectMany(v => v).ToArray(), ScoreValues(loaded.Transform(test))));
    }

    [TestMethod]
    public void NumericSequenceOptions_OutOfRange_NameTheOption()
    {
        var options = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>();
        options.TrainingNoise = -0.1;
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new MLContext().MulticlassClassification.Trainers.MambaSequence(options));
        StringAssert.Contains(e.Message, "TrainingNoise");
        options = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>();
        options.EnsembleSize = 0;
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new MLContext().MulticlassClassification.Trainers.MambaSequence(options));
        StringAssert.Contains(e.Message, "EnsembleSize");
        foreach (var (set, name) in new (Action<MambaSequenceClassificationOptions>, string)[]
                 {
                     (o => o.WindowFraction = 0, "WindowFraction"), (o => o.WindowFraction = 1.5, "WindowFraction"),
                     (o => o.PredictionWindows = 0, "PredictionWindows"), (o => o.LabelSmoothing = 1, "LabelSmoothing"),
                     (o => o.LabelSmoothing = -0.1, "LabelSmoothing"), (o => o.StemKernelSizes = new[] { 3, 4 }, "StemKernelSizes"),
                     (o => o.StemChannels = 0, "StemChannels"), (o => o.MixupAlpha = -0.5, "MixupAlpha"),
                     (o => o.MixupAlpha = double.PositiveInfinity, "MixupAlpha"),
                     (o => o.ConvolutionFeatureCount = 83, "ConvolutionFeatureCount"), (o => o.ConvolutionFeatureCount = -84, "ConvolutionFeatureCount"),
                     (o => o.ConvolutionHeadSeparateLoss = true, "ConvolutionHeadSeparateLoss"),
                 })
        {
            options = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>();
            set(options);
            e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new MLContext().MulticlassClassification.Trainers.MambaSequence(options));
            StringAssert.Contains(e.Message, name);
        }
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
