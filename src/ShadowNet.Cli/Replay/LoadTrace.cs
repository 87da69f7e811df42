using System.Globalization;
using ShadowNet.Cli.Controller;

namespace ShadowNet.Cli.Replay;

/// <summary>A load series in the NAB format: a 'timestamp,value' header, then one row per step (UTC).</summary>
internal sealed record LoadTrace(string Name, long[] Times, double[] Load)
{
    private readonly double _peak = Math.Max(Load.Max(), 1e-9);

    public static LoadTrace Read(FileInfo file)
    {
        var times = new List<long>();
        var load = new List<double>();
        var line = 0;
        foreach (var row in File.ReadLines(file.FullName))
        {
            line++;
            if (line == 1 && row.StartsWith("timestamp", StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }

            var parts = row.Split(',');
            if (parts.Length != 2
                || !DateTime.TryParse(parts[0], CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out var at)
                || !double.TryParse(parts[1], CultureInfo.InvariantCulture, out var value) || !double.IsFinite(value) || value < 0)
            {
                throw new UsageException($"{file.Name} line {line}: '{row}' is not 'timestamp,value' with a non-negative value");
            }

            times.Add(new DateTimeOffset(at, TimeSpan.Zero).ToUnixTimeSeconds());
            load.Add(value);
        }

        return load.Count == 0 ? throw new UsageException($"{file.Name}: no rows") : new(file.Name, [.. times], [.. load]);
    }

    /// <summary>The replay contract's instance count: <c>ceil(load / capacity)</c>, capacity so that the peak needs <paramref name="peakInstances"/>; at least 1.</summary>
    public int[] Instances(int peakInstances)
    {
        var capacity = _peak / peakInstances;
        return [.. Load.Select(l => (int)Math.Max(1, Math.Ceiling((l / capacity) - 1e-9)))];
    }

    /// <summary>The load in instance units (the "load" feature), on the same scale as <see cref="Instances"/>.</summary>
    public float LoadInInstances(int step, int peakInstances) => (float)(Load[step] / (_peak / peakInstances));
}
