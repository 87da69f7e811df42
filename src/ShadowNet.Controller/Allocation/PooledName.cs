using System.Collections.Concurrent;

namespace ShadowNet.Controller.Allocation;

/// <summary>
/// An instance name as characters, pooled: the UDP hook's creates and deletes carry the name from the
/// datagram to the allocator, the store and the reply in one of these instead of a new string per event.
/// The renter returns it once the event's outcome has been read.
/// </summary>
public sealed class PooledName
{
    private static readonly ConcurrentQueue<PooledName> Pool = new();
    private char[] _chars = new char[64];

    private PooledName()
    {
    }

    public int Length { get; private set; }

    public ReadOnlySpan<char> Chars => _chars.AsSpan(0, Length);

    public static PooledName Rent(ReadOnlySpan<char> name)
    {
        if (!Pool.TryDequeue(out var pooled))
        {
            pooled = new PooledName();
        }

        if (name.Length > pooled._chars.Length)
        {
            pooled._chars = new char[name.Length];
        }

        name.CopyTo(pooled._chars);
        pooled.Length = name.Length;
        return pooled;
    }

    public void Return()
    {
        Length = 0;
        Pool.Enqueue(this);
    }

    /// <summary>A new string (events and miss records, not the hot path).</summary>
    public override string ToString() => new(Chars);
}
