using MambaML.MLNet;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Trainers.LightGbm;

namespace MambaML.Benchmarks.Classification;

/// <summary>One UCR/UEA case as an ML.NET row: the series, time-major, and its class label.</summary>
internal sealed class SeriesRow
{
    public float[] Features { get; set; } = Array.Empty<float>();
    public string Label { get; set; } = "";
}

/// <summary>The classifiers compared on UCR/UEA data, each trained and scored through ML.NET: returns test accuracy.</summary>
internal static class UcrModels
{
    private static IDataView Load(MLContext ml, IReadOnlyList<TsSeries> cases)
    {
        return ml.Data.LoadFromEnumerable(cases.Select(c => new SeriesRow { Features = c.Values, Label = c.Label }), FixedLength(cases[0].Values.Length));
    }

    private static double Accuracy(MLContext ml, IEstimator<ITransformer> trainer, IReadOnlyList<TsSeries> train, IReadOnlyList<TsSeries> test)
    {
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label").Append(trainer);
        var model = pipeline.Fit(Load(ml, train));
        try { return ml.MulticlassClassification.Evaluate(model.Transform(Load(ml, test))).MicroAccuracy; }
        finally { (model as IDisposable)?.Dispose(); }
    }

    /// <summary>The trivial baseline: always predicts the most frequent training label (ties: the first in label order).</summary>
    public static double MajorityClass(IReadOnlyList<TsSeries> train, IReadOnlyList<TsSeries> test)
    {
        var majority = train.GroupBy(c => c.Label).OrderByDescending(g => g.Count()).ThenBy(g => g.Key, StringComparer.Ordinal).First().Key;
        return test.Count(c => c.Label == majority) / (double)test.Count;
    }

    /// <summary>The ML.NET baseline on raw series: LightGBM multiclass on the flattened values.</summary>
    public static double LightGbm(IReadOnlyList<TsSeries> train, IReadOnlyList<TsSeries> test, int seed)
    {
        var ml = new MLContext(seed);
        return Accuracy(ml, ml.MulticlassClassification.Trainers.LightGbm(new LightGbmMulticlassTrainer.Options
        {
            Seed = seed, NumberOfIterations = 200, MinimumExampleCountPerLeaf = 2, Silent = true,
        }), train, test);
    }

    /// <summary>
    /// MiniRocket in this harness: MambaML's port of its features (<see cref="ConvolutionFeatures"/>, 9,996 features, biases
    /// drawn by the seed, series z-normalised as the Mamba model reads them) and ML.NET's L2-regularised multinomial logistic
    /// regression (L-BFGS) in place of MiniRocket's cross-validated ridge classifier.
    /// </summary>
    public static double MiniRocketFeatures(IReadOnlyList<TsSeries> train, IReadOnlyList<TsSeries> test, int seed)
    {
        using var scope = TorchSharp.torch.NewDisposeScope();
        var ml = new MLContext(seed);
        var features = new ConvolutionFeatures(9996, train.Max(c => c.Values.Length / c.Channels), train[0].Channels);
        TorchSharp.torch.Tensor Normalized(TsSeries c)
        {
            long steps = c.Values.Length / c.Channels;
            return SequenceNetwork.Normalize(TorchSharp.torch.tensor(c.Values, new long[] { 1, steps, c.Channels }), TorchSharp.torch.tensor(new[] { steps }))[0];
        }
        features.Fit(train.Select(Normalized).ToList(), new TorchSharp.torch.Generator((ulong)seed));
        IDataView Rows(IReadOnlyList<TsSeries> cases) => ml.Data.LoadFromEnumerable(cases.Select(c =>
        {
            var x = Normalized(c);
            return new SeriesRow { Features = features.Forward(x.unsqueeze(0), TorchSharp.torch.tensor(new[] { x.shape[0] })).data<float>().ToArray(), Label = c.Label };
        }).ToList(), FixedLength(features.Count));
        var model = ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.MulticlassClassification.Trainers.LbfgsMaximumEntropy()).Fit(Rows(train));
        return ml.MulticlassClassification.Evaluate(model.Transform(Rows(test))).MicroAccuracy;
    }

    private static SchemaDefinition FixedLength(int size)
    {
        var schema = SchemaDefinition.Create(typeof(SeriesRow));
        schema[nameof(SeriesRow.Features)].ColumnType = new VectorDataViewType(NumberDataViewType.Single, size);
        return schema;
    }

    /// <summary>Mamba sequence classifier (MulticlassClassification.Trainers.MambaSequence).</summary>
    public static double Mamba(IReadOnlyList<TsSeries> train, IReadOnlyList<TsSeries> test, int seed, MambaSequenceClassificationOptions options, bool gpu = false)
    {
        var ml = new MLContext(seed) { GpuDeviceId = gpu ? 0 : null };
        options.Channels = train[0].Channels;
        options.Seed = seed;
        return Accuracy(ml, ml.MulticlassClassification.Trainers.MambaSequence(options), train, test);
    }
}
