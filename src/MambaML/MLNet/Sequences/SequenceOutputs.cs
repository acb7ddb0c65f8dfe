using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace MambaML.MLNet;

/// <summary>The output columns of each sequence task, following ML.NET's scoring conventions so its evaluators work unchanged.</summary>
internal static class SequenceOutputs
{
    /// <summary>Output columns for <paramref name="arch"/>; a row's raw output is what <see cref="MambaSequenceTransformer"/> predicts.</summary>
    public static OutputColumn[] Create(SequenceArchitecture arch) => arch.Task switch
    {
        // Raw output: one probability per class.
        MambaSequenceTask.MulticlassClassification => new OutputColumn[]
        {
            new OutputColumn<VBuffer<float>>(arch.ScoreColumnName, new VectorDataViewType(NumberDataViewType.Single, arch.Outputs),
                (float[] output, ref VBuffer<float> value) =>
                {
                    var editor = VBufferEditor.Create(ref value, output.Length);
                    output.CopyTo(editor.Values);
                    value = editor.Commit();
                },
                b =>
                {
                    AddNames(b, "SlotNames", arch.ClassNames!);
                    AddScoring(b, Multiclass, "Score");
                    AddKeyValues(b, "TrainingLabelValues", arch.ClassNames!, arch.ClassNameType);
                }),
            new OutputColumn<uint>(arch.PredictedLabelColumnName, new KeyDataViewType(typeof(uint), arch.Outputs),
                (float[] output, ref uint value) => value = (uint)ArgMax(output) + 1,
                b =>
                {
                    AddKeyValues(b, "KeyValues", arch.ClassNames!, arch.ClassNameType);
                    AddScoring(b, Multiclass, "PredictedLabel");
                }),
        },
        // Raw output: the logit.
        MambaSequenceTask.BinaryClassification => new OutputColumn[]
        {
            new OutputColumn<float>(arch.ScoreColumnName, NumberDataViewType.Single, (float[] output, ref float value) => value = output[0],
                b => AddScoring(b, Binary, "Score")),
            new OutputColumn<float>(arch.ProbabilityColumnName, NumberDataViewType.Single,
                (float[] output, ref float value) => value = 1f / (1f + MathF.Exp(-output[0])),
                b =>
                {
                    AddScoring(b, Binary, "Probability");
                    b.Add("IsNormalized", BooleanDataViewType.Instance, (ref bool value) => value = true);
                }),
            new OutputColumn<bool>(arch.PredictedLabelColumnName, BooleanDataViewType.Instance, (float[] output, ref bool value) => value = output[0] > 0,
                b => AddScoring(b, Binary, "PredictedLabel")),
        },
        // Raw output: the value in label units.
        _ => new OutputColumn[]
        {
            new OutputColumn<float>(arch.ScoreColumnName, NumberDataViewType.Single, (float[] output, ref float value) => value = output[0],
                b => AddScoring(b, "Regression", "Score")),
        },
    };

    private const string Multiclass = "MulticlassClassification", Binary = "BinaryClassification";

    // ML.NET's scoring annotations, as its own trainers' scorers set them: the task (ScoreColumnKind), what the column holds
    // (ScoreValueKind: Score, Probability or PredictedLabel) and which scorer's set of columns it belongs to (ScoreColumnSetId;
    // a model adds one set, so always the first id).
    private static void AddScoring(DataViewSchema.Annotations.Builder builder, string task, string valueKind)
    {
        builder.Add("ScoreColumnKind", TextDataViewType.Instance, (ref ReadOnlyMemory<char> value) => value = task.AsMemory());
        builder.Add("ScoreValueKind", TextDataViewType.Instance, (ref ReadOnlyMemory<char> value) => value = valueKind.AsMemory());
        builder.Add("ScoreColumnSetId", new KeyDataViewType(typeof(uint), int.MaxValue), (ref uint value) => value = 1);
    }

    private static int ArgMax(float[] values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }

