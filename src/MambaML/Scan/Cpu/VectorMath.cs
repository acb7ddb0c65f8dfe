using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MambaML.Scan.Cpu;

/// <summary>
/// Sixteen-lane fp32 elementary functions for the CPU scan: a fast exp2 for the B·D·N·L exponentials of the recurrence,
/// and softplus / sigmoid / SiLU (with derivatives) for the B·D·L elementwise work, matching PyTorch's definitions.
/// </summary>
internal static class VectorMath
{
    /// <summary>log2(e): exp(x) = exp2(x·log2 e), so A is pre-scaled once and each step needs only exp2.</summary>
    public const float Log2E = 1.44269504088896341f;

    /// <summary>PyTorch's softplus threshold: softplus(x) = x for x &gt; 20.</summary>
    public const float SoftplusThreshold = 20f;

    // 1.5·2^23: adding it rounds a float with |x| < 2^22 to an integer, which then sits in the low mantissa bits.
    private const float RoundingMagic = 12582912f;
    private const int RoundingMagicBits = 0x4B400000;

    // Minimax polynomial for 2^f on [−0.5, 0.5] under relative error (Remez, degree 6): 1.9e-9 before fp32 rounding,
    // so the result is within about 1e-7 relative of the exact value (fp32 Horner rounding dominates).
    private const float P0 = 1.0000000005541665f, P1 = 0.6931472057372673f, P2 = 0.24022646890634405f,
        P3 = 0.055503287769656406f, P4 = 0.009618488957102513f, P5 = 0.0013399931219124377f, P6 = 0.00015345812004000534f;

    /// <summary>
    /// 2^x for each lane, within about 1e-7 relative. Arguments are clamped to [−126, 127], the range whose results are normal
    /// floats: below it the result is 2^−126·2^f (≈ 1e-38 instead of a smaller number or 0); above it, finite instead of ∞.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp2(Vector512<float> x)
    {
        x = Vector512.MinNative(Vector512.MaxNative(x, Vector512.Create(-126f)), Vector512.Create(127f));
        var shifted = x + Vector512.Create(RoundingMagic);
        var n = shifted - Vector512.Create(RoundingMagic);                      // round(x)
        var f = x - n;                                                           // in [−0.5, 0.5]
        var p = Vector512.FusedMultiplyAdd(Vector512.Create(P6), f, Vector512.Create(P5));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(P4));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(P3));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(P2));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(P1));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(P0));
        // 2^n assembled from its exponent bits: (n + 127) << 23.
        var exponent = (shifted.AsInt32() - Vector512.Create(RoundingMagicBits) + Vector512.Create(127)) << 23;
        return p * exponent.AsSingle();
    }

    /// <summary>e^x for each lane, within about 1e-7 relative (see <see cref="Exp2"/> for the clamped range).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> x) => Exp2(x * Vector512.Create(Log2E));

    /// <summary>
    /// PyTorch's softplus (x for x &gt; 20, else log(1 + e^x)) and its derivative (sigmoid(x), exactly 1 above 20), sharing
    /// one exponential. Computed as max(x, 0) + log1p(e^−|x|), accurate for very negative x (where 1 + e^x rounds to 1).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Softplus(Vector512<float> x, out Vector512<float> derivative)
    {
        var t = Exp(-Vector512.Abs(x));                                          // in (0, 1]
        var r = Vector512<float>.One / (Vector512<float>.One + t);
        var above = Vector512.GreaterThan(x, Vector512.Create(SoftplusThreshold));
        var sigmoid = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(x, Vector512<float>.Zero), r, t * r);
        derivative = Vector512.ConditionalSelect(above, Vector512<float>.One, sigmoid);
        return Vector512.ConditionalSelect(above, x, Vector512.MaxNative(x, Vector512<float>.Zero) + Log1p(t));
    }

    /// <summary>As <see cref="Softplus(Vector512{float}, out Vector512{float})"/>, without the derivative.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Softplus(Vector512<float> x) => Softplus(x, out _);

    /// <summary>1 / (1 + e^−x), without overflow for large |x|.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Sigmoid(Vector512<float> x)
    {
        var e = Exp(-Vector512.Abs(x));                                          // in (0, 1]
        var r = Vector512<float>.One / (Vector512<float>.One + e);
        return Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(x, Vector512<float>.Zero), r, e * r);
    }

    /// <summary>
    /// The sums of 16 consecutive rows of 16 floats: lane i of the result is the sum of <paramref name="rows"/>[16·i … 16·i + 15].
    /// </summary>
    /// <remarks>
    /// Replaces 16 separate horizontal sums (about 20 instructions each) by a transpose-and-add tree of 30 two-source
    /// permutes and 15 adds: each level halves the number of vectors and the lanes each row occupies.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector512<float> SumRows(float* rows)
    {
        if (!Avx512F.IsSupported)
        {
            var sums = stackalloc float[16];
            for (int i = 0; i < 16; i++) sums[i] = Vector512.Sum(Vector512.Load(rows + 16 * i));
            return Vector512.Load(sums);
        }
        // Level g keeps, of every 2g lanes of the two inputs, the first g (low) or the last g (high).
        var low8 = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
        var low4 = Vector512.Create(0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
        var low2 = Vector512.Create(0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29);
        var low1 = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        Vector512<float> Pair(int i) => Fold(Vector512.Load(rows + 32 * i), Vector512.Load(rows + 32 * i + 16), low8, 8);
        Vector512<float> a0 = Pair(0), a1 = Pair(1), a2 = Pair(2), a3 = Pair(3), a4 = Pair(4), a5 = Pair(5), a6 = Pair(6), a7 = Pair(7);
        Vector512<float> b0 = Fold(a0, a1, low4, 4), b1 = Fold(a2, a3, low4, 4), b2 = Fold(a4, a5, low4, 4), b3 = Fold(a6, a7, low4, 4);
        return Fold(Fold(b0, b1, low2, 2), Fold(b2, b3, low2, 2), low1, 1);

        static Vector512<float> Fold(Vector512<float> a, Vector512<float> b, Vector512<int> low, int g) =>
            Avx512F.PermuteVar16x32x2(a, low, b) + Avx512F.PermuteVar16x32x2(a, low + Vector512.Create(g), b);
    }

    // Minimax polynomial for atanh(s)/s in q = s² on [0, 1/9] (Remez, degree 4): 4e-9 relative.
    private const float L0 = 1.0000000039605241f, L1 = 0.3333315734093066f, L2 = 0.20012455143770472f,
        L3 = 0.13980301338166523f, L4 = 0.1408916762872171f;

    /// <summary>
    /// log(1 + t) for t in [0, 1], within about 1e-7 relative everywhere (including tiny t): log1p(t) = 2·atanh(s) with
    /// s = t / (2 + t) in [0, 1/3], and atanh(s) = s·P(s²).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Log1p(Vector512<float> t)
    {
        var s = t / (Vector512.Create(2f) + t);
        var q = s * s;
        var p = Vector512.FusedMultiplyAdd(Vector512.Create(L4), q, Vector512.Create(L3));
        p = Vector512.FusedMultiplyAdd(p, q, Vector512.Create(L2));
        p = Vector512.FusedMultiplyAdd(p, q, Vector512.Create(L1));
        p = Vector512.FusedMultiplyAdd(p, q, Vector512.Create(L0));
        return (s + s) * p;
    }
}
