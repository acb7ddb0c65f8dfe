using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.Tests;

/// <summary>Tensor comparisons shared by the GPU parity tests.</summary>
internal static class TensorAssert
{
    /// <summary>max |actual − expected| ≤ tolerance · max |expected|, all finite, same shape (dtypes may differ).</summary>
    public static void MaxRelative(Tensor actual, Tensor expected, double tolerance, string what)
    {
        CollectionAssert.AreEqual(expected.shape, actual.shape, $"{what}: shape");
        var a = actual.to(ScalarType.Float64).cpu();
        var e = expected.to(ScalarType.Float64).cpu();
        bool finite = a.isfinite().all().item<bool>();
        double diff = (a - e).abs().max().item<double>(), scale = e.abs().max().item<double>();
        Assert.IsTrue(finite && diff <= tolerance * scale + 1e-30,
            $"{what}: {(finite ? "" : "non-finite values; ")}max |diff| = {diff:G4}, max |expected| = {scale:G4}, relative {diff / scale:G3} > {tolerance}");
    }
}
