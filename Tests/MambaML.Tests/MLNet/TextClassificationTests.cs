using MambaML.MLNet;
using MambaML.Model;
using Microsoft.ML;
using Microsoft.ML.Data;
using static TorchSharp.torch;

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

    internal static Review[] Reviews(int count, int seed)
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

    internal static MambaTextClassificationOptions Options(MambaTokenizer tokenizer) => new()
    {
        Tokenizer = tokenizer, ModelDimension = 16, NumberOfLayers = 1, StateSize = 8, NumberOfEpochs = 8, BatchSize = 16,
        LearningRate = 5e-3, Seed = 5, NumberOfThreads = 1, MaxTokens = tokenizer == MambaTokenizer.Bytes ? 64 : 32,
    };

    [TestMethod]
    public void LongTexts_AreCutBeforeTokenising_WithoutChangingTheTokensOfOrdinaryText()
    {
        // About 100,000 characters of words: the first 32 tokens are those of the whole text.
        var words = string.Join(' ', Enumerable.Repeat("The service was really excellent, and the food tasty!", 2000));
        var whole = Microsoft.ML.Tokenizers.TiktokenTokenizer.CreateForEncoding("cl100k_base").EncodeToIds(words, 32, out _, out _);
        CollectionAssert.AreEqual(whole.ToArray(), TextTokens.Tokenize(MambaTokenizer.Cl100kBase, words, 32, lowercase: false).ToArray());
        CollectionAssert.AreEqual(System.Text.Encoding.UTF8.GetBytes(words).Take(32).Select(b => (int)b).ToArray(),
            TextTokens.Tokenize(MambaTokenizer.Bytes, words, 32, lowercase: false).ToArray());
        // 300,000 letters without a space (a 15 s tokenisation before the cut): still the first 32 tokens, all letters.
        var run = new string('a', 300_000);
        var ids = TextTokens.Tokenize(MambaTokenizer.Cl100kBase, run, 32, lowercase: false);
        Assert.AreEqual(32, ids.Count);
        var tokenizer = Microsoft.ML.Tokenizers.TiktokenTokenizer.CreateForEncoding("cl100k_base");
        Assert.IsTrue(ids.All(id => tokenizer.Decode(new[] { id }).All(c => c == 'a')));
    }

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

    public sealed class BinaryReview
    {
        public string Text { get; set; } = "";
        public bool Label { get; set; }
    }

    public sealed class BinaryPrediction
    {
        public bool PredictedLabel { get; set; }
        public float Probability { get; set; }
        public float Score { get; set; }
    }

    private static BinaryReview[] BinaryReviews(int count, int seed) =>
        Reviews(count, seed).Select(r => new BinaryReview { Text = r.Text, Label = r.Sentiment == "positive" }).ToArray();

    /// <summary>The binary trainer (a Boolean label, as ML.NET's sentiment samples): learns, evaluates with ML.NET's binary
    /// metrics, saves and loads with the same scores, predicts through a PredictionEngine, and names a key label's trainer.</summary>
    [TestMethod]
    public void BinaryTextClassification_LearnsEvaluatesSavesAndLoads()
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(BinaryReviews(160, 1));
        var test = ml.Data.LoadFromEnumerable(BinaryReviews(60, 2));
        var options = Options(MambaTokenizer.Bytes);
        var validation = ml.Data.LoadFromEnumerable(BinaryReviews(40, 4));
        options.ValidationSet = validation;
        var model = ml.BinaryClassification.Trainers.MambaTextClassification(options).Fit(train);
        try
        {
            var metrics = ml.BinaryClassification.Evaluate(model.Transform(test));
            Assert.IsTrue(metrics.Accuracy > 0.85 && metrics.AreaUnderRocCurve > 0.9, $"accuracy {metrics.Accuracy:F3}, AUC {metrics.AreaUnderRocCurve:F3}");
            var scores = model.Transform(test).GetColumn<float>("Probability").ToArray();
            Synthetic.CheckSavedAndLoaded(ml, model, train.Schema, loaded =>
            {
                CollectionAssert.AreEqual(scores, loaded.Transform(test).GetColumn<float>("Probability").ToArray(), "loaded model's probabilities");
                using var engine = ml.Model.CreatePredictionEngine<BinaryReview, BinaryPrediction>(loaded, new PredictionEngineOptions { OwnsTransformer = false });
                var good = engine.Predict(new BinaryReview { Text = "the staff was amazing" });
                Assert.IsTrue(good.PredictedLabel && good.Probability > 0.5f, $"positive review: {good.Probability:F3}");
                Assert.IsFalse(engine.Predict(new BinaryReview { Text = "awful service" }).PredictedLabel);
            });
        }
        finally { model.Dispose(); }

        var keyed = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment").Fit(ml.Data.LoadFromEnumerable(Reviews(20, 1)))
            .Transform(ml.Data.LoadFromEnumerable(Reviews(20, 1)));
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.BinaryClassification.Trainers.MambaTextClassification(options).Fit(keyed));
        StringAssert.Contains(e.Message, "'Label'");
        options.ProbabilityColumnName = "Score";
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => ml.BinaryClassification.Trainers.MambaTextClassification(options)).Message, "'Score'");
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
    public void Lowercase_MergesSpellings_InTheVocabulary()
    {
        var ml = new MLContext();
        var data = ml.Data.LoadFromEnumerable(new[] { new Review { Text = "Great food" }, new Review { Text = "great FOOD" } });
        var cased = TextTokens.Build(data, data.Schema["Text"], MambaTokenizer.Cl100kBase, 32, 1000, 1);
        var lower = TextTokens.Build(data, data.Schema["Text"], MambaTokenizer.Cl100kBase, 32, 1000, 1, lowercase: true);
        Assert.IsTrue(lower.Lowercase);
        Assert.IsTrue(lower.TokenIds.Length < cased.TokenIds.Length, $"{lower.TokenIds.Length} lower-cased ids, {cased.TokenIds.Length} cased");
        var tokens = new TextTokens(lower);
        CollectionAssert.AreEqual(tokens.Encode("great food"), tokens.Encode("GREAT Food"));
        Assert.IsTrue(tokens.Encode("GREAT Food").All(id => id >= 2), "upper-case text maps to the lower-cased vocabulary");
        CollectionAssert.AreNotEqual(new TextTokens(cased).Encode("great food"), new TextTokens(cased).Encode("GREAT Food"));
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

    [TestMethod]
    public void EmptyVocabulary_IsRejected_NamingWhy()
    {
        var ml = new MLContext();
        var toKey = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment");
        var reviews = ml.Data.LoadFromEnumerable(Reviews(10, 1));
        var data = toKey.Fit(reviews).Transform(reviews);
        var options = Options(MambaTokenizer.Bytes);
        options.MinTokenCount = 1_000_000;
        var e = Assert.ThrowsExactly<ArgumentException>(() => ml.MulticlassClassification.Trainers.MambaTextClassification(options).Fit(data));
        StringAssert.Contains(e.Message, "MinTokenCount (1000000)");
        var empty = ml.Data.LoadFromEnumerable(Reviews(10, 1).Select(r => new Review { Text = "", Sentiment = r.Sentiment }));
        e = Assert.ThrowsExactly<ArgumentException>(() => ml.MulticlassClassification.Trainers.MambaTextClassification(Options(MambaTokenizer.Bytes))
            .Fit(toKey.Fit(empty).Transform(empty)));
        StringAssert.Contains(e.Message, "every training text of column 'Text' is empty");
    }

    [TestMethod]
    public void NgramHead_SameSeedSameModel_ChangesTheModel_SurvivesSaveLoad()
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(Reviews(120, 1));
        var test = ml.Data.LoadFromEnumerable(Reviews(40, 2));
        var toKey = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment").Fit(train);
        (float[] Scores, MambaSequenceTransformer Model) Fit(int ngramHeadLength, double? ngramHeadLearningRate = null, bool separateLoss = true)
        {
            var options = Options(MambaTokenizer.Cl100kBase);
            options.NgramHeadSeparateLoss = separateLoss;
            options.NgramHeadLength = ngramHeadLength;
            options.NgramHeadBuckets = 101;
            options.NgramHeadLearningRate = ngramHeadLearningRate;
            var model = ml.MulticlassClassification.Trainers.MambaTextClassification(options).Fit(toKey.Transform(train));
            return (ScoreValues(model.Transform(toKey.Transform(test))), model);
        }

        var (bigrams, model) = Fit(2);
        try
        {
            var (again, other) = Fit(2);
            other.Dispose();
            CollectionAssert.AreEqual(bigrams, again, "same seed, same model");
            var (mambaOnly, m0) = Fit(0);
            m0.Dispose();
            CollectionAssert.AreNotEqual(bigrams, mambaOnly, "the n-gram head did not change the model");
            var (unigrams, m1) = Fit(1);
            m1.Dispose();
            CollectionAssert.AreNotEqual(bigrams, unigrams, "token pairs did not change the model");
            var (fasterHead, m2) = Fit(2, ngramHeadLearningRate: 5e-2);
            m2.Dispose();
            CollectionAssert.AreNotEqual(bigrams, fasterHead, "NgramHeadLearningRate did not change training");
            var (joint, m3) = Fit(2, separateLoss: false);
            m3.Dispose();
            CollectionAssert.AreNotEqual(bigrams, joint, "NgramHeadSeparateLoss did not change training");

            var path = Path.Combine(Path.GetTempPath(), $"mambaml-{Guid.NewGuid():N}.zip");
            try
            {
                ml.Model.Save(model, toKey.Transform(train).Schema, path);
                var fresh = new MLContext().RegisterMambaML();
                var loaded = fresh.Model.Load(path, out _);
                try { CollectionAssert.AreEqual(bigrams, ScoreValues(loaded.Transform(toKey.Transform(test))), "save/load changed the scores"); }
                finally { (loaded as IDisposable)?.Dispose(); }
            }
            finally { File.Delete(path); }
        }
        finally { model.Dispose(); }
    }

    [TestMethod]
    public void NgramHeadLogits_MatchAPlainLoopOverTheWeights()
    {
        const int classes = 3, buckets = 13, batch = 5;
        var vocabulary = new TextVocabulary { TokenIds = Enumerable.Range(100, 9).ToArray(), MaxTokens = 64 };   // 11 compact ids
        var arch = new SequenceArchitecture
        {
            Task = MambaSequenceTask.MulticlassClassification, Input = SequenceInputKind.Tokens, Vocabulary = vocabulary, Outputs = classes,
            Mamba = new MambaConfig { DModel = 8, NLayer = 1, DState = 4 }, NgramHeadLength = 3, NgramHeadBuckets = buckets,
        };
        using var network = new SequenceNetwork(arch, seed: 3);
        var rng = new Random(7);
        using (no_grad()) network.ngramHead!.weight!.copy_(randn(network.ngramHead.weight.shape, generator: new Generator(11)));
        var weights = network.ngramHead!.weight!.data<float>().ToArray();
        int[] lengths = { 1, 2, 3, 7, 4 };   // odd sizes, shorter than the n-gram length included
        int longest = lengths.Max();
        var ids = new long[batch * longest];
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < lengths[b]; t++) ids[b * longest + t] = rng.Next(1, vocabulary.Size);

        using var scope = NewDisposeScope();
        var actual = network.NgramLogits(tensor(ids, new long[] { batch, longest }), tensor(lengths.Select(l => (long)l).ToArray())).data<float>().ToArray();

        for (int b = 0; b < batch; b++)
        {
            var expected = new double[classes];
            int features = 0;
            for (int n = 1; n <= 3; n++)
                for (int start = 0; start + n <= lengths[b]; start++)
                {
                    long row = ids[b * longest + start];
                    if (n > 1)
                    {
                        long hash = n;
                        for (int k = 0; k < n; k++) hash = (hash * SequenceNetwork.NgramHashMultiplier + ids[b * longest + start + k]) % SequenceNetwork.NgramHashModulus;
                        row = vocabulary.Size + hash % buckets;
                    }
                    for (int c = 0; c < classes; c++) expected[c] += weights[row * classes + c];
                    features++;
                }
            for (int c = 0; c < classes; c++)
                Assert.AreEqual(expected[c] / Math.Sqrt(features), actual[b * classes + c], 1e-4, $"text {b} (length {lengths[b]}), class {c}");
        }
    }

    [TestMethod]
    public void NgramHeadOptions_OutOfRange_NameTheOption()
    {
        foreach (var (length, buckets, learningRate, name) in new[]
                 { (-1, 10, 0.1, "NgramHeadLength"), (4, 10, 0.1, "NgramHeadLength"), (2, 0, 0.1, "NgramHeadBuckets"), (2, int.MaxValue, 0.1, "NgramHeadBuckets"),
                   (2, 10, 0.0, "NgramHeadLearningRate") })
        {
            var options = Options(MambaTokenizer.Bytes);
            options.NgramHeadLength = length;
            options.NgramHeadBuckets = buckets;
            options.NgramHeadLearningRate = learningRate;
            var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new MLContext().MulticlassClassification.Trainers.MambaTextClassification(options));
            StringAssert.Contains(e.Message, name);
        }
    }

    [TestMethod]
    public void Ensemble_WithNgramHead_LearnsAndSurvivesSaveLoad()
    {
        // Each member has its own n-gram head; with the separate loss every member's head and Mamba path are trained.
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(Reviews(120, 1));
        var test = ml.Data.LoadFromEnumerable(Reviews(40, 2));
        var toKey = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment").Fit(train);
        MambaSequenceTransformer Fit(int members)
        {
            var options = Options(MambaTokenizer.Cl100kBase);
            options.NgramHeadBuckets = 101;
            options.EnsembleSize = members;
            return ml.MulticlassClassification.Trainers.MambaTextClassification(options).Fit(toKey.Transform(train));
        }

        using var single = Fit(1);
        using var ensemble = Fit(2);
        var scored = ensemble.Transform(toKey.Transform(test));
        var accuracy = ml.MulticlassClassification.Evaluate(scored).MicroAccuracy;
        Assert.IsTrue(accuracy > 0.85, $"ensemble accuracy {accuracy:F3}");
        var scores = ScoreValues(scored);
        CollectionAssert.AreNotEqual(ScoreValues(single.Transform(toKey.Transform(test))), scores, "EnsembleSize did not change the model");

        Synthetic.CheckSavedAndLoaded(ml, ensemble, toKey.Transform(train).Schema,
            loaded => CollectionAssert.AreEqual(scores, ScoreValues(loaded.Transform(toKey.Transform(test))), "save/load changed the scores"));
    }

    private static float[] ScoreValues(IDataView scored) =>
        scored.GetColumn<float[]>("Score").SelectMany(v => v).ToArray();
}
