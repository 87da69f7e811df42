using Microsoft.Extensions.Configuration;

namespace ShadowNet.Daemon.Configuration;

/// <summary>
/// The settings the daemon runs with, flattened to key and value, so that a reload (SIGHUP) can name
/// what changed in the file that it does not take: those settings keep their running values until a
/// restart. Only keys are ever reported, never values (the file holds secrets).
/// </summary>
public sealed class RunningSettings(IConfiguration settings)
{
    private Dictionary<string, string> _values = Flatten(settings);

    /// <summary>Keys whose value in <paramref name="reread"/> differs from the running one, outside <paramref name="taken"/> (sections a reload takes).</summary>
    public IReadOnlyList<string> ChangedOutside(IConfiguration reread, IReadOnlyList<string> taken)
    {
        var next = Flatten(reread);
        return [.. _values.Keys.Union(next.Keys, StringComparer.OrdinalIgnoreCase)
            .Where(key => !taken.Any(section => Within(key, section))
                && _values.GetValueOrDefault(key) != next.GetValueOrDefault(key))
            .Order(StringComparer.OrdinalIgnoreCase)];
    }

    /// <summary>The sections <paramref name="taken"/> of <paramref name="reread"/> run now.</summary>
    public void Took(IConfiguration reread, IReadOnlyList<string> taken)
    {
        var next = Flatten(reread);
        var values = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var (key, value) in _values.Where(e => !taken.Any(section => Within(e.Key, section))))
        {
            values[key] = value;
        }

        foreach (var (key, value) in next.Where(e => taken.Any(section => Within(e.Key, section))))
        {
            values[key] = value;
        }

        _values = values;
    }

    private static bool Within(string key, string section) =>
        key.Equals(section, StringComparison.OrdinalIgnoreCase)
        || (key.StartsWith(section, StringComparison.OrdinalIgnoreCase) && key.Length > section.Length && key[section.Length] == ':');

    private static Dictionary<string, string> Flatten(IConfiguration settings) =>
        settings.AsEnumerable().Where(e => e.Value is not null).ToDictionary(e => e.Key, e => e.Value!, StringComparer.OrdinalIgnoreCase);
}
