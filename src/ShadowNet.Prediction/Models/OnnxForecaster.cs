using Microsoft.ML.OnnxRuntime;
using ShadowNet.Prediction.Features;

namespace ShadowNet.Prediction.Models;

/// <summary>
/// One ONNX Runtime session over a forecaster model, run on a batch of applications at a time. Input
/// and output buffers are kept between runs and wrapped as tensors without copying, so a steady loop
/// (same batch size) allocates no managed memory per step. A large batch runs in equal chunks of at
/// most <see cref="ChunkWindows"/>: ONNX Runtime's LSTM first projects the inputs of every step of the
/// whole batch (4 x hidden floats per step and window: 18 MB for 1,000 windows of 36 steps and 32
/// units) and then walks that buffer step by step; in chunks it stays in cache, and a batch of 1,000
/// takes a fifth to a third less time (bench/RESULTS.md, "Forecaster inference").
/// </summary>
public sealed class OnnxForecaster : IDisposable
{
    private const string InputName = "features";
    private const string OutputName = "quantiles";

    /// <summary>Most windows per ONNX Runtime run.</summary>
    public const int ChunkWindows = 128;

    private readonly InferenceSession _session;
    private readonly RunOptions _run = new();

    // Bound tensors of the current run size (a whole small batch, or one chunk), kept while it stays.
    private BoundBatch? _bound;

    private OnnxForecaster(string source, InferenceSession session, ModelContract contract)
    {
        Source = source;
        _session = session;
        Contract = contract;
        Layout = FeatureLayout.Of(contract.Features);
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
    /// <param name="threads">ONNX Runtime's intra-op threads: 1 for one window at a time, more for large batches.</param>
    public static OnnxForecaster Load(string path, IReadOnlyList<string> pipelineFeatures, int threads = 1)
    {
        if (!File.Exists(path))
        {
            throw new ModelRejectedException($"model '{path}' does not exist");
        }

        InferenceSession session;
        try
        {
            using var options = new SessionOptions { IntraOpNumThreads = threads, InterOpNumThreads = 1, ExecutionMode = ExecutionMode.ORT_SEQUENTIAL };
            session = new InferenceSession(path, options);
        }
        catch (OnnxRuntimeException e)
        {
            throw new ModelRejectedException($"model '{path}' cannot be loaded (damaged or not ONNX): {FirstLine(e.Message)}", e);
        }

        try
        {
            session.ModelMetadata.CustomMetadataMap.TryGetValue(ModelContract.MetadataKey, out var json);
            var contract = ModelContract.Parse(path, json);
            contract.CheckFeatures(path, pipelineFeatures);
            CheckShape(path, session.InputMetadata, InputName, [-1, contract.Window, contract.Features.Count]);
            CheckShape(path, session.OutputMetadata, OutputName, [-1, contract.Quantiles.Count]);
            return new OnnxForecaster(path, session, contract);
        }
        catch
        {
            session.Dispose();
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
        var batch = Bound((count + runs - 1) / runs);
        for (var first = 0; first < count; first += batch.Size)
        {
            var size = Math.Min(batch.Size, count - first);
            windows.Slice(first * WindowValues, size * WindowValues).CopyTo(batch.Input);
            batch.Input.AsSpan(size * WindowValues).Clear();
            _session.RunWithBinding(_run, batch.Binding);
            batch.Output.AsSpan(0, size * quantileCount).CopyTo(quantiles.Slice(first * quantileCount, size * quantileCount));
        }
    }

    public void Dispose()
    {
        _bound?.Dispose();
        _run.Dispose();
        _session.Dispose();
    }

    private BoundBatch Bound(int size)
    {
        if (_bound?.Size != size)
        {
            _bound?.Dispose();
            _bound = new BoundBatch(_session, size, Contract);
        }

        return _bound;
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
