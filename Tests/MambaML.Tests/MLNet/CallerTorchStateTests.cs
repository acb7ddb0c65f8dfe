using MambaML.MLNet;
using MambaML.Model;
using Microsoft.ML;
using Microsoft.ML.Data;
using static TorchSharp.torch;

namespace MambaML.Tests.MLNet;

/// <summary>
/// Fit, Load and the model constructors must not depend on torch state that belongs to the caller: a dispose scope the caller
/// has open (it must not own, and later free, a model's tensors), no_grad and the thread count of other fits running at the
/// same time; a default dtype other than float32 gets an error that says so.
/// </summary>
[TestClass]
public sealed class CallerTorchStateTests
{
    // Three model kinds, with the options that create tensors of their own while fitting (cycle, fitted linear skip,
    // ensemble members, stem, convolution features, n-gram head).
    private static IEnumerable<(string Name, IEstimator<ITransformer> Estimator, IDataView Train, IDataView Test, string Output)> Cases(MLContext ml)
    {
        var forecast = Synthetic.ForecastOptions(epochs: 2);
        forecast.CycleLength = 12;
        forecast.FitLinearSkip = true;
        forecast.EnsembleSize = 2;
        var windows = Synthetic.Windows(ml, rows: 120);
        yield return ("forecaster", ml.Forecasting.ForecastByMamba(forecast), windows, windows, "Forecast");

        var sequence = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>(epochs: 2);
        sequence.PatchLength = 2;
        sequence.StemKernelSizes = new[] { 3, 5 };
        sequence.ConvolutionFeatureCount = 84;
        sequence.TrainingNoise = 0.1;
        var shapes = ml.Data.LoadFromEnumerable(Synthetic.Shapes(45, 12, 30));
        yield return ("sequence classifier",
            ml.Transforms.Conversion.MapValueToKey("Label", "Shape").Append(ml.MulticlassClassification.Trainers.MambaSequence(sequence)),
            shapes, shapes, "Score");

        var text = TextClassificationTests.Options(MambaTokenizer.Bytes);
        text.NumberOfEpochs = 2;
        var reviews = ml.Data.LoadFromEnumerable(TextClassificationTests.Reviews(40, 1));
        yield return ("text classifier",
            ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment").Append(ml.MulticlassClassification.Trainers.MambaTextClassification(text)),
            reviews, reviews, "Score");
    }

    private static float[][] Scores(ITransformer model, IDataView data, string column) => Synthetic.ReadVectors(model.Transform(data), column);

    private static void Dispose(ITransformer model)
    {
        if (model is IEnumerable<ITransformer> chain) foreach (var part in chain) (part as IDisposable)?.Dispose();
        (model as IDisposable)?.Dispose();
    }

