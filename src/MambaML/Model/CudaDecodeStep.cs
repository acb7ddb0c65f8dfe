using System.Runtime.InteropServices;
using MambaML.Scan;
using MambaML.Scan.Cuda;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MambaML.Model;

/// <summary>Which implementation <see cref="MambaLanguageModel"/>'s recurrent decoding uses.</summary>
public enum DecodeBackend
{
    /// <summary>The fused CUDA step when the model is on CUDA in float32 or bfloat16, gradients are off and its kernels
    /// compile; otherwise the reference.</summary>
    Auto,
    /// <summary>Plain TorchSharp operations (<see cref="MambaMixer.Step"/>), differentiable, on any device.</summary>
    Reference,
    /// <summary>The fused CUDA kernels (Kernels/mamba_decode_step.cu); fails if they cannot run.</summary>
    CudaFused,
}

/// <summary>The decode kernels' compile-time configuration: one compiled module per distinct value.</summary>
internal sealed record DecodeKernelConfig(bool BFloat16, int DModel, int DInner, int DState, int DtRank, int DConv, bool ConvBias, bool Bias)
    : ICudaModuleSource
{
    /// <summary>The kernels of one decoding step, in launch order, then the greedy token choice.</summary>
    public static readonly string[] EntryPoints = { "decode_in_proj", "decode_x_proj", "decode_ssm", "decode_out_proj", "decode_lm_head", "decode_argmax" };

    /// <summary>The configuration for a model with these hyperparameters.</summary>
    public static DecodeKernelConfig For(MambaConfig c, bool bf16) =>
        new(bf16, c.DModel, c.DInner, c.DState, c.EffectiveDtRank, c.DConv, c.ConvBias, c.Bias);

    /// <inheritdoc/>
    public string SourceFile => "mamba_decode_step.cu";
    /// <inheritdoc/>
    public IReadOnlyList<string> Headers => s_headers;
    private static readonly string[] s_headers = { "bfloat16.cuh" };

    /// <inheritdoc/>
    public IReadOnlyList<string> Defines()
    {
        static int B(bool v) => v ? 1 : 0;
        return new[]
        {
            $"-DMD_BF16={B(BFloat16)}", $"-DMD_DM={DModel}", $"-DMD_DI={DInner}", $"-DMD_N={DState}", $"-DMD_R={DtRank}",
            $"-DMD_KC={DConv}", $"-DMD_CONV_BIAS={B(ConvBias)}", $"-DMD_BIAS={B(Bias)}",
        };
    }

    /// <summary>A short description for logs.</summary>
    public override string ToString() => $"mamba_decode_step[{(BFloat16 ? "bf16" : "fp32")} d_model={DModel} d_inner={DInner} N={DState} dt_rank={DtRank} d_conv={DConv}]";
}

/// <summary>
/// One recurrent step of a <see cref="MambaLanguageModel"/> on CUDA in fused kernels (four per layer, the head, and greedy
/// argmax for generation) instead of ~40 TorchSharp operations per layer: decoding reads every weight once per
/// token, so launch overhead, not arithmetic, bounds the plain step. Weights are read in place from the model's
/// parameters (their device pointers are re-read whenever a parameter tensor is replaced, e.g. by <c>to(device)</c>).
/// Not differentiable; not for concurrent use from several threads on one model.
/// </summary>
internal sealed class CudaDecodeStep
{
    private const int GemvThreads = 256, XProjThreads = 128, SsmThreads = 256, ArgmaxThreads = 1024, BatchTile = 4;
    private const uint ArgmaxSharedBytes = 32 * (sizeof(long) + sizeof(float));
    private static int s_warned;
    private readonly MambaLanguageModel _model;
    private readonly object _lock = new();
    private Snapshot? _snapshot;
    private Tensor? _scratch;
    private long _scratchBatch;

    public CudaDecodeStep(MambaLanguageModel model) => _model = model;

