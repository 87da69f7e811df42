using BenchmarkDotNet.Attributes;
using ShadowNet.Prediction.Features;
using ShadowNet.Prediction.Models;

namespace ShadowNet.Benchmarks.Prediction;

/// <summary>
/// The committed forecaster through ONNX Runtime: one application's window (built from its history, as
/// the inference loop does), and one step for 1,000 applications in a single batch.
/// </summary>
[MemoryDiagnoser]
public class InferenceBenchmarks
{
    private const int Applications = 1_000;
    private OnnxForecaster _single = null!;
    private OnnxForecaster _batch = null!;
    private ApplicationHistory _history = null!;
    private float[] _window = null!;
    private float[] _windows = null!;
    private float[] _quantile = null!;
    private float[] _quantiles = null!;

    [GlobalSetup]
    public void Setup()
    {
        var model = FindModel();
        _single = OnnxForecaster.Load(model, ApplicationHistory.FeatureNames);
        _batch = OnnxForecaster.Load(model, ApplicationHistory.FeatureNames, threads: 2);
        _history = new ApplicationHistory(64, 300);
        var random = new Random(7);
        for (var step = 0; step < 64; step++)
        {
            _history.Add(1_704_067_200 + (step * 300), random.Next(10, 40), (float)(random.NextDouble() * 40));
        }

        _window = new float[_single.WindowValues];
        _quantile = new float[_single.Contract.Quantiles.Count];
        _windows = new float[Applications * _batch.WindowValues];
        for (var i = 0; i < _windows.Length; i++)
        {
            _windows[i] = (float)random.NextDouble();
        }

        _quantiles = new float[Applications * _batch.Contract.Quantiles.Count];
        _single.Predict(_window, 1, _quantile);
        _batch.Predict(_windows, Applications, _quantiles);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _single.Dispose();
        _batch.Dispose();
    }

    [Benchmark(Description = "one application: window from history + inference")]
    public float OneApplication()
    {
        var scale = _history.WriteWindow(_single.Layout, _single.Contract.Window, _window);
        _single.Predict(_window, 1, _quantile);
        return _quantile[2] * scale;
    }

    [Benchmark(Description = "1,000 applications in one batch (inference, 2 threads)")]
    public float ThousandApplications()
    {
        _batch.Predict(_windows, Applications, _quantiles);
        return _quantiles[^1];
    }

    private static string FindModel()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            var candidate = Path.Combine(directory.FullName, "models", "shadownet-lstm.onnx");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        throw new FileNotFoundException("models/shadownet-lstm.onnx");
    }
}
