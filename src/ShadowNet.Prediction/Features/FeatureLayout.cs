namespace ShadowNet.Prediction.Features;

/// <summary>The features computed rather than reported (from a step's time, or from the window); numbered after the signals.</summary>
public enum DerivedFeature
{
    HourSin = Signals.Count,
    HourCos,
    DaySin,
    DayCos,

    /// <summary>ln of the window's scale: the level that the scaled instances and load are relative to.</summary>
    LogScale,
}

/// <summary>
/// The features a model's contract names, in its order, as the pipeline writes them. Normalisation:
/// instances and load divided by the window's scale (its largest instance count, at least 1), the
/// model's output multiplied back by it; requests and bytes per second divided by their own peak in the
/// window (the shape of the traffic); cpu, memory and io as reported (fractions); deploys and errors as
/// ln(1 + count); time of day and week as sin/cos of each step's start, UTC; log_scale as ln(scale) in every step.
/// </summary>
public sealed class FeatureLayout
{
    private static readonly string[] KnownNames =
        [.. Enumerable.Range(0, Signals.Count).Select(s => Signals.NameOf((Signal)s)), "hour_sin", "hour_cos", "dow_sin", "dow_cos", "log_scale"];

    /// <summary>Every name the pipeline knows: the signals in <see cref="Signal"/> order, then the <see cref="DerivedFeature"/>s.</summary>
    public static IReadOnlyList<string> Known => KnownNames;

    private readonly int[] _features;

    private FeatureLayout(int[] features) => _features = features;

    public int Count => _features.Length;

    /// <summary>True when column <paramref name="index"/> is a recorded signal; otherwise it is <see cref="DerivedFeatureAt"/>.</summary>
    public bool TryGetSignal(int index, out Signal signal)
    {
        signal = (Signal)_features[index];
        return _features[index] < Signals.Count;
    }

    public DerivedFeature DerivedFeatureAt(int index) => (DerivedFeature)_features[index];

    /// <summary>The layout for a contract's names; an unknown or repeated name is an <see cref="ArgumentException"/> naming it.</summary>
    public static FeatureLayout Of(IReadOnlyList<string> names)
    {
        var features = new int[names.Count];
        for (var i = 0; i < names.Count; i++)
        {
            var index = Array.IndexOf(KnownNames, names[i]);
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
