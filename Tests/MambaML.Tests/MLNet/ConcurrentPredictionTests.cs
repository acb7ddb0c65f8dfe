using MambaML.MLNet;
using Microsoft.ML;

namespace MambaML.Tests.MLNet;

/// <summary>
/// One model serves many threads at once (one PredictionEngine per thread, as ML.NET's PredictionEnginePool does, and
/// Transform cursors): each thread gets the same bits as a single thread does, and Dispose waits for the predictions in flight.
/// </summary>
[TestClass]
public sealed class ConcurrentPredictionTests
{
    private const int Threads = 4, Rounds = 3;

    [TestMethod]
    public void Forecaster_SharedAcrossThreads_PredictsAsOnOneThread()
    {
        var ml = new MLContext(seed: 1);
        var options = Synthetic.ForecastOptions(epochs: 1);
        options.EnsembleSize = 2;
        options.PredictionBatchSize = 7;
        var windows = Synthetic.Windows(ml, rows: 60);
        using var model = ml.Forecasting.ForecastByMamba(options).Fit(windows);
        var rows = Synthetic.ReadVectors(windows, "Features").Select(f => new ForecastingTests.WindowInput { Features = f }).ToArray();
        CheckConcurrent<ForecastingTests.WindowInput, ForecastingTests.ForecastOutput>(ml, model, windows, "Forecast", rows, p => p.Forecast);
    }

    [TestMethod]
    public void SequenceClassifier_SharedAcrossThreads_PredictsAsOnOneThread()
    {
        var options = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>(epochs: 1);
        options.StemKernelSizes = new[] { 3, 5 };
        options.ConvolutionFeatureCount = 84;
        options.PredictionBatchSize = 5;
        CheckClassifier<Synthetic.ShapeRow, ConvolutionFeaturesTests.ShapeScores>(Synthetic.Shapes(40, 12, 30), "Shape",
            ml => ml.MulticlassClassification.Trainers.MambaSequence(options), p => p.Score);
    }

    [TestMethod]
    public void TextClassifier_SharedAcrossThreads_PredictsAsOnOneThread()
    {
        var options = TextClassificationTests.Options(MambaTokenizer.Cl100kBase);
        options.NumberOfEpochs = 1;
        CheckClassifier<TextClassificationTests.Review, TextClassificationTests.Prediction>(TextClassificationTests.Reviews(40, 1), "Sentiment",
            ml => ml.MulticlassClassification.Trainers.MambaTextClassification(options), p => p.Score);
    }

