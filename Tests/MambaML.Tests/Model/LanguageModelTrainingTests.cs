using MambaML.Model;
using static TorchSharp.torch;

namespace MambaML.Tests.Model;

[TestClass]
public sealed class LanguageModelTrainingTests
{
    private static readonly MambaConfig Small = new() { DModel = 16, NLayer = 1, DState = 4 };

    // A stream repeating `period` (a permutation of the vocabulary): each token fixes the next.
    private static long[] Repeating(long[] period, int length) => Enumerable.Range(0, length).Select(i => period[i % period.Length]).ToArray();

    private static LanguageModelTrainingOptions Options(int steps) => new()
    {
        Steps = steps, BatchSize = 8, BlockLength = 13, LearningRate = 1e-2, WarmupSteps = Math.Min(5, steps - 1), EvaluateEvery = 10, EvaluationBatches = 2,
    };

    [TestMethod]
    public void LearnsAPattern_ReportsEveryEvaluation()
    {
        var period = new long[] { 3, 0, 6, 1, 5, 2, 4 };
        using var model = new MambaLanguageModel(Small, vocabularySize: 7, seed: 1);
        var reports = new List<LanguageModelProgress>();
        var result = LanguageModelTraining.Train(model, Repeating(period, 500), Repeating(period, 100), Options(45) with { ProgressCallback = reports.Add });
        CollectionAssert.AreEqual(new[] { 0, 10, 20, 30, 40, 45 }, reports.Select(r => r.Step).ToArray());
        Assert.IsNull(reports[0].TrainingLoss);
        Assert.IsTrue(reports[0].ValidationLoss > 1.5, $"untrained: {reports[0].ValidationLoss} (ln 7 = 1.95)");
        Assert.IsTrue(result.BestValidationLoss < 0.2, $"best validation loss {result.BestValidationLoss}");
        Assert.AreEqual(reports.Min(r => r.ValidationLoss), result.BestValidationLoss);
        Assert.AreEqual(45L * 8 * 13, result.TrainingTokens);
        Assert.IsFalse(model.training, "left in evaluation mode");
    }

    [TestMethod]
    public void KeepsTheWeightsOfTheBestEvaluation()
    {
        // Validation follows another permutation than training: learning the training stream only makes it worse, so the best
        // evaluation is the untrained model's (step 0), and training must end with the initial weights restored.
        using var model = new MambaLanguageModel(Small, vocabularySize: 7, seed: 1);
        using var untrained = new MambaLanguageModel(Small, vocabularySize: 7, seed: 1);
        var result = LanguageModelTraining.Train(model, Repeating(new long[] { 0, 1, 2, 3, 4, 5, 6 }, 500),
                                                 Repeating(new long[] { 6, 5, 4, 3, 2, 1, 0 }, 100), Options(40));
        Assert.AreEqual(0, result.BestStep);
        using var tokens = tensor(new long[] { 1, 2, 3, 4, 5 }).view(1, 5);
        untrained.eval();
        Assert.IsTrue(model.Forward(tokens).allclose(untrained.Forward(tokens), 0, 0), "the step-0 weights are back");
    }

    [TestMethod]
    public void CancellingKeepsTheBestWeights()
    {
        // As in KeepsTheWeightsOfTheBestEvaluation, the best evaluation is step 0; cancelled at step 20, the model has its weights.
        using var model = new MambaLanguageModel(Small, vocabularySize: 7, seed: 1);
        using var untrained = new MambaLanguageModel(Small, vocabularySize: 7, seed: 1);
        using var cancel = new CancellationTokenSource();
        Assert.ThrowsExactly<OperationCanceledException>(() => LanguageModelTraining.Train(model, Repeating(new long[] { 0, 1, 2, 3, 4, 5, 6 }, 500),
            Repeating(new long[] { 6, 5, 4, 3, 2, 1, 0 }, 100),
            Options(40) with { CancellationToken = cancel.Token, ProgressCallback = p => { if (p.Step == 20) cancel.Cancel(); } }));
        using var tokens = tensor(new long[] { 1, 2, 3, 4, 5 }).view(1, 5);
        untrained.eval();
        Assert.IsTrue(model.Forward(tokens).allclose(untrained.Forward(tokens), 0, 0), "the step-0 weights are back after cancelling");
    }

