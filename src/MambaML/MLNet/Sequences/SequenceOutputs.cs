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
                b => AddNames(b, "KeyValues", arch.ClassNames!)),
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

    // A text-vector annotation: "SlotNames" on Score (class names per slot), "KeyValues" on PredictedLabel (for MapKeyToValue).
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