    private static void CheckClassifier<TIn, TOut>(TIn[] rows, string labelColumn, Func<MLContext, IEstimator<ITransformer>> trainer,
                                                   Func<TOut, float[]> score) where TIn : class where TOut : class, new()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(rows);
        var model = ml.Transforms.Conversion.MapValueToKey("Label", labelColumn).Append(trainer(ml)).Fit(data);
        try
        {
            CheckConcurrent(ml, model, data, "Score", rows, score);
        }
        finally
        {
            (model.LastTransformer as IDisposable)?.Dispose();
        }
    }

    [TestMethod]
    public void Dispose_WaitsForPredictionsInFlight_AndLaterCallsSaySoClearly()
    {
        var ml = new MLContext(seed: 1);
        var windows = Synthetic.Windows(ml, rows: 40);
        var model = ml.Forecasting.ForecastByMamba(Synthetic.ForecastOptions(epochs: 1)).Fit(windows);
        var features = Synthetic.ReadVectors(windows, "Features");
        var predicted = new int[Threads];
        var failures = new Exception?[Threads];
        using var started = new CountdownEvent(Threads);
        var threads = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            try
            {
                using var engine = ml.Model.CreatePredictionEngine<ForecastingTests.WindowInput, ForecastingTests.ForecastOutput>(
                    model, new PredictionEngineOptions { OwnsTransformer = false });
                for (int i = 0; ; i++)
                {
                    var forecast = engine.Predict(new ForecastingTests.WindowInput { Features = features[i % features.Length] }).Forecast;
                    if (forecast.Length != 4 || !forecast.All(float.IsFinite)) throw new InvalidOperationException($"bad forecast after {i} calls");
                    if (++predicted[t] == 20) started.Signal();
                }
            }
            catch (Exception e)
            {
                failures[t] = e;
                if (predicted[t] < 20) started.Signal();
            }
        })).ToArray();
        foreach (var thread in threads) thread.Start();
        Assert.IsTrue(started.Wait(TimeSpan.FromMinutes(2)), "the predicting threads did not start");
        model.Dispose();   // while they predict
        foreach (var thread in threads) Assert.IsTrue(thread.Join(TimeSpan.FromMinutes(1)), "a predicting thread did not stop");

        for (int t = 0; t < Threads; t++)
        {
            Assert.IsTrue(predicted[t] >= 20, $"thread {t} predicted {predicted[t]} times before the model was disposed; failure: {failures[t]}");
            Assert.IsInstanceOfType(failures[t], typeof(ObjectDisposedException), $"thread {t}: {failures[t]}");
            StringAssert.Contains(failures[t]!.Message, "was disposed");
        }
    }

    /// <summary>
    /// Scores <paramref name="rows"/> on one thread, then on <see cref="Threads"/> threads at once (each with its own
    /// PredictionEngine over the one model, each in its own order), and twice through Transform on two more threads; every
    /// score must equal the single-threaded one to the bit, or within <paramref name="tolerance"/> when it is not zero.
    /// </summary>
    internal static void CheckConcurrent<TIn, TOut>(MLContext ml, ITransformer model, IDataView data, string column, IReadOnlyList<TIn> rows,
                                                    Func<TOut, float[]> score, float tolerance = 0) where TIn : class where TOut : class, new()
    {
        bool Same(float[] a, float[] b) =>
            tolerance == 0 ? a.SequenceEqual(b) : a.Length == b.Length && a.Zip(b).All(p => Math.Abs(p.First - p.Second) <= tolerance);
        float[][] expected;
        using (var engine = ml.Model.CreatePredictionEngine<TIn, TOut>(model, new PredictionEngineOptions { OwnsTransformer = false }))
            expected = rows.Select(r => score(engine.Predict(r)).ToArray()).ToArray();
        var transformed = Synthetic.ReadVectors(model.Transform(data), column);

        var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
        using var go = new Barrier(Threads + 2);
        var engineThreads = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            try
            {
                using var engine = ml.Model.CreatePredictionEngine<TIn, TOut>(model, new PredictionEngineOptions { OwnsTransformer = false });
                var order = Enumerable.Range(0, rows.Count).OrderBy(_ => Random.Shared.Next()).ToArray();
                go.SignalAndWait();
                for (int round = 0; round < Rounds; round++)
                    foreach (int i in order)
                        if (!Same(score(engine.Predict(rows[i])), expected[i])) errors.Enqueue($"engine thread {t}, row {i}");
            }
            catch (Exception e) { errors.Enqueue($"engine thread {t}: {e}"); }
        }));
        var transformThreads = Enumerable.Range(0, 2).Select(t => new Thread(() =>
        {
            try
            {
                go.SignalAndWait();
                var scores = Synthetic.ReadVectors(model.Transform(data), column);
                for (int i = 0; i < scores.Length; i++)
                    if (!Same(scores[i], transformed[i])) errors.Enqueue($"transform thread {t}, row {i}");
            }
            catch (Exception e) { errors.Enqueue($"transform thread {t}: {e}"); }
        }));
        var all = engineThreads.Concat(transformThreads).ToArray();
        foreach (var thread in all) thread.Start();
        foreach (var thread in all) Assert.IsTrue(thread.Join(TimeSpan.FromMinutes(3)), "a predicting thread did not finish");
        Assert.AreEqual(0, errors.Count, string.Join("\n", errors.Take(10)));
    }
}
