using MambaML.MLNet;
using Microsoft.ML;

namespace MambaML.Tests.MLNet;

[TestClass]
public sealed class TrainingLoopTests
{
    [TestMethod]
    public void Progress_IsLoggedThroughMLContextLog_AndCallback()
    {
        var ml = new MLContext(seed: 1);
        var messages = new List<string>();
        ml.Log += (_, e) => { lock (messages) messages.Add(e.Message); };
        var callbacks = new List<MambaTrainingProgress>();
        var options = Synthetic.ForecastOptions(epochs: 3);
        options.ValidationSet = Synthetic.Windows(ml, rows: 60, seed: 2);
        options.ProgressCallback = callbacks.Add;
        using var _ = ml.Forecasting.ForecastByMamba(options).Fit(Synthetic.Windows(ml, rows: 100));

        Assert.AreEqual(3, callbacks.Count);
        CollectionAssert.AreEqual(new[] { 1, 2, 3 }, callbacks.Select(p => p.Epoch).ToArray());
        Assert.IsTrue(callbacks.All(p => p.ValidationLoss is > 0 && p.TrainingLoss > 0 && p.Elapsed > TimeSpan.Zero));
        Assert.AreEqual(TimeSpan.Zero, callbacks[^1].EstimatedRemaining);
        var epochLines = messages.Where(m => m.Contains("epoch ") && m.Contains("train loss") && m.Contains("validation loss") && m.Contains("ETA")).ToList();
        Assert.AreEqual(3, epochLines.Count, string.Join("\n", messages));
    }

    [TestMethod]
    public void FewOptimizerSteps_AreWarnedOfInTheLog()
    {
        var ml = new MLContext(seed: 1);
        var warnings = new List<string>();
        ml.Log += (_, e) => { if (e.Kind == Microsoft.ML.Runtime.ChannelMessageKind.Warning && e.Message.Contains("optimizer steps")) lock (warnings) warnings.Add(e.Message); };
        // 85 windows in batches of 16 for 3 epochs: 6 × 3 = 18 steps.
        using (ml.Forecasting.ForecastByMamba(Synthetic.ForecastOptions(epochs: 3)).Fit(Synthetic.Windows(ml, rows: 104))) { }
        StringAssert.Contains(warnings.Single(), "only 18 optimizer steps (85 rows in batches of 16, 3 epochs)");
        warnings.Clear();
        var enough = Synthetic.ForecastOptions(epochs: 40);
        enough.BatchSize = 16;
        using (ml.Forecasting.ForecastByMamba(enough).Fit(Synthetic.Windows(ml, rows: 104))) { }   // 6 × 40 = 240 steps
        Assert.AreEqual(0, warnings.Count, string.Join("\n", warnings));
    }

    [TestMethod]
    public void ForecastEnsembleProgress_NamesTheMember_AndCountsTheMembersLeft()
    {
        var ml = new MLContext(seed: 1);
        var callbacks = new List<MambaTrainingProgress>();
        var options = Synthetic.ForecastOptions(epochs: 2);
        options.EnsembleSize = 3;
        options.ProgressCallback = callbacks.Add;
        using var _ = ml.Forecasting.ForecastByMamba(options).Fit(Synthetic.Windows(ml, rows: 60));
        CollectionAssert.AreEqual(new[] { 1, 1, 2, 2, 3, 3 }, callbacks.Select(p => p.Member).ToArray());
        Assert.IsTrue(callbacks.All(p => p.NumberOfMembers == 3));
        // After member 1's last epoch two members of two epochs are left; only the very last report expects nothing more.
        Assert.IsTrue(callbacks[1].EstimatedRemaining > TimeSpan.Zero);
        Assert.IsTrue(callbacks[3].EstimatedRemaining > TimeSpan.Zero);
        Assert.AreEqual(TimeSpan.Zero, callbacks[^1].EstimatedRemaining);
    }

