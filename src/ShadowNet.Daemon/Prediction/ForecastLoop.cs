using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;
using ShadowNet.Addressing;
using ShadowNet.Controller.Planning;
using ShadowNet.Prediction.Features;
using ShadowNet.Prediction.Forecasting;
using ShadowNet.Prediction.Models;

namespace ShadowNet.Daemon.Prediction;

/// <summary>What the loop last decided for one application (the gRPC GetForecast answer).</summary>
/// <param name="Quantiles">Instances expected at each quantile the forecaster gives (the model: all of its contract's; a baseline: the configured confidence).</param>
/// <param name="ExpectedRequestsPerSecond">The traffic those instances would serve at today's requests per instance; null when the application does not report requests_per_second.</param>
public sealed record ApplicationForecast(string Application, string Forecaster, DateTimeOffset At, int Active, int Expected, int Reserved, int Additional,
    IReadOnlyList<(double Quantile, int Instances)> Quantiles, double? ExpectedRequestsPerSecond = null);

/// <summary>
/// The Behavioral Analysis Engine in the daemon: each step (the model's, 5 minutes), every application
/// that reports an "instances" metric gets a forecast (the ONNX model once it has a full window, else
/// the configured baseline) that the planner turns into reservations and staged routes. A model that is
/// missing, damaged or does not match the pipeline is refused with a log line and a metric, and the
/// baseline carries on; a changed model file is checked and swapped in at the next step. One ONNX
/// session serves every application, in one batch per step.
/// </summary>
internal sealed partial class ForecastLoop : IAsyncDisposable
{
    public const string MeterName = DaemonMetrics.MeterName + ".Prediction";
    private readonly Meter _meter = new(MeterName);
    private readonly Counter<long> _rejections;

    private readonly PredictionOptions _options;
    private readonly ReservationPlanner _planner;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly IInstanceForecaster _fallback;
    private readonly Dictionary<string, ApplicationHistory> _histories = new(StringComparer.Ordinal);
    private readonly Dictionary<string, ApplicationForecast> _forecasts = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private OnnxForecaster? _model;
    private float[] _windows = [];
    private float[] _quantiles = [];
    private DateTime _modelWritten;
    private readonly PrometheusFeed? _feed;
    private Task? _loop;

    public ForecastLoop(PredictionOptions options, ReservationPlanner planner, TimeProvider time, ILogger log)
    {
        _options = options;
        _planner = planner;
        _time = time;
        _log = log;
        _fallback = options.Fallback;
        _rejections = _meter.CreateCounter<long>("shadownet.prediction.model.rejected", "{model}", "Model files refused (missing, damaged, wrong contract)");
        _meter.CreateObservableGauge("shadownet.prediction.instances.expected", () => Measure(f => f.Expected), "{instance}",
            "Most instances expected over the horizon at the configured confidence, per application");
        _meter.CreateObservableGauge("shadownet.prediction.addresses.additional", () => Measure(f => f.Additional), "{address}",
            "Addresses to have ready beyond the running instances, per application");
        _meter.CreateObservableGauge("shadownet.prediction.requests.expected", () => Forecasts().Where(f => f.ExpectedRequestsPerSecond is not null)
            .Select(f => new Measurement<double>(f.ExpectedRequestsPerSecond!.Value, new KeyValuePair<string, object?>("application", f.Application))), "{request}/s",
            "Traffic the expected instances would serve at the current requests per instance, per application reporting requests_per_second");
        _feed = options.Prometheus is { } prometheus ? new PrometheusFeed(prometheus, log, _meter) : null;
        TryLoadModel();
    }

    public TimeSpan Step => TimeSpan.FromSeconds(_options.StepSeconds);

    public string ActiveForecaster => _model is null ? _fallback.Name : "lstm";

    public void Start() => _loop = Task.Run(RunAsync);

    private IEnumerable<Measurement<int>> Measure(Func<ApplicationForecast, int> value) =>
        Forecasts().Select(f => new Measurement<int>(value(f), new KeyValuePair<string, object?>("application", f.Application)));

