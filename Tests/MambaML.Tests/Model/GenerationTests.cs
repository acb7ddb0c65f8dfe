using MambaML.Model;
using static TorchSharp.torch;

namespace MambaML.Tests.Model;

/// <summary>
/// <see cref="MambaLanguageModel.Generate(Tensor, int, GenerationOptions, DecodeBackend)"/> on the CPU: greedy by default,
/// seeded sampling that keeps to top-k and top-p, sampled frequencies against the distribution computed here with plain
/// loops, CTRL's repetition penalty and end-of-sequence stopping, each against the teacher-forced forward pass; and the
/// stateful Forward that generation's prompt pass rests on.
/// </summary>
[TestClass]
public class GenerationTests
{
    private const int Vocabulary = 13;

    /// <summary>A small model whose logits spread over a few units (an untrained model's are nearly uniform, under which
    /// temperature, top-k and top-p would hardly matter).</summary>
    private static MambaLanguageModel Model(long seed, double embeddingScale = 10)
    {
        var model = new MambaLanguageModel(new MambaConfig { DModel = 16, NLayer = 2, DState = 5, DConv = 3 }, Vocabulary, seed);
        using (no_grad()) model.embedding.weight!.mul_(embeddingScale);
        return model;
    }

    private static Tensor Prompt(long batch, long length, ulong seed) => randint(0, Vocabulary, new[] { batch, length }, generator: new Generator(seed));