    [TestMethod]
    public void EarlyStopping_KeepsBestValidationWeights()
    {
        var ml = new MLContext(seed: 1);
        var train = Synthetic.Windows(ml, rows: 100);
        var valid = Synthetic.Windows(ml, rows: 60, seed: 5);
        var callbacks = new List<MambaTrainingProgress>();
        var options = Synthetic.ForecastOptions(epochs: 12);
        // A constant, too-high learning rate makes the validation loss wander so that early stopping triggers.
        options.LearningRate = 0.05;
        options.LearningRateSchedule = LearningRateSchedule.Constant;
        options.EarlyStoppingPatience = 1;
        options.ValidationSet = valid;
        options.ProgressCallback = callbacks.Add;
        using var model = ml.Forecasting.ForecastByMamba(options).Fit(train);

        double best = callbacks.Min(p => p.ValidationLoss!.Value);
        if (callbacks.Count < 12) Assert.IsFalse(callbacks[^1].IsBest, "stopped early although the last epoch improved");
        // The returned model's validation loss (MSE, as reported) equals the best epoch's.
        var scored = model.Transform(valid);
        var f = Synthetic.ReadVectors(scored, "Forecast");
        var y = Synthetic.ReadVectors(scored, "Label");
        double sum = 0;
        for (int i = 0; i < f.Length; i++)
            for (int k = 0; k < f[i].Length; k++) sum += Math.Pow(f[i][k] - y[i][k], 2);
        double restored = sum / (f.Length * f[0].Length);
        Assert.AreEqual(best, restored, 1e-3 * best, $"reported: {string.Join(", ", callbacks.Select(p => p.ValidationLoss))}");
    }

    [TestMethod]
    public void Cancellation_StopsTraining()
    {
        var ml = new MLContext(seed: 1);
        using var cts = new CancellationTokenSource();
        var options = Synthetic.ForecastOptions(epochs: 50);
        options.CancellationToken = cts.Token;
        int epochs = 0;
        options.ProgressCallback = _ => { if (++epochs == 2) cts.Cancel(); };
        Assert.ThrowsExactly<OperationCanceledException>(() => ml.Forecasting.ForecastByMamba(options).Fit(Synthetic.Windows(ml, rows: 80)));
        Assert.AreEqual(2, epochs);
    }

    [TestMethod]
    public void ConvolutionFeatureFit_IsLogged_AndCanBeCancelled()
    {
        var ml = new MLContext(seed: 1);
        using var cts = new CancellationTokenSource();
        var messages = new List<string>();
        ml.Log += (_, e) =>
        {
            if (!e.Message.Contains("MambaSequence")) return;
            lock (messages) messages.Add(e.Message);
            if (e.Message.Contains("fitting 168 convolution features")) cts.Cancel();   // cancel as the fit starts
        };
        var options = Synthetic.SequenceOptions<MambaSequenceClassificationOptions>(epochs: 1);
        options.ConvolutionFeatureCount = 168;
        options.CancellationToken = cts.Token;
        var shapes = ml.Data.LoadFromEnumerable(Synthetic.Shapes(30));
        var data = ml.Transforms.Conversion.MapValueToKey("Label", "Shape").Fit(shapes).Transform(shapes);
        Assert.ThrowsExactly<OperationCanceledException>(() => ml.MulticlassClassification.Trainers.MambaSequence(options).Fit(data));
        Assert.IsTrue(messages.Any(m => m.Contains("fitting 168 convolution features")), string.Join("\n", messages));
        Assert.IsFalse(messages.Any(m => m.Contains("convolution features fitted") || m.Contains("epoch")), string.Join("\n", messages));
    }

    [TestMethod]
    public void DivergingLoss_StopsWithClearError()
    {
        var ml = new MLContext(seed: 1);
        var options = Synthetic.ForecastOptions(epochs: 20);
        options.LearningRate = 1e12;
        options.GradientClipNorm = 0;
        options.LearningRateSchedule = LearningRateSchedule.Constant;
        var e = Assert.ThrowsExactly<InvalidOperationException>(() => ml.Forecasting.ForecastByMamba(options).Fit(Synthetic.Windows(ml, rows: 80)));
        StringAssert.Contains(e.Message, "diverged");
        StringAssert.Contains(e.Message, "LearningRate");
    }

