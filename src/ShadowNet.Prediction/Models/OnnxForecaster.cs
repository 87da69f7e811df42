using Microsoft.ML.OnnxRuntime;
using ShadowNet.Prediction.Features;

namespace ShadowNet.Prediction.Models;

/// <summary>
/// ONNX Runtime sessions over a forecaster model, run on a batch of applications at a time. Input
/// and output buffers are kept between runs and wrapped as tensors without copying, so a steady loop
/// (same batch size) allocates no managed memory per step. A large batch runs in equal chunks of at
/// most <see cref="ChunkWindows"/>: ONNX Runtime's LSTM first projects the inputs of every step of the
/// whole batch (4 x hidden floats per step and window: 14 MB for 1,000 windows of 36 steps and 24
/// units) and then walks that buffer step by step; in chunks it stays in cache. With more than one
/// thread, each thread has a single-threaded session of its own and takes a share of the chunks: one
/// hand-off per batch, where ONNX Runtime's own intra-op threads would hand off (and spin) in every
/// run (bench/RESULTS.md, "Forecaster inference").
/// </summary>
public sealed class OnnxForecaster : IDisposable
{
    private const string InputName = "features";
    private const string OutputName = "quantiles";

    /// <summary>Most windows per ONNX Runtime run.</summary>
    public const int ChunkWindows = 128;

    // Lane 0 runs on the caller's thread; the others each on a thread of their own.
    private readonly Lane[] _lanes;
    private volatile bool _disposed;

    private OnnxForecaster(string source, InferenceSession[] sessions, ModelContract contract)
    {
        Source = source;
        Contract = contract;
        Layout = FeatureLayout.Of(contract.Features);
        _lanes = new Lane[sessions.Length];
        for (var i = 0; i < sessions.Length; i++)
        {
            _lanes[i] = new Lane(this, sessions[i], helper: i > 0);
        }
    }

    public string Source { get; }

    public ModelContract Contract { get; }

    /// <summary>How the pipeline writes a window for this model (its contract's features, in order).</summary>
    public FeatureLayout Layout { get; }

    /// <summary>Values per application window: window length times feature count.</summary>
    public int WindowValues => Contract.Window * Contract.Features.Count;

    /// <summary>
    /// Loads and checks a model. A missing, unreadable or corrupt file, a model without a ShadowNet
    /// contract, or one whose contract, inputs or outputs do not match <paramref name="pipelineFeatures"/>
    /// is a <see cref="ModelRejectedException"/> that names the file and the problem.
    /// </summary>
    /// <param name="threads">Threads a batch runs on: 1 for one window at a time, more for large batches.</param>
    public static OnnxForecaster Load(string path, IReadOnlyList<string> pipelineFeatures, int threads = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        if (!File.Exists(path))
        {
            throw new ModelRejectedException($"model '{path}' does not exist");
        }

        var sessions = new List<InferenceSession>(threads);
        try
        {
            using var options = new SessionOptions { IntraOpNumThreads = 1, InterOpNumThreads = 1, ExecutionMode = ExecutionMode.ORT_SEQUENTIAL };
            try
            {
                sessions.Add(new InferenceSession(path, options));
            }
            catch (OnnxRuntimeException e)
            {
                throw new ModelRejectedException($"model '{path}' cannot be loaded (damaged or not ONNX): {FirstLine(e.Message)}", e);
            }

            var session = sessions[0];
            session.ModelMetadata.CustomMetadataMap.TryGetValue(ModelContract.MetadataKey, out var json);
            var contract = ModelContract.Parse(path, json);
            contract.CheckFeatures(path, pipelineFeatures);
            CheckShape(path, session.InputMetadata, InputName, [-1, contract.Window, contract.Features.Count]);
            CheckShape(path, session.OutputMetadata, OutputName, [-1, contract.Quantiles.Count]);
            while (sessions.Count < threads)
            {
                sessions.Add(new InferenceSession(path, options));
            }

            return new OnnxForecaster(path, [.. sessions], contract);
        }
        catch
        {
            sessions.ForEach(s => s.Dispose());
            throw;
        }
    }

