using System.IO.Compression;
using MambaML.MLNet;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace MambaML.Tests.MLNet;

[TestClass]
public sealed class SaveLoadTests
{
    public TestContext TestContext { get; set; } = null!;

    private string NewPath() => Path.Combine(Path.GetTempPath(), $"mambaml-{Guid.NewGuid():N}.zip");

    /// <summary>A fitted forecasting pipeline with stock transforms before the Mamba step, saved to a zip.</summary>
    private (string Path, IDataView Data, float[][] Predictions) SavedForecaster(int? predictionBatchSize = null)
    {
        var ml = new MLContext(seed: 1);
        var windows = Synthetic.Windows(ml, rows: 80);
        var options = Synthetic.ForecastOptions(epochs: 1);
        options.FeatureColumnName = "Past";
        options.PredictionBatchSize = predictionBatchSize;
        var pipeline = ml.Transforms.CopyColumns("Copied", "Features")
            .Append(ml.Transforms.Concatenate("Past", "Copied"))
            .Append(ml.Forecasting.ForecastByMamba(options));
        var model = pipeline.Fit(windows);
        var predictions = Synthetic.ReadVectors(model.Transform(windows), "Forecast");
        var path = NewPath();
        ml.Model.Save(model, windows.Schema, path);
        (model.LastTransformer as IDisposable)?.Dispose();
        return (path, windows, predictions);
    }

    [TestMethod]
    public void Pipeline_SavesAndLoads_InAFreshContext_SamePredictions()
    {
        var (path, data, expected) = SavedForecaster();
        try
        {
            var ml = new MLContext().RegisterMambaML();
            var loaded = ml.Model.Load(path, out var schema);
            Assert.IsNotNull(schema.GetColumnOrNull("Features"));
            var actual = Synthetic.ReadVectors(loaded.Transform(data), "Forecast");
            CollectionAssert.AreEqual(expected.SelectMany(x => x).ToArray(), actual.SelectMany(x => x).ToArray());
            var chain = (TransformerChain<ITransformer>)loaded;
            var forecaster = (MambaForecastingTransformer)chain.LastTransformer;
            Assert.AreEqual(16, forecaster.Lookback);
            Assert.AreEqual(4, forecaster.Horizon);
            Assert.AreEqual("Past", forecaster.FeatureColumnName);
            forecaster.Dispose();
        }
        finally { File.Delete(path); }
    }

    [TestMethod]
    public void RegisterMambaML_IsIdempotent()
    {
        var ml = new MLContext();
        Assert.AreSame(ml, ml.RegisterMambaML());
        ml.RegisterMambaML();
    }

    [TestMethod]
    public void WithoutRegistration_LoadFails_NamingTheCall()
    {
        var (path, _, _) = SavedForecaster();
        try
        {
            var e = Assert.Throws<Exception>(() => new MLContext().Model.Load(path, out _));
            var innermost = e;
            while (innermost.InnerException is not null) innermost = innermost.InnerException;
            StringAssert.Contains(innermost.Message, "mlContext.RegisterMambaML()");
            StringAssert.Contains(e.ToString(), "mlContext.RegisterMambaML()");
        }
        finally { File.Delete(path); }
    }

    private static void RewriteEntry(string path, string entrySuffix, Func<byte[], byte[]?> change)
    {
        using var zip = ZipFile.Open(path, ZipArchiveMode.Update);
        var entry = zip.Entries.Single(e => e.FullName.EndsWith(entrySuffix, StringComparison.Ordinal) && e.FullName.Contains("Transform_002"));
        byte[] bytes;
        using (var stream = entry.Open()) { var ms = new MemoryStream(); stream.CopyTo(ms); bytes = ms.ToArray(); }
        string name = entry.FullName;
        entry.Delete();
        var changed = change(bytes);
        if (changed is null) return;
        using var output = zip.CreateEntry(name).Open();
        output.Write(changed);
    }

    private static Exception LoadError(string path)
    {
        var ml = new MLContext().RegisterMambaML();
        var e = Assert.Throws<Exception>(() => ml.Model.Load(path, out _));
        while (e is System.Reflection.TargetInvocationException && e.InnerException is not null) e = e.InnerException;
        return e;
    }

    // The load error of a saved forecaster whose entry ending in entrySuffix was rewritten by change (null deletes it).
    private Exception LoadErrorAfterRewrite(string entrySuffix, Func<byte[], byte[]?> change)
    {
        var (path, _, _) = SavedForecaster();
        try
        {
            RewriteEntry(path, entrySuffix, change);
            return LoadError(path);
        }
        finally { File.Delete(path); }
    }

