using Microsoft.ML;

namespace MambaML.MLNet;

/// <summary>
/// Reads <see cref="MambaTrainerOptions.ValidationSet"/>: its column and value errors say that they are the validation set's
/// (the training data may well have that column), with the original error inside.
/// </summary>
internal static class ValidationSetReader
{
    /// <summary>The validation set with its reader (made by <paramref name="create"/> from its schema), or null without one.</summary>
    public static (IDataView Data, ExampleReader Reader)? Create(IDataView? validationSet, Func<DataViewSchema, ExampleReader> create)
    {
        if (validationSet is null) return null;
        try
        {
            return (validationSet, create(validationSet.Schema));
        }
        catch (Exception e) when (IsDataError(e))
        {
            throw Named(e);
        }
    }

    /// <summary><paramref name="examples"/> read from the validation set, its data errors named as the validation set's.</summary>
    public static IEnumerable<SequenceExample> Read(IEnumerable<SequenceExample> examples)
    {
        using var enumerator = examples.GetEnumerator();
        while (true)
        {
            bool more;
            try
            {
                more = enumerator.MoveNext();
            }
            catch (Exception e) when (IsDataError(e))
            {
                throw Named(e);
            }
            if (!more) yield break;
            yield return enumerator.Current;
        }
    }

    private static bool IsDataError(Exception e) => e is ArgumentException or InvalidOperationException or FormatException;

    private static Exception Named(Exception e) => e is ArgumentException
        ? new ArgumentException($"ValidationSet: {e.Message}", nameof(MambaTrainerOptions.ValidationSet), e)
        : new InvalidOperationException($"ValidationSet: {e.Message}", e);
}