    /// <summary>
    /// The raw type name (e.g. "Single") of a label's key values that are numbers or Booleans, so that the predicted label's
    /// KeyValues keep that type and MapKeyToValue gives the label's own type back; null for text (or anything else).
    /// </summary>
    public static string? KeyValueTypeName(DataViewType? itemType) =>
        itemType is NumberDataViewType or BooleanDataViewType ? itemType.RawType.Name : null;

    /// <summary>The key-value type name (<see cref="KeyValueTypeName(DataViewType?)"/>) of a key label in a schema shape.</summary>
    public static string? KeyValueTypeName(SchemaShape.Column label) =>
        label.IsKey ? KeyValueTypeName(label.Annotations.Where(c => c.Name == "KeyValues").Select(c => c.ItemType).FirstOrDefault()) : null;

    /// <summary>A class name as stored: invariant culture, so that models read the same everywhere.</summary>
    public static string ClassName(object? value) =>
        value is IFormattable formattable ? formattable.ToString(null, CultureInfo.InvariantCulture) : value?.ToString() ?? "";

    // The class names in the label's key-value type (ClassNameType; null = text): "KeyValues" on PredictedLabel (for
    // MapKeyToValue) and "TrainingLabelValues" on Score.
    private static void AddKeyValues(DataViewSchema.Annotations.Builder builder, string kind, string[] names, string? typeName)
    {
        switch (typeName)
        {
            case null: AddNames(builder, kind, names); break;
            case nameof(Single): AddTyped<float>(builder, kind, NumberDataViewType.Single, names); break;
            case nameof(Double): AddTyped<double>(builder, kind, NumberDataViewType.Double, names); break;
            case nameof(SByte): AddTyped<sbyte>(builder, kind, NumberDataViewType.SByte, names); break;
            case nameof(Byte): AddTyped<byte>(builder, kind, NumberDataViewType.Byte, names); break;
            case nameof(Int16): AddTyped<short>(builder, kind, NumberDataViewType.Int16, names); break;
            case nameof(UInt16): AddTyped<ushort>(builder, kind, NumberDataViewType.UInt16, names); break;
            case nameof(Int32): AddTyped<int>(builder, kind, NumberDataViewType.Int32, names); break;
            case nameof(UInt32): AddTyped<uint>(builder, kind, NumberDataViewType.UInt32, names); break;
            case nameof(Int64): AddTyped<long>(builder, kind, NumberDataViewType.Int64, names); break;
            case nameof(UInt64): AddTyped<ulong>(builder, kind, NumberDataViewType.UInt64, names); break;
            case nameof(Boolean): AddTyped<bool>(builder, kind, BooleanDataViewType.Instance, names); break;
            default: throw new InvalidDataException($"Unknown class name type '{typeName}' in the model description.");
        }
    }

    private static void AddTyped<T>(DataViewSchema.Annotations.Builder builder, string kind, PrimitiveDataViewType itemType, string[] names) where T : IParsable<T>
    {
        ValueGetter<VBuffer<T>> getter = (ref VBuffer<T> value) =>
        {
            var editor = VBufferEditor.Create(ref value, names.Length);
            for (int i = 0; i < names.Length; i++) editor.Values[i] = T.Parse(names[i], CultureInfo.InvariantCulture);
            value = editor.Commit();
        };
        builder.Add(kind, new VectorDataViewType(itemType, names.Length), getter);
    }

    // A text-vector annotation: "SlotNames" on Score (class names per slot), or text class names (see AddKeyValues).
    private static void AddNames(DataViewSchema.Annotations.Builder builder, string kind, string[] names)
    {
        ValueGetter<VBuffer<ReadOnlyMemory<char>>> getter = (ref VBuffer<ReadOnlyMemory<char>> value) =>
        {
            var editor = VBufferEditor.Create(ref value, names.Length);
            for (int i = 0; i < names.Length; i++) editor.Values[i] = names[i].AsMemory();
            value = editor.Commit();
        };
        builder.Add(kind, new VectorDataViewType(TextDataViewType.Instance, names.Length), getter);
    }
}
