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
        var schema = SchemaDefinition.Create(typeof(SeriesRow));
        schema[nameof(SeriesRow.Features)].ColumnType = new VectorDataViewType(NumberDataViewType.Single, cases[0].Values.Length);
        return ml.Data.LoadFromEnumerable(cases.Select(c => new SeriesRow { Features = c.Values, Label = c.Label }), schema);
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

    /// <summary>Mamba sequence classifier (MulticlassClassification.Trainers.MambaSequence).</summary>
    public static double Mamba(IReadOnlyList<TsSeries> train, IReadOnlyList<TsSeries> test, int seed, MambaSequenceClassificationOptions options)
    {
        var ml = new MLContext(seed);
        options.Channels = train[0].Channels;
        options.Seed = seed;
        return Accuracy(ml, ml.MulticlassClassification.Trainers.MambaSequence(options), train, test);
    }
}
