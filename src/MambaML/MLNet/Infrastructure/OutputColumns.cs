using Microsoft.ML;
using Microsoft.ML.Data;

namespace MambaML.MLNet;

/// <summary>One added column: name, type, annotations, and how to fill its value from a row's raw output.</summary>
internal abstract class OutputColumn
{
    /// <summary>Column name.</summary>
    public string Name { get; }
    /// <summary>Column type.</summary>
    public DataViewType Type { get; }

    /// <param name="name">Column name.</param>
    /// <param name="type">Column type.</param>
    protected OutputColumn(string name, DataViewType type)
    {
        Name = name;
        Type = type;
    }

    /// <summary>Adds annotations (e.g. key values, slot names) to the column.</summary>
    public virtual void Annotate(DataViewSchema.Annotations.Builder builder) { }

    /// <summary>Declares the column, with its annotations, in <paramref name="builder"/>.</summary>
    public void AddTo(DataViewSchema.Builder builder)
    {
        var annotations = new DataViewSchema.Annotations.Builder();
        Annotate(annotations);
        builder.AddColumn(Name, Type, annotations.ToAnnotations());
    }

    /// <summary>A getter that fills the value from the current row's raw output.</summary>
    public abstract Delegate MakeGetter(Func<float[]> output);
}

/// <summary>An output column of raw type <typeparamref name="T"/>.</summary>
internal sealed class OutputColumn<T> : OutputColumn
{
    /// <summary>Fills a value from a raw output.</summary>
    public delegate void Filler(float[] output, ref T value);

    private readonly Filler _fill;
    private readonly Action<DataViewSchema.Annotations.Builder>? _annotate;

    /// <param name="name">Column name.</param>
    /// <param name="type">Column type (its raw type must be <typeparamref name="T"/>).</param>
    /// <param name="fill">Fills the value from a row's raw output.</param>
    /// <param name="annotate">Optional annotations.</param>
    public OutputColumn(string name, DataViewType type, Filler fill, Action<DataViewSchema.Annotations.Builder>? annotate = null)
        : base(name, type)
    {
        _fill = fill;
        _annotate = annotate;
    }

    /// <inheritdoc/>
    public override void Annotate(DataViewSchema.Annotations.Builder builder) => _annotate?.Invoke(builder);

    /// <inheritdoc/>
    public override Delegate MakeGetter(Func<float[]> output) => (ValueGetter<T>)((ref T value) => _fill(output(), ref value));
}
