namespace ShadowNet.Prediction.Features;

/// <summary>
/// An application's recent steps in a fixed ring (no allocation per sample): instances running and
/// load in instance units (load / capacity of one instance), at fixed steps. A gap is filled by
/// carrying the last step forward (counted); a sample for a step already past is late and dropped
/// (counted): the window a model sees is always whole and in order.
/// </summary>
public sealed class ApplicationHistory
{
    /// <summary>The feature order the committed model's contract names (models/README.md).</summary>
    public static readonly IReadOnlyList<string> FeatureNames = ["instances", "load", "hour_sin", "hour_cos", "dow_sin", "dow_cos"];

    private readonly long[] _stepStart;
    private readonly float[] _instances;
    private readonly float[] _load;
    private readonly long _stepSeconds;
    private int _count;
    private int _next;

    public ApplicationHistory(int capacity, int stepSeconds)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(stepSeconds, 1);
        _stepStart = new long[capacity];
        _instances = new float[capacity];
        _load = new float[capacity];
        _stepSeconds = stepSeconds;
    }

    public int Count => _count;

    public long GapsFilled { get; private set; }

    public long LateDropped { get; private set; }

    /// <summary>Unix seconds of the newest step's start; meaningless while <see cref="Count"/> is 0.</summary>
    public long LastStep => _stepStart[(_next - 1 + _stepStart.Length) % _stepStart.Length];

    /// <summary>Records a sample; its time is rounded down to its step.</summary>
    public void Add(long unixSeconds, float instances, float load)
    {
        var step = unixSeconds - (((unixSeconds % _stepSeconds) + _stepSeconds) % _stepSeconds);
        if (_count > 0)
        {
            var last = LastStep;
            if (step < last)
            {
                LateDropped++;
                return;
            }

            if (step == last)
            {
                // A second sample in the same step replaces the first: the latest reading counts.
                var at = (_next - 1 + _stepStart.Length) % _stepStart.Length;
                (_instances[at], _load[at]) = (instances, load);
                return;
            }

            var (lastInstances, lastLoad) = Latest();
            for (var missing = last + _stepSeconds; missing < step && missing - last <= _stepSeconds * _stepStart.Length; missing += _stepSeconds)
            {
                Append(missing, lastInstances, lastLoad);
                GapsFilled++;
            }
        }

        Append(step, instances, load);
    }

    /// <summary>Instances of the step <paramref name="back"/> steps before the newest (0 = newest).</summary>
    public float InstancesAt(int back) => _instances[Index(back)];

    public (float Instances, float Load) Latest() => (_instances[Index(0)], _load[Index(0)]);

    /// <summary>
    /// Writes the newest <paramref name="window"/> steps as model input, oldest first, normalised as the
    /// contract says; returns the scale to multiply the model's outputs by. Needs <see cref="Count"/> at
    /// least <paramref name="window"/>.
    /// </summary>
    public float WriteWindow(int window, Span<float> destination)
    {
        if (_count < window)
        {
            throw new InvalidOperationException($"{_count} steps recorded; the window needs {window}");
        }

        var features = FeatureNames.Count;
        var scale = 1f;
        for (var back = 0; back < window; back++)
        {
            scale = Math.Max(scale, _instances[Index(back)]);
        }

        for (var i = 0; i < window; i++)
        {
            var at = Index(window - 1 - i);
            var row = destination.Slice(i * features, features);
            var seconds = _stepStart[at];
            var hour = (seconds % 86400) / 3600.0;
            var day = ((seconds / 86400) + 3) % 7; // 1970-01-01 was a Thursday: 0 = Monday
            row[0] = _instances[at] / scale;
            row[1] = _load[at] / scale;
            row[2] = (float)Math.Sin(2 * Math.PI * hour / 24);
            row[3] = (float)Math.Cos(2 * Math.PI * hour / 24);
            row[4] = (float)Math.Sin(2 * Math.PI * day / 7);
            row[5] = (float)Math.Cos(2 * Math.PI * day / 7);
        }

        return scale;
    }

    private int Index(int back)
    {
        if (back < 0 || back >= _count)
        {
            throw new ArgumentOutOfRangeException(nameof(back), $"{back} steps back; {_count} recorded");
        }

        return (_next - 1 - back + (_stepStart.Length * 2)) % _stepStart.Length;
    }

    private void Append(long step, float instances, float load)
    {
        _stepStart[_next] = step;
        _instances[_next] = instances;
        _load[_next] = load;
        _next = (_next + 1) % _stepStart.Length;
        _count = Math.Min(_count + 1, _stepStart.Length);
    }
}
