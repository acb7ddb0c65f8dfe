using MambaML.Model;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.MLNet;

/// <summary>
/// What every MambaML transformer shares: ML.NET's <see cref="ITransformer"/> contract with lazily computed output columns,
/// a row mapper for <c>PredictionEngine</c> (one model call per row, cached by row position), a batched <see cref="Transform"/>
/// (one model call per <see cref="MambaTrainerOptions.PredictionBatchSize"/> rows, same numbers), saving, and disposal of the
/// native network.
/// </summary>
/// <remarks>
/// Thread-safe: predictions (from any number of <c>PredictionEngine</c>s and <see cref="Transform"/> cursors) and saves run
/// concurrently on one shared network, since they only read its weights; <see cref="Dispose"/> waits for those in flight.
/// </remarks>
public abstract class MambaTransformerBase : ITransformer, IDisposable
{
    // Guards _users and _disposed: the number of predictions and saves using the network now, and whether it is freed.
    private readonly object _networkLock = new();
    private int _users;
    private bool _disposed;

    private protected MambaTransformerBase() { }

    /// <summary>The device the network runs on.</summary>
    public abstract Device Device { get; }

    /// <summary>Always true: outputs are computed row by row from the input row.</summary>
    public bool IsRowToRowMapper => true;

    /// <summary>The schema <see cref="Transform"/> produces for <paramref name="inputSchema"/>; checks the input columns.</summary>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema) => Bind(inputSchema).OutputSchema;