    /// <summary>
    /// A reported sample: any of the <see cref="Signal"/> names ("instances", "load", "requests_per_second",
    /// "deploys", ...; others are ignored). An application is planned for once it has reported "instances".
    /// </summary>
    public void Observe(string application, long unixSeconds, IReadOnlyDictionary<string, double> values)
    {
        Span<float> signals = stackalloc float[Signals.Count];
        if (!Signals.TryRead(values, signals, out _))
        {
            return; // the API refuses such a sample before it gets here
        }

        lock (_histories)
        {
            if (!_histories.TryGetValue(application, out var history))
            {
                if (_histories.Count >= _options.MaxApplications)
                {
                    return;
                }

                _histories[application] = history = new ApplicationHistory(Math.Max(_options.HistorySteps, (_model?.Contract.Window ?? 0) + 1), _options.StepSeconds);
            }

            history.Add(unixSeconds, signals);
        }
    }

    public IReadOnlyList<ApplicationForecast> Forecasts()
    {
        lock (_forecasts)
        {
            return [.. _forecasts.Values.OrderBy(f => f.Application, StringComparer.Ordinal)];
        }
    }

    /// <summary>
    /// One planning step for every application (the timer calls it; tests may too). Applications with a
    /// full window go through the model in one batch; the others get the fallback's forecast.
    /// </summary>
    public Task StepAsync(CancellationToken cancellationToken) => StepAsync(_time.GetUtcNow(), cancellationToken);

    /// <summary>One planning step as of <paramref name="now"/> (the demo steps through a trace's own time).</summary>
    public async Task StepAsync(DateTimeOffset now, CancellationToken cancellationToken)
    {
        ReloadModelIfChanged();
        if (_feed is not null)
        {
            await _feed.PollAsync(this, now, cancellationToken);
        }

        var plans = new List<(string Application, int Forecast, string By, (double, int)[] Quantiles, double? RequestsPerInstance)>();
        lock (_histories)
        {
            var batched = new List<(string Application, float Scale, double? RequestsPerInstance)>();
            foreach (var (application, history) in _histories)
            {
                if (!history.Reported(Signal.Instances))
                {
                    continue;
                }

                var requestsPerInstance = RequestsPerInstance(history);
                if (_model is not null && history.Count >= _model.Contract.Window)
                {
                    EnsureBatchCapacity(batched.Count + 1);
                    var scale = history.WriteWindow(_model.Layout, _model.Contract.Window, _windows.AsSpan(batched.Count * _model.WindowValues, _model.WindowValues));
                    batched.Add((application, scale, requestsPerInstance));
                }
                else
                {
                    var expected = _fallback.Forecast(history, _options.Confidence) ?? (int)history.Latest().Instances;
                    plans.Add((application, expected, _fallback.Name, [(_options.Confidence, expected)], requestsPerInstance));
                }
            }

            if (batched.Count > 0)
            {
                var model = _model!;
                var quantiles = model.Contract.Quantiles.Count;
                model.Predict(_windows, batched.Count, _quantiles);
                for (var i = 0; i < batched.Count; i++)
                {
                    var outputs = _quantiles.AsSpan(i * quantiles, quantiles);
                    var all = new (double, int)[quantiles];
                    for (var q = 0; q < quantiles; q++)
                    {
                        all[q] = (model.Contract.Quantiles[q], LstmForecaster.ToInstances(outputs[q], batched[i].Scale));
                    }

                    var expected = LstmForecaster.ToInstances(model.Contract.AtConfidence(outputs, _options.Confidence), batched[i].Scale);
                    plans.Add((batched[i].Application, expected, "lstm", all, batched[i].RequestsPerInstance));
                }
            }
        }

        foreach (var (application, forecast, by, quantileForecasts, requestsPerInstance) in plans)
        {
            var step = await _planner.PlanAsync(application, IpFamily.IPv4, forecast, now, cancellationToken);
            lock (_forecasts)
            {
                _forecasts[application] = new ApplicationForecast(application, by, now, step.Active, forecast, step.Reserved, Math.Max(0, forecast - step.Active),
                    quantileForecasts, forecast * requestsPerInstance);
            }
        }
    }

    /// <summary>The traffic one instance serves now, when the application reports it; the forecast scales it to the horizon.</summary>
    private static double? RequestsPerInstance(ApplicationHistory history)
    {
        var instances = history.InstancesAt(0);
        return history.Reported(Signal.RequestsPerSecond) && instances > 0 ? history.ValueAt(Signal.RequestsPerSecond, 0) / instances : null;
    }

