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
                b => AddNames(b, "SlotNames", arch.ClassNames!)),
            new OutputColumn<uint>(arch.PredictedLabelColumnName, new KeyDataViewType(typeof(uint), arch.Outputs),
                (float[] output, ref uint value) => value = (uint)ArgMax(output) + 1,
                b => AddKeyValues(b, arch.ClassNames!, arch.ClassNameType)),
        },
        // Raw output: the logit.
        MambaSequenceTask.BinaryClassification => new OutputColumn[]
        {
            new OutputColumn<float>(arch.ScoreColumnName, NumberDataViewType.Single, (float[] output, ref float value) => value = output[0]),
            new OutputColumn<float>(arch.ProbabilityColumnName, NumberDataViewType.Single,
                (float[] output, ref float value) => value = 1f / (1f + MathF.Exp(-output[0]))),
            new OutputColumn<bool>(arch.PredictedLabelColumnName, BooleanDataViewType.Instance, (float[] output, ref bool value) => value = output[0] > 0),
        },
        // Raw output: the value in label units.
        _ => new OutputColumn[]
        {
            new OutputColumn<float>(arch.ScoreColumnName, NumberDataViewType.Single, (float[] output, ref float value) => value = output[0]),
        },
    };

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

    // "KeyValues" on PredictedLabel (for MapKeyToValue), of the label's key-value type (ClassNameType; null = text).
    private static void AddKeyValues(DataViewSchema.Annotations.Builder builder, string[] names, string? typeName)
    {
        switch (typeName)
        {
            case null: AddNames(builder, "KeyValues", names); break;
            case nameof(Single): AddTyped<float>(builder, NumberDataViewType.Single, names); break;
            case nameof(Double): AddTyped<double>(builder, NumberDataViewType.Double, names); break;
            case nameof(SByte): AddTyped<sbyte>(builder, NumberDataViewType.SByte, names); break;
            case nameof(Byte): AddTyped<byte>(builder, NumberDataViewType.Byte, names); break;
            case nameof(Int16): AddTyped<short>(builder, NumberDataViewType.Int16, names); break;
            case nameof(UInt16): AddTyped<ushort>(builder, NumberDataViewType.UInt16, names); break;
            case nameof(Int32): AddTyped<int>(builder, NumberDataViewType.Int32, names); break;
            case nameof(UInt32): AddTyped<uint>(builder, NumberDataViewType.UInt32, names); break;
            case nameof(Int64): AddTyped<long>(builder, NumberDataViewType.Int64, names); break;
            case nameof(UInt64): AddTyped<ulong>(builder, NumberDataViewType.UInt64, names); break;
            case nameof(Boolean): AddTyped<bool>(builder, BooleanDataViewType.Instance, names); break;
            default: throw new InvalidDataException($"Unknown class name type '{typeName}' in the model description.");
        }
    }

    private static void AddTyped<T>(DataViewSchema.Annotations.Builder builder, PrimitiveDataViewType itemType, string[] names) where T : IParsable<T>
    {
        ValueGetter<VBuffer<T>> getter = (ref VBuffer<T> value) =>
        {
            var editor = VBufferEditor.Create(ref value, names.Length);
            for (int i = 0; i < names.Length; i++) editor.Values[i] = T.Parse(names[i], CultureInfo.InvariantCulture);
            value = editor.Commit();
        };
        builder.Add("KeyValues", new VectorDataViewType(itemType, names.Length), getter);
    }

    // A text-vector annotation: "SlotNames" on Score (class names per slot), or "KeyValues" on PredictedLabel for text labels.
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
