using Microsoft.Extensions.Configuration;

namespace ShadowNet.Daemon.Configuration;

/// <summary>
/// The settings the daemon runs with, flattened to key and value, so that a reload (SIGHUP) can name
/// what changed in the file that it does not take: those settings keep their running values until a
/// restart. Only keys are ever reported, never values (the file holds secrets). It also keeps the
/// reloads' outcomes, for the metrics.
/// </summary>
public sealed class RunningSettings(IConfiguration settings)
{
    private Dictionary<string, string> _values = Flatten(settings);
    private long _taken, _failed;

    /// <summary>False after a reload whose file did not read, until one that did.</summary>
    public bool LastReloadSucceeded { get; private set; } = true;

    /// <summary>Settings that differ in the file from what runs, found by the last reload taken: they take a restart.</summary>
    public IReadOnlyList<string> RestartPending { get; private set; } = [];

    public long ReloadsTaken => Interlocked.Read(ref _taken);
    public long ReloadsFailed => Interlocked.Read(ref _failed);

    public void ReloadFailed()
    {
        Interlocked.Increment(ref _failed);
        LastReloadSucceeded = false;
    }

    /// <summary>
    /// The sections <paramref name="taken"/> of <paramref name="reread"/> run now; returns the keys whose
    /// value there differs from the running one outside them (they take a restart).
    /// </summary>
    public IReadOnlyList<string> Took(IConfiguration reread, IReadOnlyList<string> taken)
    {
        var next = Flatten(reread);
        RestartPending = [.. _values.Keys.Union(next.Keys, StringComparer.OrdinalIgnoreCase)
            .Where(key => !taken.Any(section => Within(key, section))
                && _values.GetValueOrDefault(key) != next.GetValueOrDefault(key))
            .Order(StringComparer.OrdinalIgnoreCase)];
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
        Interlocked.Increment(ref _taken);
        LastReloadSucceeded = true;
        return RestartPending;
    }

    private static bool Within(string key, string section) =>
        key.Equals(section, StringComparison.OrdinalIgnoreCase)
        || (key.StartsWith(section, StringComparison.OrdinalIgnoreCase) && key.Length > section.Length && key[section.Length] == ':');

    private static Dictionary<string, string> Flatten(IConfiguration settings) =>
        settings.AsEnumerable().Where(e => e.Value is not null).ToDictionary(e => e.Key, e => e.Value!, StringComparer.OrdinalIgnoreCase);
}
