using static TorchSharp.torch;

namespace MambaML.Model;

/// <summary>
/// Checks of what callers pass to the model's public Forward and Step methods, so that a wrong shape gets an error naming the
/// argument and the shape needed instead of libtorch's message from deep inside a layer.
/// </summary>
internal static class ModelInputs
{
    /// <summary>Throws unless <paramref name="hidden"/> is (batch ≥ 1, L ≥ 1, d_model) of the parameters' floating type
    /// <paramref name="modelType"/>, and <paramref name="lengths"/>, if given, fits it (<see cref="RequireLengths"/>).</summary>
    public static void RequireSequence(MambaConfig config, ScalarType modelType, Tensor hidden, Tensor? lengths)
    {
        if (hidden.dim() != 3 || hidden.shape[0] < 1 || hidden.shape[1] < 1 || hidden.shape[2] != config.DModel)
            throw new ArgumentException(
                $"hidden must be (batch, L, d_model = {config.DModel}) with at least one sequence of at least one step; got ({Shape(hidden)}).",
                nameof(hidden));
        RequireType(hidden, modelType);
        if (lengths is not null) RequireLengths(lengths, hidden.shape[0], hidden.shape[1]);
    }

    /// <summary>Throws unless <paramref name="hidden"/> is (batch ≥ 1, d_model) of the parameters' floating type
    /// <paramref name="modelType"/>: one step's input.</summary>
    public static void RequireStep(MambaConfig config, ScalarType modelType, Tensor hidden)
    {
        if (hidden.dim() != 2 || hidden.shape[0] < 1 || hidden.shape[1] != config.DModel)
            throw new ArgumentException($"hidden must be (batch, d_model = {config.DModel}) with at least one sequence; got ({Shape(hidden)}).", nameof(hidden));
        RequireType(hidden, modelType);
    }

    /// <summary>Throws unless <paramref name="lengths"/> is an int64 (batch) vector of values in [0, steps]. Reading the
    /// values waits for the device, so the backbone checks once per forward pass rather than once per layer.</summary>
    public static void RequireLengths(Tensor lengths, long batch, long steps)
    {
        if (lengths.dtype != ScalarType.Int64 || lengths.dim() != 1 || lengths.shape[0] != batch)
            throw new ArgumentException($"lengths must be an int64 vector of one length per sequence ({batch}); got {lengths.dtype} of shape ({Shape(lengths)}).", nameof(lengths));
        if (batch > 0 && (lengths.min().item<long>() < 0 || lengths.max().item<long>() > steps))
            throw new ArgumentException($"lengths must lie in [0, {steps}] (the padded length); got [{string.Join(", ", lengths.cpu().data<long>().ToArray().Take(10))}].", nameof(lengths));
    }

    // Another floating type would reach a matrix product with the weights and fail there (float64 into float32), or be
    // promoted by some layers and not others (bfloat16 into float32).
    private static void RequireType(Tensor hidden, ScalarType modelType)
    {
        if (!hidden.is_floating_point())
            throw new ArgumentException($"hidden must be a floating-point tensor (the embedded inputs); got {hidden.dtype}.", nameof(hidden));
        if (hidden.dtype != modelType)
            throw new ArgumentException(
                $"hidden is {hidden.dtype} but the model's parameters are {modelType}: convert the input (hidden.to(ScalarType.{modelType})) or the model (model.to(ScalarType.{hidden.dtype})).",
                nameof(hidden));
    }

    private static string Shape(Tensor t) => string.Join(", ", t.shape);
}
