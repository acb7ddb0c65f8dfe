using System.Runtime.InteropServices;
using MambaML.Scan.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.Scan;

/// <summary>
/// The fused CUDA selective scan: forward and backward kernels from Kernels/, compiled at run time with NVRTC for the GPU
/// found, and launched on TorchSharp's CUDA tensors. Differentiable through a custom autograd function.
/// </summary>
/// <remarks>
/// Needs the CUDA driver and NVRTC at run time (found next to libtorch's CUDA libraries, under CUDA_HOME / CUDA_PATH, or on
/// the system path; MAMBAML_LIBCUDA and MAMBAML_NVRTC name them explicitly), but no CUDA compiler. Compiled kernels are
/// cached on disk (MAMBAML_CACHE_DIR, else the user's cache folder). Inputs u, delta, z and input-dependent B and C share
/// one dtype, float32 or bfloat16; A, D, delta_bias, fixed B/C and the initial state are used in float32.
/// </remarks>
public sealed class CudaSelectiveScan : IResolvedSelectiveScan
{
    /// <summary>The shared instance.</summary>
    public static CudaSelectiveScan Instance { get; } = new();

    private CudaSelectiveScan() { }

    private static int s_warned;

    /// <summary>Overrides the kernels' work layout (benchmarks and tests use this to compare layouts); null: the library's choice.</summary>
    internal static (ScanKernelShape Forward, ScanKernelShape Backward)? ShapeOverride { get; set; }

    /// <inheritdoc/>
    public SelectiveScanBackend Backend => SelectiveScanBackend.CudaFused;

    /// <inheritdoc/>
    /// <remarks>Compiles and loads the kernels this input needs (once per configuration), so a failure shows here.</remarks>
    public bool CanRun(SelectiveScanInput input, out string? reason)
    {
        reason = InputProblem(input);
        if (reason is not null) return false;
        try
        {
            int device = DeviceOrdinal(input.U);
            bool grad = NeedsGrad(input);
            CudaKernels.Get(device, ForwardConfig(input, grad));
            if (grad) CudaKernels.Get(device, BackwardConfig(input, hasLastStateGradient: input.ReturnLastState));
            return true;
        }
        catch (Exception e) when (e is CudaException or NvrtcException or ArgumentException)
        {
            reason = e.Message;
            if (Interlocked.Exchange(ref s_warned, 1) == 0)
                Console.Error.WriteLine($"MambaML warning: the fused CUDA selective scan cannot run ({reason}). " +
                                        "Scans on CUDA fall back to the reference implementation, which is much slower.");
            return false;
        }
    }

    /// <inheritdoc/>
    public SelectiveScanResult Run(SelectiveScanInput input)
    {
        input.Validate();   // the kernels read through raw pointers sized by these shapes
        if (!CanRun(input, out var reason)) throw new NotSupportedException($"The CUDA selective scan cannot run this input: {reason}");
        return ((IResolvedSelectiveScan)this).RunResolved(input);
    }

    SelectiveScanResult IResolvedSelectiveScan.RunResolved(SelectiveScanInput input)
    {
        using var scope = NewDisposeScope();
        if (!NeedsGrad(input))
        {
            var (output, last, _) = Forward(input, Prepare(input), save: false);
            return new SelectiveScanResult(output.MoveToOuterDisposeScope(), last?.MoveToOuterDisposeScope());
        }
        var results = ScanFunction.apply(input.U, input.Delta, input.A, input.B, input.C, input.D, input.Z, input.DeltaBias, input.InitialState, input);
        return new SelectiveScanResult(results[0].MoveToOuterDisposeScope(), input.ReturnLastState ? results[1].MoveToOuterDisposeScope() : null);
    }

    private static string? InputProblem(SelectiveScanInput input)
    {
        if (input.U.device_type != DeviceType.CUDA) return $"the input is on {input.U.device}, not a CUDA device";
        var dtype = input.U.dtype;
        if (dtype != ScalarType.Float32 && dtype != ScalarType.BFloat16) return $"u is {dtype}; the CUDA kernel takes float32 or bfloat16";
        var sequences = new List<(Tensor? Tensor, string Name)> { (input.Delta, "delta"), (input.Z, "z") };
        if (input.VariableB) sequences.Add((input.B, "B"));
        if (input.VariableC) sequences.Add((input.C, "C"));
        foreach (var (t, name) in sequences)
            if (t is not null && t.dtype != dtype) return $"{name} is {t.dtype} while u is {dtype}; the CUDA kernel needs them in one dtype";
        if (input.StateSize > 256) return $"state size {input.StateSize} is above the kernel's limit of 256";
        if (input.Batch > 65535) return $"batch {input.Batch} is above the kernel's limit of 65535";
        return null;
    }