    [StructLayout(LayoutKind.Sequential)]
    private struct DecodeArgs   // mirrors md::Args in Kernels/mamba_decode_step.cu
    {
        public IntPtr Tokens, Embedding, Resid, NormW, InW, InB, Xz, ConvW, ConvB, ConvIn, ConvOut, XProjW, Xc, Xdbl,
            DtW, DtB, ALog, DSkip, SsmIn, SsmOut, Y, OutW, OutB, Logits, NextTokens, Generated;
        public long Batch, Vocab, GeneratedStride, GeneratedColumn;
        public float Eps;
    }

    /// <summary>What was read from the model's parameters: whether it can run, and if so its kernels and weight pointers.</summary>
    private sealed class Snapshot
    {
        public required IntPtr[] Handles;
        public string? Problem;
        public DecodeKernelConfig? Config;
        public LoadedModule? Module;
        public IntPtr[] Functions = Array.Empty<IntPtr>();
        public DecodeArgs[] Layers = Array.Empty<DecodeArgs>();
        public DecodeArgs Head;
        public Device? Device;
        public ScalarType DType;
        public int Multiprocessors;
    }

    // Every parameter the kernels read, in a fixed order (null where the model has no such bias).
    private IEnumerable<Tensor?> Parameters()
    {
        yield return _model.embedding.weight;
        yield return _model.backbone.norm_f.weight;
        foreach (var layer in _model.backbone.layers)
        {
            var m = layer.mixer;
            yield return layer.norm.weight;
            yield return m.in_proj.weight; yield return m.in_proj.bias;
            yield return m.conv1d.weight; yield return m.conv1d.bias;
            yield return m.x_proj.weight;
            yield return m.dt_proj.weight; yield return m.dt_proj.bias;
            yield return m.A_log; yield return m.D;
            yield return m.out_proj.weight; yield return m.out_proj.bias;
        }
    }

    /// <summary>Whether the fused step can run the model as it is now (device, dtype, kernels); the reason when not.</summary>
    /// <remarks>Compiles and loads the kernels on first use. A compile or load failure prints one warning per process.</remarks>
    public bool CanRun(out string? reason)
    {
        lock (_lock)
        {
            reason = Current().Problem;
            return reason is null;
        }
    }

    private Snapshot Current()
    {
        var snapshot = _snapshot;
        if (snapshot is not null && SameParameters(snapshot.Handles)) return snapshot;
        snapshot = Read();
        _snapshot = snapshot;
        return snapshot;
    }

    private bool SameParameters(IntPtr[] handles)
    {
        int i = 0;
        foreach (var p in Parameters())
            if (i >= handles.Length || handles[i++] != (p?.Handle ?? IntPtr.Zero)) return false;
        return i == handles.Length;
    }

