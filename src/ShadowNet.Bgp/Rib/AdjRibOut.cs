using System.Threading.Channels;
using ShadowNet.Bgp.Wire;

namespace ShadowNet.Bgp.Rib;

/// <summary>
/// What one peer still has to be told: the set of prefixes whose state changed since the writer last
/// looked. Coalescing is by construction: a prefix is in the set once, and the writer sends whatever
/// the <see cref="LocRib"/> holds for it at send time (latest state wins, nothing reordered per prefix).
/// Memory is bounded by the number of distinct prefixes, however slowly the peer reads.
/// </summary>
public sealed class AdjRibOut
{
    private HashSet<RoutePrefix> _dirty = [];
    private HashSet<RoutePrefix> _spare = [];
    private readonly Lock _lock = new();
    private readonly Channel<bool> _signal = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });

    public int PendingCount
    {
        get
        {
            lock (_lock)
                return _dirty.Count;
        }
    }

    internal void MarkDirty(RoutePrefix prefix)
    {
        bool wasEmpty;
        lock (_lock)
        {
            wasEmpty = _dirty.Count == 0;
            _dirty.Add(prefix);
        }
        if (wasEmpty)
            _signal.Writer.TryWrite(true);
    }

    internal void MarkAllDirty(IReadOnlyCollection<RoutePrefix> prefixes)
    {
        lock (_lock)
        {
            _dirty.EnsureCapacity(_dirty.Count + prefixes.Count);
            foreach (var p in prefixes)
                _dirty.Add(p);
        }
        _signal.Writer.TryWrite(true);
    }

    /// <summary>Wakes the writer without a route change (keepalive, refresh, shutdown).</summary>
    internal void Wake() => _signal.Writer.TryWrite(true);

    internal ValueTask<bool> WaitAsync(CancellationToken cancellationToken) => _signal.Reader.WaitToReadAsync(cancellationToken);

    internal void ConsumeSignal() => _signal.Reader.TryRead(out _);

    /// <summary>Swaps out the dirty set; the caller owns the returned set until it hands it back with <see cref="Recycle"/>.</summary>
    internal HashSet<RoutePrefix> TakeDirty()
    {
        lock (_lock)
        {
            var taken = _dirty;
            _dirty = _spare;
            _spare = null!;
            return taken;
        }
    }

    internal void Recycle(HashSet<RoutePrefix> set)
    {
        set.Clear();
        // Keep the capacity for the next batch, except after a full-table dump of a large table.
        if (set.EnsureCapacity(0) > 1 << 16)
            set.TrimExcess();
        lock (_lock)
            _spare = set;
    }
}
