using System.Threading.Channels;
using ShadowNet.Addressing;

namespace ShadowNet.Controller.Telemetry;

public enum ControllerEventKind : byte
{
    Create,
    Delete,
}

/// <summary>Something the route manager did: an instance created (hit or miss) or deleted.</summary>
public readonly record struct ControllerEvent(long TimeMs, ControllerEventKind Kind, bool Hit, string Instance, string Application, Address Address, Address? Host);

/// <summary>
/// Fans events out to watchers (gRPC WatchEvents). Each watcher has its own bounded queue: a slow one
/// loses its oldest events (counted, so it can tell) and never slows the route manager or the others.
/// Publishing with no watcher costs one array read.
/// </summary>
public sealed class EventFeed
{
    private readonly Lock _gate = new();
    private Subscription[] _subscriptions = [];

    public int Watchers => Volatile.Read(ref _subscriptions).Length;

    public void Publish(in ControllerEvent @event)
    {
        foreach (var subscription in Volatile.Read(ref _subscriptions))
        {
            subscription.Offer(@event);
        }
    }

    public Subscription Subscribe(int capacity = 4096)
    {
        var subscription = new Subscription(this, capacity);
        lock (_gate)
        {
            _subscriptions = [.. _subscriptions, subscription];
        }

        return subscription;
    }

    private void Remove(Subscription subscription)
    {
        lock (_gate)
        {
            _subscriptions = [.. _subscriptions.Where(s => s != subscription)];
        }
    }

    public sealed class Subscription : IDisposable
    {
        private readonly EventFeed _feed;
        private readonly Channel<ControllerEvent> _queue;
        private long _dropped;

        internal Subscription(EventFeed feed, int capacity)
        {
            _feed = feed;
            _queue = Channel.CreateBounded<ControllerEvent>(new BoundedChannelOptions(capacity)
            {
                SingleReader = true,
                FullMode = BoundedChannelFullMode.DropOldest,
            }, _ => Interlocked.Increment(ref _dropped));
        }

        public ChannelReader<ControllerEvent> Reader => _queue.Reader;

        /// <summary>Events this watcher lost because its queue was full.</summary>
        public long Dropped => Interlocked.Read(ref _dropped);

        internal void Offer(in ControllerEvent @event) => _queue.Writer.TryWrite(@event);

        public void Dispose()
        {
            _feed.Remove(this);
            _queue.Writer.TryComplete();
        }
    }
}