    private Snapshot Read()
    {
        var parameters = Parameters().ToArray();
        var snapshot = new Snapshot { Handles = parameters.Select(p => p?.Handle ?? IntPtr.Zero).ToArray() };
        var config = _model.backbone.Config;
        var first = _model.embedding.weight!;
        var dtype = first.dtype;
        var device = first.device;
        if (device.type != DeviceType.CUDA) { snapshot.Problem = $"the model is on {device}, not a CUDA device"; return snapshot; }
        if (dtype != ScalarType.Float32 && dtype != ScalarType.BFloat16) { snapshot.Problem = $"the model is {dtype}; the fused step takes float32 or bfloat16"; return snapshot; }
        foreach (var p in parameters)
        {
            if (p is null) continue;
            if (p.dtype != dtype || p.device.type != device.type || p.device.index != device.index)
            { snapshot.Problem = $"the model's parameters are not all {dtype} on {device}"; return snapshot; }
            if (!p.is_contiguous()) { snapshot.Problem = "a parameter of the model is not contiguous"; return snapshot; }
        }
        var kernelConfig = DecodeKernelConfig.For(config, dtype == ScalarType.BFloat16);
        int ordinal = Math.Max(0, (int)device.index);
        try
        {
            var module = CudaKernels.Module(ordinal, kernelConfig);
            var driver = CudaKernels.Driver.Driver!;
            driver.MakeCurrent(module.Context);
            int shared = (BatchTile * Math.Max(config.DModel, config.DInner) + BatchTile) * sizeof(float);
            if (shared > module.SharedOptin)
                throw new CudaException($"{kernelConfig} needs {shared} bytes of shared memory per block; the GPU allows {module.SharedOptin}");
            var functions = DecodeKernelConfig.EntryPoints.Select(e => driver.Function(module.Module, e)).ToArray();
            foreach (var f in functions) driver.SetFunctionAttribute(f, CudaDriver.FuncAttrMaxDynamicSharedSizeBytes, shared);
            snapshot.Module = module;
            snapshot.Functions = functions;
            snapshot.Multiprocessors = driver.DeviceAttribute(driver.Device(ordinal), CudaDriver.AttrMultiprocessorCount);
        }
        catch (Exception e) when (e is CudaException or NvrtcException)
        {
            snapshot.Problem = e.Message;
            if (Interlocked.Exchange(ref s_warned, 1) == 0)
                Console.Error.WriteLine($"MambaML warning: the fused CUDA decode step cannot run ({e.Message}). " +
                                       "Recurrent decoding on CUDA falls back to the reference MambaLanguageModel.Step, which is much slower.");
            return snapshot;
        }
        snapshot.Config = kernelConfig;
        snapshot.Device = device;
        snapshot.DType = dtype;
        static IntPtr P(Tensor? t) => TensorData.Of(t);
        float eps = (float)config.NormEpsilon;
        snapshot.Layers = _model.backbone.layers.Select(layer =>
        {
            var m = layer.mixer;
            return new DecodeArgs
            {
                Embedding = P(first), NormW = P(layer.norm.weight), InW = P(m.in_proj.weight), InB = P(m.in_proj.bias),
                ConvW = P(m.conv1d.weight), ConvB = P(m.conv1d.bias), XProjW = P(m.x_proj.weight), DtW = P(m.dt_proj.weight),
                DtB = P(m.dt_proj.bias), ALog = P(m.A_log), DSkip = P(m.D), OutW = P(m.out_proj.weight), OutB = P(m.out_proj.bias),
                Vocab = _model.VocabularySize, Eps = eps,
            };
        }).ToArray();
        snapshot.Head = new DecodeArgs { Embedding = P(first), NormW = P(_model.backbone.norm_f.weight), Vocab = _model.VocabularySize, Eps = eps };
        return snapshot;
    }

    private Snapshot Ready()
    {
        var snapshot = Current();
        if (snapshot.Problem is not null) throw new NotSupportedException($"The fused CUDA decode step cannot run this model: {snapshot.Problem}");
        return snapshot;
    }

    /// <summary>As <see cref="MambaLanguageModel.Step"/>: logits (batch, vocabulary) in the model's dtype and a new state;
    /// <paramref name="state"/> is unchanged.</summary>
    public (Tensor Logits, MambaState State) Step(Tensor tokens, MambaState state)
    {
        lock (_lock)
        {
            var s = Ready();
            using var scope = NewDisposeScope();
            // The kernels read flat arrays: views (e.g. a column of a token matrix) are copied, contiguous tensors are used as they are.
            var input = tokens.contiguous();
            long batch = CheckTokens(s, input);
            var before = new MambaState(state.Layers.Select(l => new MambaLayerState(l.Conv.contiguous(), l.Ssm.contiguous())).ToArray());
            CheckState(s, before, batch);
            var config = s.Config!;
            var layers = new MambaLayerState[state.Layers.Count];
            for (int i = 0; i < layers.Length; i++)
                layers[i] = new MambaLayerState(ScanOutputs.Empty(new[] { batch, (long)config.DInner, config.DConv - 1L }, s.DType, s.Device!),
                                                ScanOutputs.Empty(new[] { batch, (long)config.DInner, config.DState }, ScalarType.Float32, s.Device!));
            var result = new MambaState(layers);
            var logits = ScanOutputs.Empty(new[] { batch, _model.VocabularySize }, s.DType, s.Device!);
            Launch(s, batch, TensorData.Of(input), Pointers(before, l => l.Conv), Pointers(result, l => l.Conv),
                   Pointers(before, l => l.Ssm), Pointers(result, l => l.Ssm), TensorData.Of(logits));
            return (logits.MoveToOuterDisposeScope(), result.MoveToOuterDisposeScope());
        }
    }

