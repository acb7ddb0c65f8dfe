using MambaML.MLNet;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace MambaML.Tests.MLNet;

/// <summary>CUDA training and inference through ML.NET's device settings; inconclusive on machines without CUDA.</summary>
[TestClass]
[TestCategory("Gpu")]
public sealed class GpuTests
{
    [TestMethod]
    [DataRow(0, 1f, DisplayName = "no cycle")]
    [DataRow(12, 1e-4f, DisplayName = "cycle of 12 steps, series in units of 1e-4 (a channel scale)")]
    public void GpuDeviceId_TrainsOnCuda_ModelLoadsOnCpuAndCuda_WithMatchingPredictions(int cycleLength, float scale)
    {
        if (!TorchSharp.torch.cuda.is_available()) Assert.Inconclusive("CUDA is not available.");
        var ml = new MLContext(seed: 1) { GpuDeviceId = 0, FallbackToCpu = false };
        var rows = Synthetic.Series(200).Select(r => new Synthetic.SeriesRow { Time = r.Time, A = r.A * scale, B = r.B * scale }).ToArray();
        var windows = TimeSeriesWindows.Create(ml.Data.LoadFromEnumerable(rows), new[] { "A" }, 16, 4).GetWindows();
        var options = Synthetic.ForecastOptions(epochs: 4);
        options.CycleLength = cycleLength;
        var losses = new List<double>();
        options.ProgressCallback = p => losses.Add(p.TrainingLoss);
        var model = ml.Forecasting.ForecastByMamba(options).Fit(windows);
        Assert.AreEqual(TorchSharp.DeviceType.CUDA, model.Device.type);
        Assert.IsTrue(losses[^1] < losses[0], string.Join(", ", losses));
        var onGpu = Synthetic.ReadVectors(model.Transform(windows), "Forecast");

        var path = Path.Combine(Path.GetTempPath(), $"mambaml-gpu-{Guid.NewGuid():N}.zip");
        try
        {
            ml.Model.Save(model, windows.Schema, path);
            model.Dispose();
            var cpuContext = new MLContext().RegisterMambaML();
            var onCpuModel = (MambaForecastingTransformer)cpuContext.Model.Load(path, out _);
            Assert.AreEqual(TorchSharp.DeviceType.CPU, onCpuModel.Device.type);
            var onCpu = Synthetic.ReadVectors(onCpuModel.Transform(windows), "Forecast");
            var gpuContext = new MLContext { GpuDeviceId = 0 }.RegisterMambaML();
            var reloadedGpuModel = (MambaForecastingTransformer)gpuContext.Model.Load(path, out _);
            Assert.AreEqual(TorchSharp.DeviceType.CUDA, reloadedGpuModel.Device.type);
            var reloadedGpu = Synthetic.ReadVectors(reloadedGpuModel.Transform(windows), "Forecast");
            for (int i = 0; i < onGpu.Length; i++)
                for (int k = 0; k < onGpu[i].Length; k++)
                {
                    Assert.AreEqual(onGpu[i][k], reloadedGpu[i][k], 1e-5f * scale, $"GPU reload, row {i}");
                    Assert.AreEqual(onGpu[i][k], onCpu[i][k], 2e-3f * scale, $"CPU vs GPU, row {i}");
                }
            onCpuModel.Dispose();
            reloadedGpuModel.Dispose();
        }
        finally { File.Delete(path); }
    }

    [TestMethod]
    [DataRow(0, 1, DisplayName = "Mamba head alone")]
    [DataRow(420, 3, DisplayName = "with the convolution-feature head, 3 channels")]
    public void SequenceClassifier_TrainsOnCuda_LikeOnCpu(int convolutionFeatures, int channels)
    {
        if (!TorchSharp.torch.cuda.is_available()) Assert.Inconclusive("CUDA is not available.");
        double Accuracy(MLContext ml, TorchSharp.DeviceType expected)
        {
            var data = ml.Data.LoadFromEnumerable(Synthetic.Shapes(90, 10, 30, channels));
            var options = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>(epochs: 8);
            options.PatchLength = 2;
            options.Channels = channels;
            options.ConvolutionFeatureCount = convolutionFeatures;
            options.ConvolutionHeadSeparateLoss = convolutionFeatures > 0;
            // Fitted inside a dispose scope of the caller's: the model must not lose its CUDA tensors when that scope ends.
            TransformerChain<MambaSequenceTransformer> model;
            using (TorchSharp.torch.NewDisposeScope())
                model = ml.Transforms.Conversion.MapValueToKey("Label", "Shape").Append(ml.MulticlassClassification.Trainers.MambaSequence(options)).Fit(data);
            Assert.AreEqual(expected, model.LastTransformer.Device.type);
            try { return ml.MulticlassClassification.Evaluate(model.Transform(data)).MicroAccuracy; }
            finally { model.LastTransformer.Dispose(); }
        }
        double onGpu = Accuracy(new MLContext(seed: 1) { GpuDeviceId = 0, FallbackToCpu = false }, TorchSharp.DeviceType.CUDA);
        double onCpu = Accuracy(new MLContext(seed: 1), TorchSharp.DeviceType.CPU);
        // Three balanced classes: chance is 1/3. The same seed on CUDA and CPU differs only by floating-point rounding.
        Assert.IsTrue(onGpu > 0.5, $"CUDA-trained accuracy {onGpu:F3}");
        Assert.AreEqual(onCpu, onGpu, 0.05, "CUDA- and CPU-trained accuracy");
    }

