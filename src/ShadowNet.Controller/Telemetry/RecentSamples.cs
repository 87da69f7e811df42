using System.Text;
using System.Text.Json;

namespace ShadowNet.Controller.Telemetry;

/// <summary>One reported observation of an application: named values (cpu, requests_per_second, ...) at a time.</summary>
public sealed record MetricSample(long TimeMs, string Application, IReadOnlyDictionary<string, double> Values);

/// <summary>What the controller knows about an application's recent behaviour, as JSON for a miss record.</summary>
public interface IMetricWindowSource
{
    /// <summary>The application's recent samples as a JSON object, or null when none were reported.</summary>
    string? WindowJson(string application);
}

/// <summary>
/// The last <see cref="Capacity"/> samples reported per application (the ReportMetrics stream feeds it),
/// so that a miss is recorded with what the metrics looked like when it happened.
/// </summary>
public sealed class RecentSamples(int capacity = 60, int maxApplications = 10_000) : IMetricWindowSource
{
    private readonly Dictionary<string, Queue<MetricSample>> _byApplication = new(StringComparer.Ordinal);

    public int Capacity { get; } = capacity;

    /// <summary>False when the sample was refused: a new application beyond <c>maxApplications</c>.</summary>
    public bool Add(MetricSample sample)
    {
        lock (_byApplication)
        {
            if (!_byApplication.TryGetValue(sample.Application, out var window))
            {
                if (_byApplication.Count >= maxApplications)
                {
                    return false;
                }

                _byApplication[sample.Application] = window = new Queue<MetricSample>(Capacity);
            }

            if (window.Count == Capacity)
            {
                window.Dequeue();
            }

            window.Enqueue(sample);
            return true;
        }
    }

    public int Count(string application)
    {
        lock (_byApplication)
        {
            return _byApplication.TryGetValue(application, out var window) ? window.Count : 0;
        }
    }

    public string? WindowJson(string application)
    {
        MetricSample[] samples;
        lock (_byApplication)
        {
            if (!_byApplication.TryGetValue(application, out var window) || window.Count == 0)
            {
                return null;
            }

            samples = [.. window];
        }

        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteStartArray("samples");
            foreach (var sample in samples)
            {
                json.WriteStartObject();
                json.WriteNumber("timeMs", sample.TimeMs);
                foreach (var (name, value) in sample.Values)
                {
                    json.WriteNumber(name, value);
                }

                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }
}