    // Where MambaML's own part of the main entry starts: its marker, then the format version.
    private static int MarkerOffset(byte[] entry)
    {
        int at = entry.AsSpan().IndexOf(BitConverter.GetBytes(0x4D424D41));
        Assert.IsTrue(at > 0, "the entry holds MambaML's marker");
        return at;
    }

    [TestMethod]
    public void ModifiedWeights_GiveCorruptModelError()
    {
        var e = LoadErrorAfterRewrite("MambaWeights.bin", bytes => { bytes[bytes.Length / 2] ^= 0x5A; return bytes; });
        Assert.IsInstanceOfType<InvalidDataException>(e);
        StringAssert.Contains(e.Message, "corrupt");
        StringAssert.Contains(e.Message, "SHA-256");
    }

    [TestMethod]
    public void ModifiedDescription_GivesCorruptModelError()
    {
        // Same length, one hyperparameter changed: "Horizon":4 → "Horizon":5.
        var e = LoadErrorAfterRewrite("Model.key", bytes =>
        {
            var key = System.Text.Encoding.UTF8.GetBytes("\"Horizon\":4");
            int at = bytes.AsSpan().IndexOf(key);
            Assert.IsTrue(at > 0, "the description holds the horizon");
            bytes[at + key.Length - 1] = (byte)'5';
            return bytes;
        });
        Assert.IsInstanceOfType<InvalidDataException>(e);
        StringAssert.Contains(e.Message, "model description");
        StringAssert.Contains(e.Message, "SHA-256");
    }

    [TestMethod]
    public void FormatOneModel_StillLoads()
    {
        // Format 1 hashed the weights alone: rewrite a saved model as format 1 wrote it (which always named a batch size), and load it.
        var (path, data, expected) = SavedForecaster(predictionBatchSize: 7);
        try
        {
            byte[] weights = Array.Empty<byte>();
            RewriteEntry(path, "MambaWeights.bin", bytes => weights = bytes);
            RewriteEntry(path, "Model.key", bytes =>
            {
                int at = MarkerOffset(bytes);
                BitConverter.GetBytes(1).CopyTo(bytes, at + 4);
                using var reader = new BinaryReader(new MemoryStream(bytes));
                reader.BaseStream.Position = at + 8;
                reader.ReadString();   // the description
                reader.ReadInt64();    // the weights' length
                System.Security.Cryptography.SHA256.HashData(weights).CopyTo(bytes, (int)reader.BaseStream.Position);
                return bytes;
            });
            var ml = new MLContext().RegisterMambaML();
            var loaded = ml.Model.Load(path, out _);
            var actual = Synthetic.ReadVectors(loaded.Transform(data), "Forecast");
            for (int i = 0; i < expected.Length; i++) CollectionAssert.AreEqual(expected[i], actual[i]);
            (loaded as IDisposable)?.Dispose();
        }
        finally { File.Delete(path); }
    }

    [TestMethod]
    [DataRow(2)]
    [DataRow(3)]
    [DataRow(4)]
    public void FormatTwoToFourModels_StillLoad(int version)
    {
        // Formats 2 to 4 are format 5 without the channel scales (format 2), the sequence models' channel offsets (2 and 3)
        // and a null batch size, hashed the same way: a forecaster of z-scored data (no scales or offsets) with a batch size
        // set, marked as format 2, 3 or 4, is the file those formats wrote.
        var (path, data, expected) = SavedForecaster(predictionBatchSize: 7);
        try
        {
            RewriteEntry(path, "Model.key", bytes =>
            {
                int at = MarkerOffset(bytes);
                Assert.AreEqual(ModelFile.FormatVersion, BitConverter.ToInt32(bytes, at + 4));
                BitConverter.GetBytes(version).CopyTo(bytes, at + 4);
                return bytes;
            });
            var loaded = new MLContext().RegisterMambaML().Model.Load(path, out _);
            var actual = Synthetic.ReadVectors(loaded.Transform(data), "Forecast");
            for (int i = 0; i < expected.Length; i++) CollectionAssert.AreEqual(expected[i], actual[i]);
            (loaded as IDisposable)?.Dispose();
        }
        finally { File.Delete(path); }
    }

