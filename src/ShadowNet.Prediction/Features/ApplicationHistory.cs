namespace ShadowNet.Prediction.Features;

/// <summary>
/// An application's recent steps in fixed rings (no allocation per sample): the instances running, the
/// load in instance units (load / capacity of one instance), traffic, resource use and log-derived
/// events, at fixed steps. A gap is filled by carrying gauges forward with no events (counted); a sample
/// for a step already past is late and dropped (counted): the window a model sees is always whole and in
/// order.
/// </summary>
public sealed class ApplicationHistory
{
    /// <summary>Every feature the pipeline can give a model, by the name a model's contract uses.</summary>
    public static readonly IReadOnlyList<string> FeatureNames = [.. FeatureLayout.Known];

    private readonly long[] _stepStart;
    private readonly float[][] _signals;
    private readonly long _stepSeconds;
    private int _count;
    private int _next;
    private int _reported; // a bit per Signal that some sample carried

    public ApplicationHistory(int capacity, int stepSeconds)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(stepSeconds, 1);
        _stepStart = new long[capacity];
        _signals = new float[Signals.Count][];
        for (var i = 0; i < _signals.Length; i++)
        {
            _signals[i] = new float[capacity];
        }

        _stepSeconds = stepSeconds;
    }

    public int Count => _count;

    public long GapsFilled { get; private set; }

    public long LateDropped { get; private set; }

    /// <summary>Unix seconds of the newest step's start; meaningless while <see cref="Count"/> is 0.</summary>
    public long LastStep => _stepStart[(_next - 1 + _stepStart.Length) % _stepStart.Length];

    /// <summary>True once a sample has carried the signal (gauges not yet reported read as 0).</summary>
    public bool Reported(Signal signal) => (_reported & (1 << (int)signal)) != 0;

    /// <summary>Records instances and load (a trace replay's sample); its time is rounded down to its step.</summary>
    public void Add(long unixSeconds, float instances, float load)
    {
        Span<float> values = stackalloc float[Signals.Count];
        values.Fill(float.NaN);
        values[(int)Signal.Instances] = instances;
        values[(int)Signal.Load] = load;
        Add(unixSeconds, values);
    }

    /// <summary>
    /// Records a sample: one value per <see cref="Signal"/>, NaN for those it does not carry (a gauge
    /// keeps its last value, load follows instances, events count 0). Gauges replace within a step (the
    /// latest reading counts); events add up.
    /// </summary>
    public void Add(long unixSeconds, ReadOnlySpan<float> values)
    {
        if (values.Length != Signals.Count)
        {
            throw new ArgumentException($"{values.Length} values; one per signal ({Signals.Count}) expected", nameof(values));
        }

        var step = unixSeconds - (((unixSeconds % _stepSeconds) + _stepSeconds) % _stepSeconds);
        if (_count > 0)
        {
            var last = LastStep;
            if (step < last)
            {
                LateDropped++;
                return;
            }

            var newest = Index(0);
            if (step == last)
            {
                Merge(newest, values, sameStep: true);
                return;
            }

            for (var missing = last + _stepSeconds; missing < step && missing - last <= _stepSeconds * _stepStart.Length; missing += _stepSeconds)
            {
                Append(missing, newest);
                GapsFilled++;
            }

            Append(step, Index(0));
        }
        else
        {
            Append(step, -1);
        }

        Merge(Index(0), values, sameStep: false);
    }

    /// <summary>Instances of the step <paramref name="back"/> steps before the newest (0 = newest).</summary>
    public float InstancesAt(int back) => _signals[(int)Signal.Instances][Index(back)];

    /// <summary>A signal's value <paramref name="back"/> steps before the newest (0 = newest).</summary>
    public float ValueAt(Signal signal, int back) => _signals[(int)signal][Index(back)];

    public (float Instances, float Load) Latest() => (ValueAt(Signal.Instances, 0), ValueAt(Signal.Load, 0));

    /// <summary>
    /// Writes the newest <paramref name="window"/> steps as model input, oldest first, in the layout's
    /// feature order, normalised as <see cref="FeatureLayout"/> says; returns the scale to multiply the
    /// model's outputs by. Needs <see cref="Count"/> at least <paramref name="window"/>.
    /// </summary>
    public float WriteWindow(FeatureLayout layout, int window, Span<float> destination)
    {
        if (_count < window)
        {
            throw new InvalidOperationException($"{_count} steps recorded; the window needs {window}");
        }

        var scale = Math.Max(1f, Peak(Signal.Instances, window));
        var level = MathF.Log(scale);
        var features = layout.Count;
        for (var f = 0; f < features; f++)
        {
            if (!layout.TryGetSignal(f, out var signal))
            {
                var derived = layout.DerivedFeatureAt(f);
                for (var i = 0; i < window; i++)
                {
                    destination[(i * features) + f] = derived == DerivedFeature.LogScale
                        ? level
                        : Value(derived, _stepStart[Index(window - 1 - i)]);
                }

                continue;
            }

            var divisor = signal switch
            {
                Signal.Instances or Signal.Load => scale,
                Signal.RequestsPerSecond or Signal.BytesPerSecond => Math.Max(1e-6f, Peak(signal, window)),
                _ => 1f,
            };
            for (var i = 0; i < window; i++)
            {
                destination[(i * features) + f] = Value(signal, Index(window - 1 - i), divisor);
            }
        }

        return scale;
    }

    private float Value(Signal signal, int at, float divisor) => Signals.IsEvent(signal)
        ? MathF.Log(1 + Math.Max(0, _signals[(int)signal][at]))
        : _signals[(int)signal][at] / divisor;

    private static float Value(DerivedFeature timeFeature, long seconds)
    {
        var hour = (seconds % 86400) / 3600.0;
        var day = ((seconds / 86400) + 3) % 7; // 1970-01-01 was a Thursday: 0 = Monday
        return (float)(timeFeature switch
        {
            DerivedFeature.HourSin => Math.Sin(2 * Math.PI * hour / 24),
            DerivedFeature.HourCos => Math.Cos(2 * Math.PI * hour / 24),
            DerivedFeature.DaySin => Math.Sin(2 * Math.PI * day / 7),
            DerivedFeature.DayCos => Math.Cos(2 * Math.PI * day / 7),
            _ => throw new ArgumentOutOfRangeException(nameof(timeFeature), timeFeature, "not a time feature"),
        });
    }

    private float Peak(Signal signal, int window)
    {
        var peak = 0f;
        var values = _signals[(int)signal];
        for (var back = 0; back < window; back++)
        {
            peak = Math.Max(peak, values[Index(back)]);
        }

        return peak;
    }

    private void Merge(int at, ReadOnlySpan<float> values, bool sameStep)
    {
        for (var s = 0; s < values.Length; s++)
        {
            var value = values[s];
            if (float.IsNaN(value))
            {
                continue;
            }

            _reported |= 1 << s;
            var signal = (Signal)s;
            _signals[s][at] = Signals.IsEvent(signal) && sameStep ? _signals[s][at] + value : value;
        }

        // Load not given with the instances: the instance count stands in, as for a replayed trace.
        if (float.IsNaN(values[(int)Signal.Load]) && !float.IsNaN(values[(int)Signal.Instances]) && !Reported(Signal.Load))
        {
            _signals[(int)Signal.Load][at] = values[(int)Signal.Instances];
        }
    }

    private int Index(int back)
    {
        if (back < 0 || back >= _count)
        {
            throw new ArgumentOutOfRangeException(nameof(back), $"{back} steps back; {_count} recorded");
        }

        return (_next - 1 - back + (_stepStart.Length * 2)) % _stepStart.Length;
    }

    /// <summary>A new step: gauges carried from step <paramref name="from"/> (-1: none), events at 0.</summary>
    private void Append(long step, int from)
    {
        _stepStart[_next] = step;
        for (var s = 0; s < _signals.Length; s++)
        {
            _signals[s][_next] = from < 0 || Signals.IsEvent((Signal)s) ? 0 : _signals[s][from];
        }

        _next = (_next + 1) % _stepStart.Length;
        _count = Math.Min(_count + 1, _stepStart.Length);
    }
}
