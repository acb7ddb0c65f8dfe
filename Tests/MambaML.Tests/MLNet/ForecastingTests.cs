using MambaML.MLNet;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace MambaML.Tests.MLNet;

[TestClass]
public sealed class ForecastingTests
{
    public sealed class WindowInput
    {
        [VectorType(16)] public float[] Features { get; set; } = Array.Empty<float>();
    }

    public sealed class ForecastOutput
    {
        public float[] Forecast { get; set; } = Array.Empty<float>();
    }

    [TestMethod]
    public void SameSeedSameModel_WithoutInstanceNormalization()
    {
        // Without RevIN the windows feed the linear skip path's matrix product as they are; that product must not depend on
        // where the batch happens to lie in memory.
        float[][] Forecasts()
        {
            var ml = new MLContext(seed: 1);
            var options = Synthetic.ForecastOptions(epochs: 2);
            options.InstanceNormalization = false;
            var windows = Synthetic.Windows(ml, rows: 120);
            using var model = ml.Forecasting.ForecastByMamba(options).Fit(windows);
            var first = Synthetic.ReadVectors(model.Transform(windows), "Forecast");
            var again = Synthetic.ReadVectors(model.Transform(windows), "Forecast");
            for (int i = 0; i < first.Length; i++) CollectionAssert.AreEqual(first[i], again[i], $"window {i}: prediction is not deterministic");
            return first;
        }
        var expected = Forecasts();
        for (int fit = 2; fit <= 4; fit++)
        {
            var actual = Forecasts();
            for (int i = 0; i < expected.Length; i++) CollectionAssert.AreEqual(expected[i], actual[i], $"fit {fit}, window {i}: same seed, same model");
        }
    }

    [TestMethod]
    public void LearnsSeasonalSeries_LossFalls_BeatsWindowMean()
    {
        var ml = new MLContext(seed: 1);
        var windows = Synthetic.Windows(ml, rows: 300);
        var losses = new List<double>();
        var options = Synthetic.ForecastOptions(epochs: 6);
        options.ProgressCallback = p => losses.Add(p.TrainingLoss);
        using var model = ml.Forecasting.ForecastByMamba(options).Fit(windows);

        Assert.AreEqual(6, losses.Count);
        Assert.IsTrue(losses[^1] < 0.5 * losses[0], $"loss did not fall: {string.Join(", ", losses)}");
        var scored = model.Transform(windows);
        var forecast = Synthetic.ReadVectors(scored, "Forecast");
        var label = Synthetic.ReadVectors(scored, "Label");
        var features = Synthetic.ReadVectors(scored, "Features");
        double mse = 0, meanBaseline = 0;
        for (int i = 0; i < forecast.Length; i++)
            for (int k = 0; k < 4; k++)
            {
                mse += Math.Pow(forecast[i][k] - label[i][k], 2);
                meanBaseline += Math.Pow(features[i].Average() - label[i][k], 2);
            }
        Assert.IsTrue(mse < 0.5 * meanBaseline, $"MSE {mse / forecast.Length / 4:G4} vs window-mean baseline {meanBaseline / forecast.Length / 4:G4}");
    }

    [TestMethod]
    public void TransformBatches_MatchPredictionEngine()
    {
        var ml = new MLContext(seed: 1);
        var windows = Synthetic.Windows(ml, rows: 120);
        var options = Synthetic.ForecastOptions(epochs: 1);
        options.PredictionBatchSize = 7;   // several batches, the last one partial
        using var model = ml.Forecasting.ForecastByMamba(options).Fit(windows);

        var batched = Synthetic.ReadVectors(model.Transform(windows), "Forecast");
        var features = Synthetic.ReadVectors(windows, "Features");
        using var engine = ml.Model.CreatePredictionEngine<WindowInput, ForecastOutput>(model);
        Assert.AreEqual(features.Length, batched.Length);
        for (int i = 0; i < features.Length; i++)
        {
            var single = engine.Predict(new WindowInput { Features = features[i] }).Forecast;
            Assert.AreEqual(4, single.Length);
            for (int k = 0; k < 4; k++) Assert.AreEqual(single[k], batched[i][k], 1e-5f, $"row {i}, step {k}");
        }
    }