    /// <summary>
    /// Runs the model on <paramref name="count"/> windows laid out one after another in
    /// <paramref name="windows"/> (already normalised per the contract); writes
    /// <c>count x quantiles</c> values to <paramref name="quantiles"/>.
    /// </summary>
    public void Predict(ReadOnlySpan<float> windows, int count, Span<float> quantiles)
    {
        var quantileCount = Contract.Quantiles.Count;
        ArgumentOutOfRangeException.ThrowIfLessThan(windows.Length, count * WindowValues, nameof(windows));
        ArgumentOutOfRangeException.ThrowIfLessThan(quantiles.Length, count * quantileCount, nameof(quantiles));
        if (count == 0)
        {
            return;
        }

        // Equal chunks, the last padded by fewer windows than there are chunks: ONNX Runtime plans its
        // memory per input shape, and runs alternating between two shapes lost most of the gain.
        var runs = (count + ChunkWindows - 1) / ChunkWindows;
        var chunk = (count + runs - 1) / runs;
        var lanes = Math.Min(_lanes.Length, runs);
        if (lanes == 1)
        {
            _lanes[0].Run(windows, count, quantiles, chunk);
            return;
        }

        // Lane k takes chunks [k * runs / lanes, (k + 1) * runs / lanes): the helpers from staged copies.
        for (var k = 1; k < lanes; k++)
        {
            var (first, last) = Share(k, lanes, runs, chunk, count);
            _lanes[k].Start(windows, first, last - first, chunk);
        }

        var (_, mine) = Share(0, lanes, runs, chunk, count);
        try
        {
            _lanes[0].Run(windows, mine, quantiles, chunk);
        }
        finally
        {
            // Even when this thread's share failed: a helper's signal left unread would answer the next batch.
            for (var k = 1; k < lanes; k++)
            {
                _lanes[k].Finish(quantiles);
            }
        }
    }

    public void Dispose()
    {
        _disposed = true;
        foreach (var lane in _lanes)
        {
            lane.Dispose();
        }
    }

    private static (int First, int Last) Share(int lane, int lanes, int runs, int chunk, int count) =>
        (Math.Min(count, lane * runs / lanes * chunk), Math.Min(count, (lane + 1) * runs / lanes * chunk));

    /// <summary>One session and its bound tensors; a helper lane also has its thread and staging buffers.</summary>
    private sealed class Lane : IDisposable
    {
        private readonly OnnxForecaster _owner;
        private readonly InferenceSession _session;
        private readonly RunOptions _run = new();
        private readonly Thread? _thread;
        private readonly SemaphoreSlim? _go;
        private readonly SemaphoreSlim? _done;
        private BoundBatch? _bound;
        private float[] _stagedInput = [];
        private float[] _stagedOutput = [];
        private int _stagedFirst;
        private int _stagedCount;
        private int _stagedChunk;
        private Exception? _failure;

        public Lane(OnnxForecaster owner, InferenceSession session, bool helper)
        {
            _owner = owner;
            _session = session;
            if (helper)
            {
                _go = new SemaphoreSlim(0);
                _done = new SemaphoreSlim(0);
                _thread = new Thread(HelperLoop) { IsBackground = true, Name = "shadownet-inference" };
                _thread.Start();
            }
        }

        /// <summary>Runs <paramref name="count"/> windows in chunks of <paramref name="chunk"/> on this thread.</summary>
        public void Run(ReadOnlySpan<float> windows, int count, Span<float> quantiles, int chunk)
        {
            var values = _owner.WindowValues;
            var quantileCount = _owner.Contract.Quantiles.Count;
            var batch = Bound(chunk);
            for (var first = 0; first < count; first += chunk)
            {
                var size = Math.Min(chunk, count - first);
                windows.Slice(first * values, size * values).CopyTo(batch.Input);
                batch.Input.AsSpan(size * values).Clear();
                _session.RunWithBinding(_run, batch.Binding);
                batch.Output.AsSpan(0, size * quantileCount).CopyTo(quantiles.Slice(first * quantileCount, size * quantileCount));
            }
        }

