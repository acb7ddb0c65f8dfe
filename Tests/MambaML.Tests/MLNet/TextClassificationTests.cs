using MambaML.MLNet;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace MambaML.Tests.MLNet;

[TestClass]
public sealed class TextClassificationTests
{
    public sealed class Review
    {
        public string Text { get; set; } = "";
        public string Sentiment { get; set; } = "";
    }

    public sealed class Prediction
    {
        public string PredictedSentiment { get; set; } = "";
        public float[] Score { get; set; } = Array.Empty<float>();
    }

    private static readonly string[] Positive = { "good", "great", "excellent", "lovely", "tasty", "friendly", "amazing" };
    private static readonly string[] Negative = { "bad", "awful", "terrible", "rude", "bland", "slow", "disgusting" };
    private static readonly string[] Filler = { "the", "food", "was", "service", "place", "really", "and", "very", "staff" };

    private static Review[] Reviews(int count, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count).Select(i =>
        {
            bool positive = i % 2 == 0;
            var words = Enumerable.Range(0, rng.Next(2, 9)).Select(_ => Filler[rng.Next(Filler.Length)]).ToList();
            var cue = positive ? Positive : Negative;
            words.Insert(rng.Next(words.Count + 1), cue[rng.Next(cue.Length)]);
            return new Review { Text = string.Join(' ', words), Sentiment = positive ? "positive" : "negative" };
        }).Append(new Review { Text = "", Sentiment = "negative" }).ToArray();   // an empty text must train and predict
    }

    private static MambaTextClassificationOptions Options(MambaTokenizer tokenizer) => new()
    {
        Tokenizer = tokenizer, ModelDimension = 16, NumberOfLayers = 1, StateSize = 8, NumberOfEpochs = 8, BatchSize = 16,
        LearningRate = 5e-3, Seed = 5, NumberOfThreads = 1, MaxTokens = tokenizer == MambaTokenizer.Bytes ? 64 : 32,
    };

    [TestMethod]
    [DataRow(MambaTokenizer.Cl100kBase)]
    [DataRow(MambaTokenizer.Bytes)]
    public void LearnsSentiment_WithEmptyTexts_SavesTokenizerAndVocabulary(MambaTokenizer tokenizer)
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(Reviews(160, 1));
        var test = ml.Data.LoadFromEnumerable(Reviews(60, 2));
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.MulticlassClassification.Trainers.MambaTextClassification(Options(tokenizer)))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedSentiment", "PredictedLabel"));
        var model = pipeline.Fit(train);
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test));
        Assert.IsTrue(metrics.MicroAccuracy > 0.85, $"{tokenizer}: accuracy {metrics.MicroAccuracy:F3}");

        var path = Path.Combine(Path.GetTempPath(), $"mambaml-{Guid.NewGuid():N}.zip");
        try
        {
            ml.Model.Save(model, train.Schema, path);
            var fresh = new MLContext().RegisterMambaML();
            var loaded = fresh.Model.Load(path, out _);
            var mamba = (MambaSequenceTransformer)((TransformerChain<ITransformer>)loaded).Skip(1).First();
            Assert.IsTrue(mamba.IsTextModel);
            Assert.AreEqual(tokenizer, mamba.Tokenizer);
            using var engine = fresh.Model.CreatePredictionEngine<Review, Prediction>(loaded);
            Assert.AreEqual("positive", engine.Predict(new Review { Text = "the staff was amazing" }).PredictedSentiment);
            Assert.AreEqual("negative", engine.Predict(new Review { Text = "awful service" }).PredictedSentiment);
            var empty = engine.Predict(new Review { Text = "" });
            Assert.AreEqual(1f, empty.Score.Sum(), 1e-5f);
            // Words never seen in training map to the unknown id and still predict.
            var unseen = engine.Predict(new Review { Text = "Zebras xylophone quixotically." });
            Assert.AreEqual(2, unseen.Score.Length);
        }
        finally { File.Delete(path); (model as IDisposable)?.Dispose(); }
    }

    [TestMethod]
    public void CompactVocabulary_KeepsTheMostFrequentIds_WithinTheLimit()
    {
        var ml = new MLContext();
        var data = ml.Data.LoadFromEnumerable(Reviews(100, 3));
        var vocabulary = TextTokens.Build(data, data.Schema["Text"], MambaTokenizer.Cl100kBase, maxTokens: 32, maxVocabularySize: 10, minCount: 1);
        Assert.AreEqual(10, vocabulary.TokenIds.Length);
        var all = TextTokens.Build(data, data.Schema["Text"], MambaTokenizer.Cl100kBase, 32, 100_000, 1);
        Assert.IsTrue(all.TokenIds.Length is > 10 and < 100, $"{all.TokenIds.Length} distinct ids");
        CollectionAssert.AreEqual(all.TokenIds.Take(10).ToArray(), vocabulary.TokenIds);
        var tokens = new TextTokens(all);
        CollectionAssert.AreEqual(new[] { TextVocabulary.Unknown }, tokens.Encode(""));
        Assert.IsTrue(tokens.Encode("quixotic zebra").All(id => id == TextVocabulary.Unknown));
        Assert.IsTrue(tokens.Encode("the food was great").All(id => id >= 2));
    }

    [TestMethod]
    public void TextColumnOfWrongType_IsNamed()
    {
        var ml = new MLContext();
        var data = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment").Fit(ml.Data.LoadFromEnumerable(Reviews(10, 1)))
            .Transform(ml.Data.LoadFromEnumerable(Reviews(10, 1)));
        var options = Options(MambaTokenizer.Bytes);
        options.TextColumnName = "Label";
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.MambaTextClassification(options).Fit(data));
        StringAssert.Contains(e.Message, "text column");
    }
}