    private static bool NeedsGrad(SelectiveScanInput input) => is_grad_enabled() && input.AllTensors().Any(t => t.requires_grad);

    private static int DeviceOrdinal(Tensor t) => Math.Max(0, (int)t.device.index);

    private static (ScanKernelShape Forward, ScanKernelShape Backward) Shapes(SelectiveScanInput input, (ScanKernelShape, ScanKernelShape)? layout = null)
    {
        var (fwd, bwd) = layout ?? ShapeOverride ?? ScanKernelShape.Default(input.StateSize, input.Batch * input.Channels,
            CudaKernels.Multiprocessors(DeviceOrdinal(input.U)));
        fwd.Validate(input.StateSize, backward: false);
        bwd.Validate(input.StateSize, backward: true);
        if (bwd.Chunk % fwd.Chunk != 0) throw new ArgumentException($"The forward chunk {fwd.Chunk} must divide the backward chunk {bwd.Chunk}.");
        return (fwd, bwd);
    }

    // 16-byte accesses need every (b, d) row to start 16-byte aligned: L a multiple of the vector width, aligned base pointers.
    private static bool Vectorizable(SelectiveScanInput input)
    {
        int width = 16 / (input.U.dtype == ScalarType.BFloat16 ? 2 : 4);
        if (input.Length % width != 0) return false;
        var rows = new List<Tensor?> { input.U, input.Delta, input.Z };
        if (input.VariableB) rows.Add(input.B);
        if (input.VariableC) rows.Add(input.C);
        // A non-contiguous tensor is copied into a fresh (aligned) allocation before the launch.
        return rows.All(t => t is null || !t.is_contiguous() || TensorData.Pointer(t) % 16 == 0);
    }

    /// <summary>The forward (saving states) and backward kernel configurations a training pass over <paramref name="input"/>
    /// runs with <paramref name="layout"/> (tests compile them side by side before running layouts one at a time).</summary>
    internal static IEnumerable<ScanKernelConfig> TrainingConfigs(SelectiveScanInput input, (ScanKernelShape, ScanKernelShape) layout) =>
        new[] { ForwardConfig(input, save: true, layout), BackwardConfig(input, input.ReturnLastState, layout) };

    private static ScanKernelConfig ForwardConfig(SelectiveScanInput input, bool save, (ScanKernelShape, ScanKernelShape)? layout = null)
    {
        var (fwd, bwd) = Shapes(input, layout);
        return new ScanKernelConfig(false, input.U.dtype == ScalarType.BFloat16, (int)input.StateSize, fwd, Vectorizable(input),
            input.VariableB, input.VariableC, input.D is not null, input.Z is not null, input.DeltaBias is not null, input.DeltaSoftplus,
            input.InitialState is not null, save ? bwd.Chunk : 0, false);
    }

    private static ScanKernelConfig BackwardConfig(SelectiveScanInput input, bool hasLastStateGradient, (ScanKernelShape, ScanKernelShape)? layout = null)
    {
        var (_, bwd) = Shapes(input, layout);
        return new ScanKernelConfig(true, input.U.dtype == ScalarType.BFloat16, (int)input.StateSize, bwd, Vectorizable(input),
            input.VariableB, input.VariableC, input.D is not null, input.Z is not null, input.DeltaBias is not null, input.DeltaSoftplus,
            false, 0, hasLastStateGradient);
    }

    /// <summary>The kernel's view of the inputs: contiguous, sequences in u's dtype, parameters in float32.</summary>
    private sealed record Prepared(Tensor U, Tensor Delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? Z, Tensor? DeltaBias, Tensor? InitialState);