        /// <summary>Copies windows [first, first + count) of the batch and lets the lane's thread run them.</summary>
        public void Start(ReadOnlySpan<float> windows, int first, int count, int chunk)
        {
            var values = _owner.WindowValues;
            if (_stagedInput.Length < count * values)
            {
                _stagedInput = new float[count * values];
                _stagedOutput = new float[count * _owner.Contract.Quantiles.Count];
            }

            windows.Slice(first * values, count * values).CopyTo(_stagedInput);
            (_stagedFirst, _stagedCount, _stagedChunk) = (first, count, chunk);
            _go!.Release();
        }

        /// <summary>Waits for the lane's share and copies its quantiles to their place in the batch's.</summary>
        public void Finish(Span<float> quantiles)
        {
            _done!.Wait();
            if (_failure is { } failure)
            {
                _failure = null;
                throw new InvalidOperationException($"inference failed on a helper thread: {failure.Message}", failure);
            }

            var quantileCount = _owner.Contract.Quantiles.Count;
            _stagedOutput.AsSpan(0, _stagedCount * quantileCount).CopyTo(quantiles.Slice(_stagedFirst * quantileCount));
        }

        public void Dispose()
        {
            if (_thread is not null)
            {
                _go!.Release();
                _thread.Join();
            }

            _bound?.Dispose();
            _run.Dispose();
            _session.Dispose();
            _go?.Dispose();
            _done?.Dispose();
        }

        private void HelperLoop()
        {
            while (true)
            {
                _go!.Wait();
                if (_owner._disposed)
                {
                    return;
                }

                try
                {
                    Run(_stagedInput, _stagedCount, _stagedOutput, _stagedChunk);
                }
                catch (Exception e)
                {
                    _failure = e;
                }

                _done!.Release();
            }
        }

        private BoundBatch Bound(int size)
        {
            if (_bound?.Size != size)
            {
                _bound?.Dispose();
                _bound = new BoundBatch(_session, size, _owner.Contract);
            }

            return _bound;
        }
    }

    /// <summary>Input and output buffers for a batch of one size, wrapped as tensors and bound to the session.</summary>
    private sealed class BoundBatch : IDisposable
    {
        private readonly OrtValue _inputValue;
        private readonly OrtValue _outputValue;

        public BoundBatch(InferenceSession session, int size, ModelContract contract)
        {
            Size = size;
            Input = new float[size * contract.Window * contract.Features.Count];
            Output = new float[size * contract.Quantiles.Count];
            _inputValue = OrtValue.CreateTensorValueFromMemory(Input, [size, contract.Window, contract.Features.Count]);
            _outputValue = OrtValue.CreateTensorValueFromMemory(Output, [size, contract.Quantiles.Count]);
            Binding = session.CreateIoBinding();
            Binding.BindInput(InputName, _inputValue);
            Binding.BindOutput(OutputName, _outputValue);
        }

        public int Size { get; }

        public float[] Input { get; }

        public float[] Output { get; }

        public OrtIoBinding Binding { get; }

        public void Dispose()
        {
            Binding.Dispose();
            _inputValue.Dispose();
            _outputValue.Dispose();
        }
    }

    private static void CheckShape(string path, IReadOnlyDictionary<string, NodeMetadata> nodes, string name, long[] expected)
    {
        if (!nodes.TryGetValue(name, out var node))
        {
            throw new ModelRejectedException($"model '{path}' has no '{name}' tensor (it has {string.Join(", ", nodes.Keys)})");
        }

        var shape = node.Dimensions.Select(d => (long)d).ToArray();
        var matches = shape.Length == expected.Length && shape.Zip(expected).All(p => p.Second == -1 || p.First == p.Second);
        if (!matches || node.ElementDataType != Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float)
        {
            throw new ModelRejectedException(
                $"model '{path}': '{name}' is {node.ElementDataType} [{string.Join(", ", shape)}]; its contract needs Float [{string.Join(", ", expected.Select(d => d == -1 ? "batch" : d.ToString()))}]");
        }
    }

    private static string FirstLine(string text) => text.Split('\n')[0];
}
