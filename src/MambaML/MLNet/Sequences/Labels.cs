using Microsoft.ML;
using Microsoft.ML.Data;

namespace MambaML.MLNet;

/// <summary>The label readers of the sequence and text trainers, by task.</summary>
internal static class LabelReaders
{
    /// <summary>The reader of <paramref name="schema"/>'s label column <paramref name="name"/> (option <paramref name="option"/>):
    /// a key for multiclass, a Boolean for binary classification, a Single for regression. <paramref name="validationSet"/>: the
    /// schema is a ValidationSet's (its errors say so).</summary>
    public static TargetReader For(MambaSequenceTask task, DataViewSchema schema, string name, string option, bool validationSet = false) => task switch
    {
        MambaSequenceTask.MulticlassClassification => new KeyLabelReader(schema, name, option, validationSet),
        MambaSequenceTask.BinaryClassification => new BooleanLabelReader(schema, name, option),
        _ => new SingleLabelReader(schema, name, option),
    };

    /// <summary>As <see cref="For"/>, for a validation set whose keyed classes must be the training label's
    /// (<see cref="KeyLabelReader.WithClassesOf"/>).</summary>
    public static TargetReader ForValidation(MambaSequenceTask task, DataViewSchema schema, string name, string option, TargetReader training)
    {
        var reader = For(task, schema, name, option, validationSet: true);
        return reader is KeyLabelReader keys ? keys.WithClassesOf((KeyLabelReader)training) : reader;
    }
}

/// <summary>Multiclass label: a key column (as ML.NET's multiclass trainers); the example's target is the class index.</summary>
internal sealed class KeyLabelReader : TargetReader
{
    /// <summary>Number of classes: the key's count.</summary>
    public int ClassCount { get; }
    private readonly string _option;

    // A ValidationSet's raw label usually means it did not go through the pipeline's MapValueToKey: its error says how to map it.
    public KeyLabelReader(DataViewSchema schema, string name, string option, bool validationSet = false) : base(schema, name, option)
    {
        _option = option;
        if (Column.Type is not KeyDataViewType key || key.RawType != typeof(uint) || key.Count < 1 || key.Count > int.MaxValue)
            throw new ArgumentOutOfRangeException(option, name, Column.Type is KeyDataViewType
                ? $"Label column '{name}' ({option}) has type {Column.Type}; multiclass classification needs a key of UInt32, as " +
                  $"mlContext.Transforms.Conversion.MapValueToKey(\"{name}\") makes (a text loader's key column: load it as DataKind.UInt32)."
                : $"Label column '{name}' ({option}){(validationSet ? " of the ValidationSet" : "")} has type {Column.Type}; multiclass classification needs a key-typed label. " +
                  (validationSet
                      ? "The ValidationSet is read as given, not through the transforms before the trainer: map its labels with the mapping fitted " +
                        $"on the training data, e.g. var keys = mlContext.Transforms.Conversion.MapValueToKey(\"{name}\").Fit(trainingData); " +
                        "options.ValidationSet = keys.Transform(validationData); then fit keys.Append(trainer) on the training data."
                      : $"Add mlContext.Transforms.Conversion.MapValueToKey(\"{name}\") before the trainer (and MapKeyToValue(\"PredictedLabel\") after it)."));
        ClassCount = (int)key.Count;
    }

    public override Action<SequenceExample> Bind(DataViewRow row)
    {
        var get = row.GetGetter<uint>(Column);
        uint key = 0;
        return example =>
        {
            get(ref key);
            if (key == 0 || key > ClassCount)
                throw new InvalidOperationException($"Row {row.Position} of label column '{Column.Name}' has a missing or out-of-range key ({key}); remove rows without a label.");
            example.Target = new float[] { key - 1 };
        };
    }

    /// <summary>
    /// This reader, after checking that its label has the classes of <paramref name="training"/>'s, in the same order: keys
    /// mapped by a MapValueToKey fitted on other data would silently compare predictions with the wrong classes.
    /// </summary>
    public KeyLabelReader WithClassesOf(KeyLabelReader training)
    {
        string[] names = ClassNames(), expected = training.ClassNames();
        if (!names.SequenceEqual(expected))
            throw new ArgumentException(
                $"Label column '{Column.Name}' has the classes [{Describe(names)}], but the training data's label has [{Describe(expected)}]. " +
                "Fit MapValueToKey once, on the training data, and apply that same fitted transformer to both data sets.", _option);
        return this;
    }

    private static string Describe(string[] names) => string.Join(", ", names.Take(10)) + (names.Length > 10 ? $", … ({names.Length} in all)" : "");

    /// <summary>The raw type name of the label's key values when they are numbers or Booleans; null for text or none.</summary>
    public string? ClassNameType() =>
        Column.Annotations.Schema.GetColumnOrNull("KeyValues") is { Type: VectorDataViewType { ItemType: var itemType, Size: var size } } && size == ClassCount
            ? SequenceOutputs.KeyValueTypeName(itemType)
            : null;

