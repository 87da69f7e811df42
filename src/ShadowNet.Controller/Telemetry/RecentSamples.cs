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
/// <remarks>
/// Memory is bounded by construction: per application a ring of times and one column of values per
/// metric name (at most <c>maxNamesPerApplication</c>; values under further names are dropped and
/// counted), allocated when the application or the name first appears. Each name costs
/// capacity x 8 octets, so the whole store is at most maxApplications x capacity x (8 + 8 x names):
/// 10,000 x 60 x 264 octets, about 160 MB, and about 40 MB for 10,000 applications reporting 8 metrics.
/// A sample allocates nothing once its application's columns exist.
/// </remarks>
public sealed class RecentSamples(int capacity = 60, int maxApplications = 10_000, int maxNamesPerApplication = 32) : IMetricWindowSource
{
    private readonly Dictionary<string, Window> _byApplication = new(StringComparer.Ordinal);
    private long _droppedValues;

    public int Capacity { get; } = capacity;

    /// <summary>Values not kept because their application already had <c>maxNamesPerApplication</c> other names.</summary>
    public long DroppedValues => Interlocked.Read(ref _droppedValues);

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

                _byApplication[sample.Application] = window = new Window(Capacity, maxNamesPerApplication);
            }

            var dropped = window.Add(sample.TimeMs, sample.Values);
            if (dropped > 0)
            {
                Interlocked.Add(ref _droppedValues, dropped);
            }

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
        using var buffer = new MemoryStream();
        lock (_byApplication)
        {
            if (!_byApplication.TryGetValue(application, out var window) || window.Count == 0)
            {
                return null;
            }

            using var json = new Utf8JsonWriter(buffer);
            window.Write(json);
        }

        return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

    /// <summary>One application's ring: a time per slot and a column of values per name (NaN: not reported).</summary>
    private sealed class Window(int capacity, int maxNames)
    {
        private readonly long[] _times = new long[capacity];
        private readonly List<string> _names = [];
        private readonly List<double[]> _columns = [];
        private int _next;

        public int Count { get; private set; }

        /// <summary>Stores a sample in the next slot; returns how many of its values had no room.</summary>
        public int Add(long timeMs, IReadOnlyDictionary<string, double> values)
        {
            var slot = _next;
            _next = (_next + 1) % _times.Length;
            Count = Math.Min(Count + 1, _times.Length);
            _times[slot] = timeMs;
            foreach (var column in _columns)
            {
                column[slot] = double.NaN;
            }

            var dropped = 0;
            foreach (var (name, value) in values)
            {
                var index = _names.IndexOf(name);
                if (index < 0)
                {
                    if (_names.Count >= maxNames)
                    {
                        dropped++;
                        continue;
                    }

                    var column = new double[_times.Length];
                    Array.Fill(column, double.NaN);
                    _names.Add(name);
                    _columns.Add(column);
                    index = _names.Count - 1;
                }

                _columns[index][slot] = value;
            }

            return dropped;
        }

        /// <summary>{"samples": [{"timeMs": T, name: value, ...}, ...]}, oldest first.</summary>
        public void Write(Utf8JsonWriter json)
        {
            json.WriteStartObject();
            json.WriteStartArray("samples");
            for (var i = 0; i < Count; i++)
            {
                var slot = (_next - Count + i + _times.Length) % _times.Length;
                json.WriteStartObject();
                json.WriteNumber("timeMs", _times[slot]);
                for (var n = 0; n < _names.Count; n++)
                {
                    if (!double.IsNaN(_columns[n][slot]))
                    {
                        json.WriteNumber(_names[n], _columns[n][slot]);
                    }
                }

                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteEndObject();
        }
    }
}