    /// <summary>A mapper for single rows (used by <c>PredictionEngine</c>).</summary>
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema) => Bind(inputSchema);

    /// <summary>Adds the output columns to <paramref name="input"/>; computed lazily, in batches, when a cursor reads them.</summary>
    public IDataView Transform(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return new ScoredDataView(Bind(input.Schema), input);
    }

    void ICanSaveModel.Save(ModelSaveContext ctx)
    {
        using var use = UseNetwork();
        SaveModel(ctx);
    }

    /// <summary>
    /// Frees the network's native memory, after the predictions and saves in flight on other threads finish. The transformer
    /// cannot be used afterwards.
    /// </summary>
    public void Dispose()
    {
        lock (_networkLock)
        {
            if (_disposed) return;
            _disposed = true;   // no new use starts
            while (_users > 0) Monitor.Wait(_networkLock);
        }
        DisposeNetwork();
    }

    /// <summary>Marks the network in use until the result is disposed, so that <see cref="Dispose"/> waits rather than freeing it mid-call.</summary>
    private NetworkUse UseNetwork()
    {
        lock (_networkLock)
        {
            ThrowIfDisposed();
            _users++;
        }
        return new NetworkUse(this);
    }

    private readonly struct NetworkUse(MambaTransformerBase owner) : IDisposable
    {
        public void Dispose()
        {
            lock (owner._networkLock)
                if (--owner._users == 0) Monitor.PulseAll(owner._networkLock);
        }
    }

    /// <summary>Validates <paramref name="inputSchema"/> and returns a reader of the model's input (no target).</summary>
    private protected abstract ExampleReader CreateReader(DataViewSchema inputSchema);

    /// <summary>The columns the transformer adds, in order.</summary>
    private protected abstract IReadOnlyList<OutputColumn> OutputColumns { get; }

    /// <summary>
    /// Rows per model call in <see cref="Transform"/> (<see cref="MambaTrainerOptions.PredictionBatchSize"/>): the size saved
    /// with the model, else by device: <see cref="CpuPredictionBatchSize"/> on the CPU, on CUDA 1,024 rows (small batches leave
    /// the GPU waiting on each call), fewer when they would hold more than <see cref="ActivationBudget"/> activations.
    /// </summary>
    internal int PredictionBatchSize => SavedPredictionBatchSize ?? (Device.type == DeviceType.CUDA ? 1024 : CpuPredictionBatchSize);

    /// <summary>
    /// Activations a model call may hold, its rows padded to the longest (see <see cref="ActivationsPerRow"/>): 2^26 for
    /// CUDA's default batch size, about 3 GB for the largest model measured (d_model 768, 24 layers: 1,024 texts of 512 tokens
    /// had peaked at 47 GB); unbounded when the batch size was set, and on the CPU.
    /// </summary>
    internal long ActivationBudget => SavedPredictionBatchSize is null && Device.type == DeviceType.CUDA ? 1L << 26 : long.MaxValue;

    /// <summary>The <see cref="MambaTrainerOptions.PredictionBatchSize"/> saved with the model (null: chosen by device).</summary>
    private protected abstract int? SavedPredictionBatchSize { get; }

    /// <summary>The default rows per call on the CPU.</summary>
    private protected abstract int CpuPredictionBatchSize { get; }

    /// <summary>
    /// Activations one input row makes a call hold at once, estimated as the row's tokens (after patching) times the Mamba
    /// blocks' inner width: the mixer's intermediates, which dominate its memory, scale with it.
    /// </summary>
    internal abstract long ActivationsPerRow(SequenceExample example);

    /// <summary>
    /// A batch of rows: <paramref name="carried"/> first if set, then rows from <paramref name="read"/> (null when no row is
    /// left), up to <paramref name="maxRows"/>, and only while the batch, padded to its longest row, holds at most
    /// <paramref name="budget"/> activations by <paramref name="activations"/> (always at least one row). A row that would
    /// pass the budget is left in <paramref name="carried"/> for the next batch, so no row is lost or reordered.
    /// </summary>
    internal static List<SequenceExample> ReadBatch(Func<SequenceExample?> read, ref SequenceExample? carried, int maxRows, long budget,
                                                    Func<SequenceExample, long> activations)
    {
        var batch = new List<SequenceExample>(Math.Min(maxRows, TrainingLoop.MaxInitialBatchCapacity));
        long longest = 0;
        while (batch.Count < maxRows)
        {
            var example = carried ?? read();
            carried = null;
            if (example is null) break;
            long padded = Math.Max(longest, activations(example));
            if (batch.Count > 0 && (batch.Count + 1) * padded > budget)
            {
                carried = example;
                break;
            }
            batch.Add(example);
            longest = padded;
        }
        return batch;
    }

    /// <summary>
    /// Runs the network on a batch (gradients off, eval mode) and returns each row's raw output vector. Called from several
    /// threads at once: it must only read the network and the transformer's state.
    /// </summary>
    private protected abstract float[][] Predict(IReadOnlyList<SequenceExample> batch);

    /// <summary>Writes the transformer to an ML.NET model entry.</summary>
    private protected abstract void SaveModel(ModelSaveContext ctx);

    /// <summary>Disposes the network.</summary>
    private protected abstract void DisposeNetwork();

    /// <summary>A (rows, width) output tensor as one float array per row.</summary>
    private protected static float[][] SplitRows(Tensor output, int rows)
    {
        var flat = output.cpu().data<float>().ToArray();
        int width = flat.Length / rows;
        var result = new float[rows][];
        for (int i = 0; i < rows; i++) result[i] = flat.AsSpan(i * width, width).ToArray();
        return result;
    }

    /// <summary>
    /// Loads a saved network (shared by the transformers' ML.NET loaders): reads the entry, builds the network from its
    /// description, copies the weights in and moves it to the device <paramref name="env"/>'s settings choose.
    /// </summary>
    private protected static (TDescription Description, TNetwork Network, Device Device) LoadNetwork<TDescription, TNetwork>(
        IHostEnvironment env, object ctx, string loaderSignature, Func<TDescription, TNetwork> build) where TNetwork : nn.Module
    {
        DefaultDtype.RequireFloat32(loaderSignature);
        var (description, weights) = ModelFile.Load<TDescription>(ctx, loaderSignature);
        using var scope = NewDisposeScope();   // the load's own: a scope the caller has open must not own the model's tensors
        var network = build(description);
        try
        {
            ModelFile.LoadWeights(network, weights, loaderSignature);
            var device = DevicePolicy.Choose(env);
            network.to(device);
            return (description, network.KeepOutOfDisposeScopes(), device);
        }
        catch
        {
            network.Dispose();
            throw;
        }
    }

    private void ThrowIfDisposed()
    {
        if (_disposed)
            throw new ObjectDisposedException(GetType().Name,
                $"This {GetType().Name} was disposed. Note that disposing a PredictionEngine disposes its model unless it was created with " +
                "new PredictionEngineOptions { OwnsTransformer = false }.");
    }

    private BoundMapper Bind(DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        ThrowIfDisposed();
        return new BoundMapper(this, inputSchema, CreateReader(inputSchema));
    }

    /// <summary>Predicts a batch with native memory released before returning (safe for long prediction loops).</summary>
    private float[][] PredictScoped(IReadOnlyList<SequenceExample> batch)
    {
        using var use = UseNetwork();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        return Predict(batch);
    }

    /// <summary>The transformer bound to one input schema.</summary>
    private sealed class BoundMapper : IRowToRowMapper
    {
        public MambaTransformerBase Parent { get; }
        public ExampleReader Reader { get; }
        public DataViewSchema InputSchema { get; }
        public DataViewSchema OutputSchema { get; }

        public BoundMapper(MambaTransformerBase parent, DataViewSchema inputSchema, ExampleReader reader)
        {
            Parent = parent;
            InputSchema = inputSchema;
            Reader = reader;
            var builder = new DataViewSchema.Builder();
            builder.AddColumns(inputSchema);
            foreach (var column in parent.OutputColumns) column.AddTo(builder);
            OutputSchema = builder.ToSchema();
        }

        public bool IsOutput(int index) => index >= InputSchema.Count;

        /// <summary>Input columns needed to produce <paramref name="dependingColumns"/> of the output.</summary>
        public IEnumerable<DataViewSchema.Column> GetDependencies(IEnumerable<DataViewSchema.Column> dependingColumns)
        {
            var needed = new HashSet<int>();
            foreach (var column in dependingColumns)
            {
                if (IsOutput(column.Index)) foreach (var c in Reader.Columns) needed.Add(c.Index);
                else needed.Add(column.Index);
            }
            return needed.OrderBy(i => i).Select(i => InputSchema[i]);
        }

        /// <summary>A row whose output columns are computed from <paramref name="input"/> on first read, once per position.</summary>
        public DataViewRow GetRow(DataViewRow input, IEnumerable<DataViewSchema.Column> activeColumns)
        {
            var active = new HashSet<int>(activeColumns.Select(c => c.Index));
            bool anyOutput = active.Any(IsOutput);
            var read = anyOutput ? Reader.Bind(input) : null;
            long cachedPosition = -1;
            float[] cached = Array.Empty<float>();
            float[] Current()
            {
                if (input.Position != cachedPosition)
                {
                    cached = Parent.PredictScoped(new[] { read!() })[0];
                    cachedPosition = input.Position;
                }
                return cached;
            }
            return new MappedRow(this, input, active, Current);
        }
    }

    /// <summary>Input columns pass through; output columns come from the current row's raw output.</summary>
    private sealed class MappedRow : DataViewRow
    {
        private readonly BoundMapper _mapper;
        private readonly DataViewRow _input;
        private readonly HashSet<int> _active;
        private readonly Func<float[]> _output;

        public MappedRow(BoundMapper mapper, DataViewRow input, HashSet<int> active, Func<float[]> output)
        {
            _mapper = mapper;
            _input = input;
            _active = active;
            _output = output;
        }

        public override DataViewSchema Schema => _mapper.OutputSchema;
        public override long Position => _input.Position;
        public override long Batch => _input.Batch;
        public override ValueGetter<DataViewRowId> GetIdGetter() => _input.GetIdGetter();
        public override bool IsColumnActive(DataViewSchema.Column column) =>
            _mapper.IsOutput(column.Index) ? _active.Contains(column.Index) : _input.IsColumnActive(_input.Schema[column.Index]);
        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column) =>
            Getter<TValue>(_mapper, _input, column, _output);
    }

    private static ValueGetter<TValue> Getter<TValue>(BoundMapper mapper, DataViewRow input, DataViewSchema.Column column, Func<float[]> output)
    {
        if (!mapper.IsOutput(column.Index)) return input.GetGetter<TValue>(input.Schema[column.Index]);
        var definition = mapper.Parent.OutputColumns[column.Index - mapper.InputSchema.Count];
        return definition.MakeGetter(output) as ValueGetter<TValue>
               ?? throw new InvalidOperationException(
                   $"Column '{column.Name}' has type {definition.Type} (raw type {definition.Type.RawType.Name}); it cannot be read as {typeof(TValue).Name}.");
    }

    /// <summary><see cref="Transform"/>'s result: a lazy view whose cursors compute outputs a batch at a time.</summary>
    private sealed class ScoredDataView : IDataView
    {
        private readonly BoundMapper _mapper;
        private readonly IDataView _input;

        public ScoredDataView(BoundMapper mapper, IDataView input)
        {
            _mapper = mapper;
            _input = input;
        }

        public bool CanShuffle => false;
        public DataViewSchema Schema => _mapper.OutputSchema;
        public long? GetRowCount() => _input.GetRowCount();

        public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null) =>
            new BatchedCursor(_mapper, _input, new HashSet<int>(columnsNeeded.Select(c => c.Index)));

        public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
            new[] { GetRowCursor(columnsNeeded, rand) };
    }

    /// <summary>
    /// Walks the input with two cursors in step: the main one serves pass-through columns, a second one reads ahead up to a
    /// batch of model inputs, which are predicted together and handed out row by row.
    /// </summary>
    private sealed class BatchedCursor : DataViewRowCursor
    {
        private readonly BoundMapper _mapper;
        private readonly HashSet<int> _active;
        private readonly DataViewRowCursor _main;
        private readonly DataViewRowCursor? _ahead;
        private readonly Func<SequenceExample>? _readAhead;
        private readonly Queue<float[]> _pending = new();
        private SequenceExample? _carried;   // read ahead but left out of the last batch by the activation budget
        private float[] _current = Array.Empty<float>();

        public BatchedCursor(BoundMapper mapper, IDataView input, HashSet<int> active)
        {
            _mapper = mapper;
            _active = active;
            var passThrough = active.Where(i => !mapper.IsOutput(i)).Select(i => input.Schema[i]);
            _main = input.GetRowCursor(passThrough);
            if (active.Any(mapper.IsOutput))
            {
                _ahead = input.GetRowCursor(mapper.Reader.Columns);
                _readAhead = mapper.Reader.Bind(_ahead);
            }
        }

        public override DataViewSchema Schema => _mapper.OutputSchema;
        public override long Position => _main.Position;
        public override long Batch => _main.Batch;
        public override ValueGetter<DataViewRowId> GetIdGetter() => _main.GetIdGetter();
        public override bool IsColumnActive(DataViewSchema.Column column) => _active.Contains(column.Index);

        public override bool MoveNext()
        {
            if (!_main.MoveNext()) return false;
            if (_ahead is null) return true;
            if (_pending.Count == 0)
            {
                var parent = _mapper.Parent;
                var batch = ReadBatch(() => _ahead.MoveNext() ? _readAhead!() : null, ref _carried, parent.PredictionBatchSize, parent.ActivationBudget,
                                      parent.ActivationsPerRow);
                if (batch.Count == 0)
                    throw new InvalidOperationException("The input IDataView returned fewer rows on a second cursor than on the first; it must be re-readable in the same order.");
                foreach (var output in _mapper.Parent.PredictScoped(batch)) _pending.Enqueue(output);
            }
            _current = _pending.Dequeue();
            return true;
        }

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            if (!_active.Contains(column.Index))
                throw new InvalidOperationException($"Column '{column.Name}' was not requested when this cursor was created.");
            return Getter<TValue>(_mapper, _main, column, () => _current);
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _main.Dispose();
                _ahead?.Dispose();
            }
            base.Dispose(disposing);
        }
    }
}
