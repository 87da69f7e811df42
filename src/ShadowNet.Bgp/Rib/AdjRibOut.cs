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

    // Between HoldSends and ReleaseSends, the Adj-RIB-Outs this thread made dirty: their writers are not
    // woken; the thread sends the changes itself at the end, or wakes them then.
    [ThreadStatic]
    private static List<AdjRibOut>? t_held;
    [ThreadStatic]
    private static bool t_holding;

    /// <summary>Writes the pending changes on the calling thread, false when the writer cannot be had now.</summary>
    internal Func<bool>? SendNow { get; set; }

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
        if (!wasEmpty)
            return;
        if (t_holding)
            t_held!.Add(this);
        else
            _signal.Writer.TryWrite(true);
    }

    internal static void HoldSends()
    {
        t_held ??= [];
        t_holding = true;
    }

    internal static void ReleaseSends()
    {
        t_holding = false;
        var held = t_held;
        if (held is null)
            return;
        try
        {
            foreach (var adjRibOut in held)
            {
                if (adjRibOut.SendNow?.Invoke() != true)
                    adjRibOut.Wake();
            }
        }
        finally
        {
            held.Clear();
        }
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
