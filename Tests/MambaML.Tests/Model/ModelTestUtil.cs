using MambaML.Model;
using MambaML.Scan;
using static TorchSharp.torch;

namespace MambaML.Tests.Model;

internal static class ModelTestUtil
{
    /// <summary>The backends every model-level test runs with: the reference and whatever Auto picks on this device.</summary>
    public static IEnumerable<object[]> Backends =>
        new[] { new object[] { SelectiveScanBackend.Reference }, new object[] { SelectiveScanBackend.Auto } };

    /// <summary>A small random configuration (odd widths, any dt rank) for property tests.</summary>
    public static MambaConfig RandomConfig(Random rng, SelectiveScanBackend backend) => new()
    {
        DModel = rng.Next(3, 24), NLayer = rng.Next(1, 4), DState = new[] { 1, 4, 16 }[rng.Next(3)],
        DConv = rng.Next(1, 5), Expand = rng.Next(1, 3), ConvBias = rng.Next(2) == 0, Bias = rng.Next(2) == 0,
        ScanBackend = backend,
    };

    /// <summary>One training pass without state, one through a carried state, and one inference with state: the leak tests' loop body.</summary>
    public static void TrainAndInferOnce(MambaBackbone model, Tensor x)
    {
        using var scope = NewDisposeScope();
        model.Forward(x).Output.sum().backward();
        var (y, s) = model.Forward(x, returnState: true);
        (y.sum() + model.Step(x[.., 0], s!).Output.sum()).backward();
        using (no_grad()) model.Step(x[.., 1], model.Forward(x, returnState: true).State!);
    }

    /// <summary>Same shape and bit-identical values.</summary>
    public static bool Identical(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    public static double MaxAbsDiff(Tensor a, Tensor b) => (a - b).abs().max().item<float>();
}