    /// <summary>Batch buffers grow in steps of 256 applications and are kept: a steady loop allocates nothing.</summary>
    private void EnsureBatchCapacity(int applications)
    {
        var model = _model!;
        if (_windows.Length < applications * model.WindowValues)
        {
            var capacity = ((applications / 256) + 1) * 256;
            Array.Resize(ref _windows, capacity * model.WindowValues);
            Array.Resize(ref _quantiles, capacity * model.Contract.Quantiles.Count);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        if (_loop is not null)
        {
            try
            {
                await _loop;
            }
            catch (OperationCanceledException)
            {
            }
        }

        _model?.Dispose();
        _feed?.Dispose();
        _meter.Dispose();
        _stop.Dispose();
    }

    private async Task RunAsync()
    {
        using var timer = new PeriodicTimer(Step, _time);
        while (await timer.WaitForNextTickAsync(_stop.Token))
        {
            await TickAsync(_stop.Token);
        }
    }

    /// <summary>One step of the loop: a failure is logged and the loop goes on.</summary>
    internal async Task TickAsync(CancellationToken cancellationToken)
    {
        try
        {
            await StepAsync(cancellationToken);
        }
        catch (ShadowNet.Controller.State.StateStoreException)
        {
            // The store has failed: the daemon said so once, critically; a warning every step would bury it.
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            Log.StepFailed(_log, e.Message);
        }
    }

    private void ReloadModelIfChanged()
    {
        if (_options.ModelPath is { } path && File.Exists(path) && File.GetLastWriteTimeUtc(path) != _modelWritten)
        {
            TryLoadModel();
        }
    }

    private void TryLoadModel()
    {
        if (_options.ModelPath is not { } path)
        {
            return;
        }

        _modelWritten = File.Exists(path) ? File.GetLastWriteTimeUtc(path) : default;
        try
        {
            var model = OnnxForecaster.Load(path, ApplicationHistory.FeatureNames);
            if (model.Contract.StepSeconds != _options.StepSeconds)
            {
                var step = model.Contract.StepSeconds;
                model.Dispose();
                throw new ModelRejectedException($"model '{path}' works in steps of {step} s; prediction:stepSeconds is {_options.StepSeconds}");
            }

            lock (_histories)
            {
                var old = _model;
                (_model, _windows, _quantiles) = (model, [], []);
                old?.Dispose();
            }

            Log.ModelLoaded(_log, path, model.Contract.Window, model.Contract.HorizonSteps);
        }
        catch (ModelRejectedException e)
        {
            _rejections.Add(1);
            Log.ModelRejected(_log, e.Message, _model is null ? _fallback.Name : "the model loaded before");
        }
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "forecaster model {Path} loaded: window {Window} steps, horizon {Horizon} steps")]
        public static partial void ModelLoaded(ILogger logger, string path, int window, int horizon);

        [LoggerMessage(2, LogLevel.Error, "{Problem}; forecasting with {Fallback}")]
        public static partial void ModelRejected(ILogger logger, string problem, string fallback);

        [LoggerMessage(3, LogLevel.Warning, "forecast step failed: {Problem}")]
        public static partial void StepFailed(ILogger logger, string problem);
    }
}

/// <summary>The <c>prediction</c> section of the configuration.</summary>
public sealed record PredictionOptions
{
    /// <summary>The ONNX model; null: the fallback forecasts alone.</summary>
    public string? ModelPath { get; init; }

    /// <summary>Forecasts while the model is missing or refused, and for applications with too short a history.</summary>
    public required IInstanceForecaster Fallback { get; init; }

    public double Confidence { get; init; } = 0.99;

    public int StepSeconds { get; init; } = 300;

    /// <summary>How reservations shrink when the forecast falls and how many stay regardless (<c>prediction:shrinkCooldown</c>, <c>prediction:shrinkHysteresis</c>, <c>prediction:minimumReserve</c>).</summary>
    public PlannerOptions Planner { get; init; } = new();

    public int HistorySteps { get; init; } = 300;

    public int MaxApplications { get; init; } = 10_000;

    /// <summary>False: no timer; the owner calls <see cref="ForecastLoop.StepAsync(DateTimeOffset, CancellationToken)"/> (the demo replays a trace faster than real time).</summary>
    public bool StepsOnTimer { get; init; } = true;

    /// <summary>Features read from Prometheus each step, besides what ReportMetrics sends.</summary>
    public PrometheusFeedOptions? Prometheus { get; init; }
}