    /// <summary>
    /// Greedy decoding in place: from <paramref name="tokens"/> (batch) int64, the last tokens chosen, and <paramref name="state"/>,
    /// the state after the tokens before them, writes columns <paramref name="from"/>.. of <paramref name="generated"/>
    /// (batch, count) int64, advancing <paramref name="state"/> and overwriting <paramref name="tokens"/> as it goes.
    /// Nothing waits for the GPU: each step's token choice feeds the next step on the device.
    /// </summary>
    public void Generate(Tensor tokens, MambaState state, Tensor generated, int from)
    {
        lock (_lock)
        {
            var s = Ready();
            long batch = CheckTokens(s, tokens);
            CheckState(s, state, batch);
            if (generated.dtype != ScalarType.Int64 || generated.dim() != 2 || generated.shape[0] != batch || !generated.is_contiguous())
                throw new ArgumentException("generated must be a contiguous (batch, count) int64 tensor.", nameof(generated));
            using var logits = ScanOutputs.Empty(new[] { batch, _model.VocabularySize }, s.DType, s.Device!);
            IntPtr tokenPtr = TensorData.Of(tokens), logitsPtr = TensorData.Of(logits), generatedPtr = TensorData.Of(generated);
            var conv = Pointers(state, l => l.Conv);
            var ssm = Pointers(state, l => l.Ssm);
            long count = generated.shape[1];
            for (long column = from; column < count; column++)
            {
                Launch(s, batch, tokenPtr, conv, conv, ssm, ssm, logitsPtr);
                var args = s.Head;
                args.Logits = logitsPtr; args.NextTokens = tokenPtr; args.Generated = generatedPtr;
                args.Batch = batch; args.GeneratedStride = count; args.GeneratedColumn = column;
                CudaKernels.Driver.Driver!.Launch(s.Functions[5], (uint)batch, 1, ArgmaxThreads, ArgmaxSharedBytes, ref args);
            }
        }
    }

    private long CheckTokens(Snapshot s, Tensor tokens)
    {
        if (tokens.dtype != ScalarType.Int64 || tokens.dim() != 1 || !tokens.is_contiguous() || !SameDevice(tokens, s.Device!))
            throw new ArgumentException($"tokens must be a (batch) int64 tensor on {s.Device}.", nameof(tokens));
        long batch = tokens.shape[0];
        if (batch < 1 || batch > int.MaxValue) throw new ArgumentException($"batch {batch} is out of range.", nameof(tokens));
        return batch;
    }

    private void CheckState(Snapshot s, MambaState state, long batch)
    {
        var c = s.Config!;
        state.RequireFits(_model.backbone.Config, batch);   // layers and shapes, as the reference step requires them
        foreach (var l in state.Layers)
        {
            bool ok = l.Conv.dtype == s.DType && l.Ssm.dtype == ScalarType.Float32 && l.Conv.is_contiguous() && l.Ssm.is_contiguous()
                      && SameDevice(l.Conv, s.Device!) && SameDevice(l.Ssm, s.Device!);
            if (!ok)
                throw new ArgumentException($"Each layer's state must be contiguous on {s.Device}: conv {s.DType} ({batch}, {c.DInner}, {c.DConv - 1}) " +
                                            $"and ssm Float32 ({batch}, {c.DInner}, {c.DState}).", nameof(state));
        }
    }

    private static bool SameDevice(Tensor t, Device d) => t.device.type == d.type && t.device.index == d.index;

    // d_conv = 1 leaves an empty conv state, which may have no storage.
    private static IntPtr[] Pointers(MambaState state, Func<MambaLayerState, Tensor> pick) =>
        state.Layers.Select(l => pick(l) is var t && t.numel() == 0 ? IntPtr.Zero : TensorData.Of(t)).ToArray();

