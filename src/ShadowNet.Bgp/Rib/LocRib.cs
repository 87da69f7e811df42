using ShadowNet.Bgp.Wire;

namespace ShadowNet.Bgp.Rib;

/// <summary>
/// The routes this speaker originates: one attribute set per prefix. Every change marks the prefix
/// dirty in each subscribed peer's <see cref="AdjRibOut"/>, whose writer later sends the latest state.
/// </summary>
/// <param name="expectedRoutes">
/// Routes to size the table for at once: growing it later rehashes it under the lock, milliseconds
/// during which no route can be announced (0: it grows from empty).
/// </param>
public sealed class LocRib(int expectedRoutes = 0)
{
    private readonly Dictionary<RoutePrefix, RouteAttributes> _routes = new(expectedRoutes);
    private readonly List<AdjRibOut> _subscribers = [];
    private readonly Lock _lock = new();

    public int Count
    {
        get
        {
            lock (_lock)
                return _routes.Count;
        }
    }

    /// <summary>Routes the table holds before it grows.</summary>
    public int Capacity
    {
        get
        {
            lock (_lock)
                return _routes.EnsureCapacity(0);
        }
    }

    /// <summary>Adds or replaces the route for <paramref name="prefix"/>.</summary>
    public void Announce(RoutePrefix prefix, RouteAttributes attributes)
    {
        lock (_lock)
        {
            if (_routes.TryGetValue(prefix, out var old) && old.Equals(attributes))
                return;
            _routes[prefix] = attributes;
            foreach (var s in _subscribers)
                s.MarkDirty(prefix);
        }
    }

    public void Announce(ReadOnlySpan<RoutePrefix> prefixes, RouteAttributes attributes)
    {
        lock (_lock)
        {
            _routes.EnsureCapacity(_routes.Count + prefixes.Length);
            foreach (var p in prefixes)
            {
                if (_routes.TryGetValue(p, out var old) && old.Equals(attributes))
                    continue;
                _routes[p] = attributes;
                foreach (var s in _subscribers)
                    s.MarkDirty(p);
            }
        }
    }

    public bool Withdraw(RoutePrefix prefix)
    {
        lock (_lock)
        {
            if (!_routes.Remove(prefix))
                return false;
            foreach (var s in _subscribers)
                s.MarkDirty(prefix);
            return true;
        }
    }

    public bool TryGet(RoutePrefix prefix, out RouteAttributes attributes)
    {
        lock (_lock)
            return _routes.TryGetValue(prefix, out attributes!);
    }

    /// <summary>Looks up a batch under one lock: null where the prefix is withdrawn.</summary>
    internal void Lookup(ReadOnlySpan<RoutePrefix> prefixes, Span<RouteAttributes?> attributes)
    {
        lock (_lock)
        {
            for (var i = 0; i < prefixes.Length; i++)
                attributes[i] = _routes.TryGetValue(prefixes[i], out var a) ? a : null;
        }
    }

    public List<KeyValuePair<RoutePrefix, RouteAttributes>> Snapshot()
    {
        lock (_lock)
            return [.. _routes];
    }

    /// <summary>
    /// Subscribes <paramref name="adjRibOut"/> and marks every current prefix dirty, atomically, so that a
    /// session coming up sends the full table and then every later change, with nothing lost between.
    /// </summary>
    internal void Subscribe(AdjRibOut adjRibOut)
    {
        lock (_lock)
        {
            _subscribers.Add(adjRibOut);
            adjRibOut.MarkAllDirty(_routes.Keys);
        }
    }

    internal void Unsubscribe(AdjRibOut adjRibOut)
    {
        lock (_lock)
            _subscribers.Remove(adjRibOut);
    }

    internal void MarkAllDirty(AdjRibOut adjRibOut)
    {
        lock (_lock)
            adjRibOut.MarkAllDirty(_routes.Keys);
    }
}