    /// <summary>The label's key values as invariant-culture text (its KeyValues annotation), or the class numbers 1..K when it has none.</summary>
    public string[] ClassNames()
    {
        var kind = Column.Annotations.Schema.GetColumnOrNull("KeyValues");
        if (kind is { Type: VectorDataViewType { ItemType: var itemType } })
        {
            var read = typeof(KeyLabelReader).GetMethod(nameof(KeyValuesAsText), System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!
                .MakeGenericMethod(itemType.RawType);
            var names = (string[])read.Invoke(null, new object[] { Column })!;
            if (names.Length == ClassCount) return names;
        }
        return Enumerable.Range(1, ClassCount).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
    }

    private static string[] KeyValuesAsText<T>(DataViewSchema.Column column)
    {
        VBuffer<T> values = default;
        column.Annotations.GetValue("KeyValues", ref values);
        return values.DenseValues().Select(v => SequenceOutputs.ClassName(v)).ToArray();
    }
}

/// <summary>Binary label: a Boolean column (as ML.NET's binary classifiers); target 1 for true.</summary>
internal sealed class BooleanLabelReader : TargetReader
{
    public BooleanLabelReader(DataViewSchema schema, string name, string option) : base(schema, name, option)
    {
        if (Column.Type is not BooleanDataViewType)
            throw new ArgumentOutOfRangeException(option, name,
                $"Label column '{name}' ({option}) has type {Column.Type}; binary classification needs a Boolean label. " +
                "Convert it (e.g. mlContext.Transforms.Conversion.ConvertType or a CustomMapping), or use the multiclass trainer of the same name " +
                "(mlContext.MulticlassClassification.Trainers) with MapValueToKey.");
    }

    public override Action<SequenceExample> Bind(DataViewRow row)
    {
        var get = row.GetGetter<bool>(Column);
        bool value = false;
        return example =>
        {
            get(ref value);
            example.Target = new float[] { value ? 1 : 0 };
        };
    }
}

/// <summary>Regression label: a Single column; target is its value.</summary>
internal sealed class SingleLabelReader : TargetReader
{
    public SingleLabelReader(DataViewSchema schema, string name, string option) : base(schema, name, option)
    {
        if (Column.Type != NumberDataViewType.Single)
            throw new ArgumentOutOfRangeException(option, name,
                $"Label column '{name}' ({option}) has type {Column.Type}; regression needs a Single label. Convert it with mlContext.Transforms.Conversion.ConvertType.");
    }

    public override Action<SequenceExample> Bind(DataViewRow row)
    {
        var get = row.GetGetter<float>(Column);
        float value = 0;
        return example =>
        {
            get(ref value);
            if (!float.IsFinite(value))
                throw new InvalidOperationException($"Row {row.Position} of label column '{Column.Name}' is {value}; remove rows without a finite label.");
            example.Target = new float[] { value };
        };
    }
}

/// <summary>Label statistics from one streaming pass: distinct values (classification) and mean/standard deviation (regression).</summary>
internal sealed record LabelStatistics(long Rows, int DistinctValues, double Mean, double StandardDeviation)
{
    /// <summary>Reads only the label column of <paramref name="data"/>, honouring <paramref name="cancellation"/> as it goes.</summary>
    public static LabelStatistics Compute(IDataView data, TargetReader label, CancellationToken cancellation)
    {
        using var cursor = data.GetRowCursor(new[] { label.Column });
        var read = label.Bind(cursor);
        var example = new SequenceExample();
        var distinct = new HashSet<float>();
        long rows = 0;
        double mean = 0, m2 = 0;
        while (cursor.MoveNext())
        {
            if ((rows & 1023) == 0) cancellation.ThrowIfCancellationRequested();
            read(example);
            double y = example.Target[0];
            if (distinct.Count < 1024) distinct.Add((float)y);
            rows++;
            double delta = y - mean;   // Welford's running mean and variance
            mean += delta / rows;
            m2 += delta * (y - mean);
        }
        return new LabelStatistics(rows, distinct.Count, mean, rows > 1 ? Math.Sqrt(m2 / rows) : 0);
    }

    /// <summary>Throws unless there are rows and, for a classifier, at least two classes.</summary>
    public void CheckTrainable(string trainer, string labelColumn, bool classification)
    {
        if (Rows == 0)
            throw new ArgumentException($"{trainer}: the training data has no rows. Pass a non-empty IDataView to Fit.", "input");
        if (classification && DistinctValues < 2)
            throw new ArgumentException(
                $"{trainer}: every training row has the same label in column '{labelColumn}'; a classifier needs at least two classes. Check the data or the label column.",
                "input");
    }
}