    [TestMethod]
    public void SameSeed_SameModel_DifferentSeed_DifferentModel()
    {
        float[][] Fit(int seed)
        {
            var ml = new MLContext();
            var windows = Synthetic.Windows(ml, rows: 100);
            var options = Synthetic.ForecastOptions(epochs: 2);
            options.Seed = seed;
            using var model = ml.Forecasting.ForecastByMamba(options).Fit(windows);
            var forecasts = Synthetic.ReadVectors(model.Transform(windows), "Forecast");
            Synthetic.CheckSavedAndLoaded(ml, model, windows.Schema, loaded =>
                CollectionAssert.AreEqual(forecasts.SelectMany(f => f).ToArray(), Synthetic.ReadVectors(loaded.Transform(windows), "Forecast").SelectMany(f => f).ToArray()));
            return forecasts;
        }
        var a = Fit(3);
        var b = Fit(3);
        var c = Fit(4);
        CollectionAssert.AreEqual(a.SelectMany(x => x).ToArray(), b.SelectMany(x => x).ToArray());
        CollectionAssert.AreNotEqual(a.SelectMany(x => x).ToArray(), c.SelectMany(x => x).ToArray());
    }

    [TestMethod]
    public void NetworkInitialisation_IsAFunctionOfTheSeedAlone()
    {
        var arch = new ForecastArchitecture
        {
            Lookback = 16, Horizon = 4, Channels = 1, ChannelIndependent = true, InstanceNormalization = true, LinearSkip = true,
            PatchLength = 4, Mamba = new MambaML.Model.MambaConfig { DModel = 16, NLayer = 2, DState = 8 },
        };
        using var a = new ForecastNetwork(arch, 3);
        using var b = new ForecastNetwork(arch, 3);
        using var c = new ForecastNetwork(arch, 4);
        foreach (var ((name, p), (_, q)) in a.named_parameters().Zip(b.named_parameters()))
            Assert.IsTrue(p.allclose(q, 0, 0), name);
        Assert.IsFalse(a.named_parameters().Zip(c.named_parameters()).All(pair => pair.First.parameter.allclose(pair.Second.parameter, 0, 0)));
    }

    [TestMethod]
    public void Multivariate_ChannelMixingAndIndependent_ProduceHorizonTimesChannels()
    {
        foreach (bool independent in new[] { true, false })
        {
            var ml = new MLContext(seed: 1);
            var windows = Synthetic.Windows(ml, rows: 100, channels: 2);
            var options = Synthetic.ForecastOptions(channels: 2, epochs: 1);
            options.ChannelIndependent = independent;
            options.InstanceNormalization = !independent;
            using var model = ml.Forecasting.ForecastByMamba(options).Fit(windows);
            var scored = model.Transform(windows);
            Assert.AreEqual(8, ((VectorDataViewType)scored.Schema["Forecast"].Type).Size);
            Assert.IsTrue(Synthetic.ReadVectors(scored, "Forecast").All(f => f.Length == 8 && f.All(float.IsFinite)));
        }
    }

    [TestMethod]
    public void FitLinearSkip_StartsFromLeastSquaresForecast()
    {
        // With a negligible learning rate the trained model is its initialisation: the fitted skip path alone must forecast the
        // seasonal series far better than the default start (window mean plus a random head), with or without RevIN.
        foreach (bool revin in new[] { true, false })
        {
            double Mse(bool fit)
            {
                var ml = new MLContext(seed: 1);
                var windows = Synthetic.Windows(ml, rows: 300);
                var options = Synthetic.ForecastOptions(epochs: 1);
                options.LearningRate = 1e-9;
                options.InstanceNormalization = revin;
                options.FitLinearSkip = fit;
                using var model = ml.Forecasting.ForecastByMamba(options).Fit(windows);
                var scored = model.Transform(windows);
                var forecast = Synthetic.ReadVectors(scored, "Forecast");
                var label = Synthetic.ReadVectors(scored, "Label");
                return forecast.Zip(label).Average(p => p.First.Zip(p.Second).Average(e => (e.First - e.Second) * (e.First - e.Second)));
            }
            double fitted = Mse(true), unfitted = Mse(false);
            Assert.IsTrue(fitted < 0.1 * unfitted && fitted < 0.01, $"RevIN {revin}: fitted skip MSE {fitted:G4}, default start {unfitted:G4}");
        }
    }