    [TestMethod]
    public void DivergingNgramHead_NamesItsLearningRate_AndNoNumericDataAdvice()
    {
        var ml = new MLContext(seed: 1);
        var options = TextClassificationTests.Options(MambaTokenizer.Bytes);
        options.NgramHeadLearningRate = 1e6;
        options.NumberOfEpochs = 10;
        var train = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment").Fit(ml.Data.LoadFromEnumerable(TextClassificationTests.Reviews(160, 1)));
        var data = train.Transform(ml.Data.LoadFromEnumerable(TextClassificationTests.Reviews(160, 1)));
        var e = Assert.ThrowsExactly<InvalidOperationException>(() => ml.MulticlassClassification.Trainers.MambaTextClassification(options).Fit(data));
        StringAssert.Contains(e.Message, "diverged");
        StringAssert.Contains(e.Message, "NgramHeadLearningRate (now 1E+06)");
        StringAssert.Contains(e.Message, $"LearningRate (now {options.LearningRate:G3};");
        Assert.IsFalse(e.Message.Contains("NormalizeMeanVariance") || e.Message.Contains("nstance"), e.Message);
    }

    [TestMethod]
    public void ValidationSetFarOutsideTheTrainingRange_IsNamed_NotCalledDivergence()
    {
        // The validation windows' squared errors overflow float: the model is fine, the validation data is not like the training data.
        var ml = new MLContext(seed: 1);
        var options = Synthetic.ForecastOptions(epochs: 2);
        var huge = Synthetic.Series(80, 2).Select(r => new Synthetic.SeriesRow { Time = r.Time, A = r.A * 1e20f, B = r.B }).ToArray();
        options.ValidationSet = TimeSeriesWindows.Create(ml.Data.LoadFromEnumerable(huge), new[] { "A" }, 16, 4).GetWindows();
        var e = Assert.ThrowsExactly<InvalidOperationException>(() => ml.Forecasting.ForecastByMamba(options).Fit(Synthetic.Windows(ml, rows: 80)));
        StringAssert.Contains(e.Message, "the validation loss became");
        StringAssert.Contains(e.Message, "validation set's values are probably far outside the training data's");
        StringAssert.Contains(e.Message, $"LearningRate (now {options.LearningRate:G3};");
        // With a fitted start, the validation set is scored before any training step: nothing can have diverged yet.
        options.LinearSkip = options.FitLinearSkip = true;
        e = Assert.ThrowsExactly<InvalidOperationException>(() => ml.Forecasting.ForecastByMamba(options).Fit(Synthetic.Windows(ml, rows: 80)));
        StringAssert.Contains(e.Message, "before training, the validation loss of the fitted start is");
        Assert.IsFalse(e.Message.Contains("diverged"), e.Message);
    }

    [TestMethod]
    public void ProgressLine_CountsDaysPastTwentyFourHours()
    {
        var progress = new MambaTrainingProgress(3, 100, 0.5, null, true, 1e-3, TimeSpan.FromHours(25.5), TimeSpan.FromHours(30));
        StringAssert.Contains(progress.ToString(), "elapsed 1.01:30:00.0, ETA 1.06:00:00");
        StringAssert.Contains((progress with { Elapsed = TimeSpan.FromMinutes(90.5), EstimatedRemaining = TimeSpan.FromSeconds(5) }).ToString(), "elapsed 01:30:30.0, ETA 00:00:05");
    }

