namespace ShadowNet.Addressing.Allocation;

/// <summary>
/// A growable ring: reservations (claims take the oldest, shrinking drops the newest) and the
/// reuse-delay queue (released in order, freed from the front).
/// </summary>
internal sealed class RingDeque<T>(int capacity = 8)
{
    private T[] _items = new T[Math.Max(8, (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)Math.Clamp(capacity, 1, 1 << 24)))];
    private int _head;

    public int Count { get; private set; }

    /// <summary>Items it holds before it grows.</summary>
    public int Capacity => _items.Length;

    public void AddLast(T item)
    {
        if (Count == _items.Length)
        {
            var grown = new T[_items.Length * 2];
            for (var i = 0; i < Count; i++)
            {
                grown[i] = _items[(_head + i) & (_items.Length - 1)];
            }

            _items = grown;
            _head = 0;
        }

        _items[(_head + Count) & (_items.Length - 1)] = item;
        Count++;
    }

    /// <summary>The oldest item; the ring must not be empty.</summary>
    public ref readonly T First => ref _items[_head];

    public bool TryTakeFirst(out T item)
    {
        if (Count == 0)
        {
            item = default!;
            return false;
        }

        item = _items[_head];
        _head = (_head + 1) & (_items.Length - 1);
        Count--;
        return true;
    }

    public bool TryTakeLast(out T item)
    {
        if (Count == 0)
        {
            item = default!;
            return false;
        }

        Count--;
        item = _items[(_head + Count) & (_items.Length - 1)];
        return true;
    }

    public IEnumerable<T> Items()
    {
        for (var i = 0; i < Count; i++)
        {
            yield return _items[(_head + i) & (_items.Length - 1)];
        }
    }
}