    /// <summary>
    /// In-sample forecasts of a forecaster fitted on series A and B mapped by <paramref name="a"/> and <paramref name="b"/>;
    /// checks that the model saved and loaded forecasts the same.
    /// </summary>
    private static float[][] TwoChannelForecasts(Func<float, float> a, Func<float, float> b, bool fitLinearSkip, bool instanceNormalization)
    {
        var ml = new MLContext(seed: 1);
        var rows = Synthetic.Series(200).Select(r => new Synthetic.SeriesRow { Time = r.Time, A = a(r.A), B = b(r.B) }).ToArray();
        var windows = TimeSeriesWindows.Create(ml.Data.LoadFromEnumerable(rows), new[] { "A", "B" }, 16, 4).GetWindows();
        var options = Synthetic.ForecastOptions(channels: 2, epochs: 3);
        options.InstanceNormalization = instanceNormalization;
        options.LinearSkip = options.FitLinearSkip = fitLinearSkip;
        using var model = ml.Forecasting.ForecastByMamba(options).Fit(windows);
        var forecasts = Synthetic.ReadVectors(model.Transform(windows), "Forecast");
        Synthetic.CheckSavedAndLoaded(ml, model, windows.Schema, loaded =>
            CollectionAssert.AreEqual(forecasts.SelectMany(f => f).ToArray(), Synthetic.ReadVectors(loaded.Transform(windows), "Forecast").SelectMany(f => f).ToArray()));
        return forecasts;
    }

    [TestMethod]
    public void SmallAndMixedScales_TrainAsAtUnitScale()
    {
        // Before: RevIN's absolute epsilon (1e-5) drowned the variance of a series in small units (amplitude 1e-6: MSE 348 times
        // the baseline's), and a channel in large units outweighed the others in the loss. Each channel now trains in a power of
        // ten near its deviation, so rescaling a channel by a power of ten rescales its forecast and changes nothing else.
        // The scales are a buffer (moved with the network, saved with its weights), only where they are not all 1.
        var arch = new ForecastArchitecture { Lookback = 16, Horizon = 4, Channels = 2, PatchLength = 4, Mamba = new MambaML.Model.MambaConfig { DModel = 8, NLayer = 1 } };
        using (var plain = new ForecastNetwork(arch, seed: 1)) Assert.IsFalse(plain.state_dict().ContainsKey("channel_scale"));
        using (var scaled = new ForecastNetwork(arch with { ChannelScales = new[] { 1e-6, 1.0 } }, seed: 1)) Assert.IsTrue(scaled.state_dict().ContainsKey("channel_scale"));
        foreach (bool fitLinearSkip in new[] { false, true })
        {
            var unit = TwoChannelForecasts(a => a, b => b, fitLinearSkip, instanceNormalization: true);
            // 1e-25 and 1e36: RevIN's variance in the data's units would underflow or overflow float32 (the fit then failed at
            // its first batch with a NaN loss); it is taken in the channel's units.
            foreach (var (scaleA, scaleB) in new[] { (1e-6f, 1e-6f), (1000f, 1f), (1e-25f, 1e-25f), (1e36f, 1f) })
            {
                var scaled = TwoChannelForecasts(a => a * scaleA, b => b * scaleB, fitLinearSkip, instanceNormalization: true);
                for (int i = 0; i < unit.Length; i++)
                    for (int k = 0; k < unit[i].Length; k++)
                    {
                        float scale = k % 2 == 0 ? scaleA : scaleB;   // time-major: channel A at even positions
                        Assert.AreEqual(unit[i][k], scaled[i][k] / scale, 2e-3, $"A×{scaleA}, B×{scaleB}, FitLinearSkip {fitLinearSkip}: window {i}, value {k}");
                    }
            }
        }
    }

    [TestMethod]
    public void WithoutInstanceNormalization_SeriesFarFromZero_ForecastAsNearZero()
    {
        // Before: without RevIN the network read the values as they were, so a series around 1000 trained badly and the fitted
        // linear start's ridge was relative to the level rather than the variation. Each channel's mean in whole units of its
        // scale is now subtracted (and added back to the forecast), so shifting a channel shifts its forecast and nothing else.
        foreach (bool fitLinearSkip in new[] { false, true })
        {
            var near = TwoChannelForecasts(a => a, b => b, fitLinearSkip, instanceNormalization: false);
            var far = TwoChannelForecasts(a => a + 100, b => b - 300, fitLinearSkip, instanceNormalization: false);
            for (int i = 0; i < near.Length; i++)
                for (int k = 0; k < near[i].Length; k++)
                    Assert.AreEqual(near[i][k], far[i][k] - (k % 2 == 0 ? 100 : -300), 2e-3, $"FitLinearSkip {fitLinearSkip}: window {i}, value {k}");
        }
    }

