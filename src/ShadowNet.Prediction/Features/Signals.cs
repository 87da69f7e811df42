namespace ShadowNet.Prediction.Features;

/// <summary>What an application reports each step (ReportMetrics value names, PromQL feature names).</summary>
public enum Signal
{
    /// <summary>Instances running: the series the forecast is about.</summary>
    Instances,

    /// <summary>The work it serves in units of one instance's capacity (missing: the instance count).</summary>
    Load,

    RequestsPerSecond,
    BytesPerSecond,

    /// <summary>Fractions of the application's allocation, 0 to 1.</summary>
    Cpu,
    Memory,
    Io,

    /// <summary>Log-derived events in the step (a deploy started, errors logged): counts that add up.</summary>
    Deploys,
    Errors,
}

public static class Signals
{
    public const int Count = 9;

    private static readonly string[] Names = ["instances", "load", "requests_per_second", "bytes_per_second", "cpu", "memory", "io", "deploys", "errors"];

    public static string NameOf(Signal signal) => Names[(int)signal];

    public static bool TryParse(string name, out Signal signal)
    {
        var index = Array.IndexOf(Names, name);
        signal = (Signal)Math.Max(index, 0);
        return index >= 0;
    }

    /// <summary>Events add up within a step and are 0 in a step nobody reported; gauges hold their last value.</summary>
    public static bool IsEvent(Signal signal) => signal is Signal.Deploys or Signal.Errors;

    /// <summary>
    /// One value per signal from a sample's named values (NaN where it has none; unknown names ignored).
    /// False with the offending name when a value is not a finite number at least 0.
    /// </summary>
    public static bool TryRead(IReadOnlyDictionary<string, double> values, Span<float> into, out string? bad)
    {
        into.Fill(float.NaN);
        bad = null;
        foreach (var (name, value) in values)
        {
            if (!TryParse(name, out var signal))
            {
                continue;
            }

            if (!double.IsFinite(value) || value < 0)
            {
                bad = name;
                return false;
            }

            into[(int)signal] = (float)value;
        }

        return true;
    }
}