    /// <summary>The logits (batch, count, vocabulary) from which each generated token was chosen, by the parallel forward pass.</summary>
    private static float[,,] ChoosingLogits(MambaLanguageModel model, Tensor prompt, Tensor generated)
    {
        var logits = model.Forward(cat(new[] { prompt, generated }, 1)).narrow(1, prompt.shape[1] - 1, generated.shape[1]).contiguous();
        var values = logits.data<float>().ToArray();
        long batch = logits.shape[0], count = logits.shape[1];
        var result = new float[batch, count, Vocabulary];
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < count; i++)
                for (int v = 0; v < Vocabulary; v++)
                    result[b, i, v] = values[(b * count + i) * Vocabulary + v];
        return result;
    }

    /// <summary>softmax(logits / temperature) of one row, in double, after CTRL's <paramref name="penalty"/> on the
    /// <paramref name="seen"/> tokens (none by default).</summary>
    private static double[] Probabilities(float[,,] logits, int b, int i, double temperature, double penalty = 1, ISet<long>? seen = null)
    {
        var x = new double[Vocabulary];
        for (int v = 0; v < Vocabulary; v++)
            x[v] = seen?.Contains(v) != true ? logits[b, i, v] : logits[b, i, v] < 0 ? logits[b, i, v] * penalty : logits[b, i, v] / penalty;
        var p = new double[Vocabulary];
        double max = double.NegativeInfinity, sum = 0;
        for (int v = 0; v < Vocabulary; v++) max = Math.Max(max, x[v] / temperature);
        for (int v = 0; v < Vocabulary; v++) sum += p[v] = Math.Exp(x[v] / temperature - max);
        for (int v = 0; v < Vocabulary; v++) p[v] /= sum;
        return p;
    }

    private static long[,] Tokens(Tensor generated)
    {
        var values = generated.data<long>().ToArray();
        var result = new long[generated.shape[0], generated.shape[1]];
        for (int b = 0; b < result.GetLength(0); b++)
            for (int i = 0; i < result.GetLength(1); i++)
                result[b, i] = values[b * result.GetLength(1) + i];
        return result;
    }

    [TestMethod]
    public void DefaultOptions_AndTopKOfOne_AreGreedy()
    {
        using var scope = NewDisposeScope();
        using var model = Model(1);
        var prompt = Prompt(3, 4, 1);
        var greedy = model.Generate(prompt, 9).data<long>().ToArray();
        CollectionAssert.AreEqual(greedy, model.Generate(prompt, 9, new GenerationOptions()).data<long>().ToArray(), "default options");
        CollectionAssert.AreEqual(greedy, model.Generate(prompt, 9, new GenerationOptions { TopK = 1, Temperature = 0.3, TopP = 0.5, Seed = 4 }).data<long>().ToArray(),
            "TopK = 1 ignores temperature, top-p and the seed");
    }

    [TestMethod]
    public void Sampling_IsSeeded_AndKeepsToTheTopK()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var model = Model(2);
        var prompt = Prompt(3, 5, 2);
        var options = new GenerationOptions { TopK = 3, Temperature = 2, Seed = 0 };
        var first = model.Generate(prompt, 12, options);
        CollectionAssert.AreEqual(first.data<long>().ToArray(), model.Generate(prompt, 12, options).data<long>().ToArray(), "same seed, same tokens");
        Assert.IsTrue(Enumerable.Range(1, 4).Any(s => !model.Generate(prompt, 12, options with { Seed = s }).data<long>().SequenceEqual(first.data<long>())),
            "other seeds never changed a token");
        Assert.IsFalse(first.data<long>().SequenceEqual(model.Generate(prompt, 12).data<long>()), "sampling gave the greedy tokens");

        var logits = ChoosingLogits(model, prompt, first);
        var tokens = Tokens(first);
        for (int b = 0; b < 3; b++)
            for (int i = 0; i < 12; i++)
            {
                int above = Enumerable.Range(0, Vocabulary).Count(v => logits[b, i, v] > logits[b, i, tokens[b, i]]);
                Assert.IsTrue(above < 3, $"row {b}, step {i}: token {tokens[b, i]} has {above} more likely tokens (top-k 3)");
            }
    }

    [TestMethod]
    public void TopP_SamplesOnlyFromTheNucleus()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var model = Model(3);
        var prompt = Prompt(4, 3, 3);
        const double topP = 0.6, temperature = 1.5;
        var generated = model.Generate(prompt, 15, new GenerationOptions { TopK = 0, TopP = topP, Temperature = temperature, Seed = 7 });
        var logits = ChoosingLogits(model, prompt, generated);
        var tokens = Tokens(generated);
        for (int b = 0; b < 4; b++)
            for (int i = 0; i < 15; i++)
            {
                var p = Probabilities(logits, b, i, temperature);
                double before = Enumerable.Range(0, Vocabulary).Where(v => p[v] > p[tokens[b, i]]).Sum(v => p[v]);
                Assert.IsTrue(before < topP + 1e-4, $"row {b}, step {i}: the more likely tokens already hold {before:F4} >= top-p {topP}");
            }
    }

    /// <summary>The first token of 20,000 copies of one prompt, against the distribution each setting defines (tempered
    /// softmax; renormalised over the top k; over the nucleus; after the repetition penalty), computed here with loops: every token's frequency within
    /// 5 standard errors (plus 0.002), and tokens outside the kept set never drawn.</summary>
    [TestMethod]
    public void SampledFrequencies_FollowTheDistributionTheOptionsDefine()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var model = Model(4);
        const int draws = 20_000;
        var prompt = Prompt(1, 6, 4);
        var logits = ChoosingLogits(model, prompt, model.Generate(prompt, 1));
        foreach (var options in new[]
                 {
                     new GenerationOptions { TopK = 0, Temperature = 0.7, Seed = 3 },
                     new GenerationOptions { TopK = 4, Temperature = 1.3, Seed = 4 },
                     new GenerationOptions { TopK = 0, TopP = 0.8, Temperature = 2, Seed = 5 },
                     new GenerationOptions { TopK = 0, RepetitionPenalty = 3, Temperature = 2, Seed = 6 },
                 })
        {
            var p = Probabilities(logits, 0, 0, options.Temperature, options.RepetitionPenalty, Tokens(prompt).Cast<long>().ToHashSet());
            var order = Enumerable.Range(0, Vocabulary).OrderByDescending(v => p[v]).ToArray();
            var kept = new HashSet<int>();
            double mass = 0;
            foreach (int v in order)
            {
                bool inTopK = options.TopK == 0 || kept.Count < options.TopK;
                bool inNucleus = options.TopP == 0 || mass < options.TopP;
                if (!inTopK || !inNucleus) break;
                kept.Add(v);
                mass += p[v];
            }
            double keptMass = kept.Sum(v => p[v]);
            var counts = new int[Vocabulary];
            foreach (long token in model.Generate(prompt.expand(draws, -1), 1, options).data<long>()) counts[token]++;
            for (int v = 0; v < Vocabulary; v++)
            {
                double expected = kept.Contains(v) ? p[v] / keptMass : 0, frequency = counts[v] / (double)draws;
                double tolerance = 5 * Math.Sqrt(expected * (1 - expected) / draws) + 0.002;
                Assert.AreEqual(expected, frequency, tolerance, $"{options}: token {v}");
                if (!kept.Contains(v)) Assert.AreEqual(0, counts[v], $"{options}: token {v} is outside the kept set");
            }
            bool filters = options.TopK > 0 || options.TopP > 0;
            Assert.IsTrue(kept.Count > 1 && (!filters || kept.Count < Vocabulary),
                $"{options}: the test needs a setting that keeps several tokens (and, filtering, not all); kept {kept.Count}, probabilities {string.Join(" ", p.Select(x => x.ToString("F3")))}");
        }
    }

    /// <summary>
    /// Every step draws fresh noise, across the 64-step chunks it is drawn in: with uniform logits (zero embeddings), 2 rows ×
    /// 200 steps spread over the vocabulary and a token follows itself about 1/V of the time (reused noise picks one token
    /// for good); and a shorter generation is the start of a longer one with the same seed.
    /// </summary>
    [TestMethod]
    public void Sampling_DrawsFreshNoiseEveryStep_AcrossChunks()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var model = Model(9, embeddingScale: 0);
        var prompt = Prompt(2, 3, 9);
        var options = new GenerationOptions { TopK = 0, Seed = 4 };
        var tokens = Tokens(model.Generate(prompt, 200, options));
        var counts = new int[Vocabulary];
        int repeats = 0;
        for (int b = 0; b < 2; b++)
            for (int i = 0; i < 200; i++)
            {
                counts[tokens[b, i]]++;
                if (i > 0 && tokens[b, i] == tokens[b, i - 1]) repeats++;
            }
        double expected = 400.0 / Vocabulary, sd = Math.Sqrt(400 * (1.0 / Vocabulary) * (1 - 1.0 / Vocabulary));
        Assert.IsTrue(counts.All(c => Math.Abs(c - expected) < 5 * sd), $"token counts {string.Join(" ", counts)} (uniform: {expected:F1} each)");
        Assert.IsTrue(repeats < 398.0 / Vocabulary * 2.5, $"{repeats} of 398 steps repeat the previous token (uniform: {398.0 / Vocabulary:F1})");
        var shorter = Tokens(model.Generate(prompt, 100, options));
        for (int b = 0; b < 2; b++)
            for (int i = 0; i < 100; i++)
                Assert.AreEqual(tokens[b, i], shorter[b, i], $"row {b}, step {i}: a shorter generation is not the start of the longer one");
    }

    /// <summary>Greedy decoding with CTRL's penalty: each choice is the argmax of the teacher-forced logits after dividing
    /// (positive) or multiplying (negative) those of every token already in the prompt or output, computed here.</summary>
    [TestMethod]
    public void RepetitionPenalty_ScalesTheLogitsOfSeenTokens()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var model = Model(5);
        var prompt = Prompt(3, 4, 5);
        const double penalty = 4;
        var generated = model.Generate(prompt, 10, new GenerationOptions { RepetitionPenalty = penalty });
        Assert.IsFalse(generated.data<long>().SequenceEqual(model.Generate(prompt, 10).data<long>()), "the penalty changed nothing here");
        var logits = ChoosingLogits(model, prompt, generated);
        var tokens = Tokens(generated);
        var promptTokens = Tokens(prompt);
        for (int b = 0; b < 3; b++)
        {
            var seen = Enumerable.Range(0, 4).Select(j => promptTokens[b, j]).ToHashSet();
            for (int i = 0; i < 10; i++)
            {
                var penalised = Enumerable.Range(0, Vocabulary).Select(v =>
                    !seen.Contains(v) ? logits[b, i, v] : logits[b, i, v] < 0 ? logits[b, i, v] * penalty : logits[b, i, v] / penalty).ToArray();
                int best = Array.IndexOf(penalised, penalised.Max());
                Assert.AreEqual(best, tokens[b, i], $"row {b}, step {i}");
                seen.Add(tokens[b, i]);
            }
        }
    }

    /// <summary>With an end-of-sequence token, a row that emits it repeats it from then on, the others go on as without
    /// it, and generation stops once every row has emitted it. (Greedy with a repetition penalty, on a model with nearly
    /// uniform logits: plain greedy decoding of a small random model repeats one token, which would hide a row that failed
    /// to stop.)</summary>
    [TestMethod]
    public void EndOfSequence_FinishesRows_AndStopsWhenAllAreFinished()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var model = Model(6, embeddingScale: 1);
        var prompt = Prompt(3, 4, 6);
        var options = new GenerationOptions { RepetitionPenalty = 4 };
        var free = Tokens(model.Generate(prompt, 12, options));
        // The end-of-sequence token: one that row 0 emits for the first time after step 0, and then not at every step.
        int stop = Enumerable.Range(1, 10).First(i => Enumerable.Range(0, i).All(j => free[0, j] != free[0, i]));
        long eos = free[0, stop];
        var firstEos = Enumerable.Range(0, 3).Select(b => Enumerable.Range(0, 12).Where(i => free[b, i] == eos).DefaultIfEmpty(-1).First()).ToArray();
        Assert.IsTrue(Enumerable.Range(stop + 1, 11 - stop).Any(i => free[0, i] != eos), "the test needs row 0 to go on with other tokens");

        var generated = model.Generate(prompt, 12, options with { EndOfSequenceTokenId = eos });
        long columns = firstEos.Contains(-1) ? 12 : firstEos.Max() + 1;
        Assert.AreEqual(columns, generated.shape[1], $"first end-of-sequence steps {string.Join(", ", firstEos)}");
        var tokens = Tokens(generated);
        for (int b = 0; b < 3; b++)
            for (int i = 0; i < columns; i++)
                Assert.AreEqual(firstEos[b] >= 0 && i > firstEos[b] ? eos : free[b, i], tokens[b, i], $"row {b}, step {i}");

        var single = model.Generate(prompt.narrow(0, 0, 1), 12, options with { EndOfSequenceTokenId = eos });
        CollectionAssert.AreEqual(new[] { 1L, stop + 1L }, single.shape, "one row stops right after its end-of-sequence token");
    }

    /// <summary>The language model's Forward with a state: a prompt read in two chunks gives the one-pass logits, the state
    /// after it continues with Step as after the whole prompt, and lastTokens keeps the last positions' logits only.</summary>
    [TestMethod]
    public void ForwardWithState_ReadsAPromptInChunks_AndContinuesWithStep()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var model = Model(8, embeddingScale: 1);
        var tokens = Prompt(3, 12, 8);
        var whole = model.Forward(tokens);
        var (first, afterFirst) = model.Forward(tokens.narrow(1, 0, 7), state: null, returnState: true);
        var (second, afterSecond) = model.Forward(tokens.narrow(1, 7, 5), afterFirst, returnState: true);
        TensorAssert.MaxRelative(cat(new[] { first, second }, 1), whole, 1e-5, "two chunks against one pass");

        var next = tensor(new long[] { 2, 5, 11 });
        var (stepLogits, _) = model.Step(next, afterSecond!, DecodeBackend.Reference);
        var expected = model.Forward(cat(new[] { tokens, next.unsqueeze(1) }, 1)).select(1, 12);
        TensorAssert.MaxRelative(stepLogits, expected, 1e-5, "Step after the chunked prompt");

        var (last, noState) = model.Forward(tokens, state: null, lastTokens: 2);
        Assert.IsNull(noState);
        CollectionAssert.AreEqual(new[] { 3L, 2L, (long)Vocabulary }, last.shape);
        TensorAssert.MaxRelative(last, whole.narrow(1, 10, 2), 1e-6, "lastTokens");
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => model.Forward(tokens, null, lastTokens: -1));
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => model.Forward(tokens, null, tensor(new long[] { 12, 5, 9 }), lastTokens: 1)).Message,
            "with lengths, pass lastTokens = 0");
    }

    [TestMethod]
    public void OptionsOutOfRange_AreNamed()
    {
        using var scope = NewDisposeScope();
        using var model = Model(7);
        var prompt = Prompt(1, 2, 7);
        foreach (var (options, name) in new (GenerationOptions, string)[]
                 {
                     (new() { Temperature = 0 }, "Temperature"), (new() { Temperature = double.NaN }, "Temperature"),
                     (new() { TopK = -1 }, "TopK"), (new() { TopP = 1.5 }, "TopP"), (new() { TopP = -0.1 }, "TopP"),
                     (new() { RepetitionPenalty = 0 }, "RepetitionPenalty"), (new() { EndOfSequenceTokenId = Vocabulary }, "EndOfSequenceTokenId"),
                 })
        {
            var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => model.Generate(prompt, 3, options));
            Assert.AreEqual(name, e.ParamName);
            StringAssert.Contains(e.Message, "GenerationOptions." + name);
        }
        Assert.ThrowsExactly<ArgumentNullException>(() => model.Generate(prompt, 3, (GenerationOptions)null!));
        // A token id outside the vocabulary is named before the repetition penalty marks the prompt's tokens as seen.
        var bad = tensor(new long[] { 3, Vocabulary }).view(1, 2);
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => model.Generate(bad, 3, new GenerationOptions { RepetitionPenalty = 2 })).Message,
            $"outside [0, {Vocabulary})");
    }
}