    [TestMethod]
    public void WithoutInstanceNormalization_ModelsSavedBeforeFormat4_StillReadWindowsAsTheyAre()
    {
        // A format-3 forecaster without RevIN has channel scales but no offsets, and was trained on raw windows: it must keep
        // reading them so. New ones store offsets (zeros included) and read windows in their channels' units.
        var arch = new ForecastArchitecture
        {
            Lookback = 16, Horizon = 4, Channels = 1, PatchLength = 4, InstanceNormalization = false,
            Mamba = new MambaML.Model.MambaConfig { DModel = 8, NLayer = 1 },
        };
        using var window = TorchSharp.torch.randn(3, 16, 1) * 10;
        float[] Forecast(ForecastArchitecture a)
        {
            using var network = new ForecastNetwork(a, seed: 5);
            network.eval();
            using var _ = TorchSharp.torch.no_grad();
            return network.Predict(window).data<float>().ToArray();
        }
        var raw = Forecast(arch);
        CollectionAssert.AreEqual(raw, Forecast(arch with { ChannelScales = new[] { 10.0 } }), "format 3: scales, no offsets");
        CollectionAssert.AreNotEqual(raw, Forecast(arch with { ChannelScales = new[] { 10.0 }, ChannelOffsets = new[] { 0.0 } }), "format 4");
    }

    [TestMethod]
    public void FitLinearSkip_WithoutLinearSkip_Throws()
    {
        var options = Synthetic.ForecastOptions();
        options.LinearSkip = false;
        options.FitLinearSkip = true;
        var e = Assert.ThrowsExactly<ArgumentException>(() => new MLContext().Forecasting.ForecastByMamba(options));
        StringAssert.Contains(e.Message, "LinearSkip");
    }

    [TestMethod]
    public void FitLinearSkip_KeepsTheFittedStart_WhenNoEpochBeatsItOnValidation()
    {
        var ml = new MLContext(seed: 1);
        var train = Synthetic.Windows(ml, rows: 200);
        var valid = Synthetic.Windows(ml, rows: 80, seed: 5);
        var epochs = new List<MambaTrainingProgress>();
        var options = Synthetic.ForecastOptions(epochs: 2);
        options.FitLinearSkip = true;
        // A constant, far too high learning rate: every epoch ends worse than the least-squares start.
        options.LearningRate = 0.05;
        options.LearningRateSchedule = LearningRateSchedule.Constant;
        options.ValidationSet = valid;
        options.ProgressCallback = epochs.Add;
        using var model = ml.Forecasting.ForecastByMamba(options).Fit(train);

        double kept = ValidationMse(model, valid), bestEpoch = epochs.Min(p => p.ValidationLoss!.Value);
        Assert.IsTrue(kept < 0.9 * bestEpoch, $"kept model MSE {kept:G4}; epochs: {string.Join(", ", epochs.Select(p => p.ValidationLoss))}");
    }

    [TestMethod]
    [DataRow(false)]
    [DataRow(true)]
    public void Ensemble_IsTheMeanOfItsMembersTrainedAlone_SavesAndLoads(bool fittedStart)
    {
        var ml = new MLContext(seed: 1);
        var train = Synthetic.Windows(ml, rows: 200);
        var test = Synthetic.Windows(ml, rows: 80, seed: 5);
        const int members = 3;
        (float[] Forecast, int Epochs) Fit(int ensembleSize, long seed, string? savePath = null)
        {
            var options = Synthetic.ForecastOptions(epochs: 3);
            options.EnsembleSize = ensembleSize;
            options.Seed = checked((int)seed);
            // A fitted cycle and linear start (the same for every member) must leave each member as it would be alone.
            if (fittedStart) (options.LinearSkip, options.FitLinearSkip, options.CycleLength) = (true, true, 12);
            int epochs = 0;
            options.ProgressCallback = _ => epochs++;
            using var model = ml.Forecasting.ForecastByMamba(options).Fit(train);
            if (savePath is not null) ml.Model.Save(model, train.Schema, savePath);
            return (Synthetic.ReadVectors(model.Transform(test), "Forecast").SelectMany(f => f).ToArray(), epochs);
        }

        var path = Path.Combine(Path.GetTempPath(), $"mambaml-{Guid.NewGuid():N}.zip");
        try
        {
            var (ensemble, ensembleEpochs) = Fit(members, 4, path);
            Assert.AreEqual(members * 3, ensembleEpochs, "every member trains its own epochs");
            // Reference: each member is the single model of its own seed, trained alone; the ensemble forecasts their mean.
            var alone = Enumerable.Range(0, members).Select(k => Fit(1, MambaTrainerOptions.MemberSeed(4, k)).Forecast).ToArray();
            for (int i = 0; i < ensemble.Length; i++)
                Assert.AreEqual(alone.Average(m => m[i]), ensemble[i], 1e-5, $"value {i}");
            Assert.IsTrue(alone.Skip(1).All(m => !m.SequenceEqual(alone[0])), "ensemble members are identical");
            CollectionAssert.AreNotEqual(alone[0], ensemble, "the ensemble forecasts as its first member");

            var label = Synthetic.ReadVectors(test, "Label").SelectMany(f => f).ToArray();
            double Mse(float[] forecast) => forecast.Zip(label).Average(p => (p.First - p.Second) * (p.First - p.Second));
            double ensembleMse = Mse(ensemble), memberMse = alone.Average(Mse);
            Assert.IsTrue(ensembleMse < memberMse, $"ensemble MSE {ensembleMse:G4}, mean member MSE {memberMse:G4}");

            var loaded = new MLContext().RegisterMambaML().Model.Load(path, out _);
            CollectionAssert.AreEqual(ensemble, Synthetic.ReadVectors(loaded.Transform(test), "Forecast").SelectMany(f => f).ToArray());
            (loaded as IDisposable)?.Dispose();
        }
        finally { File.Delete(path); }
    }