    [TestMethod]
    public void FitAndLoad_InsideTheCallersDisposeScope_AndUnderNoGrad_GiveTheUsualModel_AndAnotherDefaultDtypeIsNamed()
    {
        var ml = new MLContext(seed: 1);
        foreach (var (name, estimator, train, test, output) in Cases(ml))
        {
            var usual = estimator.Fit(train);
            var expected = Scores(usual, test, output);

            ITransformer inScope;
            using (NewDisposeScope()) inScope = estimator.Fit(train);
            CollectionAssert.AreEqual(expected.SelectMany(r => r).ToArray(), Scores(inScope, test, output).SelectMany(r => r).ToArray(),
                $"{name}: fitted inside the caller's dispose scope");

            var path = Path.Combine(Path.GetTempPath(), $"mambaml-scope-{Guid.NewGuid():N}.zip");
            try
            {
                ml.Model.Save(inScope, train.Schema, path);
                var loadContext = new MLContext().RegisterMambaML();
                ITransformer loaded;
                using (NewDisposeScope()) loaded = loadContext.Model.Load(path, out _);
                CollectionAssert.AreEqual(expected.SelectMany(r => r).ToArray(), Scores(loaded, test, output).SelectMany(r => r).ToArray(),
                    $"{name}: saved, then loaded inside the caller's dispose scope");
                Dispose(loaded);
                var dtype = get_default_dtype();
                set_default_dtype(ScalarType.Float64);
                try
                {
                    var e = Assert.Throws<Exception>(() => loadContext.Model.Load(path, out _)).GetBaseException();
                    StringAssert.Contains(e.Message, "set_default_dtype(ScalarType.Float32)", $"{name}: loaded with float64 as the default dtype");
                }
                finally { set_default_dtype(dtype); }
            }
            finally { File.Delete(path); }

            ITransformer underNoGrad;
            using (no_grad()) underNoGrad = estimator.Fit(train);
            Assert.IsTrue(is_grad_enabled(), "the caller's grad mode is its own again");
            CollectionAssert.AreEqual(expected.SelectMany(r => r).ToArray(), Scores(underNoGrad, test, output).SelectMany(r => r).ToArray(),
                $"{name}: fitted under the caller's no_grad");

            // Torch layers take the process's default dtype; the ML.NET models are float32, so another default is refused.
            var defaultDtype = get_default_dtype();
            set_default_dtype(ScalarType.Float64);
            try
            {
                var e = Assert.ThrowsExactly<InvalidOperationException>(() => estimator.Fit(train));
                StringAssert.Contains(e.Message, "set_default_dtype(ScalarType.Float32)");
            }
            finally { set_default_dtype(defaultDtype); }

            foreach (var model in new[] { usual, inScope, underNoGrad }) Dispose(model);
        }
    }

    [TestMethod]
    public void ModelsBuiltInsideADisposeScope_OutliveIt()
    {
        var config = new MambaConfig { DModel = 8, NLayer = 2, DState = 4, DConv = 3 };
        MambaBackbone backbone;
        MambaLanguageModel language;
        using (NewDisposeScope())
        {
            backbone = new MambaBackbone(config, seed: 1);
            language = new MambaLanguageModel(config, vocabularySize: 7, seed: 1);
        }
        using var scope = NewDisposeScope();
        Assert.AreEqual(8L, backbone.Forward(randn(2, 5, 8)).Output.shape[2]);
        Assert.AreEqual(7L, language.Forward(tensor(new long[] { 1, 2, 3 }).view(1, 3)).shape[2]);
        Assert.AreEqual(backbone.state_dict().Count, new MambaBackbone(config, seed: 1).state_dict().Count);
    }

    [TestMethod]
    public void AFitThatLeavesThreadsAlone_DoesNotUndoAnotherFitsThreadSetting()
    {
        // libtorch's thread count is per thread, and a new thread starts from the last value set anywhere. A fit with
        // NumberOfThreads = null must neither set nor "restore" it: restoring a value read while another fit had changed it
        // would leave that fit's setting to every thread started afterwards.
        int ThreadsOfANewThread()
        {
            int threads = 0;
            var thread = new Thread(() => threads = get_num_threads());
            thread.Start();
            thread.Join();
            return threads;
        }
        int original = ThreadsOfANewThread(), otherSetting = original == 1 ? 2 : 1;
        var ml = new MLContext(seed: 1);
        var options = Synthetic.ForecastOptions(epochs: 2);
        options.NumberOfThreads = null;
        using var otherFitStarted = new ManualResetEventSlim();
        using var otherFitEnded = new ManualResetEventSlim();
        using var firstEpochDone = new ManualResetEventSlim();
        // Stands in for another fit with its own NumberOfThreads: sets it, waits, and restores the original value.
        var other = new Thread(() =>
        {
            set_num_threads(otherSetting);
            otherFitStarted.Set();
            firstEpochDone.Wait();
            set_num_threads(original);
            otherFitEnded.Set();
        });
        other.Start();
        otherFitStarted.Wait();
        options.ProgressCallback = _ => { firstEpochDone.Set(); otherFitEnded.Wait(); };
        var fit = new Thread(() => ml.Forecasting.ForecastByMamba(options).Fit(Synthetic.Windows(ml, rows: 60)).Dispose());
        fit.Start();
        fit.Join();
        other.Join();
        Assert.AreEqual(original, ThreadsOfANewThread(), "a new thread's torch thread count after both fits");
    }
}