    /// <summary>With a separately trained n-gram head, the reported validation loss (and what early stopping compares) is the
    /// model's own: the cross-entropy of its predictions, as ML.NET's LogLoss measures it, not the training objective's sum of
    /// the head's and the model's losses.</summary>
    [TestMethod]
    public void SeparateHeadValidationLoss_IsTheModelsCrossEntropy()
    {
        var ml = new MLContext(seed: 1);
        var reviews = ml.Data.LoadFromEnumerable(TextClassificationTests.Reviews(120, 3));
        var data = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment").Fit(reviews).Transform(reviews);
        var options = TextClassificationTests.Options(MambaTokenizer.Bytes);
        Assert.IsTrue(options.NgramHeadLength > 0 && options.NgramHeadSeparateLoss);
        options.NumberOfEpochs = 3;
        options.ValidationSet = data;
        var progress = new List<MambaTrainingProgress>();
        options.ProgressCallback = progress.Add;
        using var model = ml.MulticlassClassification.Trainers.MambaTextClassification(options).Fit(data);
        double best = progress.Where(p => p.IsBest).Last().ValidationLoss!.Value;
        double logLoss = ml.MulticlassClassification.Evaluate(model.Transform(data)).LogLoss;
        Assert.AreEqual(logLoss, best, 1e-4, "best validation loss against the returned model's log-loss");
    }

    [TestMethod]
    public void DivergingLastStep_StopsWithClearError()
    {
        // One epoch of one batch: the only loss is computed before the update that blows the weights up.
        var ml = new MLContext(seed: 1);
        var options = Synthetic.ForecastOptions(epochs: 1);
        options.LearningRate = 1e30;
        options.BatchSize = 200;
        options.LearningRateSchedule = LearningRateSchedule.Constant;
        var e = Assert.ThrowsExactly<InvalidOperationException>(() => ml.Forecasting.ForecastByMamba(options).Fit(Synthetic.Windows(ml, rows: 40)));
        StringAssert.Contains(e.Message, "diverged in its last step");
        StringAssert.Contains(e.Message, "LearningRate");
    }

    [TestMethod]
    public void LearningRate_WarmsUpThenDecaysToZero()
    {
        var loop = new TrainingLoop(new MLContext(), new MambaForecastingOptions { LearningRate = 1.0, WarmupFraction = 0.1 }, "test");
        Assert.AreEqual(0.1, loop.LearningRateAt(0, 100), 1e-12);
        Assert.AreEqual(1.0, loop.LearningRateAt(9, 100), 1e-12);
        Assert.IsTrue(loop.LearningRateAt(50, 100) is > 0.4 and < 0.7);
        Assert.IsTrue(loop.LearningRateAt(99, 100) < 0.001);
        var constant = new TrainingLoop(new MLContext(), new MambaForecastingOptions { LearningRate = 0.5, LearningRateSchedule = LearningRateSchedule.Constant }, "test");
        Assert.AreEqual(0.5, constant.LearningRateAt(77, 100));
    }

    [TestMethod]
    public void ShuffleBuffer_IsBounded_KeepsEveryExample_AndIsSeeded()
    {
        int produced = 0, maxAhead = 0, consumed = 0;
        IEnumerable<SequenceExample> Source()
        {
            for (int i = 0; i < 1000; i++)
            {
                produced++;
                maxAhead = Math.Max(maxAhead, produced - consumed);
                yield return new SequenceExample { Values = new float[] { i }, Steps = 1 };
            }
        }
        var seen = new List<float>();
        foreach (var batch in TrainingLoop.ShuffledBatches(Source(), batchSize: 10, bufferSize: 50, new Random(1)))
        {
            consumed += batch.Count;
            seen.AddRange(batch.Select(e => e.Values[0]));
        }
        CollectionAssert.AreEquivalent(Enumerable.Range(0, 1000).Select(i => (float)i).ToArray(), seen);
        CollectionAssert.AreNotEqual(Enumerable.Range(0, 1000).Select(i => (float)i).ToArray(), seen);
        Assert.IsTrue(maxAhead <= 50 + 10, $"held {maxAhead} examples");
        var again = TrainingLoop.ShuffledBatches(Enumerable.Range(0, 1000).Select(i => new SequenceExample { Values = new float[] { i } }), 10, 50, new Random(1))
            .SelectMany(b => b.Select(e => e.Values[0])).ToList();
        CollectionAssert.AreEqual(seen, again);
    }
}