    // fp32 activations: residual stream, xz, xc, xdbl, y.
    private (IntPtr Resid, IntPtr Xz, IntPtr Xc, IntPtr Xdbl, IntPtr Y) Scratch(Snapshot s, long batch)
    {
        var c = s.Config!;
        long dm = c.DModel, di = c.DInner, xd = c.DtRank + 2L * c.DState;
        if (_scratch is null || _scratchBatch < batch || !SameDevice(_scratch, s.Device!))
        {
            _scratch?.Dispose();
            // Kept across calls, so out of every dispose scope (the caller's would free it under us).
            _scratch = ScanOutputs.Empty(new[] { batch * (dm + 4 * di + xd) }, ScalarType.Float32, s.Device!).DetachFromDisposeScope();
            _scratchBatch = batch;
        }
        IntPtr b = TensorData.Of(_scratch);
        IntPtr At(long offset) => b + (nint)(offset * batch * sizeof(float));
        return (At(0), At(dm), At(dm + 2 * di), At(dm + 3 * di), At(dm + 3 * di + xd));
    }

    // The layers' four kernels each, then the head: logits for tokens, states read from *In and written to *Out.
    private void Launch(Snapshot s, long batch, IntPtr tokens, IntPtr[] convIn, IntPtr[] convOut, IntPtr[] ssmIn, IntPtr[] ssmOut, IntPtr logits)
    {
        var driver = CudaKernels.Driver.Driver!;
        driver.MakeCurrent(s.Module!.Context);
        var c = s.Config!;
        var (resid, xz, xc, xdbl, y) = Scratch(s, batch);
        uint tile = (uint)Math.Min(batch, BatchTile);
        uint smemModel = (tile * (uint)c.DModel + BatchTile) * sizeof(float), smemInner = tile * (uint)c.DInner * sizeof(float);
        uint gemvWarps = GemvThreads / 32, xProjWarps = XProjThreads / 32, groups = (uint)(SsmThreads / SsmLanes(c.DState));
        uint inBlocks = (uint)((2 * c.DInner + gemvWarps - 1) / gemvWarps), xProjBlocks = (uint)((c.DtRank + 2 * c.DState + xProjWarps - 1) / xProjWarps);
        uint ssmBlocks = (uint)((c.DInner + groups - 1) / groups), outBlocks = (uint)((c.DModel + gemvWarps - 1) / gemvWarps);
        var f = s.Functions;
        for (int i = 0; i < s.Layers.Length; i++)
        {
            var a = s.Layers[i];
            a.Tokens = i == 0 ? tokens : IntPtr.Zero;
            a.Resid = resid; a.Xz = xz; a.Xc = xc; a.Xdbl = xdbl; a.Y = y;
            a.ConvIn = convIn[i]; a.ConvOut = convOut[i]; a.SsmIn = ssmIn[i]; a.SsmOut = ssmOut[i];
            a.Batch = batch;
            driver.Launch(f[0], inBlocks, 1, GemvThreads, smemModel, ref a);
            driver.Launch(f[1], xProjBlocks, 1, XProjThreads, smemInner, ref a);
            driver.Launch(f[2], ssmBlocks, 1, SsmThreads, 0, ref a);
            driver.Launch(f[3], outBlocks, 1, GemvThreads, smemInner, ref a);
        }
        var head = s.Head;
        head.Resid = resid; head.Logits = logits; head.Batch = batch;
        // The head's warps stride over the vocabulary: one full wave of blocks, so each block normalises the hidden state once.
        long headBlocks = Math.Min((_model.VocabularySize + gemvWarps - 1) / gemvWarps, (long)s.Multiprocessors * (2048 / GemvThreads));
        driver.Launch(f[4], (uint)headBlocks, 1, GemvThreads, smemModel, ref head);
    }

    // Lanes per channel in decode_ssm (the kernel's G): the state size rounded up to a power of two, at most a warp.
    private static int SsmLanes(int stateSize) => Math.Min(32, ScanKernelShape.PaddedStateSize(stateSize));
}