    private static double ValidationMse(ITransformer model, IDataView data)
    {
        var scored = model.Transform(data);
        var forecast = Synthetic.ReadVectors(scored, "Forecast");
        var label = Synthetic.ReadVectors(scored, "Label");
        return forecast.Zip(label).Average(p => p.First.Zip(p.Second).Average(e => (e.First - e.Second) * (e.First - e.Second)));
    }

    public sealed class StoreDay
    {
        public string Store { get; set; } = "";
        public DateTime Day { get; set; }
        public float Units { get; set; }
    }

    [TestMethod]
    public void Panel_OneGlobalModel_ForecastsEverySeriesInItsOwnUnits()
    {
        // Six stores over a year, rows sorted by day (interleaved): a weekly pattern whose level, amplitude and phase differ per
        // store by up to 100x, plus noise. One model trained on all stores must forecast each at under a tenth of the squared error of repeating its
        // last value, measured per store in that store's units.
        var random = new Random(3);
        var rows = new List<StoreDay>();
        var levels = new[] { 5f, 20f, 80f, 150f, 300f, 500f };
        for (int day = 0; day < 365; day++)
            for (int s = 0; s < levels.Length; s++)
            {
                double weekly = Math.Sin(2 * Math.PI * (day + s) / 7) + (day % 7 == (s % 7) ? 1.5 : 0);
                rows.Add(new StoreDay { Store = $"S{s}", Day = new DateTime(2025, 1, 1).AddDays(day), Units = (float)(levels[s] * (1 + 0.3 * weekly + 0.03 * random.NextDouble())) });
            }
        var ml = new MLContext(seed: 1);
        var windows = TimeSeriesWindows.Create(ml.Data.LoadFromEnumerable(rows), new[] { "Units" }, lookback: 28, horizon: 7, timestampColumn: "Day", seriesKeyColumn: "Store");
        var options = Synthetic.ForecastOptions(lookback: 28, horizon: 7, epochs: 6);
        options.ValidationSet = windows.GetWindows(250, 300);
        using var model = ml.Forecasting.ForecastByMamba(options).Fit(windows.GetWindows(0, 250));

        var points = windows.ToTimeSeries(model.Transform(windows.GetWindows(300)));
        var table = rows.GroupBy(r => r.Store).ToDictionary(g => g.Key, g => g.Select(r => r.Units).ToArray());
        foreach (var store in points.GroupBy(p => p.SeriesKey!))
        {
            var series = table[store.Key];
            Assert.AreEqual(65 - 7 + 1, store.Count(p => p.Step == 1), $"{store.Key}: one window per start in rows [300 - 28, 365)");
            double model2 = store.Average(p => Math.Pow(p.Forecast - p.Actual!.Value, 2));
            double repeat2 = store.Average(p => Math.Pow(series[p.WindowStart + 27] - p.Actual!.Value, 2));
            Assert.IsTrue(store.All(p => p.Actual == series[p.Row] && p.Timestamp == new DateTime(2025, 1, 1).AddDays(p.Row)), $"{store.Key}: rows and times are the store's own");
            Assert.IsTrue(model2 < 0.1 * repeat2, $"{store.Key}: model MSE {model2:G4} vs repeat-last {repeat2:G4}");
        }
        Assert.AreEqual(6, points.Select(p => p.SeriesKey).Distinct().Count());
    }
}