    [TestMethod]
    public void SequenceClassifier_OnCuda_SharedAcrossThreads_PredictsAsOnOneThread()
    {
        if (!TorchSharp.torch.cuda.is_available()) Assert.Inconclusive("CUDA is not available.");
        var ml = new MLContext(seed: 1) { GpuDeviceId = 0, FallbackToCpu = false };
        // Around 100, so the channel offset (a buffer that must move to the GPU with the weights) is in play.
        var rows = Synthetic.Shapes(40, 12, 30).Select(r => new Synthetic.ShapeRow { Features = r.Features.Select(v => v + 100).ToArray(), Shape = r.Shape }).ToArray();
        var data = ml.Data.LoadFromEnumerable(rows);
        var options = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>(epochs: 1);
        options.PredictionBatchSize = 5;
        var model = ml.Transforms.Conversion.MapValueToKey("Label", "Shape").Append(ml.MulticlassClassification.Trainers.MambaSequence(options)).Fit(data);
        try
        {
            Assert.AreEqual(TorchSharp.DeviceType.CUDA, model.LastTransformer.Device.type);
            // cuBLAS handles are per thread, so the same product may round differently on another thread.
            ConcurrentPredictionTests.CheckConcurrent<Synthetic.ShapeRow, ConvolutionFeaturesTests.ShapeScores>(ml, model, data, "Score", rows, p => p.Score, tolerance: 1e-5f);
        }
        finally { model.LastTransformer.Dispose(); }
    }

    [TestMethod]
    public void TextClassifier_TrainsOnCuda_LoadsOnCpu_AndCudaPredictionLoopsHoldNoTensors()
    {
        if (!TorchSharp.torch.cuda.is_available()) Assert.Inconclusive("CUDA is not available.");
        var ml = new MLContext(seed: 1) { GpuDeviceId = 0, FallbackToCpu = false };
        var train = ml.Data.LoadFromEnumerable(TextClassificationTests.Reviews(160, 1));
        var test = TextClassificationTests.Reviews(60, 2);
        var model = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.MulticlassClassification.Trainers.MambaTextClassification(TextClassificationTests.Options(MambaTokenizer.Bytes)))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedSentiment", "PredictedLabel"))
            .Fit(train);
        var path = Path.Combine(Path.GetTempPath(), $"mambaml-gpu-text-{Guid.NewGuid():N}.zip");
        try
        {
            Assert.AreEqual(TorchSharp.DeviceType.CUDA, model.OfType<MambaSequenceTransformer>().Single().Device.type);
            Assert.AreEqual(1024, model.OfType<MambaSequenceTransformer>().Single().PredictionBatchSize, "the default batch size on CUDA");
            Assert.AreEqual(1L << 26, model.OfType<MambaSequenceTransformer>().Single().ActivationBudget, "the default batch's activation budget on CUDA");
            var accuracy = ml.MulticlassClassification.Evaluate(model.Transform(ml.Data.LoadFromEnumerable(test))).MicroAccuracy;
            Assert.IsTrue(accuracy > 0.85, $"CUDA-trained accuracy {accuracy:F3}");

            using var gpuEngine = ml.Model.CreatePredictionEngine<TextClassificationTests.Review, TextClassificationTests.Prediction>(
                model, new PredictionEngineOptions { OwnsTransformer = false });
            var onGpu = test.Select(r => gpuEngine.Predict(r)).Select(p => (p.PredictedSentiment, Score: p.Score.ToArray())).ToArray();
            // A prediction loop on CUDA keeps no tensor alive (each one's device memory is freed with it).
            var statistics = TorchSharp.DisposeScopeManager.Statistics;
            long before = statistics.ThreadTotalLiveCount;
            for (int i = 0; i < 200; i++) gpuEngine.Predict(test[i % test.Length]);
            Assert.AreEqual(before, statistics.ThreadTotalLiveCount, "live tensors grew during CUDA prediction");

            ml.Model.Save(model, train.Schema, path);
            var cpuContext = new MLContext().RegisterMambaML();
            var loaded = cpuContext.Model.Load(path, out _);
            Assert.AreEqual(TorchSharp.DeviceType.CPU, ((TransformerChain<ITransformer>)loaded).OfType<MambaSequenceTransformer>().Single().Device.type);
            Assert.AreEqual(64, ((TransformerChain<ITransformer>)loaded).OfType<MambaSequenceTransformer>().Single().PredictionBatchSize, "the same model's default on the CPU");
            Assert.AreEqual(long.MaxValue, ((TransformerChain<ITransformer>)loaded).OfType<MambaSequenceTransformer>().Single().ActivationBudget, "no budget on the CPU");
            using var cpuEngine = cpuContext.Model.CreatePredictionEngine<TextClassificationTests.Review, TextClassificationTests.Prediction>(loaded);
            for (int i = 0; i < test.Length; i++)
            {
                var onCpu = cpuEngine.Predict(test[i]);
                for (int k = 0; k < onCpu.Score.Length; k++)
                    Assert.AreEqual(onGpu[i].Score[k], onCpu.Score[k], 2e-3f, $"CPU vs CUDA score, review {i} ('{test[i].Text}')");
            }
        }
        finally
        {
            File.Delete(path);
            model.OfType<MambaSequenceTransformer>().Single().Dispose();
        }
    }
}
