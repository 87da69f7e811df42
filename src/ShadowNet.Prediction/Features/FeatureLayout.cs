namespace ShadowNet.Prediction.Features;

/// <summary>The features computed from a step's time rather than reported; numbered after the signals.</summary>
public enum TimeFeature
{
    HourSin = Signals.Count,
    HourCos,
    DaySin,
    DayCos,
}

/// <summary>
/// The features a model's contract names, in its order, as the pipeline writes them. Normalisation:
/// instances and load divided by the window's scale (its largest instance count, at least 1), the
/// model's output multiplied back by it; requests and bytes per second divided by their own peak in the
/// window (the shape of the traffic); cpu, memory and io as reported (fractions); deploys and errors as
/// ln(1 + count); time of day and week as sin/cos of each step's start, UTC.
/// </summary>
public sealed class FeatureLayout
{
    /// <summary>Every name the pipeline knows: the signals in <see cref="Signal"/> order, then the <see cref="TimeFeature"/>s.</summary>
    public static readonly IReadOnlyList<string> Known =
        [.. Enumerable.Range(0, Signals.Count).Select(s => Signals.NameOf((Signal)s)), "hour_sin", "hour_cos", "dow_sin", "dow_cos"];

    private readonly int[] _features;

    private FeatureLayout(int[] features) => _features = features;

    public int Count => _features.Length;

    /// <summary>The feature in column <paramref name="index"/>: a signal, or a time feature.</summary>
    public bool IsSignal(int index, out Signal signal, out TimeFeature time)
    {
        var code = _features[index];
        (signal, time) = ((Signal)Math.Min(code, Signals.Count - 1), (TimeFeature)Math.Max(code, Signals.Count));
        return code < Signals.Count;
    }

    /// <summary>The layout for a contract's names; an unknown or repeated name is an <see cref="ArgumentException"/> naming it.</summary>
    public static FeatureLayout Of(IReadOnlyList<string> names)
    {
        var features = new int[names.Count];
        for (var i = 0; i < names.Count; i++)
        {
            var index = -1;
            for (var k = 0; k < Known.Count; k++)
            {
                if (string.Equals(Known[k], names[i], StringComparison.Ordinal))
                {
                    index = k;
                }
            }

            if (index < 0)
            {
                throw new ArgumentException($"feature '{names[i]}' is not one the pipeline produces ({string.Join(", ", Known)})", nameof(names));
            }

            if (Array.IndexOf(features, index, 0, i) >= 0)
            {
                throw new ArgumentException($"feature '{names[i]}' is named twice", nameof(names));
            }

            features[i] = index;
        }

        return new FeatureLayout(features);
    }
}
