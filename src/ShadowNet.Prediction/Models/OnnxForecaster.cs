using Microsoft.ML.OnnxRuntime;
using ShadowNet.Prediction.Features;

namespace ShadowNet.Prediction.Models;

/// <summary>
/// One ONNX Runtime session over a forecaster model, run on a batch of applications at a time. Input
/// and output buffers are kept between runs and wrapped as tensors without copying, so a steady loop
/// (same batch size) allocates no managed memory per step.
/// </summary>
public sealed class OnnxForecaster : IDisposable
{
    private const string InputName = "features";
    private const string OutputName = "quantiles";

    private readonly InferenceSession _session;
    private readonly RunOptions _run = new();
    private float[] _input = [];
    private float[] _output = [];
    private OrtValue? _inputValue;
    private OrtValue? _outputValue;
    private OrtIoBinding? _binding;
    private int _batch;

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
        var inputLength = count * WindowValues;
        var outputLength = count * Contract.Quantiles.Count;
        ArgumentOutOfRangeException.ThrowIfLessThan(windows.Length, inputLength, nameof(windows));
        ArgumentOutOfRangeException.ThrowIfLessThan(quantiles.Length, outputLength, nameof(quantiles));
        if (count != _batch)
        {
            Resize(count);
        }

        windows[..inputLength].CopyTo(_input);
        _session.RunWithBinding(_run, _binding);
        _output.AsSpan(0, outputLength).CopyTo(quantiles);
    }

    public void Dispose()
    {
        DisposeValues();
        _run.Dispose();
        _session.Dispose();
    }

    private void Resize(int count)
    {
        DisposeValues();
        _input = new float[count * WindowValues];
        _output = new float[count * Contract.Quantiles.Count];
        _inputValue = OrtValue.CreateTensorValueFromMemory(_input, [count, Contract.Window, Contract.Features.Count]);
        _outputValue = OrtValue.CreateTensorValueFromMemory(_output, [count, Contract.Quantiles.Count]);
        _binding = _session.CreateIoBinding();
        _binding.BindInput(InputName, _inputValue);
        _binding.BindOutput(OutputName, _outputValue);
        _batch = count;
    }

    private void DisposeValues()
    {
        _binding?.Dispose();
        _inputValue?.Dispose();
        _outputValue?.Dispose();
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
