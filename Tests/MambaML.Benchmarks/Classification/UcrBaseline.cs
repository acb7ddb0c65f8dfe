using MambaML.Data;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace MambaML.Benchmarks.Classification;

/// <summary>One UCR/UEA case as ML.NET rows: the raw series as a fixed-length feature vector and its label.</summary>
internal sealed class SeriesRow
{
    public float[] Features { get; set; } = Array.Empty<float>();
    public string Label { get; set; } = "";
}

/// <summary>The ML.NET baseline on raw series: LightGBM multiclass on the flattened values (MapValueToKey → LightGbm → MapKeyToValue).</summary>
internal static class UcrBaseline
{
    /// <summary>Trains on <paramref name="train"/> and returns the test accuracy.</summary>
    public static double LightGbmAccuracy(TsFile train, TsFile test, int seed)
    {
        var ml = new MLContext(seed);
        int width = train.Series[0].Length;
        var schema = SchemaDefinition.Create(typeof(SeriesRow));
        schema[nameof(SeriesRow.Features)].ColumnType = new VectorDataViewType(NumberDataViewType.Single, width);
        IDataView Load(TsFile f) => ml.Data.LoadFromEnumerable(
            f.Series.Select((s, i) => new SeriesRow { Features = s, Label = f.Labels[i] }), schema);
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(ml.MulticlassClassification.Trainers.LightGbm(new Microsoft.ML.Trainers.LightGbm.LightGbmMulticlassTrainer.Options
            {
                Seed = seed, NumberOfIterations = 200, MinimumExampleCountPerLeaf = 2, Silent = true,
            }));
        var model = pipeline.Fit(Load(train));
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(Load(test)));
        return metrics.MicroAccuracy;
    }
}