    private static Prepared Prepare(SelectiveScanInput input)
    {
        static Tensor F32(Tensor t) => t.detach().to(ScalarType.Float32).contiguous();
        static Tensor Seq(Tensor t) => t.detach().contiguous();
        return new Prepared(Seq(input.U), Seq(input.Delta), F32(input.A),
            input.VariableB ? Seq(input.B) : F32(input.B), input.VariableC ? Seq(input.C) : F32(input.C),
            input.D is null ? null : F32(input.D), input.Z is null ? null : Seq(input.Z),
            input.DeltaBias is null ? null : F32(input.DeltaBias), input.InitialState is null ? null : F32(input.InitialState));
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct ForwardParams
    {
        public IntPtr U, Delta, A, B, C, D, Z, DeltaBias, H0, Out, LastState, SavedStates;
        public long Batch, Dim, Len, SavedPerRow;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct BackwardParams
    {
        public IntPtr U, Delta, A, B, C, D, Z, DeltaBias, DOut, DLast, SavedStates;
        public IntPtr DU, DDelta, DZ, DA, DB, DC, DD, DDeltaBias, DH0;
        public long Batch, Dim, Len, SavedPerRow;
    }

    private static (Tensor Output, Tensor? LastState, Tensor? Saved) Forward(SelectiveScanInput input, Prepared p, bool save)
    {
        var config = ForwardConfig(input, save);
        var kernel = CudaKernels.Get(DeviceOrdinal(input.U), config);
        long batch = input.Batch, dim = input.Channels, len = input.Length, n = input.StateSize;
        var device = input.U.device;
        var output = ScanOutputs.Empty(new[] { batch, dim, len }, input.U.dtype, device);
        var last = input.ReturnLastState ? ScanOutputs.Empty(new[] { batch, dim, n }, ScalarType.Float32, device) : null;
        long savedPerRow = save ? (len + config.SaveEvery - 1) / config.SaveEvery : 0;
        var saved = save ? empty(new[] { batch, dim, savedPerRow, n }, ScalarType.Float32, device) : null;
        var args = new ForwardParams
        {
            U = TensorData.Of(p.U), Delta = TensorData.Of(p.Delta), A = TensorData.Of(p.A), B = TensorData.Of(p.B), C = TensorData.Of(p.C),
            D = TensorData.Of(p.D), Z = TensorData.Of(p.Z), DeltaBias = TensorData.Of(p.DeltaBias), H0 = TensorData.Of(p.InitialState),
            Out = TensorData.Of(output), LastState = TensorData.Of(last), SavedStates = TensorData.Of(saved),
            Batch = batch, Dim = dim, Len = len, SavedPerRow = savedPerRow,
        };
        Launch(kernel, dim, batch, ref args);
        return (output, last, saved);
    }

    private static void Launch<TParams>(LoadedScanKernel kernel, long dim, long batch, ref TParams args) where TParams : unmanaged
    {
        var driver = CudaKernels.Driver.Driver!;
        driver.MakeCurrent(kernel.Context);
        uint blocks = (uint)((dim + kernel.Config.Shape.ChannelsPerBlock - 1) / kernel.Config.Shape.ChannelsPerBlock);
        driver.Launch(kernel.Function, blocks, (uint)batch, (uint)kernel.Config.Threads, (uint)kernel.SharedBytes, ref args);
    }

    /// <summary>The autograd node: forward saves the chunk-start states, backward runs the backward kernel.</summary>
    private sealed class ScanFunction : autograd.MultiTensorFunction<ScanFunction>
    {
        // Gradients handed back to autograd stay referenced by their managed wrappers; the engine has copied them by the time
        // this thread runs the next backward, so they are released then rather than whenever the garbage collector runs.
        [ThreadStatic] private static List<Tensor>? t_returned;

        public override string Name => nameof(CudaSelectiveScan);

        public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var input = (SelectiveScanInput)vars[^1];
            var p = Prepare(input);
            var (output, last, saved) = Forward(input, p, save: true);
            ctx.save_for_backward(new List<Tensor> { p.U, p.Delta, p.A, p.B, p.C, p.D!, p.Z!, p.DeltaBias!, saved! });
            ctx.save_data("meta", new ScanMeta(input.DeltaSoftplus, input.ReturnLastState, input.A.dtype, input.B.dtype, input.C.dtype,
                input.D?.dtype, input.DeltaBias?.dtype, input.InitialState?.dtype));
            ctx.set_materialize_grads(false);   // a missing output gradient arrives as an invalid tensor and counts as zero
            return last is null ? new List<Tensor> { output } : new List<Tensor> { output, last };
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> gradOutputs)
        {
            if (t_returned is not null) { foreach (var t in t_returned) t.Dispose(); t_returned = null; }
            List<Tensor> grads;
            using (var scope = NewDisposeScope())
            {
                var s = ctx.get_saved_variables();
                var meta = (ScanMeta)ctx.get_data("meta");
                var input = new SelectiveScanInput
                {
                    U = s[0], Delta = s[1], A = s[2], B = s[3], C = s[4], D = s[5], Z = s[6], DeltaBias = s[7],
                    DeltaSoftplus = meta.Softplus, ReturnLastState = meta.ReturnLastState,
                };
                var p = new Prepared(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], null);
                grads = Backward(input, p, meta, s[8], gradOutputs[0], gradOutputs.Count > 1 ? gradOutputs[1] : null);
                foreach (var g in grads) g?.MoveToOuterDisposeScope();
            }
            foreach (var g in gradOutputs) g.Dispose();
            t_returned = grads.Where(g => g is not null).ToList();
            grads.Add(null!);   // the non-tensor argument
            return grads;
        }
    }

