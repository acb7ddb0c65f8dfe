using MambaML.Scan;

namespace MambaML.Model;

/// <summary>
/// Hyperparameters of a Mamba backbone. The mixer's settings default to mamba_ssm's (<c>mamba_simple.Mamba</c>); <see cref="DModel"/>
/// and <see cref="NLayer"/>, which mamba_ssm leaves to the caller, default to a small model. The ML.NET trainers' options call
/// these ModelDimension, NumberOfLayers, StateSize, ConvolutionWidth and ExpansionFactor.
/// </summary>
public sealed record MambaConfig
{
    /// <summary>Width of the residual stream.</summary>
    public int DModel { get; init; } = 64;
    /// <summary>Number of Mamba blocks.</summary>
    public int NLayer { get; init; } = 2;
    /// <summary>SSM state size N per channel.</summary>
    public int DState { get; init; } = 16;
    /// <summary>Width of the causal depthwise convolution.</summary>
    public int DConv { get; init; } = 4;
    /// <summary>Inner width = <see cref="Expand"/> × <see cref="DModel"/>.</summary>
    public int Expand { get; init; } = 2;
    /// <summary>Rank of the Δ projection; null means ceil(d_model / 16).</summary>
    public int? DtRank { get; init; }
    /// <summary>Lower end of the log-uniform range Δ is initialised in.</summary>
    public double DtMin { get; init; } = 0.001;
    /// <summary>Upper end of the log-uniform range Δ is initialised in.</summary>
    public double DtMax { get; init; } = 0.1;
    /// <summary>Smallest initial Δ.</summary>
    public double DtInitFloor { get; init; } = 1e-4;
    /// <summary>Whether the convolution has a bias.</summary>
    public bool ConvBias { get; init; } = true;
    /// <summary>Whether the input and output projections have biases.</summary>
    public bool Bias { get; init; }
    /// <summary>Epsilon of the RMS norms.</summary>
    public double NormEpsilon { get; init; } = 1e-5;
    /// <summary>
    /// Probability of zeroing each value of a block's mixer output before it joins the residual stream (and, in
    /// <see cref="MambaLanguageModel"/>, of the token embedding) in a forward pass while training; 0, the default, as mamba_ssm.
    /// GPT-2 and nanoGPT regularise this way; a language model on a small corpus needs it (a 9.7M-parameter model without it
    /// learned Tiny Shakespeare's training text by heart and its validation loss rose after 250 steps). On the CPU the masks come
    /// from a stream of the backbone's own, seeded from the model's seed (<see cref="LanguageModelTraining"/> reseeds it with its
    /// <see cref="LanguageModelTrainingOptions.Seed"/>); on CUDA from libtorch's CUDA generator, which TorchSharp 0.107 cannot
    /// replace. Evaluation, <c>Step</c> and <c>Generate</c> never drop.
    /// </summary>
    public double Dropout { get; init; }
    /// <summary>Which selective-scan implementation the mixers use.</summary>
    public SelectiveScanBackend ScanBackend { get; init; } = SelectiveScanBackend.Auto;

    /// <summary>Inner (expanded) width.</summary>
    public int DInner => Expand * DModel;
    /// <summary>The Δ rank in effect.</summary>
    public int EffectiveDtRank => DtRank ?? (DModel + 15) / 16;

    /// <summary>Parameters of one Mamba block (RMS norm and mixer).</summary>
    public long ParametersPerLayer => Saturate(LayerParameters());

    /// <summary>Parameters of a backbone of <see cref="NLayer"/> blocks and its final RMS norm (no embedding or head).</summary>
    public long ParameterCount => Saturate(LayerParameters() * NLayer + DModel);

    // In 128 bits: absurd settings (a DModel near int.MaxValue) overflow a long; the public counts saturate at long.MaxValue.
    private Int128 LayerParameters()
    {
        Int128 dm = DModel, di = DInner, n = DState, r = EffectiveDtRank;
        return dm                                       // norm
               + dm * 2 * di + (Bias ? 2 * di : 0)      // in_proj
               + di * DConv + (ConvBias ? di : 0)       // conv1d (depthwise)
               + di * (r + 2 * n)                       // x_proj
               + r * di + di                            // dt_proj
               + di * n + di                            // A_log, D
               + di * dm + (Bias ? dm : 0);             // out_proj
    }

    private static long Saturate(Int128 count) => count > long.MaxValue ? long.MaxValue : (long)count;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid setting and the valid range.</summary>
    public MambaConfig Validate()
    {
        Check(DModel >= 1, nameof(DModel), DModel, "must be >= 1");
        Check(NLayer >= 1, nameof(NLayer), NLayer, "must be >= 1");
        Check(DState >= 1 && DState <= 256, nameof(DState), DState, "must be in [1, 256]");
        Check(DConv >= 1 && DConv <= 16, nameof(DConv), DConv, "must be in [1, 16]");
        Check(Expand >= 1, nameof(Expand), Expand, "must be >= 1");
        Check(DtRank is null || DtRank >= 1, nameof(DtRank), DtRank, "must be >= 1 (or null for ceil(d_model/16))");
        Check(DtMin > 0 && double.IsFinite(DtMin), nameof(DtMin), DtMin, "must be > 0");
        Check(DtMax >= DtMin && double.IsFinite(DtMax), nameof(DtMax), DtMax, $"must be >= DtMin ({DtMin})");
        Check(DtInitFloor > 0, nameof(DtInitFloor), DtInitFloor, "must be > 0");
        Check(NormEpsilon > 0 && double.IsFinite(NormEpsilon), nameof(NormEpsilon), NormEpsilon, "must be > 0 and finite");
        Check((long)Expand * DModel <= int.MaxValue, nameof(Expand), Expand, $"× DModel ({DModel}) must fit an int (the inner width)");
        Check(Dropout is >= 0 and < 1, nameof(Dropout), Dropout, "must be in [0, 1)");
        Check(Enum.IsDefined(ScanBackend), nameof(ScanBackend), ScanBackend, "is not a SelectiveScanBackend value");
        return this;
    }

    private static void Check(bool ok, string name, object? value, string rule)
    {
        if (!ok) throw new ArgumentException($"MambaConfig.{name} {rule}; got {value}.", name);
    }
}
