using Microsoft.ML;
using Microsoft.ML.Data;

namespace MambaML.MLNet;

/// <summary>Schema-shape checks and output-column declarations for MambaML estimators (pipeline schema propagation).</summary>
internal static class EstimatorSchema
{
    /// <summary>The column <paramref name="name"/> of <paramref name="input"/>, or an error naming the option and the columns present.</summary>
    public static SchemaShape.Column Find(SchemaShape input, string name, string option)
    {
        ArgumentNullException.ThrowIfNull(input);
        foreach (var column in input)
            if (column.Name == name) return column;
        var present = string.Join(", ", input.Select(c => $"'{c.Name}'"));
        throw new ArgumentOutOfRangeException(option, name,
            $"Column '{name}' ({option}) was not found in the input schema. Columns present: {present}. Set {option} to the right column or rename it.");
    }

    /// <summary>Requires a (fixed or variable size) vector of Single.</summary>
    public static void RequireSingleVector(SchemaShape input, string name, string option)
    {
        var column = Find(input, name, option);
        if (column.Kind == SchemaShape.Column.VectorKind.Scalar || column.ItemType != NumberDataViewType.Single || column.IsKey)
            throw new ArgumentOutOfRangeException(option, name,
                $"Column '{name}' ({option}) is {Describe(column)}; MambaML needs a vector of Single (float[]). " +
                "Convert it with mlContext.Transforms.Conversion.ConvertType or build it with mlContext.Transforms.Concatenate.");
    }

    /// <summary>Requires a numeric scalar (not a key).</summary>
    public static void RequireNumericScalar(SchemaShape input, string name, string option)
    {
        var column = Find(input, name, option);
        if (column.Kind != SchemaShape.Column.VectorKind.Scalar || column.ItemType is not NumberDataViewType || column.IsKey)
            throw new ArgumentOutOfRangeException(option, name,
                $"Column '{name}' ({option}) is {Describe(column)}; it must be a numeric scalar (e.g. Int64 or Single) holding each row's time index.");
    }

    /// <summary><paramref name="input"/> with the columns that <paramref name="addColumns"/> declares added (replacing same-named ones).</summary>
    public static SchemaShape Append(SchemaShape input, Action<DataViewSchema.Builder> addColumns)
    {
        var builder = new DataViewSchema.Builder();
        addColumns(builder);
        var added = MLNetInternals.ToSchemaShape(builder.ToSchema());
        var names = new HashSet<string>(added.Select(c => c.Name));
        return new SchemaShape(input.Where(c => !names.Contains(c.Name)).Concat(added));
    }

    /// <summary>A readable type description (e.g. "a scalar of Double").</summary>
    public static string Describe(SchemaShape.Column column) =>
        $"{(column.Kind == SchemaShape.Column.VectorKind.Scalar ? "a scalar" : "a vector")} of {(column.IsKey ? "Key<" + column.ItemType + ">" : column.ItemType.ToString())}";
}
