using System.Diagnostics.Metrics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace ShadowNet.Daemon.Prediction;

/// <summary>PromQL queries that give one application's features: <c>instances</c>, optionally <c>load</c> (in instance units).</summary>
public sealed record PrometheusApplication(string Application, string InstancesQuery, string? LoadQuery);

/// <summary>The Prometheus HTTP API as a metric feed: <c>prediction:prometheus</c>.</summary>
public sealed record PrometheusFeedOptions(Uri Url, IReadOnlyList<PrometheusApplication> Applications);

/// <summary>
/// Reads each application's features from Prometheus (instant queries through its HTTP API) once per
/// forecast step. A query that fails, times out, or returns no single finite number is skipped for that
/// step, logged and counted by application; the application keeps its history (gaps are carried).
/// </summary>
internal sealed partial class PrometheusFeed(PrometheusFeedOptions options, ILogger log, Meter meter) : IDisposable
{
    private readonly HttpClient _http = new() { BaseAddress = options.Url, Timeout = TimeSpan.FromSeconds(5) };
    private readonly Counter<long> _errors = meter.CreateCounter<long>("shadownet.prediction.feed.errors", "{query}", "Prometheus feature queries that failed, by application");

    public async Task PollAsync(ForecastLoop loop, DateTimeOffset now, CancellationToken cancellationToken)
    {
        foreach (var application in options.Applications)
        {
            var instances = await QueryAsync(application.Application, application.InstancesQuery, cancellationToken);
            if (instances is null)
            {
                continue;
            }

            var values = new Dictionary<string, double>(StringComparer.Ordinal) { ["instances"] = instances.Value };
            if (application.LoadQuery is { } loadQuery && await QueryAsync(application.Application, loadQuery, cancellationToken) is { } load)
            {
                values["load"] = load;
            }

            loop.Observe(application.Application, now.ToUnixTimeSeconds(), values);
        }
    }

    public void Dispose() => _http.Dispose();

    private async Task<double?> QueryAsync(string application, string query, CancellationToken cancellationToken)
    {
        string problem;
        try
        {
            using var document = await _http.GetFromJsonAsync<JsonDocument>($"api/v1/query?query={Uri.EscapeDataString(query)}", cancellationToken);
            var result = document!.RootElement.GetProperty("data").GetProperty("result");
            if (result.GetArrayLength() == 1
                && double.TryParse(result[0].GetProperty("value")[1].GetString(), NumberStyles.Float, CultureInfo.InvariantCulture, out var value)
                && double.IsFinite(value) && value >= 0)
            {
                return value;
            }

            problem = $"{result.GetArrayLength()} series; one non-negative number is needed";
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or JsonException or KeyNotFoundException or InvalidOperationException or IndexOutOfRangeException)
        {
            problem = e.Message;
        }

        _errors.Add(1, new KeyValuePair<string, object?>("application", application));
        Log.QueryFailed(log, application, query, problem);
        return null;
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Warning, "prometheus feed: {Application}: '{Query}' gave no value ({Problem}); this step keeps the last one")]
        public static partial void QueryFailed(ILogger logger, string application, string query, string problem);
    }
}
