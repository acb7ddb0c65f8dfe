using MambaML.Scan;
using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.Tests.Scan;

[TestClass]
public class ReferenceScanTests
{
    /// <summary>
    /// Central finite differences in float64 against autograd, for every element of every input, on small random cases
    /// that together cover every optional input, fixed and variable B/C, and softplus on and off.
    /// </summary>
    [TestMethod]
    public void GradientsMatchFiniteDifferences()
    {
        var rng = new Random(3);
        var cases = new[]
        {
            Case(rng, variable: true, all: true, softplus: true),
            Case(rng, variable: false, all: true, softplus: false),
            Case(rng, variable: true, all: false, softplus: false),
        };
        foreach (var c in cases)
        {
            using var scope = NewDisposeScope();
            var (_, _, grads) = ScanParity.RunWithGrads(ReferenceSelectiveScan.Instance, c, seed: 17);
            Assert.AreEqual(c.HasD ? 9 : 5, grads.Count, "every present input has a gradient");
            foreach (var (name, analytic) in grads)
            {
                var numeric = NumericGradient(c, name, seed: 17);
                // Central differences with ε = 1e-6 carry ~1e-16·|loss|/ε ≈ 1e-7 of rounding error at these magnitudes.
                ScanParity.AssertClose(analytic, numeric, rtol: 1e-6, atol: 1e-6, $"d{name} vs finite differences {c}");
            }
        }
    }

    private static ScanCase Case(Random rng, bool variable, bool all, bool softplus) => new()
    {
        Batch = 2, Channels = 3, StateSize = 4, Length = 5, DType = ScalarType.Float64,
        VariableB = variable, VariableC = variable, HasD = all, HasZ = all, HasDeltaBias = all, HasInitialState = all, Softplus = softplus,
    };

    // The same scalar loss RunWithGrads differentiates, perturbing one element of one input at a time.
    private static Tensor NumericGradient(ScanCase c, string name, long seed)
    {
        const double eps = 1e-6;
        using var noGrad = no_grad();
        var input = c.MakeInput(seed);
        var target = Pick(input, name);
        var flat = target.detach().view(-1);
        var result = zeros_like(flat);
        for (long i = 0; i < flat.shape[0]; i++)
        {
            double original = flat[i].item<double>();
            flat[i] = original + eps;
            double plus = Loss(input, seed);
            flat[i] = original - eps;
            double minus = Loss(input, seed);
            flat[i] = original;
            result[i] = (plus - minus) / (2 * eps);
        }
        return result.view(target.shape);
    }

    private static double Loss(SelectiveScanInput input, long seed)
    {
        using var scope = NewDisposeScope();
        var (y, last) = ReferenceSelectiveScan.Instance.Run(input);
        var g = new Generator((ulong)(seed + 7919));
        var loss = (y * randn(y.shape, generator: g).to(y.dtype)).sum();
        loss = loss + (last! * randn(last!.shape, generator: g).to(last.dtype)).sum();
        return loss.item<double>();
    }

    private static Tensor Pick(SelectiveScanInput input, string name) => name switch
    {
        "u" => input.U, "delta" => input.Delta, "A" => input.A, "B" => input.B, "C" => input.C, "D" => input.D!,
        "z" => input.Z!, "delta_bias" => input.DeltaBias!, "h0" => input.InitialState!, _ => throw new ArgumentException(name),
    };

    [TestMethod]
    public void MatchesClosedFormForOneChannel()
    {
        // One channel, N = 1, fixed B = C = 1, A = −1, Δ = 0.5, no extras: h_t = e^{−0.5} h_{t−1} + 0.5 u_t.
        using var scope = NewDisposeScope();
        var u = tensor(new double[] { 1, 2, 3 }).view(1, 1, 3);
        var input = new SelectiveScanInput
        {
            U = u, Delta = full(new long[] { 1, 1, 3 }, 0.5, dtype: ScalarType.Float64), A = tensor(new double[] { -1 }).view(1, 1),
            B = ones(1, 1, dtype: ScalarType.Float64), C = ones(1, 1, dtype: ScalarType.Float64), ReturnLastState = true,
        };
        var (y, last) = ReferenceSelectiveScan.Instance.Run(input);
        double a = Math.Exp(-0.5), h1 = 0.5, h2 = a * h1 + 1.0, h3 = a * h2 + 1.5;
        CollectionAssert.AreEqual(new[] { h1, h2, h3 }, y.data<double>().ToArray(), new ToleranceComparer(1e-12));
        Assert.AreEqual(h3, last!.item<double>(), 1e-12);
    }

    [TestMethod]
    public void InvalidShapesNameTheArgument()
    {
        using var scope = NewDisposeScope();
        var good = new ScanCase { Batch = 2, Channels = 3, StateSize = 4, Length = 5, VariableB = true, VariableC = true,
            HasD = true, HasZ = true, HasDeltaBias = true, HasInitialState = true, Softplus = true }.MakeInput(1);
        void Expect(string name, SelectiveScanInput bad)
        {
            var e = Assert.ThrowsExactly<ArgumentException>(() => SelectiveScan.Run(bad));
            StringAssert.Contains(e.Message, name);
            // Each backend's own Run checks too: the fused kernel would read past the end of a short tensor.
            foreach (ISelectiveScan backend in new ISelectiveScan[] { ReferenceSelectiveScan.Instance, CpuFusedSelectiveScan.Instance })
                StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => backend.Run(bad)).Message, name, backend.Backend.ToString());
        }
        Expect("Delta", new SelectiveScanInput { U = good.U, Delta = good.U[.., .., ..4], A = good.A, B = good.B, C = good.C });
        Expect("A", new SelectiveScanInput { U = good.U, Delta = good.Delta, A = good.A.T, B = good.B, C = good.C });
        Expect("B", new SelectiveScanInput { U = good.U, Delta = good.Delta, A = good.A, B = good.B[.., ..2], C = good.C });
        Expect("C", new SelectiveScanInput { U = good.U, Delta = good.Delta, A = good.A, B = good.B, C = good.C[0] });
        Expect("D", new SelectiveScanInput { U = good.U, Delta = good.Delta, A = good.A, B = good.B, C = good.C, D = ones(4) });
        Expect("InitialState", new SelectiveScanInput { U = good.U, Delta = good.Delta, A = good.A, B = good.B, C = good.C, InitialState = ones(2, 3, 5) });
        Expect("U", new SelectiveScanInput { U = good.U[0], Delta = good.Delta, A = good.A, B = good.B, C = good.C });
        Expect("U", new SelectiveScanInput { U = good.U[.., .., ..0], Delta = good.Delta[.., .., ..0], A = good.A, B = good.B[.., .., ..0], C = good.C[.., .., ..0] });
        Expect("D", new SelectiveScanInput { U = good.U, Delta = good.Delta, A = good.A, B = good.B, C = good.C, D = ones(3, 1) });
        Expect("Z", new SelectiveScanInput { U = good.U, Delta = good.Delta, A = good.A, B = good.B, C = good.C, Z = good.U[.., ..2] });
        Expect("DeltaBias", new SelectiveScanInput { U = good.U, Delta = good.Delta, A = good.A, B = good.B, C = good.C, DeltaBias = ones(2) });
        Expect("floating point", new SelectiveScanInput { U = good.U, Delta = good.Delta, A = good.A, B = good.B, C = good.C, D = ones(3, dtype: ScalarType.Int32) });
    }

    private sealed class ToleranceComparer(double tolerance) : System.Collections.IComparer
    {
        public int Compare(object? x, object? y) => Math.Abs((double)x! - (double)y!) <= tolerance ? 0 : 1;
    }
}