    [TestMethod]
    public void PredictionBatchSize_Unset_IsChosenByDeviceAfterLoading_ASetOneIsKept()
    {
        static int Loaded(string path)
        {
            var loaded = (TransformerChain<ITransformer>)new MLContext().RegisterMambaML().Model.Load(path, out _);
            using var mamba = loaded.OfType<MambaTransformerBase>().Single();
            return mamba.PredictionBatchSize;
        }
        foreach (var (saved, expected) in new (int?, int)[] { (null, 256), (7, 7) })
        {
            var (path, _, _) = SavedForecaster(saved);
            try { Assert.AreEqual(expected, Loaded(path), $"forecaster saved with {saved?.ToString() ?? "null"}"); }
            finally { File.Delete(path); }
        }

        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(Synthetic.Shapes(12));
        var classifier = ml.Transforms.Conversion.MapValueToKey("Label", "Shape")
            .Append(ml.MulticlassClassification.Trainers.MambaSequence(Synthetic.SequenceOptions<MambaSequenceClassificationOptions>(epochs: 1)))
            .Fit(data);
        var classifierPath = NewPath();
        try
        {
            Assert.AreEqual(64, classifier.LastTransformer.PredictionBatchSize, "sequence classifier on the CPU, as fitted");
            Assert.AreEqual(long.MaxValue, classifier.LastTransformer.ActivationBudget, "no activation budget on the CPU");
            ml.Model.Save(classifier, data.Schema, classifierPath);
            Assert.AreEqual(64, Loaded(classifierPath), "sequence classifier on the CPU, loaded");
        }
        finally
        {
            classifier.LastTransformer.Dispose();
            File.Delete(classifierPath);
        }
    }

    /// <summary>Transform's batches: up to the row limit, and, padded to their longest row, within the activation budget (at
    /// least one row, however large), read in order without losing a row.</summary>
    [TestMethod]
    public void TransformBatches_StopAtTheRowLimitOrTheActivationBudget()
    {
        List<int> Sizes(int[] steps, int maxRows, long budget)
        {
            var rows = new Queue<SequenceExample>(steps.Select(s => new SequenceExample { Steps = s }));
            var sizes = new List<int>();
            var order = new List<int>();
            SequenceExample? carried = null;
            while (MambaTransformerBase.ReadBatch(() => rows.TryDequeue(out var e) ? e : null, ref carried, maxRows, budget, e => e.Steps) is { Count: > 0 } batch)
            {
                sizes.Add(batch.Count);
                order.AddRange(batch.Select(e => e.Steps));
                Assert.IsTrue(batch.Count == 1 || batch.Count * batch.Max(e => e.Steps) <= budget, $"a padded batch of {batch.Count} over the budget");
            }
            Assert.IsNull(carried, "a row left behind");
            CollectionAssert.AreEqual(steps, order.ToArray(), "rows lost or reordered");
            return sizes;
        }
        CollectionAssert.AreEqual(new[] { 5, 2 }, Sizes(new[] { 4, 4, 4, 4, 4, 4, 4 }, 5, long.MaxValue));
        CollectionAssert.AreEqual(new[] { 2, 2, 2, 1 }, Sizes(new[] { 4, 4, 4, 4, 4, 4, 4 }, 5, 10), "2 × 4 fits 10, 3 × 4 does not");
        CollectionAssert.AreEqual(new[] { 1, 2, 1 }, Sizes(new[] { 100, 3, 3, 50 }, 5, 10), "a row over the budget alone");
        CollectionAssert.AreEqual(new[] { 5, 1 }, Sizes(new[] { 1, 1, 1, 1, 1, 8 }, 100, 10), "a long row after short ones would pad them all: it waits");
        Assert.AreEqual(0, Sizes(Array.Empty<int>(), 5, 10).Count);
    }

    [TestMethod]
    public void MissingWeights_GiveCorruptModelError()
    {
        var e = LoadErrorAfterRewrite("MambaWeights.bin", _ => null);
        Assert.IsInstanceOfType<InvalidDataException>(e);
        StringAssert.Contains(e.Message, "MambaWeights.bin");
    }

    [TestMethod]
    public void NewerFormatVersion_IsRefusedWithAClearMessage()
    {
        var e = LoadErrorAfterRewrite("Model.key", bytes =>
        {
            BitConverter.GetBytes(99).CopyTo(bytes, MarkerOffset(bytes) + 4);
            return bytes;
        });
        StringAssert.Contains(e.Message, "format 99");
    }

    [TestMethod]
    public void TruncatedOrForeignZip_FailsClearly()
    {
        var (path, _, _) = SavedForecaster();
        var foreign = NewPath();
        try
        {
            var bytes = File.ReadAllBytes(path);
            File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
            var truncated = LoadError(path);
            TestContext.WriteLine("truncated: " + truncated.GetType().Name + ": " + truncated.Message);
            // ML.NET opens the zip before any MambaML code runs; its message is already clear.
            StringAssert.Contains(truncated.Message, "zip");

            using (var zip = ZipFile.Open(foreign, ZipArchiveMode.Create))
            using (var w = new StreamWriter(zip.CreateEntry("readme.txt").Open())) w.Write("not a model");
            var notModel = LoadError(foreign);
            TestContext.WriteLine("foreign: " + notModel.GetType().Name + ": " + notModel.Message);
            StringAssert.Contains(notModel.Message, "model");
        }
        finally { File.Delete(path); File.Delete(foreign); }
    }
}