    [TestMethod]
    public void Optimizer_UsesBeta2_AndDecaysMatricesButNotALog()
    {
        float[] Train(double beta2)
        {
            using var model = new MambaLanguageModel(Small, vocabularySize: 7, seed: 1);
            LanguageModelTraining.Train(model, Repeating(new long[] { 3, 0, 6, 1, 5, 2, 4 }, 300), null, Options(12) with { Beta2 = beta2 });
            return model.parameters().SelectMany(p => p.data<float>().ToArray()).ToArray();
        }
        CollectionAssert.AreNotEqual(Train(0.99), Train(0.5), "Beta2 reaches the optimizer (before: every group ran with 0.999)");

        using var lm = new MambaLanguageModel(Small, vocabularySize: 7, seed: 1);
        var decayed = lm.named_parameters().Where(p => TrainingRules.TakesWeightDecay(p.name, p.parameter)).Select(p => p.name.Split('.')[^2] + "." + p.name.Split('.')[^1]).ToHashSet();
        CollectionAssert.IsSubsetOf(new[] { "in_proj.weight", "out_proj.weight", "x_proj.weight", "dt_proj.weight", "conv1d.weight" }, decayed.ToArray());
        Assert.IsFalse(lm.named_parameters().Any(p => TrainingRules.TakesWeightDecay(p.name, p.parameter) && (p.name.EndsWith("A_log") || p.name.EndsWith(".D") || p.parameter.dim() < 2)),
                       "A_log, D, norms and biases take no weight decay");
    }

    [TestMethod]
    public void Schedule_WarmsUpThenDecaysTowardsTheFinalFraction()
    {
        Assert.AreEqual(0.1, TrainingRules.WarmupCosine(0, 20, 10, 1.0, 0.1), 1e-12);         // first warm-up step: 1/10 of the peak
        Assert.AreEqual(1.0, TrainingRules.WarmupCosine(10, 20, 10, 1.0, 0.1), 1e-12);        // the peak right after the warm-up
        Assert.AreEqual(0.55, TrainingRules.WarmupCosine(15, 20, 10, 1.0, 0.1), 1e-12);       // halfway down
        Assert.AreEqual(0.1, TrainingRules.WarmupCosine(20, 20, 10, 1.0, 0.1), 1e-12);        // the floor, one step after the last
        Assert.AreEqual(0.5, TrainingRules.WarmupCosine(5, 10, 0, 1.0), 1e-12);               // no warm-up, decay to zero
        var e = Assert.ThrowsExactly<ArgumentException>(() =>
            LanguageModelTraining.Train(new MambaLanguageModel(Small, 7, seed: 1), Repeating(new long[] { 0, 1 }, 100), null, Options(5) with { WarmupSteps = 5 }));
        StringAssert.Contains(e.Message, "WarmupSteps must be in [0, Steps = 5)");
    }

    [TestMethod]
    public void SameSeed_SameModel_WithDropout()
    {
        float[] Train(int seed)
        {
            using var model = new MambaLanguageModel(Small with { Dropout = 0.3 }, vocabularySize: 7, seed: 1);
            LanguageModelTraining.Train(model, Repeating(new long[] { 3, 0, 6, 1, 5, 2, 4 }, 300), null, Options(12) with { Seed = seed });
            return model.parameters().SelectMany(p => p.data<float>().ToArray()).ToArray();
        }
        CollectionAssert.AreEqual(Train(4), Train(4));
        CollectionAssert.AreNotEqual(Train(4), Train(5));
    }

    [TestMethod]
    public void BadInput_IsNamed_AndCancellationStops()
    {
        using var model = new MambaLanguageModel(Small, vocabularySize: 7, seed: 1);
        var tokens = Repeating(new long[] { 0, 1, 2 }, 50);
        var e = Assert.ThrowsExactly<ArgumentException>(() => LanguageModelTraining.Train(model, tokens[..13], null, Options(5)));
        StringAssert.Contains(e.Message, "trainingTokens holds 13 tokens; a block of BlockLength = 13 and its next token need 14");
        e = Assert.ThrowsExactly<ArgumentException>(() => LanguageModelTraining.Train(model, tokens, tokens.Select(t => t + 5).ToArray(), Options(5)));
        StringAssert.Contains(e.Message, "validationTokens holds token ids from 5 to 7, outside [0, 7)");
        e = Assert.ThrowsExactly<ArgumentException>(() => LanguageModelTraining.Train(model, tokens, null, Options(5) with { Beta2 = 1 }));
        StringAssert.Contains(e.Message, "LanguageModelTrainingOptions.Beta2 must be in (0, 1)");
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        Assert.ThrowsExactly<OperationCanceledException>(() => LanguageModelTraining.Train(model, tokens, null, Options(5) with { CancellationToken = cancelled.Token }));
        Assert.IsFalse(model.training);
    }
}
