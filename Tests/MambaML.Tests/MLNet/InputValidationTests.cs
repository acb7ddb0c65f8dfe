using MambaML.MLNet;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace MambaML.Tests.MLNet;

[TestClass]
public sealed class InputValidationTests
{
    public sealed class DoubleRow
    {
        [VectorType(16)] public double[] Features { get; set; } = new double[16];
        [VectorType(4)] public float[] Label { get; set; } = new float[4];
    }

    public sealed class FloatRow
    {
        public float[] Features { get; set; } = Array.Empty<float>();
        [VectorType(4)] public float[] Label { get; set; } = new float[4];
    }

    public sealed class FixedRow
    {
        [VectorType(12)] public float[] Features { get; set; } = new float[12];
        [VectorType(4)] public float[] Label { get; set; } = new float[4];
    }

    public sealed class VariableInput { public float[] Features { get; set; } = Array.Empty<float>(); }
    public sealed class ForecastOutput { public float[] Forecast { get; set; } = Array.Empty<float>(); }

    private static MambaForecastingEstimator Estimator(MLContext ml) => ml.Forecasting.ForecastByMamba(Synthetic.ForecastOptions(epochs: 1));

    [TestMethod]
    public void MissingColumn_NamesColumnOptionAndColumnsPresent()
    {
        var ml = new MLContext();
        var data = ml.Data.LoadFromEnumerable(new[] { new FixedRow() });
        var options = Synthetic.ForecastOptions(epochs: 1);
        options.FeatureColumnName = "Past";
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Forecasting.ForecastByMamba(options).Fit(data));
        StringAssert.Contains(e.Message, "'Past'");
        StringAssert.Contains(e.Message, "FeatureColumnName");
        StringAssert.Contains(e.Message, "'Features'");
        // Pipelines check the schema shape before fitting, with the same kind of message.
        var shapeError = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Transforms.CopyColumns("X", "Features").Append(ml.Forecasting.ForecastByMamba(options)).Fit(data));
        StringAssert.Contains(shapeError.Message, "'Past'");
    }

    [TestMethod]
    public void WrongColumnType_SaysWhatIsNeededAndHowToConvert()
    {
        var ml = new MLContext();
        var data = ml.Data.LoadFromEnumerable(new[] { new DoubleRow() });
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => Estimator(ml).Fit(data));
        StringAssert.Contains(e.Message, "Features");
        StringAssert.Contains(e.Message, "Double");
        StringAssert.Contains(e.Message, "ConvertType");
    }

    [TestMethod]
    public void WrongFixedVectorLength_NamesLookbackAndChannels()
    {
        var ml = new MLContext();
        var data = ml.Data.LoadFromEnumerable(new[] { new FixedRow() });
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => Estimator(ml).Fit(data));
        StringAssert.Contains(e.Message, "12 values");
        StringAssert.Contains(e.Message, "Lookback (16)");
    }

    [TestMethod]
    public void WrongVariableVectorLength_NamesTheRow()
    {
        var ml = new MLContext();
        var rows = new[] { new FloatRow { Features = new float[16] }, new FloatRow { Features = new float[15] } };
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => Estimator(ml).Fit(ml.Data.LoadFromEnumerable(rows)));
        StringAssert.Contains(e.Message, "Row 1");
        StringAssert.Contains(e.Message, "15 values");
    }

    [TestMethod]
    public void NaNOrInfinity_InFeaturesOrLabel_NamesRowAndPosition()
    {
        var ml = new MLContext();
        var features = new float[16];
        features[5] = float.NaN;
        var e = Assert.ThrowsExactly<InvalidOperationException>(() =>
            Estimator(ml).Fit(ml.Data.LoadFromEnumerable(new[] { new FloatRow { Features = new float[16] }, new FloatRow { Features = features } })));
        StringAssert.Contains(e.Message, "Row 1");
        StringAssert.Contains(e.Message, "NaN");
        StringAssert.Contains(e.Message, "position 5");
        var label = new float[4];
        label[2] = float.PositiveInfinity;
        e = Assert.ThrowsExactly<InvalidOperationException>(() =>
            Estimator(ml).Fit(ml.Data.LoadFromEnumerable(new[] { new FloatRow { Features = new float[16], Label = label } })));
        StringAssert.Contains(e.Message, "'Label'");
    }

    [TestMethod]
    public void EmptyTrainingData_IsRejected()
    {
        var ml = new MLContext();
        var e = Assert.ThrowsExactly<ArgumentException>(() => Estimator(ml).Fit(ml.Data.LoadFromEnumerable(Array.Empty<FloatRow>())));
        StringAssert.Contains(e.Message, "no rows");
        var options = Synthetic.ForecastOptions(epochs: 1);
        options.ValidationSet = ml.Data.LoadFromEnumerable(Array.Empty<FloatRow>());
        int epochs = 0;
        options.ProgressCallback = _ => epochs++;
        e = Assert.ThrowsExactly<ArgumentException>(() => ml.Forecasting.ForecastByMamba(options).Fit(Synthetic.Windows(ml, rows: 40)));
        StringAssert.Contains(e.Message, "validation set has no rows");
        Assert.AreEqual(0, epochs, "an empty validation set is refused before an epoch is spent");
    }

    [TestMethod]
    public void ValidationSetErrors_SayTheyAreTheValidationSets()
    {
        var ml = new MLContext();
        var train = Synthetic.Windows(ml, rows: 40);
        var options = Synthetic.ForecastOptions(epochs: 1);
        options.ValidationSet = ml.Data.LoadFromEnumerable(new[] { new VariableInput { Features = new float[16] } });   // no Label
        var e = Assert.ThrowsExactly<ArgumentException>(() => ml.Forecasting.ForecastByMamba(options).Fit(train));
        StringAssert.StartsWith(e.Message, "ValidationSet: ");
        StringAssert.Contains(e.Message, "'Label'");
        Assert.IsInstanceOfType<ArgumentOutOfRangeException>(e.InnerException);

        var nan = new FloatRow { Features = new float[16] };
        nan.Label[2] = float.NaN;
        options.ValidationSet = ml.Data.LoadFromEnumerable(new[] { new FloatRow { Features = new float[16] }, nan });
        var nanError = Assert.ThrowsExactly<InvalidOperationException>(() => ml.Forecasting.ForecastByMamba(options).Fit(train));
        StringAssert.StartsWith(nanError.Message, "ValidationSet: Row 1 of column 'Label' holds NaN");
        // Row 0 is read first by the check for an empty validation set, before training: named the same way.
        options.ValidationSet = ml.Data.LoadFromEnumerable(new[] { nan });
        nanError = Assert.ThrowsExactly<InvalidOperationException>(() => ml.Forecasting.ForecastByMamba(options).Fit(train));
        StringAssert.StartsWith(nanError.Message, "ValidationSet: Row 0 of column 'Label' holds NaN");
    }

    [TestMethod]
    public void ValidationSetWithOtherClassKeys_IsRejected()
    {
        var ml = new MLContext();
        var rows = Synthetic.Shapes(30);
        var toKey = ml.Transforms.Conversion.MapValueToKey("Label", "Shape");
        var train = toKey.Fit(ml.Data.LoadFromEnumerable(rows)).Transform(ml.Data.LoadFromEnumerable(rows));
        // The same classes, keyed by a MapValueToKey fitted on data in another order: key 1 means another class there.
        var reordered = rows.Reverse().ToArray();
        var options = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>(epochs: 1);
        options.ValidationSet = toKey.Fit(ml.Data.LoadFromEnumerable(reordered)).Transform(ml.Data.LoadFromEnumerable(reordered));
        var e = Assert.ThrowsExactly<ArgumentException>(() => ml.MulticlassClassification.Trainers.MambaSequence(options).Fit(train));
        StringAssert.StartsWith(e.Message, "ValidationSet: ");
        StringAssert.Contains(e.Message, "[sine, square, ramp]");
        StringAssert.Contains(e.Message, "same fitted transformer");
        // Raw labels (the ValidationSet of a MapValueToKey → trainer pipeline, not passed through the mapping) get the way to map them.
        var raw = ml.Data.LoadFromEnumerable(rows);
        options.ValidationSet = ml.Transforms.CopyColumns("Label", "Shape").Fit(raw).Transform(raw);
        var rawLabels = Assert.ThrowsExactly<ArgumentException>(() =>
            toKey.Append(ml.MulticlassClassification.Trainers.MambaSequence(options)).Fit(ml.Data.LoadFromEnumerable(rows)));
        StringAssert.Contains(rawLabels.Message, "Label column 'Label' (LabelColumnName) of the ValidationSet has type");
        StringAssert.Contains(rawLabels.Message, "options.ValidationSet = keys.Transform(validationData)");
        // Keys from the training data's own MapValueToKey are accepted.
        options.ValidationSet = train;
        using var _ = ml.MulticlassClassification.Trainers.MambaSequence(options).Fit(train);
    }

    [TestMethod]
    public void InvalidOptions_NameTheOption()
    {
        var ml = new MLContext();
        var options = Synthetic.ForecastOptions();
        options.PatchLength = 17;
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Forecasting.ForecastByMamba(options));
        StringAssert.Contains(e.Message, "PatchLength");
        options = Synthetic.ForecastOptions();
        options.LearningRate = double.NaN;
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Forecasting.ForecastByMamba(options));
        StringAssert.Contains(e.Message, "LearningRate");
        options = Synthetic.ForecastOptions(channels: 4);
        options.Lookback = 1 << 30;   // Lookback × Channels overflows an int
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Forecasting.ForecastByMamba(options));
        StringAssert.Contains(e.Message, "Lookback must be at most 536870911 with Channels = 4");
        options = Synthetic.ForecastOptions();
        options.CycleLength = int.MaxValue;   // would allocate 8 GiB before training
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Forecasting.ForecastByMamba(options));
        StringAssert.Contains(e.Message, "CycleLength must be in [0, 1000000]");
        options = Synthetic.ForecastOptions();
        options.LabelColumnName = "Features";
        var same = Assert.ThrowsExactly<ArgumentException>(() => ml.Forecasting.ForecastByMamba(options));
        StringAssert.Contains(same.Message, "predict its own input");
        // Sizes whose backbone alone cannot fit in memory are named before anything is allocated (they failed inside libtorch's
        // or .NET's allocator).
        foreach (var (option, set) in new (string, Action<MambaTrainerOptions>)[]
                 {
                     ("ModelDimension", o => o.ModelDimension = 200_000),
                     ("NumberOfLayers", o => o.NumberOfLayers = int.MaxValue),
                     ("EnsembleSize", o => o.EnsembleSize = int.MaxValue),
                 })
        {
            options = Synthetic.ForecastOptions();
            set(options);
            e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Forecasting.ForecastByMamba(options), option);
            Assert.AreEqual(option, e.ParamName);
            StringAssert.Contains(e.Message, "GiB this process can use. Lower ModelDimension");
            var sequence = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>();
            set(sequence);
            Assert.AreEqual(option, Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.MambaSequence(sequence)).ParamName);
        }
        foreach (var (option, set) in new (string, Action<MambaForecastingOptions>)[]
                 {
                     ("NumberOfThreads", o => o.NumberOfThreads = 257),          // OpenMP failed to allocate and ended the process
                     ("LearningRate", o => o.LearningRate = 1e39),                // finite, but no float holds it
                     ("GradientClipNorm", o => o.GradientClipNorm = 1e39),
                     ("WeightDecay", o => o.WeightDecay = 1e39),
                 })
        {
            options = Synthetic.ForecastOptions();
            set(options);
            e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Forecasting.ForecastByMamba(options));
            StringAssert.Contains(e.Message, option);
        }
        var text = TextClassificationTests.Options(MambaTokenizer.Bytes);
        text.NgramHeadLearningRate = 1e39;
        e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.MambaTextClassification(text));
        StringAssert.Contains(e.Message, "NgramHeadLearningRate");
        var classifier = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>();
        classifier.ScoreColumnName = "PredictedLabel";
        var clash = Assert.ThrowsExactly<ArgumentException>(() => ml.MulticlassClassification.Trainers.MambaSequence(classifier));
        StringAssert.Contains(clash.Message, "ScoreColumnName and PredictedLabelColumnName are all 'PredictedLabel'");
        // The probability column exists for binary models only: multiclass ignores its name, binary needs it distinct.
        classifier = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>();
        classifier.ProbabilityColumnName = "Score";
        Assert.IsNotNull(ml.MulticlassClassification.Trainers.MambaSequence(classifier));
        clash = Assert.ThrowsExactly<ArgumentException>(() => ml.BinaryClassification.Trainers.MambaSequence(classifier));
        StringAssert.Contains(clash.Message, "ScoreColumnName and ProbabilityColumnName are all 'Score'");
    }

    [TestMethod]
    public void EmptyInputColumnNames_AreNamedWhenTheEstimatorIsMade()
    {
        // Before, they passed until Fit or GetOutputSchema, which then disagreed on the exception.
        var ml = new MLContext();
        void Expect(string option, Action make)
        {
            var e = Assert.ThrowsExactly<ArgumentException>(make, option);
            Assert.AreEqual(option, e.ParamName);
            StringAssert.Contains(e.Message, $"{option} is empty; set it to the name of an input column");
        }
        foreach (string? empty in new[] { null, "" })
        {
            Expect("FeatureColumnName", () => ml.Forecasting.ForecastByMamba(new MambaForecastingOptions { FeatureColumnName = empty! }));
            Expect("LabelColumnName", () => ml.Forecasting.ForecastByMamba(new MambaForecastingOptions { LabelColumnName = empty! }));
            Expect("CycleIndexColumnName", () => ml.Forecasting.ForecastByMamba(new MambaForecastingOptions { CycleLength = 24, CycleIndexColumnName = empty! }));
            Expect("FeatureColumnName", () => ml.Regression.Trainers.MambaSequence(featureColumnName: empty!));
            Expect("LabelColumnName", () => ml.MulticlassClassification.Trainers.MambaSequence(labelColumnName: empty!));
            Expect("TextColumnName", () => ml.MulticlassClassification.Trainers.MambaTextClassification(textColumnName: empty!));
        }
        Assert.IsNotNull(ml.Forecasting.ForecastByMamba(new MambaForecastingOptions { CycleIndexColumnName = "" }));   // no cycle: not read
    }

    [TestMethod]
    public void OptionsChangedAfterTheEstimatorWasMade_AreCheckedAtFit()
    {
        // Fit reads the options object itself; before, NumberOfEpochs = -1 set afterwards returned an untrained model.
        var ml = new MLContext();
        var options = Synthetic.ForecastOptions();
        var forecaster = ml.Forecasting.ForecastByMamba(options);
        options.NumberOfEpochs = -1;
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => forecaster.Fit(Synthetic.Windows(ml, rows: 40))).Message, "NumberOfEpochs");
        var sequenceOptions = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>();
        sequenceOptions.LabelColumnName = "IsSine";
        var classifier = ml.BinaryClassification.Trainers.MambaSequence(sequenceOptions);
        sequenceOptions.BatchSize = 0;
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => classifier.Fit(ml.Data.LoadFromEnumerable(Synthetic.Shapes(12)))).Message, "BatchSize");
        var textOptions = TextClassificationTests.Options(MambaTokenizer.Bytes);
        var text = ml.MulticlassClassification.Trainers.MambaTextClassification(textOptions);
        textOptions.MaxTokens = 0;
        var reviews = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment").Fit(ml.Data.LoadFromEnumerable(TextClassificationTests.Reviews(10, 1)))
            .Transform(ml.Data.LoadFromEnumerable(TextClassificationTests.Reviews(10, 1)));
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => text.Fit(reviews)).Message, "MaxTokens");
    }

    [TestMethod]
    public void HugeInputValues_ForecastInScale_OrFailClearly()
    {
        var ml = new MLContext();
        using var model = Estimator(ml).Fit(Synthetic.Windows(ml, rows: 60));
        using var engine = ml.Model.CreatePredictionEngine<VariableInput, ForecastOutput>(model, new PredictionEngineOptions { OwnsTransformer = false });
        var window = Enumerable.Range(0, 16).Select(t => (float)Math.Sin(t * 0.4) + 0.1f * t).ToArray();
        var forecast = engine.Predict(new VariableInput { Features = window }).Forecast;
        // Instance normalisation makes the forecast scale with the input: at 1e25 the float32 variance overflows (1e50).
        const float scale = 1e25f;
        var scaled = engine.Predict(new VariableInput { Features = window.Select(v => v * scale).ToArray() }).Forecast;
        for (int k = 0; k < forecast.Length; k++) Assert.AreEqual(forecast[k], scaled[k] / scale, 1e-3 * (1 + Math.Abs(forecast[k])), $"step {k}");
        // A ramp up to float's limit continues past it: an error says so instead of returning infinities.
        var ramp = Enumerable.Range(0, 16).Select(t => t / 15f * float.MaxValue).ToArray();
        var e = Assert.ThrowsExactly<InvalidOperationException>(() => engine.Predict(new VariableInput { Features = ramp }));
        StringAssert.Contains(e.Message, "forecast is not finite");
    }

    [TestMethod]
    public void HugeBatchSizes_AllocateForTheRowsThereAre()
    {
        var ml = new MLContext();
        var options = Synthetic.ForecastOptions(epochs: 1);
        options.BatchSize = int.MaxValue;
        options.PredictionBatchSize = int.MaxValue;
        var windows = Synthetic.Windows(ml, rows: 60);
        using var model = ml.Forecasting.ForecastByMamba(options).Fit(windows);
        Assert.AreEqual(Synthetic.ReadVectors(windows, "Label").Length, Synthetic.ReadVectors(model.Transform(windows), "Forecast").Length);
    }

    [TestMethod]
    public void SimpleForecastingOverload_FitsWindowsShorterThanTheDefaultPatch()
    {
        var ml = new MLContext(seed: 1);
        var estimator = ml.Forecasting.ForecastByMamba(lookback: 4, horizon: 2, numberOfEpochs: 1);
        var windows = Synthetic.Windows(ml, rows: 30, lookback: 4, horizon: 2);
        using var model = estimator.Fit(windows);
        var forecasts = Synthetic.ReadVectors(model.Transform(windows), "Forecast");
        Assert.AreEqual(Synthetic.ReadVectors(windows, "Label").Length, forecasts.Length);
        Assert.IsTrue(forecasts.All(f => f.Length == 2 && f.All(float.IsFinite)));
    }

    [TestMethod]
    public void PredictionInputOfWrongLength_FailsNamingTheLength()
    {
        var ml = new MLContext();
        using var model = Estimator(ml).Fit(Synthetic.Windows(ml, rows: 40));
        using var engine = ml.Model.CreatePredictionEngine<VariableInput, ForecastOutput>(model, new PredictionEngineOptions { OwnsTransformer = false });
        Assert.AreEqual(4, engine.Predict(new VariableInput { Features = new float[16] }).Forecast.Length);
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => engine.Predict(new VariableInput { Features = new float[10] }));
        StringAssert.Contains(e.Message, "10 values");
        StringAssert.Contains(e.Message, "Lookback (16)");
        var nan = new float[16];
        nan[0] = float.NaN;
        Assert.ThrowsExactly<InvalidOperationException>(() => engine.Predict(new VariableInput { Features = nan }));
    }

    [TestMethod]
    public void PredictionLoop_DoesNotGrowNativeMemory()
    {
        var ml = new MLContext();
        using var model = Estimator(ml).Fit(Synthetic.Windows(ml, rows: 40));
        using var engine = ml.Model.CreatePredictionEngine<VariableInput, ForecastOutput>(model, new PredictionEngineOptions { OwnsTransformer = false });
        var input = new VariableInput { Features = Enumerable.Range(0, 16).Select(i => (float)Math.Sin(i)).ToArray() };
        engine.Predict(input);
        var statistics = TorchSharp.DisposeScopeManager.Statistics;
        long before = statistics.ThreadTotalLiveCount;
        for (int i = 0; i < 200; i++) { input.Features[0] = i; engine.Predict(input); }
        var scored = model.Transform(Synthetic.Windows(ml, rows: 100));
        Synthetic.ReadVectors(scored, "Forecast");
        Assert.AreEqual(before, statistics.ThreadTotalLiveCount, "live tensors grew during prediction");
    }

    [TestMethod]
    public void DevicePolicy_FollowsMLContextSettings()
    {
        Assert.AreEqual(TorchSharp.DeviceType.CPU, DevicePolicy.Choose(null, fallbackToCpu: false, cudaAvailable: true).type);
        Assert.AreEqual(TorchSharp.DeviceType.CUDA, DevicePolicy.Choose(0, fallbackToCpu: false, cudaAvailable: true).type);
        Assert.AreEqual(TorchSharp.DeviceType.CPU, DevicePolicy.Choose(0, fallbackToCpu: true, cudaAvailable: false).type);
        var e = Assert.ThrowsExactly<InvalidOperationException>(() => DevicePolicy.Choose(0, fallbackToCpu: false, cudaAvailable: false));
        StringAssert.Contains(e.Message, "FallbackToCpu");
        if (!TorchSharp.torch.cuda.is_available())
        {
            var ml = new MLContext { GpuDeviceId = 0, FallbackToCpu = false };
            Assert.ThrowsExactly<InvalidOperationException>(() => Estimator(ml).Fit(Synthetic.Windows(ml, rows: 40)));
            var fallback = new MLContext { GpuDeviceId = 0, FallbackToCpu = true };
            using var model = Estimator(fallback).Fit(Synthetic.Windows(fallback, rows: 40));
            Assert.AreEqual(TorchSharp.DeviceType.CPU, model.Device.type);
        }
    }
}