    /// <summary>What backward needs to know about the forward call beyond the saved tensors.</summary>
    private sealed record ScanMeta(bool Softplus, bool ReturnLastState, ScalarType ADType, ScalarType BDType, ScalarType CDType,
        ScalarType? DDType, ScalarType? DeltaBiasDType, ScalarType? InitialStateDType);

    // Gradients for (u, delta, A, B, C, D, z, delta_bias, initial state), in the inputs' dtypes; null where an input is absent.
    private static List<Tensor> Backward(SelectiveScanInput input, Prepared p, ScanMeta original, Tensor saved, Tensor dOut, Tensor? dLast)
    {
        bool hasDLast = dLast is not null && !dLast.IsInvalid;
        var config = BackwardConfig(input, hasDLast);
        var kernel = CudaKernels.Get(DeviceOrdinal(input.U), config);
        long batch = input.Batch, dim = input.Channels, len = input.Length, n = input.StateSize;
        var device = input.U.device;
        var dtype = input.U.dtype;
        var dout = dOut.IsInvalid ? zeros(new[] { batch, dim, len }, dtype, device) : dOut.to(dtype).contiguous();
        var dlast = hasDLast ? dLast!.to(ScalarType.Float32).contiguous() : null;
        var du = ScanOutputs.Empty(new[] { batch, dim, len }, dtype, device);
        var dDelta = ScanOutputs.Empty(new[] { batch, dim, len }, dtype, device);
        var dz = p.Z is null ? null : ScanOutputs.Empty(new[] { batch, dim, len }, dtype, device);
        var dh0 = original.InitialStateDType is not null ? ScanOutputs.Empty(new[] { batch, dim, n }, ScalarType.Float32, device) : null;
        // Accumulated with atomics: start from zero.
        var dA = zeros(new[] { dim, n }, ScalarType.Float32, device);
        var dB = zeros(input.VariableB ? new[] { batch, n, len } : new[] { dim, n }, ScalarType.Float32, device);
        var dC = zeros(input.VariableC ? new[] { batch, n, len } : new[] { dim, n }, ScalarType.Float32, device);
        var dD = p.D is null ? null : zeros(new[] { dim }, ScalarType.Float32, device);
        var dBias = p.DeltaBias is null ? null : zeros(new[] { dim }, ScalarType.Float32, device);
        var args = new BackwardParams
        {
            U = TensorData.Of(p.U), Delta = TensorData.Of(p.Delta), A = TensorData.Of(p.A), B = TensorData.Of(p.B), C = TensorData.Of(p.C),
            D = TensorData.Of(p.D), Z = TensorData.Of(p.Z), DeltaBias = TensorData.Of(p.DeltaBias), DOut = TensorData.Of(dout),
            DLast = TensorData.Of(dlast), SavedStates = TensorData.Of(saved),
            DU = TensorData.Of(du), DDelta = TensorData.Of(dDelta), DZ = TensorData.Of(dz), DA = TensorData.Of(dA), DB = TensorData.Of(dB),
            DC = TensorData.Of(dC), DD = TensorData.Of(dD), DDeltaBias = TensorData.Of(dBias), DH0 = TensorData.Of(dh0),
            Batch = batch, Dim = dim, Len = len, SavedPerRow = saved.shape[2],
        };
        Launch(kernel, dim, batch, ref args);
        Tensor? As(Tensor? grad, ScalarType? target) => grad is null || target is null ? null : grad.dtype == target ? grad : grad.to(target.Value);
        return new List<Tensor>
        {
            du, dDelta, As(dA, original.ADType)!, As(dB, original.BDType)!, As(dC, original.CDType)!, As(dD, original.DDType)!,
            dz!, As(dBias, original.DeltaBiasDType)!, As(dh0, original.InitialStateDType)!,
        };
    }
}

/// <summary>Raw device pointers of TorchSharp tensors (which TorchSharp exposes only for a few dtypes).</summary>
internal static unsafe class TensorData
{
    private static readonly delegate* unmanaged<IntPtr, IntPtr> s_data = (delegate* unmanaged<IntPtr, IntPtr>)NativeLibrary.GetExport(
        NativeLibrary.Load("LibTorchSharp", typeof(torch).Assembly, null), "THSTensor_data");

    /// <summary>The address of the first element (storage offset included); the tensor must be contiguous.</summary>
    public static long Pointer(Tensor t) => (long)s_data(t.Handle);

    /// <summary>The address of the first element of a contiguous tensor, or zero for null.</summary>
    public static IntPtr Of(Tensor? t)
    {
        if (t is null) return IntPtr.Zero;
        if (!t.is_contiguous()) throw new InvalidOperationException("Kernel arguments must be contiguous.");
        var ptr = s_data(t.Handle);
        if (ptr == IntPtr.Zero) throw new InvalidOperationException("Could not read a tensor's data pointer.");
        return ptr;
    }
}
